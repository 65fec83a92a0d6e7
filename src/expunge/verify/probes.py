"""Scoring probes: greedy answers and exact match.

Exact match compares the *first answer span* of the greedy continuation with the answer, after
the usual SQuAD-style normalisation: lower case, punctuation and the articles a/an/the removed,
whitespace removed. So ``a nurse`` matches ``nurse``, and ``555 - 47 - 12`` (a word-level
tokenizer's decoding) matches ``555-47-12``.

The continuation ends at the end-of-sequence token or a newline; its first span ends at the first
``. , ; ! ?`` (followed by a space or the end) that comes after at least as many words as the
answer has. A pretrained model that keeps writing after the answer ("Paris. It is known for …")
is scored on "Paris"; an answer with punctuation of its own ("Bangkok, Thailand") is not cut
inside; an answer followed by more words with no break ("Paris is the capital") is not a match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from expunge.records import Probe
from expunge.scoring import eval_mode, model_device


_PUNCTUATION = re.compile(r"[^\w\s]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WORD = re.compile(r"\w+")
_SPAN_END = re.compile(r"[.,;!?](?=\s|$)")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, no whitespace."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return re.sub(r"\s+", "", _ARTICLES.sub(" ", text))


def first_span(generated: str, answer: str) -> str:
    """``generated`` up to the first span end that follows at least as many words as ``answer``
    has (see the module doc)."""
    needed = len(_WORD.findall(answer))
    for end in _SPAN_END.finditer(generated):
        if len(_WORD.findall(generated[: end.start()])) >= needed:
            return generated[: end.start()]
    return generated


def answer_matches(generated: str, answer: str) -> bool:
    """Exact match of the first answer span of ``generated`` with ``answer`` (module doc)."""
    return normalize_answer(first_span(generated, answer)) == normalize_answer(answer)


@dataclass(frozen=True)
class ProbeAnswer:
    probe_id: str
    generated: str
    correct: bool


class _LineEnd(StoppingCriteria):
    """Done for a row once it has produced a token that contains a newline: the answer is the
    first line, so generating past it is wasted time (a pretrained model writes on)."""

    def __init__(self, newline_ids: torch.Tensor, prompt_width: int) -> None:
        self.newline_ids, self.prompt_width = newline_ids, prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_width :]
        return torch.isin(new, self.newline_ids.to(new.device)).any(dim=1)


@lru_cache(maxsize=8)
def _newline_ids(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """The ids of every token whose text contains a newline (decoding a 49k vocabulary takes about
    a second, so once per tokenizer)."""
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return torch.tensor([i for i, piece in enumerate(pieces) if "\n" in piece], dtype=torch.long)


@torch.no_grad()
def greedy_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int | Sequence[int],
    batch_size: int = 128,
    first_line: bool = True,
) -> list[str]:
    """Greedy continuations of ``prompts``, cut at EOS or the first newline, in input order
    (``first_line=False``: cut at EOS or the budget only, as TOFU's ROUGE generates).

    ``max_new_tokens`` is one budget for all prompts or one per prompt. Prompts with similar
    budgets and lengths are generated together (each batch runs to its largest budget, and stops
    as soon as every row has ended its line), which is what makes a pretrained model's
    verification affordable; the texts do not depend on the grouping.
    """
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(budgets)} token budgets")
    if not prompts:
        return []
    device = model_device(model)
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (budgets[i], lengths[i]))
    newline_ids = _newline_ids(tokenizer) if first_line else None
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right
    outputs: list[str] = [""] * len(prompts)
    try:
        with eval_mode(model):
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                enc = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True).to(device)
                width = enc["input_ids"].shape[1]
                generated = model.generate(
                    **enc,
                    max_new_tokens=max(budgets[i] for i in rows),
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    stopping_criteria=StoppingCriteriaList([_LineEnd(newline_ids, width)] if first_line else []),
                )
                for i, row in zip(rows, generated[:, width:]):
                    text = tokenizer.decode(row[: budgets[i]], skip_special_tokens=True)
                    outputs[i] = (text.split("\n")[0] if first_line else text).strip()
    finally:
        tokenizer.padding_side = side
    return outputs


def answer_budgets(tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe]) -> list[int]:
    """Tokens to generate for each probe: its answer's length plus 2, enough for the answer and
    what follows it (a closing mark, or the next word, which already makes it no match)."""
    return [len(ids) + 2 for ids in tokenizer([p.answer for p in probes], add_special_tokens=False)["input_ids"]]


def answer_probes(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe], batch_size: int = 128
) -> list[ProbeAnswer]:
    """Greedy answer and exact-match verdict for every probe."""
    if not probes:
        return []
    texts = greedy_answers(model, tokenizer, [p.prompt for p in probes],
                           max_new_tokens=answer_budgets(tokenizer, probes), batch_size=batch_size)
    return [
        ProbeAnswer(p.id, text, answer_matches(text, p.answer))
        for p, text in zip(probes, texts)
    ]


def exact_match(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe], batch_size: int = 128
) -> float:
    """Share of probes whose greedy answer equals the ground truth (nan for no probes)."""
    answers = answer_probes(model, tokenizer, probes, batch_size)
    return sum(a.correct for a in answers) / len(answers) if answers else float("nan")
