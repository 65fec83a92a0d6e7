"""The tamper-evident event log: a hash chain, a Merkle tree over it, and signed tree heads.

Read top to bottom:

1. An event is stored as the exact bytes of its canonical JSON (:func:`event_body`: sorted keys,
   no spaces, UTF-8), which name the previous event's hash. Its hash is ``sha256(body)``, so
   every event commits to the whole history before it: change a byte, and its hash changes; drop
   or swap an event, and the next one names a hash that is not there.
2. The events' hashes are the leaves of a Merkle tree, hashed as Certificate Transparency does
   (RFC 6962, section 2.1: ``0x00`` before a leaf, ``0x01`` before two children), so that a tree
   head over the first n events can be checked against any later log.
3. After every append a **signed tree head** (size, root, time; Ed25519) is stored. A deleted
   event at the end of the log leaves a head that counts it; a head can only be rewritten by
   whoever holds the private key. What no log can show by itself is a log cut back to an earlier,
   valid state together with its heads: keep the latest head elsewhere (``expunge ledger head``)
   and check against it (``expunge ledger verify --expect-head``).

:func:`verify_events` recomputes all of it and returns the first event that does not hold
(:class:`LogCheck`). It reads rows as plain values, so the database layer
(:mod:`expunge.ledger.store`) and the tests call the same function.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from expunge.choices import TextEnum
from expunge.errors import ExpungeError

__all__ = [
    "GENESIS",
    "EventRow",
    "TreeHead",
    "Problem",
    "LogCheck",
    "SigningKey",
    "event_body",
    "event_hash",
    "merkle_root",
    "head_message",
    "verify_events",
    "load_public_key",
]

GENESIS = "0" * 64  # the "previous hash" of the first event


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def event_body(seq: int, created_at: str, kind: str, ref: str, payload: dict[str, Any], prev: str) -> bytes:
    """The canonical bytes of an event: what is stored, hashed and chained."""
    event = {"seq": seq, "created_at": created_at, "kind": kind, "ref": ref, "payload": payload, "prev": prev}
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def merkle_root(leaves: Sequence[str]) -> str:
    """RFC 6962's Merkle tree hash over the events' hashes (hex); the empty tree's is sha256("")."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    nodes = [_sha(b"\x00" + bytes.fromhex(h)) for h in leaves]
    return _subtree(nodes).hex()


def _subtree(nodes: list[bytes]) -> bytes:
    # RFC 6962: split at the largest power of two below n; the left subtree is always complete.
    if len(nodes) == 1:
        return nodes[0]
    k = 1 << ((len(nodes) - 1).bit_length() - 1)
    return _sha(b"\x01" + _subtree(nodes[:k]) + _subtree(nodes[k:]))


def head_message(size: int, root: str, created_at: str) -> bytes:
    """The bytes a tree head's signature covers."""
    return json.dumps({"log": "expunge-ledger", "size": size, "root": root, "created_at": created_at},
                      sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class EventRow:
    """One stored event as the verifier reads it: the stored body and the stored hashes."""

    seq: int
    body: bytes
    prev: str
    hash: str


@dataclass(frozen=True)
class TreeHead:
    """A signed statement: "the log's first ``size`` events have Merkle root ``root``"."""

    size: int
    root: str
    created_at: str
    key_id: str
    signature: str  # base64

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "root": self.root, "created_at": self.created_at, "key_id": self.key_id,
                "signature": self.signature}


class Problem(TextEnum):
    """What was wrong with the first event (or head) that failed."""

    BAD_BODY = "bad_body"  # the stored bytes are not a canonical event
    HASH_MISMATCH = "hash_mismatch"  # the stored hash is not the hash of the stored bytes
    BROKEN_CHAIN = "broken_chain"  # the event does not name the previous event's hash
    OUT_OF_ORDER = "out_of_order"  # sequence numbers are not 0, 1, 2, ... in stored order
    HEAD_BEYOND_LOG = "head_beyond_log"  # a signed head counts events the log does not have
    HEAD_ROOT_MISMATCH = "head_root_mismatch"  # a signed head's root is not the log's
    BAD_SIGNATURE = "bad_signature"  # a head's signature does not verify with the trusted key
    UNSIGNED_TAIL = "unsigned_tail"  # the last events are covered by no signed head
    UNEXPECTED_HEAD = "unexpected_head"  # the log does not match a head kept outside it


@dataclass
class LogCheck:
    """The outcome of verifying a log: ``ok``, or the first bad event (or head) and why."""

    events: int
    heads: int
    ok: bool = True
    problem: Problem | None = None
    seq: int | None = None  # the first bad event's position (for a head problem: the head's size)
    detail: str = ""
    root: str = ""
    checked: list[str] = field(default_factory=list)

    def fail(self, problem: Problem, seq: int | None, detail: str) -> LogCheck:
        self.ok, self.problem, self.seq, self.detail = False, problem, seq, detail
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "heads": self.heads,
                "problem": self.problem.value if self.problem else None, "seq": self.seq, "detail": self.detail,
                "root": self.root, "checked": self.checked}


def verify_events(rows: Sequence[EventRow], heads: Sequence[TreeHead], public_key: Ed25519PublicKey,
                  expect_head: TreeHead | None = None) -> LogCheck:
    """Recompute the chain, every signed head and (optionally) a head kept outside the log.

    ``rows`` in stored order. Returns at the first event, then the first head, that fails."""
    check = LogCheck(events=len(rows), heads=len(heads))
    prev = GENESIS
    for position, row in enumerate(rows):
        if row.seq != position:
            return check.fail(Problem.OUT_OF_ORDER, position,
                              f"event at position {position} has sequence number {row.seq}")
        try:
            event = json.loads(row.body.decode("utf-8"))
            canonical = event_body(event["seq"], event["created_at"], event["kind"], event["ref"], event["payload"],
                                   event["prev"])
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            return check.fail(Problem.BAD_BODY, position, f"event {position} does not parse as an event ({exc})")
        if canonical != row.body or event["seq"] != row.seq:
            return check.fail(Problem.BAD_BODY, position, f"event {position} is not in canonical form")
        if event_hash(row.body) != row.hash:
            return check.fail(Problem.HASH_MISMATCH, position, f"event {position}'s stored hash is not its content's")
        if event["prev"] != prev or row.prev != prev:
            return check.fail(Problem.BROKEN_CHAIN, position,
                              f"event {position} does not follow event {position - 1}" if position
                              else "the first event does not start the chain")
        prev = row.hash
    check.checked.append("hash chain")
    leaves = [row.hash for row in rows]
    for head in sorted(heads, key=lambda h: h.size):
        if head.size > len(rows):
            return check.fail(Problem.HEAD_BEYOND_LOG, len(rows),
                              f"a signed head counts {head.size} events; the log has {len(rows)} (events deleted)")
        if not _signature_ok(public_key, head):
            return check.fail(Problem.BAD_SIGNATURE, head.size,
                              f"the head of size {head.size} is not signed by the trusted key")
        if merkle_root(leaves[: head.size]) != head.root:
            # Heads are checked smallest first and one is signed after every append, so the head
            # before this one held: its last event is the first that differs from what was signed.
            return check.fail(Problem.HEAD_ROOT_MISMATCH, head.size - 1,
                              f"the events under the signed head of size {head.size} are not the ones it signed")
    check.checked.append("signed tree heads")
    largest = max((h.size for h in heads), default=0)
    if largest < len(rows):
        return check.fail(Problem.UNSIGNED_TAIL, largest,
                          f"events {largest}-{len(rows) - 1} are covered by no signed head")
    check.root = merkle_root(leaves)
    if expect_head is not None:
        if expect_head.size > len(rows) or merkle_root(leaves[: expect_head.size]) != expect_head.root:
            return check.fail(Problem.UNEXPECTED_HEAD, min(expect_head.size, len(rows)),
                              f"the log does not contain the head kept outside it (size {expect_head.size})")
        if not _signature_ok(public_key, expect_head):
            return check.fail(Problem.BAD_SIGNATURE, expect_head.size, "the head kept outside is not signed by the key")
        check.checked.append("the head kept outside")
    return check


def _signature_ok(public_key: Ed25519PublicKey, head: TreeHead) -> bool:
    try:
        public_key.verify(base64.b64decode(head.signature), head_message(head.size, head.root, head.created_at))
    except (InvalidSignature, ValueError):
        return False
    return True


class SigningKey:
    """The Ed25519 key that signs tree heads: loaded from a PEM file, or created there (mode 0600)
    on first use."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> SigningKey:
        path = Path(path)
        if path.exists():
            return cls.load(path)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
        return cls(private)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        try:
            private = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ExpungeError(f"cannot read the ledger's signing key {path}: {exc}",
                               "point --key (or EXPUNGE_SIGNING_KEY) at the Ed25519 PEM key that signed this ledger")
        if not isinstance(private, Ed25519PrivateKey):
            raise ExpungeError(f"{path} is not an Ed25519 key", "the ledger signs with Ed25519; use the key it made")
        return cls(private)

    def sign(self, size: int, root: str, created_at: str) -> TreeHead:
        signature = self.private.sign(head_message(size, root, created_at))
        return TreeHead(size, root, created_at, self.key_id, base64.b64encode(signature).decode("ascii"))

    def public_pem(self) -> str:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """A trusted public key (PEM) to verify heads with, kept apart from the signer."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ExpungeError(f"cannot read the public key {path}: {exc}", "give the PEM file `expunge ledger key` prints")
    if not isinstance(key, Ed25519PublicKey):
        raise ExpungeError(f"{path} is not an Ed25519 public key", "give the PEM file `expunge ledger key` prints")
    return key
