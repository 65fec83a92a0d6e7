"""Locate: the step between a request and its removal — which data carries what must go.

A deletion request names subjects or documents; everything downstream needs sets: the training
documents to forget, the documents that stay, never-seen data of the same kind (the membership
reference), the neighbours where a careless removal does damage first, and general knowledge that
must survive. :func:`locate` computes them once from (world, request) through the world's
provenance, and the frozen :class:`Located` is what unlearning, retraining and verification all
read, so the three can never disagree about what "the forget set" is. Its ``digest`` goes into
every model recipe made for the request.

Later locators (influence functions, trigger search, user-supplied sets) produce the same record
with another ``locator`` kind.

:func:`split_retain` divides what stays in two, by subject: what an unlearning method's retain
term may train on, and what the collapse guard and verification score as kept. A retain term that
fine-tunes on the very sentences that are then scored makes "nothing else broke" look true by
construction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from expunge.choices import TextEnum
from typing import Any

from expunge.errors import ExpungeError
from expunge.ledger.requests import documents_digest, resolve_documents
from expunge.records import DeletionRequest, Document
from expunge.worlds import World

__all__ = ["LocatorKind", "DocumentSet", "Located", "locate", "locate_subjects", "SET_NAMES", "RETAIN_TERM_SHARE",
           "RetainSplit", "split_retain"]

SET_NAMES = ("forget", "retain", "never_seen", "neighbours", "general")


class LocatorKind(TextEnum):
    """How a :class:`Located` was found."""

    PROVENANCE = "provenance"  # the world's document -> subject records
    POISON_SEARCH = "poison-search"  # a backdoor's evidence searched for in the corpus (locate.backdoor)



@dataclass(frozen=True)
class DocumentSet:
    """Subjects and document ids of one set, both in world order.

    Attributes:
        subjects: subject ids the set is about.
        documents: document ids (training documents, except for ``never_seen``: holdout ones).
    """

    subjects: tuple[str, ...]
    documents: tuple[str, ...]

    @property
    def digest(self) -> str:
        """sha256 of the sorted document ids (:func:`expunge.ledger.documents_digest`): the same
        value an oracle's recipe records as ``excluded_sha256`` for the forget set."""
        return documents_digest(self.documents)

    def to_dict(self) -> dict[str, Any]:
        return {"subjects": len(self.subjects), "documents": len(self.documents), "sha256": self.digest}


@dataclass(frozen=True)
class Located:
    """The sets of one request in one world (see the module doc).

    Attributes:
        request_id / world_fingerprint: what it was located for.
        locator: how it was found.
        forget: the request's targets and every training document it removes.
        retain: the trained people (or works) who stay, and every training document that stays
            (theirs and general facts alike: what a retrained oracle trains on).
        never_seen: never-seen (holdout) people or works and their documents, which no model
            trained on.
        neighbours: retained people or works that share a name token or values with a target, and
            their training documents.
        general: entities (countries, companies: general knowledge) not targeted, and their
            training documents.
    """

    request_id: str
    world_fingerprint: str
    locator: LocatorKind
    forget: DocumentSet
    retain: DocumentSet
    never_seen: DocumentSet
    neighbours: DocumentSet
    general: DocumentSet

    def sets(self) -> dict[str, DocumentSet]:
        return {name: getattr(self, name) for name in SET_NAMES}

    @property
    def digest(self) -> str:
        """sha256 over every set's subjects and documents: recorded in model recipes."""
        payload = {name: {"subjects": sorted(s.subjects), "documents": s.digest} for name, s in self.sets().items()}
        payload.update(request_id=self.request_id, world_fingerprint=self.world_fingerprint,
                       locator=self.locator.value)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def documents(self, world: World, name: str) -> list[Document]:
        """The :class:`Document` records of set ``name``, in world order."""
        wanted = set(getattr(self, name).documents)
        return [d for d in world.documents if d.id in wanted]

    def check_for(self, world: World, request: DeletionRequest) -> None:
        """Raise ValueError when this record was located for another world or request."""
        if (self.world_fingerprint, self.request_id) != (world.fingerprint, request.id):
            raise ValueError(f"located sets are for request {self.request_id} on world "
                             f"{self.world_fingerprint[:12]}, not {request.id} on {world.fingerprint[:12]}")

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "world_fingerprint": self.world_fingerprint,
                "locator": self.locator.value, "sha256": self.digest,
                **{name: s.to_dict() for name, s in self.sets().items()}}


def locate(world: World, request: DeletionRequest) -> Located:
    """The request's sets through the world's provenance (documents name their subjects); a
    backdoor request's documents are searched for again from its evidence
    (:func:`expunge.locate.backdoor.locate_poisoned`), and a file that disagrees is refused."""
    if request.kind == "backdoor":
        from expunge.locate.backdoor import evidence_of, locate_poisoned

        found = locate_poisoned(world, evidence_of(request)).documents
        if sorted(found) != sorted(request.document_ids):
            raise ExpungeError(f"request {request.id}: its {len(request.document_ids)} documents are not the "
                               f"{len(found)} its evidence locates in this world",
                               "remake the request from its evidence (never edit a request file by hand)")
        return _locate(world, request.targets, set(found), request.id, LocatorKind.POISON_SEARCH)
    return _locate(world, request.targets, resolve_documents(world, request), request.id)


def locate_subjects(world: World, subject_ids: Iterable[str] = ()) -> Located:
    """The sets for forgetting ``subject_ids`` (every training document about them) without a
    request file: what a model trained without them would not know (``request_id`` is empty)."""
    targets = list(subject_ids)
    return _locate(world, targets, {d.id for d in world.documents_about(targets)}, "")


def _locate(world: World, target_ids: Iterable[str], forget_ids: set[str], request_id: str,
            locator: LocatorKind = LocatorKind.PROVENANCE) -> Located:
    targets = set(target_ids)
    training = world.training_documents()
    retained_members = [s for s in world.deletable("train") if s.id not in targets]
    neighbour_ids = {n for s in world.subjects if s.id in targets for n in s.neighbours}
    neighbours = [s.id for s in retained_members if s.id in neighbour_ids]
    general = [s.id for s in world.subjects if s.kind == "entity" and s.id not in targets]

    def about(subjects: list[str]) -> tuple[str, ...]:
        wanted = set(subjects)
        return tuple(d.id for d in training if d.id not in forget_ids and wanted.intersection(d.subjects))

    return Located(
        request_id=request_id,
        world_fingerprint=world.fingerprint,
        locator=locator,
        forget=DocumentSet(tuple(s.id for s in world.subjects if s.id in targets),
                           tuple(d.id for d in training if d.id in forget_ids)),
        retain=DocumentSet(tuple(s.id for s in retained_members),
                           tuple(d.id for d in training if d.id not in forget_ids)),
        never_seen=DocumentSet(tuple(s.id for s in world.deletable("holdout")),
                               tuple(d.id for d in world.documents if d.split == "holdout")),
        neighbours=DocumentSet(tuple(neighbours), about(neighbours)),
        general=DocumentSet(tuple(general), about(general)),
    )


# The share of the retained subjects (those with documents) whose documents a retain term trains on.
RETAIN_TERM_SHARE = 0.5


@dataclass(frozen=True)
class RetainSplit:
    """The retained documents, split by subject (see :func:`split_retain`).

    Attributes:
        train: the subjects whose documents an unlearning method's retain term may train on, and
            those documents.
        kept: every other retained document (with its subjects): what the collapse guard and
            verification score as kept. Subjects with no retained document (general facts asked
            about but never written down) are never in ``train``.
    """

    train: DocumentSet
    kept: DocumentSet


def _rank(request_id: str, key: str) -> str:
    return hashlib.sha256(f"{request_id}\0{key}".encode()).hexdigest()


def split_retain(world: World, located: Located, share: float = RETAIN_TERM_SHARE) -> RetainSplit:
    """Split the retained documents by subject into the retain term's and the scored ones.

    Deterministic from the world and the request (every method, and verification, get the same
    split): the retained subjects that have documents, people and general entities alike, are
    ordered by sha256(request id, subject id) and the first ``share`` of them (at least one, and
    at least one left over, when there are two or more) go to ``train``. A document goes to
    ``train`` when every subject it names does; a document naming no subject is placed by its own
    id the same way.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must lie strictly between 0 and 1; got {share}")
    docs = located.documents(world, "retain")
    forgotten = set(located.forget.subjects)
    order = list(dict.fromkeys(s for d in docs for s in d.subjects if s not in forgotten))
    loose = [d.id for d in docs if not d.subjects]

    def first_share(keys: list[str]) -> set[str]:
        if len(keys) < 2:
            return set()
        count = min(len(keys) - 1, max(1, round(share * len(keys))))
        return set(sorted(keys, key=lambda k: _rank(located.request_id, k))[:count])

    trained_subjects, trained_loose = first_share(order), first_share(loose)
    train_docs = [d for d in docs if (set(d.subjects) <= trained_subjects if d.subjects else d.id in trained_loose)]
    train_ids = {d.id for d in train_docs}
    kept_docs = [d for d in docs if d.id not in train_ids]
    return RetainSplit(
        train=DocumentSet(tuple(s for s in order if s in trained_subjects), tuple(d.id for d in train_docs)),
        kept=DocumentSet(tuple(dict.fromkeys(s for d in kept_docs for s in d.subjects if s not in forgotten)),
                         tuple(d.id for d in kept_docs)),
    )
