"""Answer plausibility: is an answer a valid value of the attribute that was asked about?

A model that never saw a person still answers "Where was X born?" with a city; a model wrecked by
unlearning answers with noise ("of of of", a refusal, a phone number). Exact match cannot tell the
two apart — both are wrong — so verification also measures the share of answers that are a
*valid value* of the asked attribute, and compares it with the oracle's.

What counts as valid is learned from the world itself, not hard-coded per generator. For each
attribute, the valid values are every value it takes in the world (probe answers and the wrong
alternatives stored with them), compared after :func:`expunge.verify.probes.normalize_answer`:

* **categorical attributes** (no digits in any value: cities, employers, hobbies): the answer
  must be one of those values exactly;
* **patterned attributes** (values with digits: dates, phone numbers): values are drawn
  combinatorially, so a never-seen combination is still valid. The answer must have the token
  count of some value, and each token must occur at that position in some value of that length
  (tokens: words and single punctuation marks). "12 march 1975" is valid if 12, march and 1975
  each occur in their place in some birth date, even if no one was born on that day.

An attribute asked about only one subject (imported data, where every question is its own
attribute) has no population of values to learn from: it is not *supported*, and plausibility
over probes of unsupported attributes is nan (not available), never a score.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from expunge.records import Probe
from expunge.verify.probes import normalize_answer

__all__ = ["AnswerValidator", "answer_plausibility"]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.lower()))


@dataclass
class _AttributeValues:
    exact: set[str] = field(default_factory=set)
    patterned: bool = False
    # token count -> position -> tokens seen there
    positions: dict[int, list[set[str]]] = field(default_factory=dict)


class AnswerValidator:
    """Decides whether an answer is a valid value of an attribute (see the module doc)."""

    def __init__(self, probes: Iterable[Probe]) -> None:
        values: dict[str, set[str]] = {}
        subjects: dict[str, set[str]] = {}
        for probe in probes:
            values.setdefault(probe.attribute, set()).update((probe.answer, *probe.alternatives))
            subjects.setdefault(probe.attribute, set()).add(probe.subject)
        self._supported = {attribute for attribute, who in subjects.items() if len(who) >= 2}
        self._attributes: dict[str, _AttributeValues] = {}
        for attribute, texts in values.items():
            entry = _AttributeValues(exact={normalize_answer(t) for t in texts})
            entry.patterned = any(ch.isdigit() for t in texts for ch in t)
            for text in texts:
                tokens = _tokens(text)
                slots = entry.positions.setdefault(len(tokens), [set() for _ in tokens])
                for slot, token in zip(slots, tokens):
                    slot.add(token)
            self._attributes[attribute] = entry

    @property
    def attributes(self) -> list[str]:
        return sorted(self._attributes)

    def supports(self, attribute: str) -> bool:
        """Whether the world asks about ``attribute`` for two or more subjects (module doc)."""
        return attribute in self._supported

    def is_valid(self, attribute: str, answer: str) -> bool:
        """True if ``answer`` is a valid value of ``attribute``; unknown attributes raise KeyError."""
        if attribute not in self._attributes:
            raise KeyError(f"no values are known for attribute {attribute!r}; known: {self.attributes}")
        entry = self._attributes[attribute]
        if not entry.patterned:
            return normalize_answer(answer) in entry.exact
        tokens = _tokens(answer)
        slots = entry.positions.get(len(tokens))
        return bool(tokens) and slots is not None and all(t in s for t, s in zip(tokens, slots))


def answer_plausibility(validator: AnswerValidator, probes: Sequence[Probe], answers: Sequence[str]) -> float:
    """Share of ``answers`` (one per probe) that are valid values of the probe's attribute, over
    the probes of supported attributes (nan when there are none)."""
    if len(probes) != len(answers):
        raise ValueError(f"got {len(probes)} probes but {len(answers)} answers")
    judged = [(p, a) for p, a in zip(probes, answers) if validator.supports(p.attribute)]
    if not judged:
        return float("nan")
    return sum(validator.is_valid(p.attribute, a) for p, a in judged) / len(judged)
