"""Gradient difference (TOFU, Maini et al. 2024, https://arxiv.org/abs/2401.06121): ascend on the
forget data, descend (nll) or stay close (kl) on the retain data."""

from __future__ import annotations

from dataclasses import dataclass

from expunge.methods.gradient.base import UnlearnConfig
from expunge.methods.gradient.grad_ascent import forget_gradient_ascent
from expunge.methods.registry import MethodSpec, register_method


@dataclass(frozen=True)
class GradDiffConfig(UnlearnConfig):
    """https://arxiv.org/abs/2401.06121 — Gradient difference (TOFU, Maini et al. 2024): ascend on
    the forget data while descending on the retain data (``retain_loss`` nll) or staying close to
    the original model there (``retain_loss`` kl; the run then keeps a frozen reference copy).
    """

    retain_weight: float = 1.0


SPEC = register_method(MethodSpec(
    "grad_diff", GradDiffConfig, "ascend on forget, descend (nll) or stay close (kl) on retain",
    forget_term=forget_gradient_ascent,
))
