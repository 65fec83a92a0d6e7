""""I don't know" fine-tuning (TOFU's IDK baseline, https://arxiv.org/abs/2401.06121): the baseline
that hides rather than removes. The forget data are the targets' training questions answered with
a refusal; the knowledge stays in the weights, and verification must say so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from expunge.methods.gradient import losses
from expunge.methods.gradient.base import UnlearnConfig
from expunge.methods.registry import MethodSpec, Need, register_method


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


def forget_nll(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    """Fit the forget batch (its sequences are the questions with refusal answers)."""
    return losses.nll(outputs.logits, batch["labels"])


SPEC = register_method(MethodSpec(
    "idkft", IdkFTConfig, "refusal fine-tune: the baseline that hides rather than removes",
    forget_term=forget_nll, needs=frozenset({Need.REFUSAL_DATA}),
))
