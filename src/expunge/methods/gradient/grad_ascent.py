"""Gradient ascent (Jang et al. 2023, https://arxiv.org/abs/2210.01504): maximise the forget data's
NLL. Without a retain term it collapses the model; kept as a reference point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from expunge.methods.gradient import losses
from expunge.methods.gradient.base import UnlearnConfig
from expunge.methods.registry import MethodSpec, register_method


@dataclass(frozen=True)
class GradAscentConfig(UnlearnConfig):
    """https://arxiv.org/abs/2210.01504 — Gradient ascent (Jang et al. 2023): maximise the forget
    data's NLL. No retain term by default; known to collapse the model (kept as a reference point).
    """

    retain_weight: float = 0.0
    retain_loss: Literal["nll", "kl", "none"] = "none"


def forget_gradient_ascent(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    return losses.gradient_ascent(outputs.logits, batch["labels"])


SPEC = register_method(MethodSpec(
    "grad_ascent", GradAscentConfig, "maximise the forget data's loss (collapses without a retain term)",
    forget_term=forget_gradient_ascent,
))
