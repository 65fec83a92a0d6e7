"""Loss functions of the gradient unlearning methods, as pure functions of tensors.

Conventions: ``logits`` are (batch, time, vocab); ``labels`` are (batch, time) with -100 where no
loss applies; the logits at position t predict the label at t+1 (the usual causal shift is done
here, once). Per-sequence quantities are returned as (batch,) tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from expunge.data import IGNORE_INDEX
from expunge.scoring import sequence_logprobs  # the one log-probability kernel

__all__ = ["sequence_logprobs", "nll", "gradient_ascent", "npo", "simnpo", "kl_to_reference", "rmu_forget",
           "rmu_retain"]


def nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token negative log-likelihood over all scored tokens of the batch."""
    logp, counts = sequence_logprobs(logits, labels)
    return -logp.sum() / counts.sum().clamp(min=1)


def gradient_ascent(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Minimising this maximises the NLL of the forget data (Jang et al. 2023)."""
    return -nll(logits, labels)


def npo(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024): -(2/beta) E[log sigmoid(-beta (log p_theta(y|x) - log p_ref(y|x)))].

    ``logp`` and ``ref_logp`` are per-sequence summed log-probabilities. The loss is bounded
    below by 0 as the model moves away from the reference, which is what keeps it from
    diverging the way plain gradient ascent does.
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp)).mean()


def simnpo(logp: torch.Tensor, counts: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): -(2/beta) E[log sigmoid(-beta (log p_theta(y|x) / |y|) - gamma)].

    Reference-free and length-normalised: the push on a sequence fades by itself once its mean
    token log-probability is low, instead of growing without bound.
    """
    mean_logp = logp / counts.clamp(min=1)
    return -(2.0 / beta) * F.logsigmoid(-beta * mean_logp - gamma).mean()


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over scored positions of KL(p_ref || p_theta) of the next-token distributions."""
    mask = (labels[:, 1:] != IGNORE_INDEX).float()
    logp = torch.log_softmax(logits[:, :-1, :].float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits[:, :-1, :].float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def rmu_forget(hidden: torch.Tensor, control: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU forget term (Li et al. 2024): mean squared distance of the hidden states of forget
    tokens to a fixed random control vector ``control`` (already scaled by the steering
    coefficient)."""
    squared = ((hidden.float() - control) ** 2).mean(-1)
    mask = mask.float()
    return (squared * mask).sum() / mask.sum().clamp(min=1)


def rmu_retain(hidden: torch.Tensor, ref_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU retain term: mean squared distance to the frozen model's hidden states on retain tokens."""
    squared = ((hidden.float() - ref_hidden.float()) ** 2).mean(-1)
    mask = mask.float()
    return (squared * mask).sum() / mask.sum().clamp(min=1)
