"""Negative Preference Optimization (Zhang et al. 2024, https://arxiv.org/abs/2404.05868).

L = -(2/beta) E[log sigmoid(-beta (log p_theta(y|x) - log p_ref(y|x)))] on the forget data, plus
the retain term. log p_ref is the original model's, computed once before training (``prepare``)
and carried with each forget sequence, so no frozen copy is queried at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from expunge.methods.gradient import losses
from expunge.methods.gradient.base import UnlearnConfig
from expunge.methods.registry import ExtraKind, MethodSpec, Prepared, Preparation, SequenceExtra, register_method
from expunge.scoring import batched_logits, sequence_logprobs


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


def prepare_npo(prep: Preparation) -> Prepared:
    """The original model's summed log-probability of every forget sequence (``ref_logp``)."""
    ref = [0.0] * len(prep.forget)
    for rows, batch, outputs in batched_logits(prep.model, prep.forget, prep.pad_id, 128):
        for i, value in zip(rows, sequence_logprobs(outputs.logits, batch["labels"])[0].tolist()):
            ref[i] = value
    return Prepared(extras={"ref_logp": SequenceExtra(ExtraKind.SCALAR, ref)})


def forget_npo(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    logp, _ = losses.sequence_logprobs(outputs.logits, batch["labels"])
    return losses.npo(logp, batch["ref_logp"], ctx.config.beta)


SPEC = register_method(MethodSpec(
    "npo", NPOConfig, "negative preference optimisation against the original model",
    forget_term=forget_npo, prepare=prepare_npo,
))
