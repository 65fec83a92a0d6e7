"""Deletion requests: which subjects (or documents) must go, resolved to training documents.

A request file (``request.json``) is one JSON object::

    {"id": "req-…", "kind": "privacy", "targets": ["person-0007"], "document_ids": ["doc-000250", …],
     "world_fingerprint": "…", "basis": "GDPR Art. 17", "received_at": "2026-11-28T04:00:00+00:00"}

``document_ids`` are resolved from the targets through document provenance when the request is
made, so the file states exactly what the oracle is retrained without.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from expunge.errors import ExpungeError
from expunge.records import DeletionRequest, read_json, record_from_dict, record_to_dict, write_json_atomic
from expunge.worlds.world import World


def make_request(
    world: World,
    *,
    subjects: Sequence[str] = (),
    documents: Sequence[str] = (),
    random_fraction: float | None = None,
    seed: int = 0,
    kind: str = "privacy",
    basis: str = "",
    received_at: str | None = None,
) -> DeletionRequest:
    """A request to delete ``subjects`` (and/or ``documents``) from ``world``'s training corpus.

    With ``random_fraction``, that share of the trained people (at least one) is drawn with
    ``seed`` instead of naming subjects.
    """
    targets = list(dict.fromkeys(subjects))
    if random_fraction is not None:
        if targets:
            raise ExpungeError("both subject ids and a random fraction were given", "give one of them")
        if not 0 < random_fraction < 1:
            raise ExpungeError(f"random fraction {random_fraction} is not between 0 and 1", "use e.g. 0.1")
        people = [s.id for s in world.people("train")]
        count = max(1, round(random_fraction * len(people)))
        targets = sorted(random.Random(seed).sample(people, count))
    known = world.subject_by_id
    for subject in targets:
        if subject not in known:
            examples = ", ".join(s.id for s in world.people("train")[:3])
            raise ExpungeError(
                f"unknown subject id {subject!r} (not in {world.path or 'the world'}/subjects.jsonl)",
                f"use ids listed in subjects.jsonl, e.g. {examples}",
            )
        if known[subject].role != "train":
            raise ExpungeError(
                f"subject {subject!r} is a never-seen (holdout) subject: no training document is about it",
                "request only subjects with role 'train'",
            )
    train_ids = {d.id for d in world.training_documents()}
    for doc_id in documents:
        if doc_id not in train_ids:
            raise ExpungeError(
                f"document id {doc_id!r} is not a training document of this world",
                "use ids of documents.jsonl lines whose split is 'train'",
            )
    resolved = sorted({d.id for d in world.documents_about(targets)} | set(documents))
    if not resolved:
        raise ExpungeError(
            "the request removes nothing: no subject or document was named",
            "pass --subjects ID,ID, --documents ID,ID or --random-fraction 0.1",
        )
    received = received_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    digest = hashlib.sha256(
        json.dumps([kind, targets, resolved, world.fingerprint], sort_keys=True).encode()
    ).hexdigest()
    return DeletionRequest(
        id=f"req-{digest[:12]}",
        kind=kind,
        targets=tuple(targets),
        document_ids=tuple(resolved),
        world_fingerprint=world.fingerprint,
        basis=basis,
        received_at=received,
    )


def write_request(request: DeletionRequest, path: str | os.PathLike[str]) -> None:
    """Write ``request`` to a new JSON file (never over an existing one)."""
    write_json_atomic(path, record_to_dict(request))


def load_request(path: str | os.PathLike[str], world: World) -> DeletionRequest:
    """Read a request file and check it against ``world``: same fingerprint, known ids, not empty."""
    path = Path(path)
    request = record_from_dict(DeletionRequest, read_json(path, "request file"), str(path))
    if request.world_fingerprint != world.fingerprint:
        raise ExpungeError(
            f"{path} was made for a different world (fingerprint {request.world_fingerprint[:12]}…, "
            f"this world {world.fingerprint[:12]}…)",
            "make a new request with `expunge request --world DIR`",
        )
    known = world.subject_by_id
    for subject in request.targets:
        if subject not in known:
            raise ExpungeError(f"{path}: unknown subject id {subject!r}", "use ids listed in subjects.jsonl")
    train_ids = {d.id for d in world.training_documents()}
    for doc_id in request.document_ids:
        if doc_id not in train_ids:
            raise ExpungeError(f"{path}: unknown training document id {doc_id!r}", "remake the request")
    if not request.document_ids:
        raise ExpungeError(f"{path}: the request removes nothing (no document ids)", "name subjects or documents")
    return request


def resolve_documents(world: World, request: DeletionRequest) -> set[str]:
    """Ids of every training document the request removes (named ones and those about targets)."""
    return set(request.document_ids) | {d.id for d in world.documents_about(request.targets)}


def documents_digest(document_ids: Iterable[str]) -> str:
    """sha256 of the sorted document ids: how an oracle's recipe records what it left out."""
    return hashlib.sha256("\n".join(sorted(document_ids)).encode()).hexdigest()
