"""Deletion requests, and the provenance ledger: which model versions hold whose data, with a
tamper-evident log of every version recorded (:mod:`expunge.ledger.store`, :mod:`expunge.ledger.log`).

The ledger's names load on first use (SQLAlchemy and cryptography are not needed to read a request)."""

from importlib import import_module
from typing import Any

from expunge.ledger.requests import documents_digest, load_request, make_request, resolve_documents, write_request

_LAZY = {
    **dict.fromkeys(("Ledger", "ModelLineage", "RunKind", "RequestState", "TRANSITIONS", "resolve_url"),
                    "expunge.ledger.store"),
    **dict.fromkeys(("Provenance", "recording", "active_ledger", "record_version"), "expunge.ledger.recording"),
    **dict.fromkeys(("LogCheck", "Problem", "SigningKey", "TreeHead", "merkle_root", "verify_events"),
                    "expunge.ledger.log"),
}

__all__ = ["documents_digest", "load_request", "make_request", "resolve_documents", "write_request", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
