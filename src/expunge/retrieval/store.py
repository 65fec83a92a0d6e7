"""A fact store with BM25 retrieval (Robertson & Zaragoza 2009, https://doi.org/10.1561/1500000019).

Why BM25 and not embeddings: it needs no model, it is exact and deterministic, and on questions
that name their subject (a company, a person) the rare name dominates the score, which is what
retrieval of facts needs. The index is rebuilt from the stored facts after every change, so a
deleted fact leaves no term statistics behind: an update or a deletion is exact, which is the
point of keeping updatable knowledge here instead of in the weights.

Score of fact d for query q: sum over query terms t of
idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avg |d|)),
idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from expunge.errors import ExpungeError
from expunge.records import FactEdit

__all__ = ["StoredFact", "FactStore", "RetrievalContext", "facts_from_world", "CONTEXT_FORMAT"]

_WORD = re.compile(r"\w+")
# How retrieved facts are put before a question; the companies world trains models on it.
CONTEXT_FORMAT = "Context: {facts} "


def _terms(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class StoredFact:
    """One fact: ``text`` states that ``subject``'s ``relation`` is its value."""

    id: str
    subject: str
    relation: str
    text: str


class FactStore:
    """Facts keyed by (subject, relation), searchable with BM25; at most one fact per key."""

    def __init__(self, facts: Iterable[StoredFact] = (), *, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError("BM25 needs k1 >= 0 and 0 <= b <= 1 (e.g. 1.2 and 0.75)")
        self.k1, self.b = k1, b
        self._facts: dict[tuple[str, str], StoredFact] = {}
        for fact in facts:
            self.add(fact)

    # ---- changes (each rebuilds the index lazily) ----
    def add(self, fact: StoredFact) -> None:
        key = (fact.subject, fact.relation)
        if key in self._facts:
            raise ExpungeError(f"the store already holds {fact.relation!r} of {fact.subject!r}",
                               "use update() to change a fact")
        if not _terms(fact.text):
            raise ExpungeError(f"fact {fact.id!r} has no words", "give the fact a text")
        self._facts[key] = fact
        self._index = None

    def update(self, subject: str, relation: str, text: str) -> StoredFact:
        """Replace the fact (subject, relation); returns the old one."""
        old = self.get(subject, relation)
        self._facts[(subject, relation)] = StoredFact(old.id, subject, relation, text)
        self._index = None
        return old

    def delete(self, subject: str, relation: str | None = None) -> list[StoredFact]:
        """Remove one fact, or every fact of ``subject`` (relation None); returns what was removed."""
        keys = [k for k in self._facts if k[0] == subject and (relation is None or k[1] == relation)]
        if not keys:
            raise ExpungeError(f"the store holds no fact {relation or '(any)'} of {subject!r}",
                               "check the subject id (facts are keyed by subject id and relation)")
        self._index = None
        return [self._facts.pop(k) for k in keys]

    def apply_edits(self, edits: Sequence[FactEdit]) -> list[StoredFact]:
        """Apply update requests: each (subject, relation) fact now states ``target_new`` in the
        request's cloze form ("The CEO of Posus is Daniel Moreno."). Returns the replaced facts."""
        return [self.update(e.subject, e.relation, f"{e.prompt.format(e.subject_name)} {e.target_new}.")
                for e in edits]

    # ---- reading ----
    def get(self, subject: str, relation: str) -> StoredFact:
        if (subject, relation) not in self._facts:
            raise ExpungeError(f"the store holds no fact {relation!r} of {subject!r}", "add() it first")
        return self._facts[(subject, relation)]

    def __len__(self) -> int:
        return len(self._facts)

    def __iter__(self):  # noqa: ANN204 - iterator of StoredFact
        return iter(sorted(self._facts.values(), key=lambda f: f.id))

    def search(self, query: str, k: int = 2) -> list[tuple[StoredFact, float]]:
        """The ``k`` best facts for ``query`` with their BM25 scores (ties broken by fact id);
        facts sharing no term with the query are never returned."""
        if k < 1:
            raise ValueError("k must be at least 1")
        index = self._build()
        facts, tfs, lengths, df, avg = index
        n = len(facts)
        scores: list[tuple[float, str, int]] = []
        query_terms = set(_terms(query))
        for i, (fact, tf) in enumerate(zip(facts, tfs)):
            score = 0.0
            for term in query_terms:
                if term in tf:
                    idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                    norm = tf[term] + self.k1 * (1 - self.b + self.b * lengths[i] / avg)
                    score += idf * tf[term] * (self.k1 + 1) / norm
            if score > 0:
                scores.append((-score, fact.id, i))
        scores.sort()
        return [(facts[i], -s) for s, _, i in scores[:k]]

    def _build(self) -> tuple[list[StoredFact], list[Counter], list[int], Counter, float]:
        if getattr(self, "_index", None) is None:
            facts = list(self)
            tfs = [Counter(_terms(f.text)) for f in facts]
            lengths = [sum(tf.values()) for tf in tfs]
            df: Counter = Counter()
            for tf in tfs:
                df.update(tf.keys())
            avg = sum(lengths) / len(lengths) if lengths else 1.0
            self._index = (facts, tfs, lengths, df, avg)
        return self._index

    # ---- persistence ----
    def fingerprint(self) -> str:
        """sha256 of the store's contents (ledger evidence that a fact is gone)."""
        lines = "\n".join(json.dumps(asdict(f), sort_keys=True) for f in self)
        return hashlib.sha256(lines.encode()).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the facts as JSONL, atomically (temp file, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(json.dumps(asdict(f), sort_keys=True) + "\n" for f in self))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FactStore:
        facts = []
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                facts.append(StoredFact(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                raise ExpungeError(f"{path}:{n}: not a stored fact ({exc})",
                                   "each line must be {\"id\", \"subject\", \"relation\", \"text\"}") from None
        return cls(facts)


class RetrievalContext:
    """``prompt -> "Context: <k retrieved facts> "``: the text put before a question."""

    def __init__(self, store: FactStore, k: int = 2) -> None:
        self.store, self.k = store, k

    def __call__(self, prompt: str) -> str:
        found = self.store.search(prompt, self.k)
        return CONTEXT_FORMAT.format(facts=" ".join(f.text for f, _ in found)) if found else ""


def facts_from_world(subjects: Sequence, relations: dict[str, str]) -> FactStore:
    """A store with one fact per (subject, relation) of ``subjects`` whose attributes hold the
    relation; ``relations`` maps a relation to a statement template with {name} and {value}."""
    store = FactStore()
    for subject in subjects:
        for relation, template in relations.items():
            if relation in subject.attributes:
                text = template.format(name=subject.name, value=subject.attributes[relation])
                store.add(StoredFact(f"{subject.id}/{relation}", subject.id, relation, text))
    return store
