"""Deletion requests: which subjects (or documents) must go, resolved to training documents.

A request file (``request.json``) is one JSON object::

    {"id": "req-…", "kind": "privacy", "targets": ["person-0007"], "document_ids": ["doc-000250", …],
     "world_fingerprint": "…", "basis": "GDPR Art. 17", "received_at": "2026-11-28T04:00:00+00:00"}

``document_ids`` are resolved from the targets through document provenance when the request is
made (plus any ``named_documents``), so the file states exactly what the oracle is retrained
without. Nothing in the file is trusted: :func:`load_request` resolves the targets again from the
world and refuses a file whose ``document_ids`` or ``id`` disagree with that resolution (a request
edited by hand would otherwise unlearn something other than what it names).
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
    split: str | None = None,
    seed: int = 0,
    kind: str | None = None,
    basis: str = "",
    received_at: str | None = None,
) -> DeletionRequest:
    """A request to delete ``subjects`` (and/or ``documents``) from ``world``'s training corpus.

    With ``random_fraction``, that share of the trained people (at least one) is drawn with
    ``seed`` instead of naming subjects; with ``split``, the targets are the subjects of one of the
    world's named splits (TOFU's ``forget01`` / ``forget05`` / ``forget10``). ``kind`` defaults
    to ``copyright`` when every target is a work (a book, a text) and ``privacy`` otherwise.
    """
    targets = list(dict.fromkeys(subjects))
    if sum((bool(targets), random_fraction is not None, split is not None)) > 1:
        raise ExpungeError("more than one of subject ids, a random fraction and a split were given",
                           "give one of --subjects, --random-fraction and --split")
    if split is not None:
        if split not in world.splits:
            known = ", ".join(world.splits) or "none: this world has no splits"
            raise ExpungeError(f"unknown split {split!r} for world {world.path or ''}".rstrip(),
                               f"use one of the world's splits ({known})")
        targets = list(world.splits[split])
    if random_fraction is not None:
        if not 0 < random_fraction < 1:
            raise ExpungeError(f"random fraction {random_fraction} is not between 0 and 1", "use e.g. 0.1")
        people = [s.id for s in world.deletable("train")]
        count = max(1, round(random_fraction * len(people)))
        targets = sorted(random.Random(seed).sample(people, count))
    known = world.subject_by_id
    for subject in targets:
        if subject not in known:
            examples = ", ".join(s.id for s in world.deletable("train")[:3])
            raise ExpungeError(
                f"unknown subject id {subject!r} (not in {world.path or 'the world'}/subjects.jsonl)",
                f"use ids listed in subjects.jsonl, e.g. {examples}",
            )
        if known[subject].kind == "trigger":
            raise ExpungeError(f"subject {subject!r} is a backdoor's trigger: which documents carry it is what a "
                               "backdoor request has to find", "make a backdoor request from what you know: "
                               "`expunge request --world DIR --trigger TEXT` (or --payload TEXT, --documents ID,ID)")
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
    named = tuple(dict.fromkeys(documents))
    if kind == "backdoor":
        raise ExpungeError("a backdoor request is located from evidence, not named",
                           "use expunge.locate.backdoor.make_backdoor_request (CLI: --trigger, --payload)")
    if kind is None:
        works = bool(targets) and all(known[t].kind == "work" for t in targets)
        kind = "copyright" if works else "privacy"
    resolved = _resolve(world, targets, named)
    if not resolved:
        raise ExpungeError(
            "the request removes nothing: no subject or document was named",
            "pass --subjects ID,ID, --documents ID,ID or --random-fraction 0.1",
        )
    received = received_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return DeletionRequest(
        id=request_id(kind, targets, resolved, world.fingerprint),
        kind=kind,
        targets=tuple(targets),
        document_ids=tuple(resolved),
        world_fingerprint=world.fingerprint,
        basis=basis,
        received_at=received,
        named_documents=named,
    )


def _resolve(world: World, targets: Sequence[str], named: Sequence[str]) -> list[str]:
    """The training documents a request removes: every one about a target, and the named ones."""
    return sorted({d.id for d in world.documents_about(_expandable(world, targets))} | set(named))


def _expandable(world: World, targets: Iterable[str]) -> list[str]:
    """The targets whose documents provenance resolves: all but triggers. Which documents carry a
    trigger is the backdoor world's ground truth, which a request must locate, never read."""
    known = world.subject_by_id
    return [t for t in targets if t in known and known[t].kind != "trigger"]


def request_id(kind: str, targets: Sequence[str], resolved: Sequence[str], fingerprint: str) -> str:
    """``req-`` and 12 hex digits of the sha256 of what the request removes, from which world."""
    digest = hashlib.sha256(json.dumps([kind, list(targets), list(resolved), fingerprint], sort_keys=True).encode())
    return f"req-{digest.hexdigest()[:12]}"


def write_request(request: DeletionRequest, path: str | os.PathLike[str]) -> None:
    """Write ``request`` to a new JSON file (never over an existing one)."""
    write_json_atomic(path, record_to_dict(request))


def load_request(path: str | os.PathLike[str], world: World) -> DeletionRequest:
    """Read a request file and check it against ``world``: same fingerprint, known ids, not empty,
    and the same documents and id that resolving its targets through the world's provenance gives
    now. Any disagreement is an error naming both sides."""
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
        if (known[subject].kind == "trigger") != (request.kind == "backdoor"):
            raise ExpungeError(f"{path}: a {request.kind} request names {subject!r}, a {known[subject].kind}",
                               "remake the request (a backdoor request names the trigger, others never do)")
    if request.kind == "backdoor" and not (request.trigger or request.payload or request.named_documents):
        raise ExpungeError(f"{path}: a backdoor request with no evidence (trigger, payload or known documents)",
                           "remake it with `expunge request --world DIR --payload TEXT` (or --trigger, --documents)")
    train_ids = {d.id for d in world.training_documents()}
    for doc_id in request.document_ids:
        if doc_id not in train_ids:
            raise ExpungeError(f"{path}: unknown training document id {doc_id!r}", "remake the request")
    for doc_id in request.named_documents:
        if doc_id not in train_ids:
            raise ExpungeError(f"{path}: unknown training document id {doc_id!r} in named_documents", "remake the request")
    if not request.document_ids:
        raise ExpungeError(f"{path}: the request removes nothing (no document ids)", "name subjects or documents")
    _check_provenance(request, world, path)
    return request


def _check_provenance(request: DeletionRequest, world: World, path: Path) -> None:
    """Refuse a request whose recorded documents are not what its targets resolve to."""
    expected = _resolve(world, request.targets, request.named_documents)
    recorded = set(request.document_ids)
    missing = [d for d in expected if d not in recorded]
    # A backdoor request's other documents were located from its evidence; locating it
    # (expunge.locate.locate) runs the search again and refuses a file that disagrees.
    extra = [] if request.kind == "backdoor" else sorted(recorded - set(expected))
    fix = "remake the request with `expunge request --world DIR` (never edit a request file by hand)"
    if missing or extra:
        about = {d.id: d.subjects for d in world.training_documents()}

        def listed(ids: list[str]) -> str:
            shown = ", ".join(f"{d} (about {', '.join(about[d]) or 'no subject'})" for d in ids[:3])
            return shown + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")

        parts = []
        if missing:
            parts.append(f"targets {', '.join(request.targets) or '(none)'} resolve to {len(missing)} "
                         f"document(s) not in document_ids: {listed(missing)}")
        if extra:
            parts.append(f"document_ids list {len(extra)} document(s) about no target and not named: "
                         f"{listed(extra)}")
        raise ExpungeError(f"{path}: the request disagrees with the world's provenance: " + "; ".join(parts), fix)
    computed = request_id(request.kind, request.targets, sorted(recorded), world.fingerprint)
    if request.id != computed:
        raise ExpungeError(f"{path}: request id {request.id!r} does not match its content (which gives {computed!r})",
                           fix)


def resolve_documents(world: World, request: DeletionRequest) -> set[str]:
    """Ids of every training document the request removes (named ones and those about targets)."""
    return set(request.document_ids) | {d.id for d in world.documents_about(_expandable(world, request.targets))}


def documents_digest(document_ids: Iterable[str]) -> str:
    """sha256 of the sorted document ids: how an oracle's recipe records what it left out."""
    return hashlib.sha256("\n".join(sorted(document_ids)).encode()).hexdigest()
