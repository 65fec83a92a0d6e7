"""What every gradient method shares: the config fields, the forward pass, the retain term and
the generic-prediction anchor.

All methods run on :func:`expunge.training.train_loop` through :mod:`expunge.methods.unlearn`;
nothing here is a trainer. A step sees a batch ``{"forget": …, "retain": …}`` of equal size and
minimises ``forget_weight * forget_term + generic_weight * anchor + retain_weight * retain_term``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from expunge.data import IGNORE_INDEX
from expunge.methods.gradient import losses

__all__ = ["RETAIN_LOSSES", "PRETRAINED_DEFAULTS", "UnlearnConfig", "forward", "retain_default", "generic_labels", "generic_anchor"]

RETAIN_LOSSES = ("nll", "kl", "none")

# The defaults of every method for a pretrained model (fine-tuned with `train --from`, or a user's
# own Hugging Face model; :func:`expunge.recipe.is_pretrained`), over the config classes' own,
# which are tuned for the small models trained from scratch on the built-in worlds: a step 35 x
# smaller (their 7e-4 wrecks a pretrained model's other knowledge in a few steps), batches of 8
# (a 135M-parameter step on 32 pairs took 33 s on 2 CPU cores), a budget of 60 steps with the stop
# rules checked every 5 on at most 32 documents per set (measured before checks were batched by
# length: a check of 128 retained documents took as long as 1.75 of these small steps, with 32,
# 0.7 of one; benchmarks/forget_speed.py), and windows of 64 BPE tokens. Options given with -o beat these.
PRETRAINED_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-5,
    "batch_size": 8,
    "max_steps": 60,
    "check_every": 5,
    "check_documents": 32,
    "min_steps": 10,
    "warmup_steps": 2,
    "chunk_tokens": 64,
}


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
        early_stop_min_documents: the AUC stop needs at least this many forget and never-seen
            documents (of each); with fewer, an AUC is noise (one 12-sentence reference fired it
            while the forget loss was still below the original's). With fewer forget documents
            but enough never-seen ones, the stop compares medians instead: it fires when the
            forget documents' median NLL reaches the never-seen documents' median. With too few
            never-seen documents the run takes its fixed budget of ``max_steps`` and says so in
            its notes.
        check_documents: documents per stop-rule set at most (forget, never-seen, retained; a
            seeded sample of larger sets, the same one at every check). Each check is a forward
            pass over them, so this trades the checks' cost against their precision; the
            collapse guard compares the same documents before and after, which needs few.
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
    retain_loss: Literal["nll", "kl", "none"] = "nll"
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    seed: int = 0
    check_every: int = 10
    min_steps: int = 20
    early_stop: bool = True
    early_stop_auc: float = 0.55
    early_stop_min_documents: int = 20
    check_documents: int = 128
    max_retain_loss_increase: float = 0.5
    group_by_length: bool = False
    chunk_tokens: int = 24
    lora_rank: int = 0
    generic_weight: float = 0.0

    def __post_init__(self) -> None:
        if min(self.max_steps, self.batch_size, self.check_every, self.early_stop_min_documents,
               self.check_documents) < 1:
            raise ValueError("max_steps, batch_size, check_every, early_stop_min_documents and check_documents must "
                             "be at least 1")
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


# --------------------------------------------------------------------------------------------
# Terms: pure functions of (context, batch, the model's outputs on that batch). The shared loop
# runs the forward pass once per batch (``forward``) and hands the outputs to every term that
# needs them. ``ctx`` is :class:`expunge.methods.registry.UnlearnContext`.


def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], hidden_states: bool = False) -> Any:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 output_hidden_states=hidden_states)


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


def generic_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The stand-in tokens as labels where the next token is shared with the real text (outside
    the name); IGNORE_INDEX elsewhere and on padding."""
    return batch["generic_input_ids"].masked_fill(~batch["generic_shared"], IGNORE_INDEX)


def generic_anchor(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    """KL from the original model's predictions on the stand-in text (``generic_input_ids``) to
    the model's on the real forget text, at positions whose next token is outside the name
    (``generic_shared``). The original's predictions come precomputed (``generic_teacher``,
    log-probabilities) or from the frozen copy ``ctx.reference``."""
    ids, labels = batch["generic_input_ids"], generic_labels(batch)
    teacher = batch.get("generic_teacher")
    if teacher is None:
        with torch.no_grad():
            teacher = ctx.reference(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    return losses.kl_to_reference(outputs.logits, teacher, labels)
