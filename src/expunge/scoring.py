"""Shared model plumbing: eval mode, length limits, padding, batched no-grad forwards and the one
token log-probability kernel.

Methods (training losses, stop rules, editors) and verification (metrics, membership inference,
attacks) all score sequences the same way, so the way lives here, once, below both of them:

- :func:`eval_mode` — run a block in eval mode and give the model back in the mode it was in
  (dropout off while measuring; a training run that measures mid-way must continue training);
- :func:`max_length` — how many tokens a sequence may have for a model (its positions, at most
  ``MAX_TOKENS``);
- :func:`padding_id` — the id batches are padded with;
- :func:`token_logprobs` / :func:`sequence_logprobs` — log p(label | prefix) per position and per
  sequence (the causal shift is done here, once);
- :func:`batched_logits` — right-padded batches through the model without gradients;
- :func:`sequence_nlls` — each sequence's mean token NLL (the LOSS membership score) and the mean
  over all tokens.

This module imports only :mod:`expunge.data`; nothing of methods or verification.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from expunge.data import IGNORE_INDEX, pad_collate, padding_id

__all__ = [
    "MAX_TOKENS",
    "eval_mode",
    "max_length",
    "padding_id",
    "model_device",
    "token_logprobs",
    "sequence_logprobs",
    "batched_logits",
    "sequence_nlls",
]

# No sequence is cut longer than this: every model in expunge's worlds fits, and it bounds the
# memory of one (batch, time, vocab) logits tensor.
MAX_TOKENS = 512


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Eval mode inside the block; the model's own train/eval mode is restored afterwards, even
    when the block raises (a stop-rule check in the middle of training must not leave it in eval)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def max_length(model: torch.nn.Module) -> int:
    """Tokens a sequence may have for ``model``: its ``max_position_embeddings``, at most
    ``MAX_TOKENS`` (a config without one gets ``MAX_TOKENS``)."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None) or MAX_TOKENS
    return min(MAX_TOKENS, int(positions))


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(labels[:, t+1] | tokens <= t) for every position, as a (batch, time-1) tensor; 0 where
    the label is IGNORE_INDEX.

    The one kernel every score and loss in expunge goes through: log-softmax in the logits' own
    precision, at least float32 (half precision is upcast: its rounding would show in mean
    log-probabilities), then the label's entry. Training losses differentiate through it.
    """
    logits = logits[:, :-1, :]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    shifted_labels = labels[:, 1:]
    mask = shifted_labels != IGNORE_INDEX
    safe = shifted_labels.masked_fill(~mask, 0)
    picked = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return picked * mask


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token log-probabilities of each sequence, and its number of scored tokens."""
    mask = labels[:, 1:] != IGNORE_INDEX
    return token_logprobs(logits, labels).sum(-1), mask.sum(-1)


@torch.no_grad()
def batched_logits(
    model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int,
    order: Sequence[int] | None = None,
) -> Iterator[tuple[list[int], dict[str, torch.Tensor], Any]]:
    """Right-padded batches of ``sequences`` (in ``order``, default input order) through the model
    in eval mode, without gradients: yields (the batch's indices, the padded batch on the model's
    device, the model's outputs). Right padding keeps every real token where it is alone, so a
    batch gives what one-at-a-time calls give, up to floating-point rounding."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    device = model_device(model)
    collate = pad_collate(pad_id)
    order = list(range(len(sequences))) if order is None else list(order)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate([sequences[i] for i in rows]).items()}
            yield rows, batch, model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


@torch.no_grad()
def sequence_nlls(model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int,
                  batch_size: int = 32) -> tuple[list[float], float]:
    """Each sequence's mean next-token NLL (the LOSS membership score), in input order, and the
    mean over all tokens of all sequences (teacher forcing)."""
    if not sequences:
        return [], float("nan")
    # Similar lengths together: far less padding (a few long biographies would otherwise make
    # every batch as wide as they are); the results go back to input order.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    per_sequence = [0.0] * len(sequences)
    total, count = 0.0, 0
    for rows, batch, outputs in batched_logits(model, sequences, pad_id, batch_size, order):
        logp, n = sequence_logprobs(outputs.logits, batch["labels"])
        for i, lp, k in zip(rows, logp.tolist(), n.tolist()):
            per_sequence[i] = -lp / max(k, 1)
        total -= float(logp.sum())
        count += int(n.sum())
    return per_sequence, total / max(count, 1)
