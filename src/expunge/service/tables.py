"""The service's rows in the ledger database: API tokens and the job queue (schema: migration 0004).

They live beside the ledger's own tables so that a job's state change and the log event that
records it commit in one transaction (:meth:`expunge.ledger.store.Ledger.session`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from expunge.ledger.store import Base as _Base  # one metadata: the jobs' key into requests resolves


class TokenRow(_Base):
    """An API token: only its sha256 is kept (a token is 256 random bits, so a plain hash cannot be
    reversed by guessing, and the database alone never lets anyone in)."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[str | None] = mapped_column(String(32), nullable=True)


class JobRow(_Base):
    """One deletion request's work, claimed by a worker under a lease (``lease_expires``, seconds
    since the epoch): a worker that dies stops renewing it and the next one takes the job over."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.request_id"), unique=True)
    route: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the DeletionRequest, as its file holds it
    state: Mapped[str] = mapped_column(String(16), index=True)
    submitted_by: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finished_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
