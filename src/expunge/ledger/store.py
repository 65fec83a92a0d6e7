"""The provenance ledger: which model versions were trained on which documents, and the log of it.

One database (SQLAlchemy 2): an embedded SQLite file by default (``expunge-ledger.sqlite`` in the
workspace), or any URL SQLAlchemy takes (``postgresql://…``). Its schema is Alembic's
(:mod:`expunge.ledger.migrations`): opening a ledger brings it to the current revision, and a
ledger from a newer expunge is refused rather than guessed at.

What it records, each row with the content hashes that identify it:

- **corpora** (a world, by its fingerprint), their **subjects** and **documents** (the sha256 of
  each text), and which subjects each document names;
- **runs** (``train``, ``retrain``, ``forget``, ``edit``, ``import``): the corpus, the parent model,
  the recipe, and the documents the run trained on or removed;
- **model versions** (the weights' sha256 from :func:`expunge.models.weights_sha256`), each made
  by one run from its parent.

Every row is written in the same transaction as an event of the tamper-evident log
(:mod:`expunge.ledger.log`) and the signed tree head after it: a row without its event, or an
event without its row, cannot be committed.

:meth:`Ledger.models_with_subject` answers the compliance officer's first question: which model
versions contain this subject's data, directly (a run trained on a document naming them) or
through a parent, and which runs in their lineage removed it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (JSON, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint, create_engine,
                        event, inspect, select, text)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from expunge.choices import TextEnum
from expunge.errors import ExpungeError
from expunge.ledger.log import (GENESIS, EventRow, LogCheck, SigningKey, TreeHead, event_body, event_hash,
                                merkle_root, verify_events)

__all__ = [
    "LEDGER_FILE",
    "KEY_FILE",
    "RunKind",
    "RequestState",
    "TRANSITIONS",
    "Ledger",
    "ModelLineage",
    "resolve_url",
]

LEDGER_FILE = "expunge-ledger.sqlite"
KEY_FILE = "expunge-ledger.key"
APPLICATION_ID = "expunge-ledger"


class RunKind(TextEnum):
    TRAIN = "train"
    RETRAIN = "retrain"
    FORGET = "forget"
    EDIT = "edit"
    IMPORT = "import"


class RequestState(TextEnum):
    """Where a deletion request stands. Every change is an event of the log."""

    RECEIVED = "received"  # recorded, not yet resolved to documents
    LOCATED = "located"  # its documents are known (provenance, or a backdoor's search)
    REMOVED = "removed"  # a model without them was written (unlearned, or retrained)
    VERIFIED = "verified"  # a removal was verified: forgotten, against the evidence recorded
    CERTIFIED = "certified"  # a certificate was issued for a verified removal
    FAILED = "failed"  # a removal was verified and found wanting (or could not be made)
    FALLBACK = "fallback"  # an output guard stands in while removal is not verified


# Which state may follow which. A failed verification may be answered by another removal, by the
# guard, or by the verification of another removal already made (one request, several attempts:
# the state follows the latest verification); a verified removal by its certificate, or by a newer
# removal (which must be verified again). Certified needs verified, always.
# The guard (``expunge guard build``) may stand in before any verification too: a located request
# whose removal has not been made yet, or a removal not yet verified, is exactly the "removal not
# verified" case the guard exists for, and refusing FALLBACK there would leave the outputs
# unguarded until a verification fails. A verified (or certified) request needs no fallback.
TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    RequestState.RECEIVED: frozenset({RequestState.LOCATED, RequestState.FAILED}),
    RequestState.LOCATED: frozenset({RequestState.REMOVED, RequestState.FAILED, RequestState.FALLBACK}),
    RequestState.REMOVED: frozenset({RequestState.REMOVED, RequestState.VERIFIED, RequestState.FAILED,
                                     RequestState.FALLBACK}),
    RequestState.VERIFIED: frozenset({RequestState.CERTIFIED, RequestState.REMOVED, RequestState.VERIFIED,
                                      RequestState.FAILED}),
    RequestState.FAILED: frozenset({RequestState.REMOVED, RequestState.FALLBACK, RequestState.FAILED,
                                    RequestState.VERIFIED}),
    RequestState.FALLBACK: frozenset({RequestState.REMOVED, RequestState.VERIFIED}),
    RequestState.CERTIFIED: frozenset({RequestState.REMOVED}),
}


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """One row that says "this database is an expunge ledger" (a foreign database lacks it)."""

    __tablename__ = "expunge_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Corpus(Base):
    __tablename__ = "corpora"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))


class SubjectRow(Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("corpus_id", "subject_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    subject_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("corpus_id", "document_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    document_id: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(16))


class DocumentSubject(Base):
    __tablename__ = "document_subjects"
    document: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    subject: Mapped[int] = mapped_column(ForeignKey("subjects.id"), primary_key=True, index=True)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    corpus_id: Mapped[int | None] = mapped_column(ForeignKey("corpora.id"), nullable=True)
    parent_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON)
    documents_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32))


class RunDocument(Base):
    """A document a run used: ``trained`` (its training data) or ``removed`` (what it unlearned)."""

    __tablename__ = "run_documents"
    run: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    document: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    parent_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    created_at: Mapped[str] = mapped_column(String(32))


class ModelShardRow(Base):
    """Which shard of a sharded model version holds which subject (``expunge train --shards``),
    with that shard's adapter sha256 (None: the shard is empty)."""

    __tablename__ = "model_shards"
    __table_args__ = (UniqueConstraint("model_id", "subject_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    shard: Mapped[int] = mapped_column(Integer)
    subject_id: Mapped[str] = mapped_column(String(128), index=True)
    adapter_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RequestRow(Base):
    __tablename__ = "requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    corpus: Mapped[str] = mapped_column(String(64))
    targets: Mapped[list[str]] = mapped_column(JSON)
    documents_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))


class VerificationRow(Base):
    __tablename__ = "verifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.request_id"), index=True)
    model_sha256: Mapped[str] = mapped_column(String(64))
    original_sha256: Mapped[str] = mapped_column(String(64))
    oracle_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    forgotten: Mapped[str] = mapped_column(String(16))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(32))


class GuardEventRow(Base):
    """A generation the output guard blocked (its monitor log): which guard, at which stage, by
    which matcher, which target *id*, and the hashes of the prompt and output, never their text."""

    __tablename__ = "guard_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    guard_sha256: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16))
    matcher: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(256))
    score: Mapped[float] = mapped_column(Float)
    prompt_sha256: Mapped[str] = mapped_column(String(64))
    output_sha256: Mapped[str] = mapped_column(String(64))


class Event(Base):
    """An event of the log: ``body`` is the exact canonical bytes that were hashed."""

    __tablename__ = "events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(256))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    prev: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Head(Base):
    """A signed tree head: the Merkle root of the first ``size`` events."""

    __tablename__ = "tree_heads"
    size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(Text)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def resolve_url(db: str | os.PathLike[str] | None, workspace: str | os.PathLike[str] | None = None) -> str:
    """The ledger's URL: ``db`` as given (a URL, or a file path for SQLite), else the environment's
    ``EXPUNGE_DB``, else ``expunge-ledger.sqlite`` in ``workspace`` (default: the current directory)."""
    chosen = db if db is not None else os.environ.get("EXPUNGE_DB")
    if chosen is None:
        chosen = Path(workspace if workspace is not None else ".") / LEDGER_FILE
    chosen = str(chosen)
    if "://" in chosen:
        return chosen
    return f"sqlite:///{Path(chosen).expanduser().resolve()}"


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


@dataclass
class ModelLineage:
    """One model version that holds (or held) a subject's data, and how."""

    sha256: str
    path: str
    run_kind: str
    how: str  # "trained" (its own run trained on the subject's documents) or "inherited"
    through: list[str] = field(default_factory=list)  # the ancestors' hashes, nearest first
    removed_by: list[dict[str, Any]] = field(default_factory=list)  # runs in its lineage that removed them

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "path": self.path, "run_kind": self.run_kind, "how": self.how,
                "through": self.through, "removed_by": self.removed_by}


class Ledger:
    """An open ledger. ``Ledger.open(url)`` creates or upgrades it; ``create=False`` refuses a
    missing one. The signing key lives beside an SQLite file (``expunge-ledger.key``) unless
    ``key_path`` (or ``EXPUNGE_SIGNING_KEY``) says otherwise."""

    def __init__(self, url: str, engine: Engine, key: SigningKey) -> None:
        self.url, self.engine, self.key = url, engine, key

    # ----------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, url: str, *, key_path: str | os.PathLike[str] | None = None, create: bool = True,
             busy_timeout: float = 30.0) -> Ledger:
        path = _sqlite_path(url)
        if path is not None:
            if not path.exists() and not create:
                raise ExpungeError(f"no ledger at {path}",
                                   "give the ledger's location with --db, or run a command that records to it first")
            if path.exists() and path.is_dir():
                raise ExpungeError(f"the ledger path {path} is a directory", f"give a file, e.g. {path / LEDGER_FILE}")
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = _engine(url, busy_timeout)
        where = str(path) if path is not None else _safe_url(url)
        try:
            _check_not_foreign(engine, where)
            _upgrade(engine, where)
        except OperationalError as exc:
            raise _database_error(exc, where) from None
        except DatabaseError as exc:
            raise ExpungeError(f"{where} is not a database expunge can read ({_first_line(exc)})",
                               "point --db at an expunge ledger, or at a new file to start one") from None
        key_file = key_path or os.environ.get("EXPUNGE_SIGNING_KEY")
        if key_file is None:
            if path is None:
                raise ExpungeError(f"no signing key given for the ledger at {where}",
                                   "set EXPUNGE_SIGNING_KEY (or --key) to the path of its Ed25519 key")
            key_file = path.with_name(KEY_FILE)
        if not Path(key_file).exists() and _has_heads(engine):
            # A new key would sign heads that the old ones do not chain with: refuse, do not guess.
            raise ExpungeError(f"the signing key {key_file} of the ledger at {where} is missing",
                               "restore the key file (or point --key / EXPUNGE_SIGNING_KEY at it)")
        return cls(url, engine, SigningKey.load_or_create(key_file))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed at the end of the block, rolled back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                with session.begin():
                    if self.engine.dialect.name != "sqlite":  # (SQLite: BEGIN IMMEDIATE, see _engine)
                        session.execute(text("LOCK TABLE events IN EXCLUSIVE MODE"))
                    yield session
            except OperationalError as exc:
                raise _database_error(exc, self.where) from None

    @property
    def where(self) -> str:
        path = _sqlite_path(self.url)
        return str(path) if path is not None else _safe_url(self.url)

    # ----------------------------------------------------------------------------- the log

    def append(self, session: Session, kind: str, ref: str, payload: dict[str, Any]) -> Event:
        """Append an event and sign the new tree head, inside ``session``'s transaction."""
        last = session.scalars(select(Event).order_by(Event.seq.desc()).limit(1)).first()
        seq = 0 if last is None else last.seq + 1
        prev = GENESIS if last is None else last.hash
        body = event_body(seq, _now(), kind, ref, payload, prev)
        row = Event(seq=seq, kind=kind, ref=ref, body=body, prev=prev, hash=event_hash(body))
        session.add(row)
        session.flush()
        leaves = list(session.scalars(select(Event.hash).order_by(Event.seq)))
        head = self.key.sign(len(leaves), merkle_root(leaves), _now())
        session.add(Head(size=head.size, root=head.root, created_at=head.created_at, key_id=head.key_id,
                         signature=head.signature))
        return row

    def rows(self) -> tuple[list[EventRow], list[TreeHead]]:
        with Session(self.engine) as session:
            events = [EventRow(e.seq, bytes(e.body), e.prev, e.hash)
                      for e in session.scalars(select(Event).order_by(Event.seq))]
            heads = [TreeHead(h.size, h.root, h.created_at, h.key_id, h.signature)
                     for h in session.scalars(select(Head).order_by(Head.size))]
        return events, heads

    def verify(self, public_key: Any = None, expect_head: TreeHead | None = None) -> LogCheck:
        """Recompute the chain and every signed head (:func:`expunge.ledger.log.verify_events`)."""
        events, heads = self.rows()
        return verify_events(events, heads, public_key or self.key.public, expect_head)

    def head(self) -> TreeHead | None:
        with Session(self.engine) as session:
            h = session.scalars(select(Head).order_by(Head.size.desc()).limit(1)).first()
            return None if h is None else TreeHead(h.size, h.root, h.created_at, h.key_id, h.signature)

    # ----------------------------------------------------------------------------- provenance

    def record_corpus(self, session: Session, world: Any) -> Corpus:
        """The world's subjects and documents (by content hash), once per fingerprint."""
        found = session.scalars(select(Corpus).where(Corpus.fingerprint == world.fingerprint)).first()
        if found is not None:
            return found
        corpus = Corpus(fingerprint=world.fingerprint, source=world.source, path=str(world.path or ""),
                        created_at=_now())
        session.add(corpus)
        session.flush()
        subjects = {s.id: SubjectRow(corpus_id=corpus.id, subject_id=s.id, kind=s.kind) for s in world.subjects}
        session.add_all(subjects.values())
        documents = [DocumentRow(corpus_id=corpus.id, document_id=d.id, split=d.split,
                                 sha256=hashlib.sha256((d.prompt + "\x00" + d.text).encode("utf-8")).hexdigest())
                     for d in world.documents]
        session.add_all(documents)
        session.flush()
        session.add_all(DocumentSubject(document=row.id, subject=subjects[s].id)
                        for row, d in zip(documents, world.documents) for s in d.subjects if s in subjects)
        self.append(session, "corpus.recorded", f"corpus:{world.fingerprint}",
                    {"fingerprint": world.fingerprint, "source": world.source, "subjects": len(subjects),
                     "documents": len(documents)})
        return corpus

    def record_model(self, session: Session, *, kind: RunKind, world: Any | None, sha256: str, path: str,
                     parent: str | None, recipe: dict[str, Any], trained: Iterable[str] = (),
                     removed: Iterable[str] = (), request: Any = None,
                     shards: Mapping[str, tuple[int, str | None]] | None = None) -> ModelVersion:
        """A run and the model version it made, with the documents it trained on and removed (ids
        in ``world``), for ``request`` (a :class:`expunge.records.DeletionRequest`, recorded first
        if the ledger does not have it). ``shards`` (a sharded model): subject id -> (shard, that
        shard's adapter sha256). Recording the same version again returns the row there."""
        found = session.scalars(select(ModelVersion).where(ModelVersion.sha256 == sha256)).first()
        if found is not None:
            return found
        corpus = self.record_corpus(session, world) if world is not None else None
        request_id = None if request is None else request.id
        if request is not None:
            self.record_request(session, request)
        ids = {"trained": sorted(set(trained)), "removed": sorted(set(removed))}
        digest = hashlib.sha256("\n".join(f"{r}:{d}" for r in ids for d in ids[r]).encode()).hexdigest()
        run = Run(kind=str(kind), corpus_id=corpus.id if corpus else None, parent_sha256=parent, request_id=request_id,
                  recipe=recipe, documents_sha256=digest, created_at=_now())
        session.add(run)
        session.flush()
        if corpus is not None:
            rows = {doc: pk for doc, pk in session.execute(select(DocumentRow.document_id, DocumentRow.id)
                                                           .where(DocumentRow.corpus_id == corpus.id))}
            unknown = [d for r in ids for d in ids[r] if d not in rows]
            if unknown:
                raise ExpungeError(f"the run names documents that are not in world {world.fingerprint}: {unknown[:3]}",
                                   "record the run against the world it used")
            session.add_all(RunDocument(run=run.id, document=rows[d], role=r) for r in ids for d in ids[r])
        model = ModelVersion(sha256=sha256, path=path, parent_sha256=parent, run_id=run.id, created_at=_now())
        session.add(model)
        session.flush()
        detail = {"sha256": sha256, "parent": parent, "run": str(kind), "path": path,
                  "corpus": world.fingerprint if world is not None else None, "request": request_id,
                  "documents_sha256": digest, "trained": len(ids["trained"]), "removed": len(ids["removed"])}
        if shards:
            session.add_all(ModelShardRow(model_id=model.id, shard=shard, subject_id=subject, adapter_sha256=adapter)
                            for subject, (shard, adapter) in sorted(shards.items()))
            detail["shards_sha256"] = hashlib.sha256("\n".join(
                f"{s}:{k}:{a or '-'}" for s, (k, a) in sorted(shards.items())).encode()).hexdigest()
        self.append(session, "model.recorded", f"model:{sha256}", detail)
        if request_id is not None and kind in (RunKind.FORGET, RunKind.RETRAIN):
            # Unlearning and retraining are both removals (approximate and exact); the request
            # moves on once the version that carries it is in the log.
            self.transition(session, request_id, RequestState.REMOVED, {"model": sha256, "run": str(kind)})
        return model

    # ----------------------------------------------------------------------------- requests

    def record_request(self, session: Session, request: Any) -> RequestRow:
        """A deletion request, received and located (its documents are resolved when it is made and
        checked again whenever it is loaded); recording it again returns the row already there."""
        found = session.scalars(select(RequestRow).where(RequestRow.request_id == request.id)).first()
        if found is not None:
            return found
        digest = hashlib.sha256("\n".join(sorted(request.document_ids)).encode()).hexdigest()
        now = _now()
        row = RequestRow(request_id=request.id, kind=request.kind, corpus=request.world_fingerprint,
                         targets=list(request.targets), documents_sha256=digest, state=str(RequestState.RECEIVED),
                         created_at=now, updated_at=now)
        session.add(row)
        self.append(session, "request.received", f"request:{request.id}",
                    {"kind": request.kind, "targets": list(request.targets), "corpus": request.world_fingerprint,
                     "basis": request.basis})
        self.transition(session, request.id, RequestState.LOCATED,
                        {"documents": len(request.document_ids), "documents_sha256": digest})
        return row

    def transition(self, session: Session, request_id: str, state: RequestState, detail: dict[str, Any]) -> None:
        """Move a request to ``state`` (an event); a move the lifecycle does not allow is refused."""
        row = session.scalars(select(RequestRow).where(RequestRow.request_id == request_id)).first()
        if row is None:
            raise ExpungeError(f"request {request_id} is not in the ledger {self.where}",
                               "record it first: `expunge request … --db` (or the command that made the file)")
        current = RequestState(row.state)
        if state not in TRANSITIONS[current]:
            allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
            raise ExpungeError(f"request {request_id} is {current}: it cannot become {state} (allowed: {allowed})",
                               "follow the lifecycle: received, located, removed, verified, certified")
        row.state, row.updated_at = str(state), _now()
        self.append(session, f"request.{state}", f"request:{request_id}", {"from": str(current), **detail})

    def record_verification(self, session: Session, request_id: str, *, model: str, original: str,
                            oracle: str | None, forgotten: str, summary: dict[str, Any]) -> None:
        """A verification of one model against a request, with the evidence a certificate cites;
        the request becomes verified (forgotten) or failed (anything else) where its state allows,
        else the verification is logged and the state stays."""
        session.add(VerificationRow(request_id=request_id, model_sha256=model, original_sha256=original,
                                    oracle_sha256=oracle, forgotten=forgotten, summary=summary, created_at=_now()))
        digest = hashlib.sha256(json.dumps(summary, sort_keys=True, default=str).encode()).hexdigest()
        detail = {"model": model, "forgotten": forgotten, "evidence_sha256": digest}
        state = RequestState.VERIFIED if forgotten == "yes" else RequestState.FAILED
        row = session.scalars(select(RequestRow).where(RequestRow.request_id == request_id)).one()
        if state in TRANSITIONS[RequestState(row.state)]:
            self.transition(session, request_id, state, detail)
        else:
            # A model whose removal the ledger never saw (made before it, or elsewhere): the evidence
            # is kept, the request's state is not moved by it.
            self.append(session, "request.verification", f"request:{request_id}",
                        {**detail, "state": row.state, "note": "no recorded removal: state unchanged"})

    def requests(self) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            return [{"request_id": r.request_id, "kind": r.kind, "state": r.state, "targets": r.targets,
                     "corpus": r.corpus, "created_at": r.created_at, "updated_at": r.updated_at}
                    for r in session.scalars(select(RequestRow).order_by(RequestRow.id))]

    # ----------------------------------------------------------------------------- the guard's monitor

    def record_guard_block(self, session: Session, *, request_id: str | None, guard_sha256: str, stage: str,
                           matcher: str, target: str, score: float, prompt_sha256: str,
                           output_sha256: str) -> GuardEventRow:
        """A blocked generation (:mod:`expunge.guard`): its row and a ``guard.blocked`` event, in
        ``session``'s transaction. ``target`` is a target's id; no text is ever stored."""
        row = GuardEventRow(created_at=_now(), request_id=request_id, guard_sha256=guard_sha256, stage=stage,
                            matcher=matcher, target=target, score=float(score), prompt_sha256=prompt_sha256,
                            output_sha256=output_sha256)
        session.add(row)
        self.append(session, "guard.blocked", f"request:{request_id}" if request_id else f"guard:{guard_sha256}",
                    {"guard_sha256": guard_sha256, "stage": stage, "matcher": matcher, "target": target,
                     "score": float(score), "prompt_sha256": prompt_sha256, "output_sha256": output_sha256})
        return row

    def guard_events(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """The guard's monitor log, oldest first (one request's with ``request_id``)."""
        query = select(GuardEventRow).order_by(GuardEventRow.id)
        if request_id is not None:
            query = query.where(GuardEventRow.request_id == request_id)
        with Session(self.engine) as session:
            return [{"id": r.id, "created_at": r.created_at, "request_id": r.request_id,
                     "guard_sha256": r.guard_sha256, "stage": r.stage, "matcher": r.matcher, "target": r.target,
                     "score": r.score, "prompt_sha256": r.prompt_sha256, "output_sha256": r.output_sha256}
                    for r in session.scalars(query)]

    def model_shards(self, sha256: str) -> dict[str, dict[str, Any]]:
        """Which shard of the sharded model version ``sha256`` holds which subject: subject id ->
        ``{"shard", "adapter_sha256"}`` ({} for a version that is not sharded or not recorded)."""
        query = (select(ModelShardRow).join(ModelVersion, ModelShardRow.model_id == ModelVersion.id)
                 .where(ModelVersion.sha256 == sha256).order_by(ModelShardRow.subject_id))
        with Session(self.engine) as session:
            return {r.subject_id: {"shard": r.shard, "adapter_sha256": r.adapter_sha256} for r in session.scalars(query)}

    def request_state(self, request_id: str) -> RequestState | None:
        """Where ``request_id`` stands, or None when the ledger does not hold it."""
        with Session(self.engine) as session:
            state = session.scalars(select(RequestRow.state).where(RequestRow.request_id == request_id)).first()
        return None if state is None else RequestState(state)

    def models_with_subject(self, subject_id: str) -> list[ModelLineage]:
        """Every model version whose data includes ``subject_id``'s documents: trained on them by
        its own run, or descended from such a version; with the runs in its lineage that removed
        them. A removal is a claim to be verified, not an absence: the version is still listed."""
        with Session(self.engine) as session:
            docs = select(DocumentSubject.document).join(SubjectRow, SubjectRow.id == DocumentSubject.subject) \
                .where(SubjectRow.subject_id == subject_id)
            runs_by_role: dict[str, set[int]] = {}
            for run_id, role in session.execute(select(RunDocument.run, RunDocument.role)
                                                .where(RunDocument.document.in_(docs)).distinct()):
                runs_by_role.setdefault(role, set()).add(run_id)
            models = list(session.scalars(select(ModelVersion)))
            runs = {r.id: r for r in session.scalars(select(Run))}
        by_sha = {m.sha256: m for m in models}
        out: list[ModelLineage] = []
        for model in models:
            chain, cursor = [], model
            while cursor is not None:
                chain.append(cursor)
                cursor = by_sha.get(cursor.parent_sha256) if cursor.parent_sha256 else None
            trained_at = next((i for i, m in enumerate(chain) if m.run_id in runs_by_role.get("trained", set())), None)
            if trained_at is None:
                continue
            removals = [{"sha256": m.sha256, "run": runs[m.run_id].kind, "request": runs[m.run_id].request_id}
                        for m in chain[:trained_at] if m.run_id in runs_by_role.get("removed", set())]
            out.append(ModelLineage(model.sha256, model.path, runs[model.run_id].kind if model.run_id else "",
                                    "trained" if trained_at == 0 else "inherited",
                                    [m.sha256 for m in chain[1 : trained_at + 1]], removals))
        return sorted(out, key=lambda m: (m.how != "trained", m.sha256))

    def subject_known(self, subject_id: str) -> bool:
        with Session(self.engine) as session:
            return session.scalars(select(SubjectRow.id).where(SubjectRow.subject_id == subject_id)).first() is not None


# --------------------------------------------------------------------------------- internals


def _engine(url: str, busy_timeout: float) -> Engine:
    try:
        sqlite = url.startswith("sqlite")
        engine = create_engine(url, connect_args={"timeout": busy_timeout}) if sqlite else create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ExpungeError(f"cannot open the ledger database {_safe_url(url)}: {_first_line(exc)}",
                           "check --db: a file path, sqlite:///PATH or postgresql://USER@HOST/DB") from None
    if engine.dialect.name == "sqlite":
        # pysqlite begins transactions late and by itself; take that over and BEGIN IMMEDIATE, so
        # that a writer holds the lock from its first statement and two writers queue (for up to
        # ``busy_timeout``) instead of both reading the same log tail.
        @event.listens_for(engine, "connect")
        def _connect(connection: Any, _record: Any) -> None:
            connection.isolation_level = None
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _has_heads(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM tree_heads")).scalar() > 0


def _check_not_foreign(engine: Engine, where: str) -> None:
    tables = set(inspect(engine).get_table_names())
    if tables and "expunge_meta" not in tables:
        raise ExpungeError(f"{where} is a database but not an expunge ledger (it has tables: "
                           f"{', '.join(sorted(tables)[:5])})", "point --db at an expunge ledger, or at a new file")
    if "expunge_meta" in tables:
        with engine.connect() as conn:
            app = conn.execute(text("SELECT value FROM expunge_meta WHERE key = 'application'")).scalar()
        if app != APPLICATION_ID:
            raise ExpungeError(f"{where} is not an expunge ledger", "point --db at an expunge ledger")


def _upgrade(engine: Engine, where: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as conn:
        current = None
        if inspect(conn).has_table("alembic_version"):
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if current is not None and current not in heads and not _known_revision(config, current):
        raise ExpungeError(f"the ledger {where} was written by a newer expunge (schema revision {current})",
                           "upgrade expunge (pip install -U expunge) to read it")
    if current in heads:
        return
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except CommandError as exc:
        raise ExpungeError(f"cannot upgrade the ledger {where}: {exc}", "restore the ledger from a backup") from None


def _known_revision(config: Any, revision: str) -> bool:
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(config).get_revision(revision) is not None
    except Exception:  # noqa: BLE001 (alembic raises several kinds for an unknown revision)
        return False


def _database_error(exc: OperationalError, where: str) -> ExpungeError:
    message = _first_line(exc)
    if "locked" in message or "could not obtain lock" in message:
        return ExpungeError(f"the ledger {where} is locked by another process ({message})",
                            "wait for the other expunge command to finish, then run this one again")
    return ExpungeError(f"the ledger {where} cannot be used: {message}",
                        "check that the database exists, is reachable and that you may write to it")


def _first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc)
    return text_.splitlines()[0] if text_ else type(exc).__name__


def _safe_url(url: str) -> str:
    """The URL without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("@")[-1]
