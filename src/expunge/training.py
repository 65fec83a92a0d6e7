"""The one training loop. Base training, oracle retraining and every gradient-based unlearning
method run through :func:`train_loop`; what differs between them is only the loss function.

Read top to bottom:

1. Build an Accelerator (CPU here; ``accelerate launch`` makes it many GPUs, FSDP or DeepSpeed,
   with no change to this file) and let it wrap the model, optimizer and data.
2. If a checkpoint directory holds a checkpoint, restore model, optimizer, scheduler and RNG
   state from it and skip the batches already consumed. Batch order depends only on
   (seed, epoch), so a resumed run sees exactly the batches the uninterrupted run would have.
3. Each optimizer step accumulates ``gradient_accumulation_steps`` micro-batches, clips the
   gradient norm, steps AdamW and the warm-up + cosine schedule.
4. Every ``eval_every`` steps an optional hook measures the model; it may ask to stop.
5. A non-finite loss stops the run with an error naming the step, never a silent NaN model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from expunge.choices import TextEnum
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset

from expunge.data import EpochBatchSampler, pad_collate
from expunge.errors import ExpungeError
from expunge.recipe import TrainingConfig

Batch = dict[str, torch.Tensor]
LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, Mapping[str, float]]]


class StopKind(TextEnum):
    """Why a run ended: the decision, as data (``TrainResult.stop_reason`` says it in words)."""

    MAX_STEPS = "max_steps"  # ran every step
    INTERRUPTED = "interrupted"  # stopped on request (``stop_at_step``); resumable from a checkpoint
    EARLY_STOP = "early_stop"  # an evaluation hook found the goal reached
    COLLAPSE_GUARD = "collapse_guard"  # an evaluation hook found the model damaged past its bound
    HOOK = "hook"  # an evaluation hook stopped it for a reason of its own



@dataclass
class EvalResult:
    """What an evaluation hook returns: metrics, and optionally a decision to stop now (``stop``)
    with its reason in words (``stop_reason``). A reason without a kind stops as ``HOOK``."""

    metrics: dict[str, float]
    stop_reason: str | None = None
    stop: StopKind | None = None

    def __post_init__(self) -> None:
        if self.stop_reason and self.stop is None:
            self.stop = StopKind.HOOK
        if self.stop is not None and not self.stop_reason:
            self.stop_reason = self.stop.value


EvalHook = Callable[[torch.nn.Module, int], EvalResult]


@dataclass
class TrainResult:
    """What a run did, measured."""

    steps: int
    tokens: int
    seconds: float
    tokens_per_second: float
    final_loss: float
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    eval_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    stop_reason: str = "max_steps"
    resumed_from_step: int | None = None
    stop: StopKind = StopKind.MAX_STEPS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def causal_lm_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Mapping[str, float]]:
    """Mean next-token negative log-likelihood over the non-padding tokens."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss, {}


def warmup_cosine(config: TrainingConfig) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``min_lr_ratio``."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        span = max(1, config.max_steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine

    return factor


def make_optimizer(model: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (decaying norm gains hurts and buys nothing)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # foreach kernels are fastest on CPU and GPU alike for many small tensors.
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, foreach=True)


def batch_loader(dataset: Dataset, config: TrainingConfig, *, pad_id: int | None = None,
                 collate_fn: Callable[[list[Any]], Any] | None = None) -> tuple[DataLoader, EpochBatchSampler]:
    """The batches a run trains on, and the sampler that orders them (``use_epoch`` reshuffles):
    seeded by ``config.seed``, of similar lengths when ``config.group_by_length`` and the dataset
    has ``lengths()``, padded with ``pad_id`` unless a ``collate_fn`` is given. The benchmarks'
    bare loops read the same batches from it."""
    if collate_fn is None:
        if pad_id is None:
            raise ValueError("pass pad_id (for the default padding) or a collate_fn")
        collate_fn = pad_collate(pad_id)
    lengths = dataset.lengths() if config.group_by_length and hasattr(dataset, "lengths") else None
    sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, lengths)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn), sampler


def count_tokens(batch: Any) -> int:
    """Non-padding tokens in a batch: the sum of every ``attention_mask`` in it (batches may nest,
    e.g. ``{"forget": {...}, "retain": {...}}`` for unlearning)."""
    if isinstance(batch, Mapping):
        own = int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0
        return own + sum(count_tokens(v) for k, v in batch.items() if isinstance(v, Mapping))
    return 0


def train_loop(
    model: torch.nn.Module,
    dataset: Dataset,
    config: TrainingConfig,
    *,
    pad_id: int | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    loss_fn: LossFn = causal_lm_loss,
    eval_hook: EvalHook | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    stop_at_step: int | None = None,
    progress: bool = True,
    description: str = "training",
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``dataset`` and return what happened.

    Args:
        dataset: a ``SequenceDataset`` (padded with ``pad_id``) or any dataset with a
            ``collate_fn``; a ``lengths()`` method enables length-grouped batches.
        loss_fn: ``(model, batch) -> (loss, metrics)``; the batch holds ``input_ids``,
            ``attention_mask`` and ``labels``.
        checkpoint_dir: where checkpoints go; a checkpoint found there is resumed from.
        stop_at_step: save a checkpoint and return after this many steps (an interruption
            that resumes cleanly; used by tests and by time-boxed jobs).
        progress: show a rich progress bar (on stderr, so ``--json`` output stays clean).
    """
    accelerator = accelerator or Accelerator()
    set_seed(config.seed)
    loader, sampler = batch_loader(dataset, config, pad_id=pad_id, collate_fn=collate_fn)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    # The scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step
    # it once per process), and checkpointed alongside the rest.
    accelerator.register_for_checkpointing(scheduler)

    step, tokens, elapsed_before = 0, 0, 0.0
    window = (0.0, 0)  # loss sum and micro-batch count since the last loss reading
    loss_history: list[tuple[int, float]] = []
    eval_history: list[tuple[int, dict[str, float]]] = []
    resumed_from: int | None = None
    ckpt_root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_root is not None:
        latest = _latest_checkpoint(ckpt_root)
        if latest is not None:
            accelerator.load_state(str(latest))
            state = json.loads((latest / "trainer_state.json").read_text())
            step, tokens, elapsed_before = state["step"], state["tokens"], state["seconds"]
            window = (state["window_loss_sum"], state["window_count"])
            loss_history = [tuple(x) for x in state["loss_history"]]
            eval_history = [tuple(x) for x in state["eval_history"]]
            resumed_from = step

    micro_per_epoch = len(loader)
    micro_step = step * config.gradient_accumulation_steps
    model.train()
    running_loss = torch.tensor(window[0], device=accelerator.device)
    running_count = window[1]
    last_loss = loss_history[-1][1] if loss_history else math.nan
    stop_reason, stop = "max_steps", StopKind.MAX_STEPS
    start = time.perf_counter()
    bar = _progress_bar(progress and accelerator.is_main_process)
    task = bar.add_task(description, total=config.max_steps, completed=step, loss=math.nan, tps=0.0)
    with bar:
        while step < config.max_steps:
            epoch, offset = divmod(micro_step, micro_per_epoch)
            sampler.use_epoch(epoch)
            epoch_loader = accelerator.skip_first_batches(loader, offset) if offset else loader
            seen_this_epoch = 0
            for batch in epoch_loader:
                seen_this_epoch += 1
                micro_step += 1
                boundary = micro_step % config.gradient_accumulation_steps == 0
                tokens += count_tokens(batch)
                # Gradients are only all-reduced on the last micro-batch of a step.
                with accelerator.no_sync(model) if not boundary else _null():
                    loss, _ = loss_fn(model, batch)
                    accelerator.backward(loss / config.gradient_accumulation_steps)
                running_loss += loss.detach()
                running_count += 1
                if not boundary:
                    continue
                if config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1

                if step % config.log_every == 0 or step == config.max_steps:
                    last_loss = float(accelerator.reduce(running_loss, "mean")) / running_count
                    running_loss.zero_()
                    running_count = 0
                    if not math.isfinite(last_loss):
                        raise ExpungeError(
                            f"the loss became {last_loss} at step {step}",
                            "lower the learning rate or check the data for empty sequences",
                        )
                    loss_history.append((step, last_loss))
                    seconds = elapsed_before + time.perf_counter() - start
                    bar.update(task, completed=step, loss=last_loss, tps=tokens / max(seconds, 1e-9))
                if eval_hook is not None and config.eval_every and step % config.eval_every == 0:
                    model.eval()
                    with torch.no_grad():
                        result = eval_hook(accelerator.unwrap_model(model), step)
                    model.train()
                    eval_history.append((step, dict(result.metrics)))
                    if result.stop is not None:
                        stop_reason, stop = str(result.stop_reason), result.stop
                        break
                seconds = elapsed_before + time.perf_counter() - start
                saved = False
                if ckpt_root is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
                    _save_checkpoint(accelerator, ckpt_root, step, tokens, seconds, loss_history,
                                     eval_history, config.keep_checkpoints,
                                     (float(running_loss), running_count))
                    saved = True
                if stop_at_step is not None and step >= stop_at_step and step < config.max_steps:
                    if ckpt_root is not None and not saved:
                        _save_checkpoint(accelerator, ckpt_root, step, tokens, seconds, loss_history,
                                         eval_history, config.keep_checkpoints,
                                         (float(running_loss), running_count))
                    stop_reason, stop = "interrupted", StopKind.INTERRUPTED
                    break
                if step >= config.max_steps:
                    break
            if stop is not StopKind.MAX_STEPS:
                break
            if seen_this_epoch == 0:  # never spin: an epoch must make progress
                raise ExpungeError(
                    f"an epoch produced no batches at step {step} ({len(dataset)} examples, batch size "
                    f"{config.batch_size}, {accelerator.num_processes} processes)",
                    "use a smaller batch size or fewer processes",
                )

    model = accelerator.unwrap_model(model)
    model.eval()
    seconds = elapsed_before + time.perf_counter() - start
    return TrainResult(
        steps=step,
        tokens=tokens,
        seconds=seconds,
        tokens_per_second=tokens / max(seconds, 1e-9),
        final_loss=last_loss,
        loss_history=loss_history,
        eval_history=eval_history,
        stop_reason=stop_reason,
        resumed_from_step=resumed_from,
        stop=stop,
    )


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def _latest_checkpoint(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    candidates = sorted(
        (p for p in root.glob("step-*") if (p / "trainer_state.json").is_file()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    return candidates[-1] if candidates else None


def _save_checkpoint(
    accelerator: Accelerator,
    root: Path,
    step: int,
    tokens: int,
    seconds: float,
    loss_history: list[tuple[int, float]],
    eval_history: list[tuple[int, dict[str, float]]],
    keep: int,
    window: tuple[float, int],
) -> None:
    """Write ``root/step-N`` atomically: a checkpoint either exists whole or not at all."""
    final = root / f"step-{step}"
    tmp = root / f".step-{step}.partial"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    with _quiet("accelerate"):  # it warns that the tied lm_head is stored once; that is intended
        accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        state = {"step": step, "tokens": tokens, "seconds": seconds,
                 "loss_history": loss_history, "eval_history": eval_history,
                 "window_loss_sum": window[0], "window_count": window[1]}
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        old = sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()
