"""Tokens/s of expunge's training loop against a bare PyTorch loop on the same model and batches.

Both loops train the default preset's model on the default privacy world with identical batches
(the same seeded, length-grouped sampler and padding), the same AdamW parameter groups, schedule
and gradient clipping. The bare loop has nothing else: no Accelerate, no progress bar, no loss
readings, no checkpoints. Runs alternate between the loops and the median of the repeats is
reported, so that a background hiccup does not decide the comparison; each repeat rotates which
loop goes first.

    python benchmarks/train_speed.py [--steps 200] [--repeats 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import Dataset
from transformers.utils import logging as hf_logging

from expunge.data import SequenceDataset, encode_documents
from expunge.models import build_llama
from expunge.pipeline import world_tokenizer
from expunge.presets import get_preset
from expunge.training import (LossFn, StopKind, TrainingConfig, TrainResult, batch_loader, count_tokens,
                              make_optimizer, train_loop, warmup_cosine)
from expunge.worlds import PrivacyWorldConfig, generate_privacy_world
from expunge.worlds.world import World


def bare_loop(model: torch.nn.Module, dataset: Dataset, config: TrainingConfig, pad_id: int | None = None, *,
              collate_fn: Callable[[list[Any]], Any] | None = None, loss_fn: LossFn | None = None) -> TrainResult:
    """The minimal loop a researcher would write by hand: the same length-grouped sampler, AdamW
    groups, schedule and clipping as ``train_loop``, and nothing else (no Accelerate, no progress
    bar, no loss readings, no checkpoints).

    ``collate_fn`` and ``loss_fn`` take the place of the default padding and causal-LM loss, as in
    ``train_loop`` (forget_speed.py passes an unlearning method's own batches and loss).
    """
    loader, sampler = batch_loader(dataset, config, pad_id=pad_id, collate_fn=collate_fn)  # train_loop's batches
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config))
    model.train()
    step, tokens, epoch, loss = 0, 0, 0, torch.tensor(float("nan"))
    start = time.perf_counter()
    while step < config.max_steps:
        sampler.use_epoch(epoch)
        for batch in loader:
            tokens += count_tokens(batch)
            loss = loss_fn(model, batch)[0] if loss_fn is not None else model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step >= config.max_steps:
                break
        epoch += 1
    seconds = time.perf_counter() - start
    model.eval()
    return TrainResult(steps=step, tokens=tokens, seconds=seconds, tokens_per_second=tokens / seconds,
                       final_loss=float(loss.detach()), stop=StopKind.MAX_STEPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per loop (median reported)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()

    generated = generate_privacy_world(PrivacyWorldConfig(seed=0))
    world = World({"fingerprint": "bench"}, generated.subjects, generated.documents, generated.probes)
    tokenizer = world_tokenizer(world)
    preset = get_preset(args.preset)
    texts = [d.text for d in world.training_documents()]
    dataset = SequenceDataset(encode_documents(tokenizer, texts, preset.max_length))
    config = replace(preset.training, max_steps=args.steps, warmup_steps=min(preset.training.warmup_steps, args.steps // 10),
                     checkpoint_every=0)
    pad = tokenizer.pad_token_id

    def ours(progress: bool, checkpoint_every: int) -> Callable[[], tuple[int, float]]:
        def run() -> tuple[int, float]:
            model = build_llama(preset.model, tokenizer, seed=0)
            with tempfile.TemporaryDirectory() as tmp:
                result = train_loop(model, dataset, replace(config, checkpoint_every=checkpoint_every), pad_id=pad,
                                    progress=progress, checkpoint_dir=Path(tmp) if checkpoint_every else None)
            return result.tokens, result.seconds
        return run

    def bare() -> tuple[int, float]:
        result = bare_loop(build_llama(preset.model, tokenizer, seed=0), dataset, config, pad)
        return result.tokens, result.seconds

    loops: dict[str, Callable[[], tuple[int, float]]] = {
        "bare PyTorch loop": bare,
        "expunge train_loop": ours(progress=False, checkpoint_every=0),
        "expunge train_loop + progress bar": ours(progress=True, checkpoint_every=0),
        f"expunge train_loop + bar + checkpoints/{preset.training.checkpoint_every}": ours(
            progress=True, checkpoint_every=preset.training.checkpoint_every),
    }
    measured: dict[str, list[float]] = {name: [] for name in loops}
    tokens_seen: dict[str, int] = {}
    names = list(loops)
    for repeat in range(args.repeats):
        # Alternate the loops and rotate who goes first, so warm-up and drift favour no one.
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            tokens, seconds = loops[name]()
            tokens_seen[name] = tokens
            measured[name].append(tokens / seconds)

    reference = statistics.median(measured["bare PyTorch loop"])
    table = Table(title=f"training throughput: preset {preset.name}, {args.steps} steps, batch {config.batch_size}, "
                        f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for column in ("loop", "tokens/run", "tokens/s (median)", "min", "max", "vs bare"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    rows = []
    for name, values in measured.items():
        median = statistics.median(values)
        rows.append({"loop": name, "tokens": tokens_seen[name], "tokens_per_second": median,
                     "min": min(values), "max": max(values), "ratio_vs_bare": median / reference})
        table.add_row(name, f"{tokens_seen[name]:,}", f"{median:,.0f}", f"{min(values):,.0f}", f"{max(values):,.0f}",
                      f"{median / reference:.3f}x")
    Console(width=140).print(table)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "repeats": args.repeats, "preset": preset.name,
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
