"""Locating with influence: the training documents a request did not name whose training most
lowered the model's loss on the request's facts (:mod:`expunge.locate.related` has the BM25
baseline and the scoring against a world's planted truth).

The queries are the request's subjects' direct questions with their answers (what the model
says about them), or, for subjects without questions, the request's own documents as texts.
Each query's scores over the candidates are standardised (a query whose answer the model finds
hard has larger gradients, and would otherwise outvote the rest) and summed per document.
"""

from __future__ import annotations

import os
from typing import Any

from expunge.ledger.requests import load_request
from expunge.locate import locate
from expunge.locate.related import RankedRelated, candidate_documents
from expunge.methods.influence.attribution import DEFAULT_DAMPING, DEFAULT_WORKSPACE, Query, attribute
from expunge.worlds import load_world

__all__ = ["influence_related"]


def influence_related(
    model_dir: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    *,
    damping: float | None = DEFAULT_DAMPING,
    workspace: str | os.PathLike[str] = DEFAULT_WORKSPACE,
    **options: Any,
) -> RankedRelated:
    """Every training document but the request's own, ranked by influence on the request's facts
    (factors cached per model, as :func:`attribute` does; ``damping`` as there, None: kronfluence's
    heuristic)."""
    world = load_world(world_dir)
    request = load_request(request_path, world)
    located = locate(world, request)
    probes = world.probes_for(located.forget.subjects, kinds=["direct"])
    queries: list[Any] = [Query.from_probe(p) for p in probes]
    if not queries:
        texts = {d.id: d.text for d in world.training_documents()}
        queries = [texts[d] for d in located.forget.documents]
    result = attribute(model_dir, world_dir, queries, top=None, damping=damping, workspace=workspace, **options)
    candidates = candidate_documents(world, located)
    columns = [result.document_ids.index(d) for d in candidates]
    scores = result.scores[:, columns].double()
    spread = scores.std(dim=1, keepdim=True).clamp_min(1e-12)
    total = ((scores - scores.mean(dim=1, keepdim=True)) / spread).sum(dim=0)
    order = sorted(range(len(candidates)), key=lambda i: (-float(total[i]), candidates[i]))
    return RankedRelated("influence", tuple(candidates[i] for i in order), tuple(float(total[i]) for i in order))
