"""Deletion requests, and the provenance ledger: which model versions hold whose data, with a
tamper-evident log of every version recorded (:mod:`expunge.ledger.store`, :mod:`expunge.ledger.log`)."""

from expunge.ledger.log import LogCheck, Problem, SigningKey, TreeHead, merkle_root, verify_events
from expunge.ledger.recording import Provenance, active_ledger, record_version, recording
from expunge.ledger.requests import documents_digest, load_request, make_request, resolve_documents, write_request
from expunge.ledger.store import TRANSITIONS, Ledger, ModelLineage, RequestState, RunKind, resolve_url

__all__ = [
    "documents_digest", "load_request", "make_request", "resolve_documents", "write_request",
    "Ledger", "ModelLineage", "RunKind", "RequestState", "TRANSITIONS", "resolve_url",
    "Provenance", "recording", "active_ledger", "record_version",
    "LogCheck", "Problem", "SigningKey", "TreeHead", "merkle_root", "verify_events",
]
