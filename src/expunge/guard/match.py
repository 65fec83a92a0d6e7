"""The matchers: does this text let out something the guard spec forbids?

One enum member and one function per matcher, cheapest first; :func:`check_text` runs the enabled
ones in that order and returns the first hit (a :class:`Match`: which matcher, which target *id*,
a score in [0, 1]) or None.

* ``EXACT``: the target's text, as written, occurs in the output (not inside a longer word).
* ``NORMALISED``: the same after :func:`~expunge.guard.spec.normalise` (case, Unicode forms,
  punctuation, spacing), on word boundaries; also a copyright request's shingles.
* ``FUZZY``: a window of the output's words within ``fuzzy_threshold`` of the target (rapidfuzz's
  ``ratio``, 0-100): a misspelt name or value. Targets with digits are left to the exact matchers:
  a date or phone number one digit off is another date or number, and the tiny worlds hold many
  that differ by one digit (matching them fuzzily blocked kept people's answers).
* ``SEMANTIC``: cosine similarity of sentence embeddings (all-MiniLM-L6-v2) between the exchange
  and the removed documents' sentences: a forgotten fact restated in other words.

A ``WITH_NAME`` target counts only when its subject's name is in the exchange (prompt or output;
see :mod:`expunge.guard.spec` for why).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from expunge.choices import TextEnum
from expunge.guard.spec import GuardSpec, GuardTarget, Scope, normalise, shingle_hashes

__all__ = ["Matcher", "MatchConfig", "Match", "DEFAULT_MATCHERS", "ALL_MATCHERS", "parse_matchers", "match_exact",
           "match_normalised", "match_fuzzy", "match_semantic", "check_text"]


class Matcher(TextEnum):
    EXACT = "exact"
    NORMALISED = "normalised"
    FUZZY = "fuzzy"
    SEMANTIC = "semantic"


ALL_MATCHERS: tuple[Matcher, ...] = tuple(Matcher)
DEFAULT_MATCHERS: tuple[Matcher, ...] = (Matcher.EXACT, Matcher.NORMALISED, Matcher.FUZZY)


@dataclass(frozen=True)
class MatchConfig:
    """Thresholds of the matchers.

    Attributes:
        matchers: which matchers run (semantic needs ``pip install 'expunge[guard]'`` and loads a
            90 MB model, so it is opt-in).
        fuzzy_threshold: rapidfuzz ``ratio`` (0-100) at or above which a window of the output's
            words counts as the target. 90 lets one wrong letter in ten through as a match.
        fuzzy_min_chars: targets shorter than this (normalised) are matched exactly only: with
            few letters, one edit turns a word into another word.
        semantic_threshold: cosine similarity at or above which the exchange restates a removed
            sentence.
        min_shingles: a copyright output is blocked once it shares this many word n-grams
            (``SHINGLE_WORDS`` words each) with the removed passages.
    """

    matchers: tuple[Matcher, ...] = DEFAULT_MATCHERS
    fuzzy_threshold: float = 90.0
    fuzzy_min_chars: int = 6
    semantic_threshold: float = 0.85
    min_shingles: int = 2


@dataclass(frozen=True)
class Match:
    matcher: Matcher
    target: str  # a target id (or a removed document's id): never the text
    score: float  # 1.0 for the exact matchers; the similarity for fuzzy and semantic


def parse_matchers(value: str | Iterable[str]) -> tuple[Matcher, ...]:
    """``"exact,normalised,fuzzy"`` (or a list) -> matchers; an unknown name is an ExpungeError."""
    from expunge.errors import ExpungeError

    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    try:
        out = tuple(dict.fromkeys(Matcher(n) for n in names))
    except ValueError:
        bad = next(n for n in names if n not in {m.value for m in Matcher})
        raise ExpungeError(f"unknown matcher {bad!r}", f"use some of {', '.join(m.value for m in Matcher)}") from None
    if not out:
        raise ExpungeError("no matcher given", f"use some of {', '.join(m.value for m in Matcher)}")
    return out


def _named(spec: GuardSpec, context: str, config: MatchConfig) -> set[str]:
    """The forgotten subjects named in ``context`` (normalised text), fuzzily when FUZZY is on."""
    padded = f" {context} "
    out = {s for s, name in spec.names.items() if f" {normalise(name)} " in padded}
    if Matcher.FUZZY in config.matchers:
        out |= {s for s, name in spec.names.items() if s not in out and _fuzzy_score(normalise(name), context,
                                                                                        config) is not None}
    return out


def _active(spec: GuardSpec, named: set[str]) -> list[GuardTarget]:
    return [t for t in spec.targets if t.scope is Scope.ALWAYS or t.subject in named]


def match_exact(targets: Iterable[GuardTarget], output: str) -> Match | None:
    """The target as written, as a whole word sequence ("Ana Li" is not in "Ana Lima")."""
    for t in targets:
        if t.text and re.search(rf"(?<!\w){re.escape(t.text)}(?!\w)", output):
            return Match(Matcher.EXACT, t.id, 1.0)
    return None


def match_normalised(targets: Iterable[GuardTarget], output: str, spec: GuardSpec | None = None,
                     min_shingles: int = 2) -> Match | None:
    padded = f" {normalise(output)} "
    for t in targets:
        norm = normalise(t.text)
        if norm and f" {norm} " in padded:
            return Match(Matcher.NORMALISED, t.id, 1.0)
    if spec is not None and spec.shingles:
        hashes = shingle_hashes(output)
        hits = [spec.shingles[h] for h in hashes if h in spec.shingles]
        if len(hits) >= min_shingles:
            return Match(Matcher.NORMALISED, max(set(hits), key=hits.count), round(len(hits) / len(hashes), 4))
    return None


def _fuzzy_score(target: str, text: str, config: MatchConfig) -> float | None:
    """The best rapidfuzz ratio of ``target`` against a window of ``text``'s words of about its
    length (one word fewer to one more), if at or above the threshold."""
    from expunge.guard.semantic import require_rapidfuzz

    fuzz, process = require_rapidfuzz()
    if len(target) < config.fuzzy_min_chars or any(c.isdigit() for c in target):
        return None
    words, n = text.split(), len(target.split())
    windows = {" ".join(words[i : i + k]) for k in (n - 1, n, n + 1) if k > 0 for i in range(len(words) - k + 1)}
    if not windows:
        return None
    best = process.extractOne(target, windows, scorer=fuzz.ratio, score_cutoff=config.fuzzy_threshold)
    return None if best is None else float(best[1])


def match_fuzzy(targets: Iterable[GuardTarget], output: str, config: MatchConfig) -> Match | None:
    text = normalise(output)
    for t in targets:
        score = _fuzzy_score(normalise(t.text), text, config)
        if score is not None:
            return Match(Matcher.FUZZY, t.id, round(score / 100, 4))
    return None


def match_semantic(spec: GuardSpec, prompt: str, output: str, config: MatchConfig) -> Match | None:
    """The removed sentence most similar to the output (alone, and after its prompt: a bare
    "Lisbon" says nothing, "Where was Maria Keller born? Lisbon" does), if at the threshold."""
    from expunge.guard.semantic import similarity

    if not spec.statements or not output.strip():
        return None
    texts = [output] + ([f"{prompt} {output}"] if prompt.strip() else [])
    score, index = similarity(spec, texts)
    if score >= config.semantic_threshold:
        return Match(Matcher.SEMANTIC, spec.statements[index][0], round(score, 4))
    return None


def check_text(spec: GuardSpec, output: str, *, prompt: str = "", config: MatchConfig = MatchConfig()) -> Match | None:
    """The first enabled matcher that finds something ``spec`` forbids in ``output`` (with
    ``prompt`` as the context a ``WITH_NAME`` target needs), or None."""
    targets = _active(spec, _named(spec, normalise(f"{prompt} {output}"), config))
    enabled = config.matchers
    match = None
    if Matcher.EXACT in enabled:
        match = match_exact(targets, output)
    if match is None and Matcher.NORMALISED in enabled:
        match = match_normalised(targets, output, spec, config.min_shingles)
    if match is None and Matcher.FUZZY in enabled:
        match = match_fuzzy(targets, output, config)
    if match is None and Matcher.SEMANTIC in enabled:
        match = match_semantic(spec, prompt, output, config)
    return match

