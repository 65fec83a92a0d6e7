"""Guarded generation: a logits processor during decoding, then a check of the decoded text.

Two layers, because each misses what the other catches:

1. :class:`GuardLogitsProcessor` stops the model from *completing* a forbidden token sequence: it
   is transformers' own ``NoBadWordsLogitsProcessor`` (a ``-inf`` bias on the last token of a
   sequence whose other tokens were just generated) over every tokenisation of every target that
   we can think of (with and without a leading space, as written, lower case, capitalised). A
   ``WITH_NAME`` target's sequences are only banned in rows whose text so far names its subject,
   so kept people who share the value are not steered away from their own answers. It cannot see
   paraphrases or spellings it was not given, and a banned completion may be replaced by a
   near miss: hence
2. the post-generation check (:func:`expunge.guard.match.check_text`) on the decoded text, which
   replaces a blocked output with the spec's refusal.

:func:`guarded_generate` does both and returns a :class:`GuardedOutput` with the target's *id*
(never its text); given a ledger, every intervention goes to its monitor log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, NoBadWordsLogitsProcessor

from expunge.choices import TextEnum
from expunge.guard.match import Match, MatchConfig, Matcher, check_text
from expunge.guard.spec import GuardSpec, Scope
from expunge.scoring import eval_mode, model_device

__all__ = ["Stage", "GuardedOutput", "GuardLogitsProcessor", "token_variants", "guarded_generate", "check_output",
           "sha256_text"]


class Stage(TextEnum):
    LOGITS = "logits"  # a forbidden completion was prevented while decoding
    OUTPUT = "output"  # the decoded text matched and was replaced by the refusal


@dataclass(frozen=True)
class GuardedOutput:
    """What a guarded generation returns. ``text`` is what may be shown (the refusal when
    ``blocked``); ``stage`` says where the guard acted (None: it did not)."""

    text: str
    blocked: bool
    stage: Stage | None = None
    matcher: Matcher | None = None
    target: str | None = None  # a target id, never the target's text
    score: float | None = None
    output_sha256: str = ""  # of the text as generated (before any refusal)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "blocked": self.blocked, "stage": None if self.stage is None else str(self.stage),
                "matcher": None if self.matcher is None else str(self.matcher), "target": self.target,
                "score": self.score, "output_sha256": self.output_sha256}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def token_variants(tokenizer: Any, text: str) -> list[tuple[int, ...]]:
    """Token sequences ``text`` may be generated as: with and without a leading space, as
    written, lower case and capitalised (BPE tokenizers give each its own ids). Sequences with
    the unknown token are left out (banning "unknown" would ban every unknown word)."""
    forms = dict.fromkeys([text, text.lower(), text[:1].upper() + text[1:], text.title()])
    unk = tokenizer.unk_token_id
    out: dict[tuple[int, ...], None] = {}
    for form in forms:
        for spaced in (form, " " + form):
            ids = tuple(tokenizer(spaced, add_special_tokens=False)["input_ids"])
            if ids and (unk is None or unk not in ids):
                out[ids] = None
    return list(out)


def _contains(row: list[int], sequence: tuple[int, ...]) -> bool:
    n = len(sequence)
    return any(tuple(row[i : i + n]) == sequence for i in range(len(row) - n + 1))


class GuardLogitsProcessor(LogitsProcessor):
    """Bans the completion of every target's token sequences (see the module doc).

    ``interventions`` collects ``(row, target id)`` each time a ban removed the token the model
    was about to pick (greedy), which :func:`guarded_generate` logs as the ``logits`` stage."""

    def __init__(self, spec: GuardSpec, tokenizer: Any) -> None:
        eos = tokenizer.eos_token_id
        self.sequences: dict[tuple[int, ...], str] = {}  # token sequence -> target id
        always: list[list[int]] = []
        conditional: dict[str, list[list[int]]] = {}
        for target in spec.targets:
            for seq in token_variants(tokenizer, target.text):
                self.sequences.setdefault(seq, target.id)
                (always if target.scope is Scope.ALWAYS else conditional.setdefault(target.subject, [])).append(
                    list(seq))
        self.always = NoBadWordsLogitsProcessor(always, eos_token_id=eos) if always else None
        self.conditional = {subject: NoBadWordsLogitsProcessor(seqs, eos_token_id=eos)
                            for subject, seqs in conditional.items()}
        self.names = {subject: token_variants(tokenizer, name) for subject, name in spec.names.items()}
        self.interventions: list[tuple[int, str]] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        before = scores.argmax(dim=-1)
        out = self.always(input_ids, scores) if self.always is not None else scores
        if self.conditional:
            rows = input_ids.tolist()
            for subject, processor in self.conditional.items():
                named = [i for i, row in enumerate(rows) if any(_contains(row, s) for s in self.names[subject])]
                if named:
                    out = out.clone()
                    out[named] = processor(input_ids[named], out[named])
        for row in range(scores.shape[0]):
            token = int(before[row])
            if torch.isinf(out[row, token]) and out[row, token] < 0:
                self.interventions.append((row, self._which(input_ids[row].tolist(), token)))
        return out

    def _which(self, row: list[int], token: int) -> str:
        for seq, target in self.sequences.items():
            if seq[-1] == token and tuple(row[len(row) - len(seq) + 1 :]) == seq[:-1]:
                return target
        return "unknown"


def check_output(spec: GuardSpec, text: str, *, prompt: str = "", config: MatchConfig = MatchConfig()) -> GuardedOutput:
    """The post-generation check alone: ``text`` as it may be shown (the refusal if blocked)."""
    match = check_text(spec, text, prompt=prompt, config=config)
    return _result(spec, text, match, Stage.OUTPUT) if match else GuardedOutput(text, False,
                                                                                 output_sha256=sha256_text(text))


def _result(spec: GuardSpec, text: str, match: Match, stage: Stage) -> GuardedOutput:
    return GuardedOutput(spec.refusal if stage is Stage.OUTPUT else text, stage is Stage.OUTPUT, stage,
                         match.matcher, match.target, match.score, sha256_text(text))


def guarded_generate(model: Any, tokenizer: Any, prompt: str, spec: GuardSpec, *, max_new_tokens: int = 32,
                     config: MatchConfig = MatchConfig(), logits: bool = True, ledger: Any = None) -> GuardedOutput:
    """Greedy generation from ``prompt`` under ``spec``: forbidden completions banned while
    decoding (``logits=True``), then the decoded text checked and, if it matches, replaced by the
    refusal. With ``ledger`` (an open :class:`expunge.ledger.store.Ledger`), an intervention at
    either stage is written to its monitor log (:func:`expunge.guard.monitor.record_guard_event`)."""
    processor = GuardLogitsProcessor(spec, tokenizer) if logits else None
    enc = tokenizer([prompt], return_tensors="pt").to(model_device(model))
    with eval_mode(model), torch.no_grad():
        generated = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                   logits_processor=LogitsProcessorList([processor]) if processor else None)
    text = tokenizer.decode(generated[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    result = check_output(spec, text, prompt=prompt, config=config)
    if not result.blocked and processor is not None and processor.interventions:
        result = _result(spec, text, Match(Matcher.EXACT, processor.interventions[0][1], 1.0), Stage.LOGITS)
    if ledger is not None and result.stage is not None:
        from expunge.guard.monitor import record_guard_event

        record_guard_event(ledger, spec, prompt, result)
    return result
