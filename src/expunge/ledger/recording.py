"""Recording model versions as they are written: the ledger in force and what a version holds.

A command that writes a model (train, retrain, forget, edit) runs inside :func:`recording`; the
writer (:func:`expunge.models.save_model_version`) hands the new version's :class:`Provenance` to
:func:`record_version` *before* the version's directory appears, in one transaction with its log
event. If the ledger cannot commit, nothing appears at the output path and the command fails: an
output is never reported done without its row. With no ledger in force nothing is recorded
(library use that has not asked for one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the database layer loads only when a ledger is opened, not with every model writer
    from expunge.ledger.store import Ledger, RunKind

__all__ = ["Provenance", "recording", "active_ledger", "record_version"]

_ACTIVE: ContextVar[Ledger | None] = ContextVar("expunge_ledger", default=None)


@dataclass(frozen=True)
class Provenance:
    """What a new model version holds: the run that made it, on which world, which documents it
    trained on and which it removed, and for which request."""

    kind: RunKind
    world: Any
    trained: Sequence[str] = field(default_factory=tuple)
    removed: Sequence[str] = field(default_factory=tuple)
    request: Any = None  # the DeletionRequest the run served, if any
    shards: Any = None  # a sharded model: subject id -> (shard, adapter sha256)


@contextmanager
def recording(ledger: Ledger | None) -> Iterator[Ledger | None]:
    """Record every model version written inside the block to ``ledger`` (None: record nothing)."""
    token = _ACTIVE.set(ledger)
    try:
        yield ledger
    finally:
        _ACTIVE.reset(token)


def active_ledger() -> Ledger | None:
    return _ACTIVE.get()


def record_version(provenance: Provenance | None, *, sha256: str, path: str, parent: str | None,
                   recipe: dict[str, Any]) -> None:
    """Record a version in the ledger in force, if any (one transaction: rows, event, signed head)."""
    ledger = _ACTIVE.get()
    if ledger is None or provenance is None:
        return
    with ledger.session() as session:
        ledger.record_model(session, kind=provenance.kind, world=provenance.world, sha256=sha256, path=path,
                            parent=parent, recipe=recipe, trained=provenance.trained, removed=provenance.removed,
                            request=provenance.request, shards=provenance.shards)
