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
- :func:`length_batches` — batches of similar lengths, cut where padding would cost more than
  another call;
- :func:`batched_logits` — right-padded batches through the model without gradients;
- :func:`sequence_nlls` — each sequence's mean token NLL (the LOSS membership score) and the mean
  over all tokens;
- :func:`suffix_logprobs` — log p of each sequence's tokens from a start position on (an answer
  after its question), computing the vocabulary projection only where something is scored and a
  prefix shared by several sequences once;
- :func:`suffix_argmax` — the teacher-forced argmax token from a start position on (what the
  model would write next at each position: exact memorisation and extraction strength);
- :func:`cache_argument` — the keyword under which a model takes a key/value cache.

This module imports only :mod:`expunge.data`; nothing of methods or verification.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch

from expunge.data import IGNORE_INDEX, pad_collate, padding_id

__all__ = [
    "MAX_TOKENS",
    "encode_answers",
    "answer_logprobs",
    "eval_mode",
    "max_length",
    "padding_id",
    "model_device",
    "token_logprobs",
    "sequence_logprobs",
    "length_batches",
    "batched_logits",
    "sequence_nlls",
    "suffix_logprobs",
    "suffix_argmax",
    "cache_argument",
]

# No sequence is cut longer than this: every model in expunge's worlds fits, and it bounds the
# memory of one (batch, time, vocab) logits tensor.
MAX_TOKENS = 512

# What one more forward call costs beyond its padded (rows x width) positions, counted in
# positions: reading every weight once and the per-layer Python work. On 2 CPU cores SmolLM2-135M
# runs a position in about 2-3 ms and a call's fixed part in tens of ms, so a few dozen positions;
# the cut points move little with it (a batch is cut where the width jumps).
CALL_POSITIONS = 64
# At most this many padded positions per batch (one row may exceed it): with a 49k-token
# vocabulary the float32 logits of 2,048 positions take 400 MB, and their log-softmax as much.
MAX_BATCH_POSITIONS = 2048


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


def length_batches(lengths: Sequence[int], batch_size: int, *, call_positions: int = CALL_POSITIONS,
                   max_positions: int = MAX_BATCH_POSITIONS) -> list[list[int]]:
    """Indices of ``lengths`` in batches of at most ``batch_size`` that together run the fewest
    positions: sorted by length, then cut (dynamic programming over the cut points) to minimise
    the padded positions (each batch is as wide as its longest member) plus ``call_positions``
    per batch, with at most ``max_positions`` padded positions in a batch of two or more.

    Why not fixed-size runs of the sorted order: where a set is not much larger than a batch, one
    batch spans every length. A stop-rule check of 32 documents of 8 to 74 tokens ran as one
    32 x 74 batch, four times the 563 real positions (3.1 s where 1.1 s do)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    cost = [0.0] + [math.inf] * n  # cost[k]: the cheapest cut of the k shortest
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        width = max(1, lengths[order[end - 1]])  # the longest of order[start:end]
        for start in range(end - 1, max(0, end - batch_size) - 1, -1):
            rows = end - start
            if rows > 1 and rows * width > max_positions:
                break  # longer batches ending here only grow
            total = cost[start] + rows * width + call_positions
            if total < cost[end]:
                cost[end], cut[end] = total, start
    batches: list[list[int]] = []
    end = n
    while end:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


@torch.no_grad()
def batched_logits(
    model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int,
) -> Iterator[tuple[list[int], dict[str, torch.Tensor], Any]]:
    """Right-padded batches of ``sequences`` through the model in eval mode, without gradients:
    yields (the batch's indices, the padded batch on the model's device, the model's outputs).
    Batches are cut by :func:`length_batches` (at most ``batch_size`` rows), so they do not come in
    input order: callers place results by the yielded indices. Right padding keeps every real
    token where it is alone, so a batch gives what one-at-a-time calls give, up to floating-point
    rounding."""
    device = model_device(model)
    collate = pad_collate(pad_id)
    with eval_mode(model):
        for rows in length_batches([len(s) for s in sequences], batch_size):
            batch = {k: v.to(device) for k, v in collate([sequences[i] for i in rows]).items()}
            yield rows, batch, model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


@torch.no_grad()
def sequence_nlls(model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int,
                  batch_size: int = 32) -> tuple[list[float], float]:
    """Each sequence's mean next-token NLL (the LOSS membership score), in input order, and the
    mean over all tokens of all sequences (teacher forcing)."""
    if not sequences:
        return [], float("nan")
    per_sequence = [0.0] * len(sequences)
    total, count = 0.0, 0
    for rows, batch, outputs in batched_logits(model, sequences, pad_id, batch_size):
        logp, n = sequence_logprobs(outputs.logits, batch["labels"])
        for i, lp, k in zip(rows, logp.tolist(), n.tolist()):
            per_sequence[i] = -lp / max(k, 1)
        total -= float(logp.sum())
        count += int(n.sum())
    return per_sequence, total / max(count, 1)


@lru_cache(maxsize=None)
def _keeps_logits(model_class: type) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers' causal LMs do)."""
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


@lru_cache(maxsize=None)
def _cache_parameter(model_class: type) -> str | None:
    """The name under which the model's forward takes a key/value cache: ``cache`` (transformers
    from 5.x), ``past_key_values`` (before), or None."""
    parameters = inspect.signature(model_class.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def cache_argument(model: torch.nn.Module) -> str | None:
    """The keyword that hands ``model`` (or, for a peft model, which passes it on, its base model)
    a key/value cache; None when it takes none."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _cache_parameter(type(base))


@torch.no_grad()
def suffix_logprobs(model: torch.nn.Module, sequences: Sequence[Sequence[int]], starts: Sequence[int], pad_id: int,
                    batch_size: int = 64) -> list[torch.Tensor]:
    """Per sequence, the float32 (at least) log p(token t | tokens < t) for every t from
    ``starts[i]`` (>= 1) to its end, in input order.

    The same numbers as :func:`token_logprobs` on the full logits, up to floating-point rounding,
    computed cheaply:

    - sequences of similar length are batched together (:func:`length_batches`: less padding);
    - the model projects onto the vocabulary only the positions from the batch's earliest start
      on (``logits_to_keep``, where the model takes it), and the log-softmax runs only at scored
      positions. For answers after prompts most of a sequence is prompt, and the (time x
      vocabulary) projection is a large share of a small model's forward;
    - sequences that share their prefix (every token before their start: one question's candidate
      answers, as multiple choice and the truth ratio score them) run that prefix once and
      continue from its key/value cache (:func:`_shared_prefix_scores`). A TOFU question has
      seven candidates; its prompt is about half of each sequence.
    """
    _check_suffixes(sequences, starts, batch_size)
    out: list[torch.Tensor] = [torch.zeros(0)] * len(sequences)
    cache_name = cache_argument(model)
    groups = _prefix_groups(sequences, starts) if cache_name else []
    shared = {i for group in groups for i in group}
    with eval_mode(model):
        _scores_alone(model, sequences, starts, [i for i in range(len(sequences)) if i not in shared], pad_id,
                      batch_size, out)
        if groups:
            _shared_prefix_scores(model, cache_name, sequences, starts, groups, pad_id, batch_size, out)
    return out


@torch.no_grad()
def suffix_argmax(model: torch.nn.Module, sequences: Sequence[Sequence[int]], starts: Sequence[int], pad_id: int,
                  batch_size: int = 64) -> list[torch.Tensor]:
    """Per sequence, the teacher-forced argmax of p(. | tokens < t) for every t from ``starts[i]``
    (>= 1) to its end, in input order: what the model would write next at each position of a text
    it is fed. Exact and extraction memorisation compare it with the text's own tokens. Batched
    like :func:`suffix_logprobs` (length batches, the vocabulary projection only from the earliest
    start), without the shared-prefix pass (passages share no prefix)."""
    _check_suffixes(sequences, starts, batch_size)
    out: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long)] * len(sequences)
    with eval_mode(model):
        _scores_alone(model, sequences, starts, range(len(sequences)), pad_id, batch_size, out, _argmax_picked)
    return out


def _check_suffixes(sequences: Sequence[Sequence[int]], starts: Sequence[int], batch_size: int) -> None:
    """The arguments of :func:`suffix_logprobs` and :func:`suffix_argmax`: one start per sequence,
    each inside it and after its first token, and a positive batch size."""
    if len(sequences) != len(starts):
        raise ValueError(f"got {len(sequences)} sequences but {len(starts)} start positions")
    for ids, start in zip(sequences, starts):
        if not 1 <= start <= len(ids):
            raise ValueError(f"start {start} lies outside a sequence of {len(ids)} tokens (needs 1 <= start)")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")


def _prefix_groups(sequences: Sequence[Sequence[int]], starts: Sequence[int]) -> list[list[int]]:
    """Indices of the sequences that share their prefix (``sequence[:start]``) with at least one
    other and score at least one token, grouped by that prefix, in input order."""
    by_prefix: dict[tuple[int, ...], list[int]] = {}
    for i, (ids, start) in enumerate(zip(sequences, starts)):
        if start < len(ids):
            by_prefix.setdefault(tuple(ids[:start]), []).append(i)
    return [group for group in by_prefix.values() if len(group) > 1]


def _score_picked(picked: list[torch.Tensor], targets: list[int], rows: Sequence[int], lengths: list[int],
                  out: list[torch.Tensor]) -> None:
    """log-softmax of the picked logits (one row per scored token, at least float32) at their
    targets, split back into ``out[rows[k]]``."""
    flat = torch.cat(picked)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    target = torch.tensor(targets, dtype=torch.long, device=flat.device)
    scored = torch.log_softmax(flat, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1).cpu()
    for i, part in zip(rows, torch.split(scored, lengths)):
        out[i] = part


def _argmax_picked(picked: list[torch.Tensor], targets: list[int], rows: Sequence[int], lengths: list[int],
                   out: list[torch.Tensor]) -> None:
    """The argmax token id of each picked logits row, split back into ``out[rows[k]]``."""
    del targets  # the argmax does not read them
    for i, part in zip(rows, torch.split(torch.cat(picked).argmax(dim=-1).cpu(), lengths)):
        out[i] = part


def _scores_alone(model: torch.nn.Module, sequences: Sequence[Sequence[int]], starts: Sequence[int],
                  which: Sequence[int], pad_id: int, batch_size: int, out: list[torch.Tensor],
                  reduce: Callable[..., None] = _score_picked) -> None:
    """:func:`suffix_logprobs` for the sequences ``which``, each as one row of a batch (with
    ``reduce=_argmax_picked``, :func:`suffix_argmax`)."""
    device = model_device(model)
    collate = pad_collate(pad_id)
    keeps = _keeps_logits(type(model))
    for cut in length_batches([len(sequences[i]) for i in which], batch_size):
        rows = [which[k] for k in cut]
        enc = collate([sequences[i] for i in rows])
        width = enc["input_ids"].shape[1]
        # Logits at position p predict token p + 1: scoring tokens from `first` on needs the
        # positions from first - 1 on.
        first = min(starts[i] for i in rows) - 1
        kwargs = {"logits_to_keep": width - first} if keeps else {}
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                       **kwargs).logits
        offset = width - logits.shape[1]  # position of logits[:, 0]
        picked, targets, lengths = [], [], []
        for row, i in enumerate(rows):
            ids = sequences[i]
            picked.append(logits[row, starts[i] - 1 - offset : len(ids) - 1 - offset])
            targets.extend(ids[starts[i] :])
            lengths.append(len(ids) - starts[i])
        reduce(picked, targets, rows, lengths, out)


def _prefix_batches(groups: Sequence[Sequence[int]], sequences: Sequence[Sequence[int]], starts: Sequence[int],
                    batch_size: int, max_positions: int = MAX_BATCH_POSITIONS) -> list[list[list[int]]]:
    """Batches of prefix groups (each a list of sequence indices of one prefix): at most
    ``batch_size`` continuation rows, and at most ``max_positions`` padded positions in the
    continuation pass and in the prefix pass (the logits' memory, where a model projects every
    position) per batch of two or more groups; a group larger than a batch is split. Groups are
    taken in order of their longest continuation, so that a batch's rows are of similar width."""
    def tail(i: int) -> int:
        return len(sequences[i]) - starts[i]

    units = [sorted(group, key=tail)[at : at + batch_size] for group in groups
             for at in range(0, len(group), batch_size)]
    units.sort(key=lambda unit: (max(tail(i) for i in unit), starts[unit[0]]))
    batches: list[list[list[int]]] = []
    rows = prefix = 0
    for unit in units:
        wide = max(tail(i) for i in unit)  # units come in this order: the widest of the batch so far
        long = max(prefix, starts[unit[0]])
        if (not batches or rows + len(unit) > batch_size or (rows + len(unit)) * wide > max_positions
                or (len(batches[-1]) + 1) * long > max_positions):
            batches.append([])
            rows, long = 0, starts[unit[0]]
        batches[-1].append(unit)
        rows, prefix = rows + len(unit), long
    return batches


def _shared_prefix_scores(model: torch.nn.Module, cache_name: str, sequences: Sequence[Sequence[int]],
                          starts: Sequence[int], groups: Sequence[Sequence[int]], pad_id: int, batch_size: int,
                          out: list[torch.Tensor]) -> None:
    """:func:`suffix_logprobs` for sequences grouped by a shared prefix: each batch runs its
    prefixes once (left-padded, so that every prefix ends in the last column and its last logits,
    which predict the first scored token, are the only ones projected), copies each prefix's keys
    and values to the rows that continue it, and runs the continuations (right-padded) on that
    cache, with the positions they have in the whole sequence."""
    device = model_device(model)
    keeps = _keeps_logits(type(model))
    for units in _prefix_batches(groups, sequences, starts, batch_size):
        prefixes = [list(sequences[unit[0]][: starts[unit[0]]]) for unit in units]
        width_prefix = max(len(p) for p in prefixes)
        prefix_ids = torch.full((len(units), width_prefix), pad_id, dtype=torch.long)
        prefix_mask = torch.zeros_like(prefix_ids)
        prefix_positions = torch.zeros_like(prefix_ids)
        for row, prefix in enumerate(prefixes):
            prefix_ids[row, width_prefix - len(prefix):] = torch.tensor(prefix)
            prefix_mask[row, width_prefix - len(prefix):] = 1
            prefix_positions[row, width_prefix - len(prefix):] = torch.arange(len(prefix))
        kwargs = {"logits_to_keep": 1} if keeps else {}
        head = model(input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device),
                     position_ids=prefix_positions.to(device), use_cache=True, **kwargs)
        first_logits = head.logits[:, -1]  # at each prefix's last token: predicts its first scored one
        rows = [i for unit in units for i in unit]
        owner = torch.tensor([u for u, unit in enumerate(units) for _ in unit])
        cache = head.get("cache") if head.get("cache") is not None else head.get("past_key_values")
        cache.reorder_cache(owner.to(device))  # index_select on the batch: each row gets its prefix's
        tails = [list(sequences[i][starts[i]:]) for i in rows]
        width = max(len(t) for t in tails)
        tail_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        tail_mask = torch.zeros_like(tail_ids)
        for row, tail in enumerate(tails):
            tail_ids[row, : len(tail)] = torch.tensor(tail)
            tail_mask[row, : len(tail)] = 1
        lengths = torch.tensor([len(p) for p in prefixes])[owner]
        logits = model(input_ids=tail_ids.to(device),
                       attention_mask=torch.cat([prefix_mask[owner], tail_mask], 1).to(device),
                       position_ids=(lengths[:, None] + torch.arange(width)).to(device),
                       **{cache_name: cache}).logits
        # The first scored token is predicted by the prefix's last logits, token k >= 1 of the
        # continuation by the continuation's logits at k - 1.
        picked = [torch.cat([first_logits[u : u + 1], logits[row, : len(tail) - 1]])
                  for row, (u, tail) in enumerate(zip(owner.tolist(), tails))]
        _score_picked(picked, [t for tail in tails for t in tail], rows, [len(t) for t in tails], out)


def encode_answers(
    tokenizer: Any, prompts: Sequence[str], answers: Sequence[str]
) -> tuple[list[list[int]], list[int]]:
    """``(ids of prompt + " " + answer, number of prompt ids)`` per pair, checked as
    :func:`answer_logprobs` documents (the prompt's ids must be a non-empty prefix, and the answer
    must add at least one token)."""
    heads = tokenizer(list(prompts))["input_ids"]
    fulls = tokenizer([f"{p} {a}" for p, a in zip(prompts, answers)])["input_ids"]
    for prompt, answer, head, full in zip(prompts, answers, heads, fulls):
        if len(head) == 0:
            raise ValueError(f"prompt {prompt!r} encodes to no tokens; the answer cannot be scored")
        if list(full[: len(head)]) != list(head):
            raise ValueError(
                f"the tokens of prompt {prompt!r} are not a prefix of the tokens of prompt + answer "
                f"{answer!r}; the answer's tokens cannot be separated from the prompt's"
            )
        if len(full) == len(head):
            raise ValueError(f"answer {answer!r} adds no tokens to prompt {prompt!r}")
    return [list(f) for f in fulls], [len(h) for h in heads]


@torch.no_grad()
def answer_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 64,
) -> list[tuple[float, int]]:
    """Teacher-forced ``(sum of log p(answer tokens | prompt), number of answer tokens)`` per pair.

    Definition: ``full = tokenizer(prompt + " " + answer)`` and ``head = tokenizer(prompt)``, both
    with the tokenizer's special tokens (as ``tokenizer(text)`` adds them). ``head`` must be a
    prefix of ``full``; the answer tokens are ``full[len(head):]`` (including any special token the
    tokenizer appends at the end), each scored given every token before it.

    Raises:
        ValueError: lengths differ, the prompt's ids are not a prefix of the full encoding, the
            prompt encodes to no token (the first answer token would have no context), or the
            answer adds no token.
    """
    if len(prompts) != len(answers):
        raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not prompts:
        return []
    fulls, head_lens = encode_answers(tokenizer, prompts, answers)
    scored = suffix_logprobs(model, fulls, head_lens, padding_id(tokenizer), batch_size)
    return [(float(lp.sum()), len(lp)) for lp in scored]
