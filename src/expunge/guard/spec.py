"""What a guard must not let out, made once from a world and a deletion request.

A :class:`GuardSpec` is plain data (JSON on disk, a sha256 over its canonical form) listing:

* **targets**: strings that must not appear in an output, each with an *id* that names it
  without quoting it (``person-0003/phone``, ``person-0003/name``, ``payload``). The ledger only
  ever sees these ids, never the text: a monitor log that quoted the blocked values would be a
  second copy of exactly what was deleted.
* **statements**: the sentences of the removed documents, for the semantic matcher (an output
  that restates a forgotten fact in other words).
* **shingles** (copyright requests): hashed word n-grams of the removed passages, so that a
  verbatim regurgitation is caught without the spec holding the passages themselves.

The decision that matters most is about **shared values**. In the privacy world a city, an
employer, an occupation or a hobby is held by many people; a guard that blocked "Lisbon"
everywhere because one forgotten person was born there would refuse every kept person born in
Lisbon (``benchmarks/guard.py``, 12 people, seed 0: blocking every value everywhere refused 9.2% of
the kept people's reference answers and 4.9% of the general facts', against none with scopes, at
the same block rate on the forget set). So each target has a :class:`Scope`: a value that no kept subject holds
(a phone number, a birth date) is blocked ``ALWAYS``; a value some kept subject also holds is
blocked only ``WITH_NAME``, when the forgotten subject's name is in the same exchange (the prompt
or the output). Names themselves are always blocked: full names are unique in the built-in worlds
even though their tokens are shared, and matching is on the whole name, never on one token.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from expunge.choices import TextEnum
from expunge.errors import ExpungeError
from expunge.records import DeletionRequest, read_json, write_json_atomic
from expunge.worlds.world import World

__all__ = ["FORMAT", "DEFAULT_REFUSAL", "Scope", "TargetKind", "GuardTarget", "GuardSpec", "build_guard_spec",
           "load_guard_spec", "write_guard_spec", "normalise", "shingle_hashes"]

FORMAT = "expunge-guard/1"
DEFAULT_REFUSAL = "I can't share that information."
SHINGLE_WORDS = 8  # a run of 8 identical words is a quotation, not a common phrase (kept documents' are removed)


class Scope(TextEnum):
    ALWAYS = "always"  # held by no kept subject: blocked wherever it appears
    WITH_NAME = "with_name"  # also held by a kept subject: blocked when its forgotten subject is named


class TargetKind(TextEnum):
    VALUE = "value"  # an answer to a probe about a forgotten subject
    NAME = "name"  # a forgotten subject's name
    PAYLOAD = "payload"  # a backdoor's bad output


@dataclass(frozen=True)
class GuardTarget:
    """One string that must not come out. ``id`` is what logs may show; ``text`` is the secret."""

    id: str
    kind: TargetKind
    text: str
    subject: str  # the forgotten subject it belongs to ("" for a payload)
    scope: Scope


@dataclass(frozen=True)
class GuardSpec:
    """A guard for one deletion request (see the module doc). ``sha256`` covers every other field;
    :func:`load_guard_spec` recomputes it, so an edited file is refused."""

    request_id: str
    request_kind: str
    world_fingerprint: str
    targets: tuple[GuardTarget, ...]
    names: dict[str, str]  # subject id -> name, for the WITH_NAME condition
    statements: tuple[tuple[str, str], ...] = ()  # (document id, sentence) for the semantic matcher
    shingles: dict[str, str] = field(default_factory=dict)  # shingle hash -> document id
    refusal: str = DEFAULT_REFUSAL
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [{**t, "kind": str(t["kind"]), "scope": str(t["scope"])} for t in data["targets"]]
        data["statements"] = [list(s) for s in self.statements]
        return {"format": FORMAT, **data}

    def digest(self) -> str:
        body = {k: v for k, v in self.to_dict().items() if k != "sha256"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                              .encode("utf-8")).hexdigest()

    def sealed(self) -> GuardSpec:
        return replace(self, sha256=self.digest())

    def target(self, target_id: str) -> GuardTarget | None:
        return next((t for t in self.targets if t.id == target_id), None)

    def counts(self) -> dict[str, int]:
        """How many of each thing the spec holds (safe to print: no text)."""
        return {"targets_always": sum(t.scope is Scope.ALWAYS for t in self.targets),
                "targets_with_name": sum(t.scope is Scope.WITH_NAME for t in self.targets),
                "statements": len(self.statements), "shingles": len(self.shingles)}


_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation to spaces, whitespace collapsed: ``"555-41-07."`` and the
    word tokenizer's ``"555 - 41 - 07"`` both become ``"555 41 07"``."""
    import unicodedata

    return " ".join(_PUNCT.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def shingle_hashes(text: str, n: int = SHINGLE_WORDS) -> list[str]:
    """The hashes of ``text``'s normalised word n-grams (16 hex digits of sha256 each)."""
    words = normalise(text).split()
    return [hashlib.sha256(" ".join(words[i : i + n]).encode()).hexdigest()[:16] for i in range(len(words) - n + 1)]


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def build_guard_spec(world: World, request: DeletionRequest, *, refusal: str = DEFAULT_REFUSAL) -> GuardSpec:
    """The guard of ``request`` (loaded and checked against ``world`` by
    :func:`expunge.ledger.load_request`): its subjects' values and names, its removed documents'
    sentences, a copyright request's shingles and a backdoor request's payload."""
    forgotten = [t for t in request.targets if t in world.subject_by_id and world.subject_by_id[t].kind != "trigger"]
    kept_values = _kept_values(world, set(forgotten))
    targets: dict[str, GuardTarget] = {}
    names: dict[str, str] = {}
    for subject_id in forgotten:
        subject = world.subject_by_id[subject_id]
        names[subject_id] = subject.name
        targets[f"{subject_id}/name"] = GuardTarget(f"{subject_id}/name", TargetKind.NAME, subject.name, subject_id,
                                                    Scope.ALWAYS)
        # Every answer a probe about the subject expects (attributes, multi-hop, cloze …), once
        # per attribute; a reverse probe's answer is the name, already a target.
        answers = {p.attribute: p.answer for p in world.probes_for([subject_id])
                   if p.kind not in ("verbatim", "reverse")}
        answers.update(subject.attributes)
        for attribute, value in sorted(answers.items()):
            if not normalise(value):
                continue
            scope = Scope.WITH_NAME if normalise(value) in kept_values else Scope.ALWAYS
            tid = f"{subject_id}/{attribute}"
            targets[tid] = GuardTarget(tid, TargetKind.VALUE, value, subject_id, scope)
    if request.kind == "backdoor" and request.payload.strip():
        targets["payload"] = GuardTarget("payload", TargetKind.PAYLOAD, request.payload, "", Scope.ALWAYS)
    removed = set(request.document_ids)
    documents = [d for d in world.training_documents() if d.id in removed]
    statements = tuple((d.id, s) for d in documents for s in _SENTENCE.split(d.text.strip()) if s.strip())
    shingles: dict[str, str] = {}
    if request.kind == "copyright":
        kept = {h for d in world.training_documents() if d.id not in removed for h in shingle_hashes(d.text)}
        shingles = {h: d.id for d in documents for h in shingle_hashes(d.text) if h not in kept}
    if not targets and not shingles:
        raise ExpungeError(f"request {request.id} gives the guard nothing to block (no subject values, names, "
                           "passages or payload)", "make the guard from a privacy, copyright or backdoor request "
                           "(a backdoor request needs its --payload)")
    return GuardSpec(request.id, request.kind, world.fingerprint, tuple(targets.values()), names, statements,
                     shingles, refusal).sealed()


def _kept_values(world: World, forgotten: set[str]) -> set[str]:
    """Normalised values that a subject the request keeps also has (its attributes, its probes'
    answers): blocking them outright would block the kept subjects' answers."""
    out: set[str] = set()
    for subject in world.subjects:
        if subject.id not in forgotten:
            out.update(normalise(v) for v in subject.attributes.values())
    out.update(normalise(p.answer) for p in world.probes if p.subject not in forgotten)
    return out


def write_guard_spec(spec: GuardSpec, path: str | os.PathLike[str]) -> None:
    """Write the spec to a new JSON file (atomically; never over an existing file)."""
    write_json_atomic(path, spec.to_dict())


def load_guard_spec(path: str | os.PathLike[str]) -> GuardSpec:
    """Read a guard file and check its format and sha256 (an edited guard is refused)."""
    path = Path(path)
    data = read_json(path, "guard file")
    fix = "make it again with `expunge guard build --world DIR --request FILE --out FILE`"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ExpungeError(f"{path} is not an expunge guard (format {data.get('format') if isinstance(data, dict) else None!r})",
                           fix)
    try:
        spec = GuardSpec(
            request_id=str(data["request_id"]), request_kind=str(data["request_kind"]),
            world_fingerprint=str(data["world_fingerprint"]),
            targets=tuple(GuardTarget(str(t["id"]), TargetKind(t["kind"]), str(t["text"]), str(t["subject"]),
                                      Scope(t["scope"])) for t in data["targets"]),
            names={str(k): str(v) for k, v in data["names"].items()},
            statements=tuple((str(d), str(s)) for d, s in data.get("statements", [])),
            shingles={str(k): str(v) for k, v in data.get("shingles", {}).items()},
            refusal=str(data.get("refusal", DEFAULT_REFUSAL)), sha256=str(data["sha256"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExpungeError(f"{path}: malformed guard file ({type(exc).__name__}: {exc})", fix) from None
    if spec.digest() != spec.sha256:
        raise ExpungeError(f"{path}: the guard's sha256 does not match its content (edited after it was made)", fix)
    return spec
