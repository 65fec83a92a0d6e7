"""API tokens: made once, shown once, stored as a sha256, each with scopes.

Scopes: ``submit`` (file deletion requests), ``read`` (status, certificates, provenance, the
audit), ``admin`` (everything, and the tokens themselves). Making and revoking a token are
events of the tamper-evident log, so who could act is part of the record; the log holds the
token's name and scopes, never the token or its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from expunge.choices import TextEnum
from expunge.errors import ExpungeError
from expunge.ledger.store import Ledger, _now
from expunge.service.tables import TokenRow

__all__ = ["Scope", "TokenInfo", "create_token", "revoke_token", "list_tokens", "authenticate", "token_sha256"]

PREFIX = "exp_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Scope(TextEnum):
    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class TokenInfo:
    """Who a token is (never the token itself)."""

    name: str
    scopes: frozenset[Scope]
    created_at: str
    revoked_at: str | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "scopes": sorted(self.scopes), "created_at": self.created_at,
                "revoked_at": self.revoked_at}


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> frozenset[Scope]:
    out = set()
    for scope in scopes:
        try:
            out.add(Scope(scope.strip()))
        except ValueError:
            raise ExpungeError(f"unknown scope {scope!r}", f"use one or more of {', '.join(Scope)}") from None
    if not out:
        raise ExpungeError("a token needs at least one scope", f"give --scope with one of {', '.join(Scope)}")
    return frozenset(out)


def create_token(ledger: Ledger, name: str, scopes: Iterable[str]) -> str:
    """A new token named ``name`` with ``scopes``; returns the token, which is not stored anywhere
    and cannot be shown again."""
    if not _NAME.match(name):
        raise ExpungeError(f"token name {name!r} is not allowed",
                           "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    granted = parse_scopes(scopes)
    token = PREFIX + secrets.token_urlsafe(32)
    with ledger.session() as session:
        if session.scalars(select(TokenRow.id).where(TokenRow.name == name)).first() is not None:
            raise ExpungeError(f"a token named {name!r} exists", "pick another name, or revoke that one first")
        session.add(TokenRow(name=name, token_sha256=token_sha256(token), scopes=sorted(granted), created_at=_now()))
        ledger.append(session, "token.created", f"token:{name}", {"name": name, "scopes": sorted(granted)})
    return token


def revoke_token(ledger: Ledger, name: str) -> None:
    with ledger.session() as session:
        row = session.scalars(select(TokenRow).where(TokenRow.name == name)).first()
        if row is None or row.revoked_at is not None:
            raise ExpungeError(f"no active token named {name!r}", "list them with `expunge token list`")
        row.revoked_at = _now()
        ledger.append(session, "token.revoked", f"token:{name}", {"name": name})


def list_tokens(ledger: Ledger) -> list[TokenInfo]:
    from sqlalchemy.orm import Session

    with Session(ledger.engine) as session:
        return [_info(row) for row in session.scalars(select(TokenRow).order_by(TokenRow.id))]


def authenticate(ledger: Ledger, token: str | None) -> TokenInfo | None:
    """The active token's holder, or None for a missing, unknown or revoked token."""
    if not token or not token.startswith(PREFIX) or len(token) > 128:
        return None
    from sqlalchemy.orm import Session

    digest = token_sha256(token)
    with Session(ledger.engine) as session:
        row = session.scalars(select(TokenRow).where(TokenRow.token_sha256 == digest)).first()
        # The lookup is by hash (a timing difference reveals nothing about the token itself); the
        # comparison below only guards against a database that returns a near match.
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, digest):
            return None
        return _info(row)


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(row.name, frozenset(Scope(s) for s in row.scopes), row.created_at, row.revoked_at)
