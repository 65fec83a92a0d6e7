"""Deletion requests and, later, the tamper-evident record of what was done about them."""

from expunge.ledger.requests import documents_digest, load_request, make_request, resolve_documents, write_request

__all__ = ["documents_digest", "load_request", "make_request", "resolve_documents", "write_request"]
