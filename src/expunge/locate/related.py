"""Documents a request did not name but that carry its facts, and how well a ranking finds them.

A request resolved through provenance removes the documents that *say* they are about its
subjects. The same facts can sit in documents provenance does not tie to them: the subject under
another name, a mention inside someone else's document. A privacy world with ``--planted N``
plants such documents and keeps the truth (``planted.jsonl``), so a locator can be scored.

Two rankings of the other training documents, each the score of a document for the request:

- :func:`bm25_related`: lexical, with the retrieval store's BM25 (no model): the query is the text
  of the request's own documents. The baseline.
- influence (``expunge.methods.influence.locate``): the documents whose training most lowered the
  model's loss on the request's facts.

:func:`precision_recall_at_k` scores a ranking against the truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from expunge.locate import Located
from expunge.retrieval import FactStore, StoredFact
from expunge.worlds import World

__all__ = ["RankedRelated", "bm25_related", "candidate_documents", "precision_recall_at_k"]


@dataclass(frozen=True)
class RankedRelated:
    """A ranking of candidate documents for a request, best first, with their scores."""

    method: str
    document_ids: tuple[str, ...]
    scores: tuple[float, ...]


def candidate_documents(world: World, located: Located) -> list[str]:
    """The training documents a related-document search ranks: all but the request's own."""
    own = set(located.forget.documents)
    return [d.id for d in world.training_documents() if d.id not in own]


def bm25_related(world: World, located: Located) -> RankedRelated:
    """Every candidate document ranked by BM25 against the text of the request's own documents."""
    candidates = set(candidate_documents(world, located))
    texts = {d.id: d.text for d in world.training_documents()}
    store = FactStore(StoredFact(doc, "document", doc, texts[doc]) for doc in sorted(candidates))
    query = " ".join(texts[d] for d in located.forget.documents)
    hits = store.search(query, k=len(candidates))
    ranked = [(fact.id, score) for fact, score in hits]
    seen = {doc for doc, _ in ranked}
    ranked += [(doc, 0.0) for doc in sorted(candidates - seen)]  # no shared term: last, in id order
    return RankedRelated("bm25", tuple(d for d, _ in ranked), tuple(s for _, s in ranked))


def precision_recall_at_k(ranking: Sequence[str], truth: Iterable[str], k: int) -> tuple[float, float]:
    """Precision and recall of the top ``k`` of ``ranking`` against the ``truth`` set (recall is
    nan when the truth is empty)."""
    wanted = set(truth)
    found = len(wanted.intersection(ranking[:k]))
    return found / k, (found / len(wanted) if wanted else float("nan"))
