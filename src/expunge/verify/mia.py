"""Membership-inference scores of texts under a model (lower score = more likely a member).

Every score comes from one teacher-forced forward pass per batch over the text tokenized the way
training documents are (:func:`expunge.data.encode_documents`: the tokenizer's ids, BOS included
where the tokenizer adds one, then EOS). Token t is scored given tokens < t, so the first token is
never scored; the EOS is.

Scores (Shi et al. 2024 for Min-K%, Zhang et al. 2024 for Min-K%++, Carlini et al. 2021 for zlib):

- ``loss``: mean next-token NLL.
- ``zlib``: *total* NLL (sum over tokens) / len(zlib.compress(text as UTF-8)). DESIGN writes
  "NLL / zlib length" without saying mean or sum; the sum keeps the ratio of two quantities that
  both grow with the text's length (Carlini et al. compare log-perplexity with zlib entropy, both
  totals), where the mean would make long texts look like members merely for being long.
- ``min_k_20`` / ``min_k_40``: -mean of the lowest k% token log-probs, k = 0.2 / 0.4, over
  max(1, floor(k * T)) tokens of a text with T scored tokens.
- ``min_k_pp_20``: the same with k = 0.2 on z_t = (log p(x_t) - mu_t) / sigma_t, where
  mu_t = sum_z p(z) log p(z) and sigma_t^2 = sum_z p(z) log^2 p(z) - mu_t^2 over the vocabulary of
  the next-token distribution at t, computed in float64. Where sigma_t = 0 (a flat distribution on its
  support; in practice sigma_t < 1e-9, rounding noise) z_t = 0 instead of 0/0.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.data import encode_documents, pad_collate
from expunge.scoring import eval_mode, model_device, padding_id
from expunge.scoring import max_length as model_max_length
from expunge.verify.metrics import roc_auc, tpr_at_fpr

__all__ = ["SCORE_NAMES", "TokenStatistics", "token_statistics", "scores_from_statistics", "mia_scores", "mia_report"]

SCORE_NAMES = ("loss", "zlib", "min_k_20", "min_k_40", "min_k_pp_20")


@dataclass(frozen=True)
class TokenStatistics:
    """Per scored token of one text (arrays of equal length T = number of tokens - 1).

    Attributes:
        logprobs: log p(x_t | x_<t) of the actual tokens.
        mu: sum_z p(z) log p(z) of the next-token distribution (minus its entropy, in nats).
        sigma: sqrt(sum_z p(z) log^2 p(z) - mu^2), the spread of log p(z) under p.
    """

    logprobs: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


# Below this (in float64) sigma_t is rounding noise of a flat distribution, i.e. sigma_t = 0.
_SIGMA_FLOOR = 1e-9


def _row_statistics(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p(target), mu and sigma for each row of (time, vocab) logits, in float64.

    float64 because sigma_t can be small next to mu_t, and Min-K%++ divides by it.
    """
    logp = torch.log_softmax(logits.double(), dim=-1)
    p = logp.exp()
    # p * log p is 0 where p underflows to 0 (0 * -inf would be nan).
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
    mu = plogp.sum(-1)
    # sum_z p (log p - mu)^2 equals sum_z p log^2 p - mu^2 (sum_z p = 1) without the cancellation.
    centred = torch.where(p > 0, logp - mu.unsqueeze(-1), torch.zeros_like(p))
    sigma = (p * centred.square()).sum(-1).clamp(min=0).sqrt()
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1), mu, sigma


@torch.no_grad()
def token_statistics(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    batch_size: int = 64,
    max_length: int | None = None,
) -> list[TokenStatistics]:
    """Token log-probs and the vocabulary moments mu_t, sigma_t of each text (see the module doc).

    Texts are encoded with :func:`expunge.data.encode_documents` and cut to ``max_length`` tokens
    (default: :func:`expunge.scoring.max_length` of the model). Batches are right-padded, so
    the result equals a one-text-at-a-time loop up to floating-point rounding. Arrays are float64
    numpy arrays computed in float64 from the model's logits.

    Raises:
        ValueError: a text encodes to fewer than two tokens (nothing to score).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if max_length is None:
        max_length = model_max_length(model)
    sequences = encode_documents(tokenizer, list(texts), max_length)
    for text, ids in zip(texts, sequences):
        if len(ids) < 2:
            raise ValueError(f"text {text!r} encodes to fewer than two tokens; nothing to score")
    collate = pad_collate(padding_id(tokenizer))
    device = model_device(model)
    out: list[TokenStatistics] = []
    with eval_mode(model):
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start : start + batch_size]
            enc = collate(batch)
            input_ids = enc["input_ids"].to(device)
            logits = model(input_ids=input_ids, attention_mask=enc["attention_mask"].to(device)).logits
            for row, ids in enumerate(batch):
                scored = len(ids) - 1
                # A (question, answer) pair is scored on its answer: the question is context.
                first = max(getattr(ids, "loss_start", 0), 1)
                # One row at a time: a (batch, time, vocab) float64 softmax copy can be gigabytes.
                # Logits at t predict the token at t + 1.
                logprobs, mu, sigma = _row_statistics(logits[row, first - 1 : scored],
                                                      input_ids[row, first : scored + 1])
                out.append(TokenStatistics(logprobs.cpu().numpy(), mu.cpu().numpy(), sigma.cpu().numpy()))
    return out


def _min_k(values: np.ndarray, k: float) -> float:
    """-mean of the lowest max(1, floor(k * len)) values."""
    count = max(1, math.floor(k * len(values)))
    return float(-np.mean(np.sort(values)[:count]))


def scores_from_statistics(texts: Sequence[str], statistics: Sequence[TokenStatistics]) -> dict[str, list[float]]:
    """The scores of :data:`SCORE_NAMES` (module doc) from precomputed token statistics."""
    if len(texts) != len(statistics):
        raise ValueError(f"got {len(texts)} texts but {len(statistics)} statistics")
    scores: dict[str, list[float]] = {name: [] for name in SCORE_NAMES}
    for text, st in zip(texts, statistics):
        nll = -st.logprobs
        scores["loss"].append(float(nll.mean()))
        scored_text = text if isinstance(text, str) else text[1]  # a pair's answer
        scores["zlib"].append(float(nll.sum() / len(zlib.compress(scored_text.encode("utf-8")))))
        scores["min_k_20"].append(_min_k(st.logprobs, 0.2))
        scores["min_k_40"].append(_min_k(st.logprobs, 0.4))
        positive = st.sigma > _SIGMA_FLOOR
        z = np.zeros_like(st.logprobs)
        z[positive] = (st.logprobs[positive] - st.mu[positive]) / st.sigma[positive]
        scores["min_k_pp_20"].append(_min_k(z, 0.2))
    return scores


def mia_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int = 64
) -> dict[str, list[float]]:
    """Membership scores of each text, keyed by :data:`SCORE_NAMES`; lower = more likely a member."""
    return scores_from_statistics(texts, token_statistics(model, tokenizer, texts, batch_size=batch_size))


def mia_report(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    member_texts: Sequence[str],
    nonmember_texts: Sequence[str],
    batch_size: int = 64,
) -> dict[str, dict[str, Any]]:
    """Per score: ROC ``auc`` (members vs non-members), ``tpr_at_1pct`` and ``tpr_at_0_1pct``
    (TPR at FPR 0.01 and 0.001, see :func:`expunge.verify.metrics.tpr_at_fpr`), ``n_members`` and
    ``n_nonmembers``. With fewer than 100 (1000) non-members the 1% (0.1%) threshold must flag no
    non-member at all, which is stricter than its name; the counts are there to read it by."""
    scores = mia_scores(model, tokenizer, [*member_texts, *nonmember_texts], batch_size=batch_size)
    n = len(member_texts)
    report: dict[str, dict[str, Any]] = {}
    for name in SCORE_NAMES:
        members, nonmembers = scores[name][:n], scores[name][n:]
        report[name] = {
            "auc": roc_auc(members, nonmembers),
            "tpr_at_1pct": tpr_at_fpr(members, nonmembers, 0.01),
            "tpr_at_0_1pct": tpr_at_fpr(members, nonmembers, 0.001),
            "n_members": len(members),
            "n_nonmembers": len(nonmembers),
        }
    return report
