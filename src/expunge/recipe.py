"""What a training run is, as plain data: the model's size and the loop's hyper-parameters.

Kept apart from the loop (:mod:`expunge.training`) and the model builder
(:mod:`expunge.models.builders`), which both need torch, so that presets can be listed and
checked, and options validated, before torch is imported (the CLI answers a wrong option in
about a second, not after loading a model).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelPreset", "TrainingConfig"]


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
