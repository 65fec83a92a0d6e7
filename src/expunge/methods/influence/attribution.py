"""Which training documents made the model answer a query: influence attribution.

:func:`attribute` ranks a world's training documents by their influence score on each query,
``s(q, m) = grad f(q)^T (G + lambda I)^-1 grad L(m)`` (Grosse et al. 2023,
https://arxiv.org/abs/2308.03296), with the EK-FAC factors of :mod:`expunge.methods.influence.factors`
(fitted once per model and cached). f(q) is the query's summed NLL: every token of a text query,
the answer tokens of a probe (prompt, answer) rendered in the model's prompt format. A positive
score means the document lowered the query's loss (it supports the answer); the most negative
ones pushed against it.

Everything that can be wrong with the inputs is checked before the factors are fitted: the query
list (none empty), the model (loads, hashes, is a Llama-architecture model with linear
projections), the world (the model's recorded world, and a tokenizer that covers its text and the
queries).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from expunge.data import Example, encode_documents
from expunge.errors import ExpungeError
from expunge.models.io import check_tokenizer_covers, load_model
from expunge.prompts import example_for, format_of, render_question, world_as_seen
from expunge.recipe import PromptFormat
from expunge.records import Probe, read_jsonl
from expunge.scoring import max_length, padding_id
from expunge.worlds import World, load_world

from expunge.methods.influence.factors import (
    FactorSettings,
    Factors,
    fit_factors,
    pairwise_scores,
    require_kronfluence,
    summed_losses,
    tracked_modules,
)

__all__ = ["DEFAULT_DAMPING", "Query", "RankedDocument", "QueryAttribution", "Attribution", "attribute", "read_query_probes",
           "training_sequences"]

DEFAULT_WORKSPACE = "expunge-workspace"
# lambda for attribution: kronfluence's own default. It gave the best linear datamodeling score
# measured here (benchmarks/influence_lds.py, 8-person world, 50 half-subsets, 3 seeds): 0.343 at
# 1e-8, 0.330 at 1e-6, 0.261 at 1e-4, 0.259 with the heuristic (0.1 x the mean eigenvalue).
DEFAULT_DAMPING = 1e-8


@dataclass(frozen=True)
class Query:
    """What to attribute: a text (``answer`` empty: every token is scored) or a probe's prompt and
    answer (the answer's tokens are scored, the prompt is context).

    Attributes:
        text: the text, or the probe's prompt as written (rendered in the model's format when scored).
        answer: the probe's answer ("" for a text query).
        id: the probe's id ("" for a text query).
        subject: the probe's subject ("" for a text query).
    """

    text: str
    answer: str = ""
    id: str = ""
    subject: str = ""

    @classmethod
    def from_probe(cls, probe: Probe) -> Query:
        return cls(probe.prompt, probe.answer, probe.id, probe.subject)

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "answer": self.answer, "id": self.id, "subject": self.subject}


@dataclass(frozen=True)
class RankedDocument:
    """One training document's place in a query's ranking."""

    rank: int
    document_id: str
    score: float
    subjects: tuple[str, ...]
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "document_id": self.document_id, "score": self.score,
                "subjects": list(self.subjects), "text": self.text}


@dataclass(frozen=True)
class QueryAttribution:
    """A query, its loss under the model (f(q), summed NLL of its scored tokens) and the top of its
    ranking (highest score first)."""

    query: Query
    loss: float
    ranking: list[RankedDocument]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query.to_dict(), "loss": self.loss, "ranking": [r.to_dict() for r in self.ranking]}


@dataclass
class Attribution:
    """The result of :func:`attribute`. ``scores`` holds every (query, training document) score,
    rows in query order and columns in ``document_ids`` order (the world's training documents)."""

    model_path: str
    model_sha256: str
    world_fingerprint: str
    damping: float | None
    factors: Factors
    queries: list[QueryAttribution]
    document_ids: list[str]
    seconds: float
    scores: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(0, 0))

    def to_dict(self) -> dict[str, Any]:
        return {"model": {"path": self.model_path, "sha256": self.model_sha256},
                "world_fingerprint": self.world_fingerprint, "damping": self.damping,
                "documents": len(self.document_ids), "factors": self.factors.to_dict(),
                "seconds": round(self.seconds, 2), "queries": [q.to_dict() for q in self.queries]}


def read_query_probes(path: str | os.PathLike[str]) -> list[Query]:
    """Queries from a JSONL file of probes (a world's ``probes.jsonl`` or lines of the same form;
    errors name the file and line)."""
    probes = read_jsonl(path, Probe)
    if not probes:
        raise ExpungeError(f"{path}: no probes in the file", "give a JSONL file with one probe per line")
    return [Query.from_probe(p) for p in probes]


def training_sequences(world: World, tokenizer: Any, model: torch.nn.Module, fmt: PromptFormat) -> list[list[int]]:
    """The world's training documents encoded as the model trained on them (its prompt format;
    question-answer documents scored on their answers), in ``world.training_documents()`` order."""
    seen = world_as_seen(world, fmt, tokenizer)
    return encode_documents(tokenizer, [example_for(d) for d in seen.training_documents()], max_length(model))


def _query_example(query: Query, fmt: PromptFormat, tokenizer: Any) -> Example:
    if not query.answer:
        return query.text
    return render_question(fmt, query.text, tokenizer), " " + query.answer


def _check_queries(queries: Sequence[str | Probe | Query]) -> list[Query]:
    if not queries:
        raise ExpungeError("no query given", "give --query TEXT or --probes FILE")
    out = []
    for i, query in enumerate(queries):
        q = Query(query) if isinstance(query, str) else Query.from_probe(query) if isinstance(query, Probe) else query
        if not q.text.strip():
            raise ExpungeError(f"query {i + 1} is empty", "give a query with some text")
        out.append(q)
    return out


def attribute(
    model_dir: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    queries: Sequence[str | Probe | Query],
    *,
    top: int | None = 20,
    damping: float | None = DEFAULT_DAMPING,
    workspace: str | os.PathLike[str] = DEFAULT_WORKSPACE,
    settings: FactorSettings = FactorSettings(),
    query_batch_size: int = 8,
    train_batch_size: int = 32,
) -> Attribution:
    """Rank the world's training documents by influence on each query (highest score first;
    ``top`` of them per query, None: all). Factors are cached under ``workspace/influence``, per
    model weights sha256: a second call for the same model reads them. ``damping``: lambda
    (default :data:`DEFAULT_DAMPING`, the best measured); None: kronfluence's heuristic (0.1 x the
    mean eigenvalue of each layer's factors)."""
    started = time.perf_counter()
    checked = _check_queries(queries)
    if top is not None and top < 1:
        raise ExpungeError(f"top {top} is not positive", "give --top 1 or more")
    if damping is not None and damping < 0:
        raise ExpungeError(f"damping {damping} is negative", "give a damping >= 0, or leave it out for the heuristic")
    require_kronfluence()
    world = load_world(world_dir)
    model, tokenizer, ref = load_model(model_dir)
    tracked_modules(model)  # a model kronfluence cannot see is refused before any work
    recorded = (ref.recipe or {}).get("world_fingerprint")
    if recorded and recorded != world.fingerprint:
        raise ExpungeError(f"the model {model_dir} was trained on a different world (fingerprint {recorded[:12]}…, "
                           f"this world's {world.fingerprint[:12]}…)", "give the world the model was trained on")
    fmt = format_of(ref.recipe or {}, world, tokenizer, str(model_dir))
    documents = world.training_documents()
    if not documents:
        raise ExpungeError(f"world {world_dir} has no training documents", "give the world the model was trained on")
    check_tokenizer_covers(tokenizer, [d.text for d in documents[:50]], str(model_dir))
    for q in checked:
        check_tokenizer_covers(tokenizer, [q.text, q.answer], f"{model_dir} (for the query {q.text[:60]!r})")
    pad = padding_id(tokenizer)
    train = training_sequences(world, tokenizer, model, fmt)
    query_seqs = encode_documents(tokenizer, [_query_example(q, fmt, tokenizer) for q in checked], max_length(model))
    factors = fit_factors(model, train, pad_id=pad, model_sha256=ref.sha256,
                          cache_dir=Path(workspace) / "influence", settings=settings)
    scores = pairwise_scores(model, factors, query_seqs, train, pad_id=pad, damping=damping,
                             query_batch_size=query_batch_size, train_batch_size=train_batch_size)
    losses = summed_losses(model, query_seqs, pad_id=pad)
    results = []
    for row, (query, loss) in enumerate(zip(checked, losses)):
        order = torch.argsort(scores[row], descending=True, stable=True).tolist()
        ranking = [RankedDocument(rank + 1, documents[j].id, float(scores[row, j]), tuple(documents[j].subjects),
                                  documents[j].text) for rank, j in enumerate(order[:top] if top else order)]
        results.append(QueryAttribution(query, float(loss), ranking))
    return Attribution(str(model_dir), ref.sha256, world.fingerprint, damping, factors, results,
                       [d.id for d in documents], time.perf_counter() - started, scores)

