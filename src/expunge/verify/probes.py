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

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

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


@torch.no_grad()
def greedy_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 128,
) -> list[str]:
    """Greedy continuations of ``prompts``, cut at EOS or the first newline."""
    device = model_device(model)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right
    outputs: list[str] = []
    try:
        with eval_mode(model):
            for start in range(0, len(prompts), batch_size):
                chunk = list(prompts[start : start + batch_size])
                enc = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
                generated = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                new_tokens = generated[:, enc["input_ids"].shape[1] :]
                for row in new_tokens:
                    text = tokenizer.decode(row, skip_special_tokens=True)
                    outputs.append(text.split("\n")[0].strip())
    finally:
        tokenizer.padding_side = side
    return outputs


def answer_probes(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe], batch_size: int = 128
) -> list[ProbeAnswer]:
    """Greedy answer and exact-match verdict for every probe."""
    if not probes:
        return []
    longest = max(len(tokenizer(p.answer, add_special_tokens=False)["input_ids"]) for p in probes)
    texts = greedy_answers(model, tokenizer, [p.prompt for p in probes],
                           max_new_tokens=longest + 2, batch_size=batch_size)
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
