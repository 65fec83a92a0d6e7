"""The gradient unlearning methods: each is a typed config, a forget term and a retain term.

All of them run on :func:`expunge.training.train_loop` through :mod:`expunge.methods.unlearn`;
nothing here is a trainer. A step sees a batch ``{"forget": …, "retain": …}`` of equal size and
minimises ``forget_weight * forget_term + retain_weight * retain_term``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from expunge.methods.gradient import losses

RETAIN_LOSSES = ("nll", "kl", "none")


@dataclass(frozen=True)
class UnlearnConfig:
    """Fields shared by every gradient method.

    Attributes:
        max_steps: optimizer steps at most.
        learning_rate: AdamW learning rate (constant after warm-up; no decay).
        batch_size: forget sequences per step; as many retain sequences ride along.
        forget_weight: weight of the forget term.
        retain_weight: weight of the retain term (0 disables it).
        retain_loss: ``nll`` (fit the retain data), ``kl`` (stay close to the original model's
            next-token distributions on the retain data) or ``none``.
        max_grad_norm: gradient clipping.
        warmup_steps: linear warm-up steps.
        seed: batch order and any random vectors.
        check_every: steps between stop-rule checks.
        min_steps: the early stop is not considered before this step.
        early_stop: stop when membership inference can no longer tell the forget documents
            from never-seen people's documents (see ``early_stop_auc``).
        early_stop_auc: the early stop's threshold on the LOSS attack's ROC AUC, forget vs
            never-seen documents (1 = every forget document more familiar, 0.5 = no
            difference, as for a model that never saw them). Below 0.5 the forget set would
            look *less* familiar than strangers: over-unlearning, itself a leak.
        max_retain_loss_increase: collapse guard: stop, and restore the last good state, when the
            retain documents' mean token NLL rises by more than this (nats) over the original's.
        group_by_length: batch pairs of similar length (see ``PairedDataset``): less padding,
            so faster steps, but long documents then meet only each other. Measured on the
            privacy world with SimNPO's defaults, it cut the time per step by about a third
            at the same forget and retain numbers.
        chunk_tokens: training sequences longer than this are cut into consecutive windows of
            this many tokens (0: never), so that a few long documents do not make every
            mixed batch pad to their length. Stop rules and verification use whole documents.
        lora_rank: train LoRA adapters of this rank instead of all weights (0: all weights);
            merged into the weights before saving. Needs the ``lora`` extra.
        generic_weight: weight of the generic-prediction anchor (0: off), after "Who's Harry
            Potter?" (https://arxiv.org/abs/2310.02238): on the forget documents, match the
            original model's predictions for the same text with each target's name replaced by
            a stand-in person it never saw (:mod:`expunge.methods.generic`). It tells the model
            what to say instead — a plausible value, as the oracle does — rather than only what
            not to say. Needs documents as forget data (not IdkFT).
    """

    max_steps: int = 200
    learning_rate: float = 4e-4
    batch_size: int = 32
    forget_weight: float = 1.0
    retain_weight: float = 2.0
    retain_loss: str = "nll"
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    seed: int = 0
    check_every: int = 10
    min_steps: int = 20
    early_stop: bool = True
    early_stop_auc: float = 0.55
    max_retain_loss_increase: float = 0.5
    group_by_length: bool = False
    chunk_tokens: int = 24
    lora_rank: int = 0
    generic_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.check_every < 1:
            raise ValueError("max_steps, batch_size and check_every must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be >= 0 and below max_steps ({self.max_steps})")
        if self.retain_loss not in RETAIN_LOSSES:
            raise ValueError(f"retain_loss must be one of {', '.join(RETAIN_LOSSES)}")
        if self.forget_weight < 0 or self.retain_weight < 0 or self.generic_weight < 0:
            raise ValueError("forget_weight, retain_weight and generic_weight must be >= 0")
        if self.lora_rank < 0:
            raise ValueError("lora_rank must be >= 0 (0 trains all weights)")
        if self.chunk_tokens < 0 or 0 < self.chunk_tokens < 4:
            raise ValueError("chunk_tokens must be 0 (off) or at least 4")
        if not 0.0 < self.early_stop_auc < 1.0:
            raise ValueError("early_stop_auc must lie between 0 and 1 (0.5: indistinguishable from never-seen)")
        if self.max_retain_loss_increase <= 0:
            raise ValueError("max_retain_loss_increase must be positive")


@dataclass(frozen=True)
class GradAscentConfig(UnlearnConfig):
    """https://arxiv.org/abs/2210.01504 — Gradient ascent (Jang et al. 2023): maximise the forget
    data's NLL. No retain term by default; known to collapse the model (kept as a reference point).
    """

    retain_weight: float = 0.0
    retain_loss: str = "none"


@dataclass(frozen=True)
class GradDiffConfig(UnlearnConfig):
    """https://arxiv.org/abs/2401.06121 — Gradient difference (TOFU, Maini et al. 2024): ascend on
    the forget data while descending on the retain data (``retain_loss`` nll) or staying close to
    the original model there (``retain_loss`` kl).
    """

    retain_weight: float = 1.0


@dataclass(frozen=True)
class NPOConfig(UnlearnConfig):
    """https://arxiv.org/abs/2404.05868 — Negative Preference Optimization (Zhang et al. 2024):
    -(2/beta) E[log sigmoid(-beta (log p_theta(y|x) - log p_ref(y|x)))] on the forget data, plus the
    retain term.

    Attributes:
        beta: inverse temperature; small beta approaches gradient ascent.
    """

    beta: float = 0.1
    retain_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise ValueError("beta must be positive")


@dataclass(frozen=True)
class SimNPOConfig(UnlearnConfig):
    """https://arxiv.org/abs/2410.07163 — SimNPO (Fan et al. 2024): reference-free, length-normalised
    NPO, -(2/beta) log sigmoid(-beta (log p_theta(y|x) / |y|) - gamma), plus the retain term.

    expunge's default method, with defaults measured on the default privacy world (100 people,
    10% deleted): the push fades by itself as the forget data's loss nears the never-seen level,
    and the generic anchor (``generic_weight``, off in the paper) gives the forgotten questions
    plausible answers instead of noise (answer plausibility 0.61 without it, 0.88 with it; the
    oracle's 0.91). A strong retain term (5 x NLL) with a short warm-up keeps the other people's
    answers (retain exact match 0.85 -> 0.91 of 0.93). With ``generic_weight=0`` the loss is the
    paper's.

    Attributes:
        beta: inverse temperature.
        gamma: reward margin.
    """

    beta: float = 1.0
    gamma: float = 1.0
    generic_weight: float = 1.0
    retain_weight: float = 5.0
    learning_rate: float = 7e-4
    warmup_steps: int = 5
    group_by_length: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise ValueError("beta must be positive")


@dataclass(frozen=True)
class RMUConfig(UnlearnConfig):
    """https://arxiv.org/abs/2403.03218 — Representation Misdirection for Unlearning (Li et al. 2024,
    WMDP): push the hidden states of forget tokens at one layer towards a fixed random direction
    (scaled), keep the retain tokens' hidden states at the original model's; only the MLPs of the
    layers up to that one are trained.

    Attributes:
        layer: decoder layer whose output is steered (negative counts from the end; default a
            quarter of the depth, as the paper's layer 7 of 32).
        steering_coeff: length of the random control vector, as a multiple of the mean hidden-state
            norm at that layer on the forget data (the paper's fixed coefficient assumes one
            model's activation scale; a multiple carries over between model sizes).
        trainable_layers: how many layers, ending at ``layer``, have their MLPs trained.
    """

    layer: int | None = None
    steering_coeff: float = 4.0
    trainable_layers: int = 3
    # The paper's alpha (100-1200) was tuned on 7B models; on small models it freezes the forget
    # push entirely (measured: no change in 20 steps at 100), so the default is lower.
    retain_weight: float = 10.0
    retain_loss: str = "none"  # RMU's retain term is on hidden states, not tokens
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.steering_coeff > 0 or self.trainable_layers < 1:
            raise ValueError("steering_coeff must be positive and trainable_layers at least 1")


@dataclass(frozen=True)
class IdkFTConfig(UnlearnConfig):
    """https://arxiv.org/abs/2401.06121 — "I don't know" fine-tuning (TOFU's IDK baseline): teach
    the model to answer questions about the forget targets with a refusal. It hides rather than
    removes: the knowledge stays in the weights, and verification must say so.
    """

    retain_weight: float = 1.0
    early_stop: bool = False  # refusing lowers nothing on the forget documents; run the steps
    # Measured on the default privacy world: 60 steps at 1e-3 already refuse every forget
    # question (direct exact match 0.93 -> 0.00) in ~8 s; 200 at 4e-4 took ~30 s for the same.
    max_steps: int = 60
    learning_rate: float = 1e-3


# --------------------------------------------------------------------------------------------
# Terms: pure functions of (context, batch, the model's outputs on that batch). The shared loop
# runs the forward pass once per batch (``forward``) and hands the outputs to every term that
# needs them. ``ctx`` carries the reference model and method state (see unlearn.UnlearnContext).


def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], hidden_states: bool = False) -> Any:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 output_hidden_states=hidden_states)


def forget_gradient_ascent(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    return losses.gradient_ascent(outputs.logits, batch["labels"])


def forget_npo(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    logp, _ = losses.sequence_logprobs(outputs.logits, batch["labels"])
    return losses.npo(logp, batch["ref_logp"], ctx.config.beta)


def forget_simnpo(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    logp, counts = losses.sequence_logprobs(outputs.logits, batch["labels"])
    return losses.simnpo(logp, counts, ctx.config.beta, ctx.config.gamma)


def forget_rmu(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    return losses.rmu_forget(outputs.hidden_states[ctx.rmu_layer + 1], ctx.rmu_control, batch["attention_mask"])


def forget_nll(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    """Fit the forget batch (IdkFT: its sequences are the questions with refusal answers)."""
    return losses.nll(outputs.logits, batch["labels"])


def retain_default(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    """The retain term chosen by ``config.retain_loss``."""
    kind = ctx.config.retain_loss
    if kind == "none" or ctx.config.retain_weight == 0:
        return torch.zeros((), device=batch["input_ids"].device)
    if kind == "nll":
        return losses.nll(outputs.logits, batch["labels"])
    with torch.no_grad():
        ref_logits = forward(ctx.reference, batch).logits
    return losses.kl_to_reference(outputs.logits, ref_logits, batch["labels"])


def retain_rmu(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    layer = ctx.rmu_layer + 1
    with torch.no_grad():
        ref_hidden = forward(ctx.reference, batch, hidden_states=True).hidden_states[layer]
    return losses.rmu_retain(outputs.hidden_states[layer], ref_hidden, batch["attention_mask"])


def generic_anchor(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    """KL from the original model's predictions on the stand-in text (``generic_input_ids``) to
    the model's on the real forget text, at positions whose next token is outside the name.
    The original's predictions come precomputed (``generic_teacher``, log-probabilities) or from
    the frozen copy ``ctx.reference``."""
    teacher = batch.get("generic_teacher")
    if teacher is None:
        with torch.no_grad():
            teacher = ctx.reference(input_ids=batch["generic_input_ids"], attention_mask=batch["attention_mask"]).logits
    return losses.kl_to_reference(outputs.logits, teacher, batch["generic_labels"])
