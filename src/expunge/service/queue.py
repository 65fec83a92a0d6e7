"""The job queue, kept in the ledger database: one job per deletion request, drained in order.

Why a table and not a broker: every change of a job is one transaction that also appends the log
event recording it (:meth:`expunge.ledger.store.Ledger.session` takes the log's write lock), so the
queue and the record cannot disagree, and nothing but the database has to survive a crash.

Why strictly in order, one job at a time: each removal starts from the model the previous one
wrote (a deployment's model is a chain of versions), so job N+1 cannot start before job N ends.
A worker claims the oldest unfinished job under a lease (``lease_expires``, renewed by
:func:`heartbeat`); a worker killed mid-job stops renewing, and once the lease runs out the next
worker claims the same job again. What the dead worker finished is read back from the ledger
(:mod:`expunge.service.worker`), so a step is never done twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from expunge.choices import TextEnum
from expunge.errors import ExpungeError
from expunge.ledger.store import TRANSITIONS, Ledger, RequestRow, RequestState, _now
from expunge.records import DeletionRequest, record_from_dict, record_to_dict
from expunge.service.tables import JobRow

__all__ = ["Route", "JobState", "Job", "DuplicateRequest", "LeaseLost", "enqueue", "claim", "heartbeat",
           "finish", "fail", "release", "jobs", "job_for", "queue_position"]

MAX_ATTEMPTS = 5  # claims of one job before it is failed: a job that kills its worker every time


class Route(TextEnum):
    """How a request is served. ``forget``: unlearn with the deployment's method from the
    deployment's current model, verify the result, and certify it where it is verified forgotten."""

    FORGET = "forget"


class JobState(TextEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class DuplicateRequest(ExpungeError):
    """The request is in the ledger already (the same targets of the same world)."""


class LeaseLost(ExpungeError):
    """The worker's lease ran out and another worker holds the job now."""


@dataclass(frozen=True)
class Job:
    id: int
    request_id: str
    route: Route
    state: JobState
    attempts: int
    submitted_by: str
    request: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    lease_owner: str | None = None

    @property
    def deletion_request(self) -> DeletionRequest:
        return record_from_dict(DeletionRequest, self.request, f"job {self.id}")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "request_id": self.request_id, "route": str(self.route), "state": str(self.state),
                "attempts": self.attempts, "submitted_by": self.submitted_by, "result": self.result,
                "error": self.error, "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at}


def _job(row: JobRow) -> Job:
    return Job(row.id, row.request_id, Route(row.route), JobState(row.state), row.attempts, row.submitted_by,
               row.request, row.result, row.error, row.created_at, row.started_at, row.finished_at, row.lease_owner)


def enqueue(ledger: Ledger, request: DeletionRequest, route: Route, submitted_by: str) -> Job:
    """Record ``request`` (received, located) and queue its job: one transaction, three events.
    A request the ledger has already is refused (:class:`DuplicateRequest`), whoever sent it."""
    with ledger.session() as session:
        if session.scalars(select(RequestRow.id).where(RequestRow.request_id == request.id)).first() is not None:
            raise DuplicateRequest(f"request {request.id} was submitted already (the same targets of the same world)",
                                   f"follow it with GET /api/requests/{request.id}")
        ledger.record_request(session, request)
        row = JobRow(request_id=request.id, route=str(route), request=record_to_dict(request),
                     state=str(JobState.QUEUED), submitted_by=submitted_by, attempts=0, created_at=_now())
        session.add(row)
        session.flush()
        ledger.append(session, "job.queued", f"job:{row.id}",
                      {"request": request.id, "route": str(route), "submitted_by": submitted_by})
        return _job(row)


def claim(ledger: Ledger, owner: str, lease_seconds: float, max_attempts: int = MAX_ATTEMPTS) -> Job | None:
    """The oldest unfinished job, leased to ``owner``; None while another worker's lease on it
    holds (the queue is a chain) or when nothing is queued. A job claimed ``max_attempts`` times
    without finishing (say, it runs its worker out of memory each time) is failed rather than
    tried forever, and the queue moves on."""
    while True:
        with ledger.session() as session:
            row = session.scalars(select(JobRow).where(JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]))
                                  .order_by(JobRow.id).limit(1)).first()
            if row is None:
                return None
            now = time.time()
            if row.state == JobState.RUNNING and (row.lease_expires or 0) > now:
                return None
            if row.attempts >= max_attempts:
                _fail(ledger, session, row, f"given up after {row.attempts} attempts, each ended without finishing "
                                            "(its worker was killed or lost its lease)")
                continue
            taken_over = row.lease_owner if row.state == JobState.RUNNING else None
            row.state, row.lease_owner, row.lease_expires = str(JobState.RUNNING), owner, now + lease_seconds
            row.attempts += 1
            row.started_at = row.started_at or _now()
            ledger.append(session, "job.claimed", f"job:{row.id}",
                          {"request": row.request_id, "attempt": row.attempts, "worker": owner,
                           **({"taken_over_from": taken_over} if taken_over else {})})
            return _job(row)


def release(ledger: Ledger, job_id: int, owner: str) -> None:
    """Give a job back to the queue unfinished (a worker told to stop): the next worker takes it at
    once instead of waiting for the lease to run out. What was done is kept (see the worker)."""
    with ledger.session() as session:
        row = _owned(session, job_id, owner)
        row.state, row.lease_owner, row.lease_expires = str(JobState.QUEUED), None, None
        ledger.append(session, "job.released", f"job:{job_id}", {"request": row.request_id, "worker": owner})


def heartbeat(ledger: Ledger, job_id: int, owner: str, lease_seconds: float) -> None:
    """Renew ``owner``'s lease on the job (no log event: a lease is not part of the record).
    Raises :class:`LeaseLost` when the job is no longer ``owner``'s."""
    with ledger.engine.begin() as conn:
        done = conn.execute(update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == owner,
                                                 JobRow.state == JobState.RUNNING)
                            .values(lease_expires=time.time() + lease_seconds)).rowcount
    if not done:
        raise LeaseLost(f"job {job_id} is no longer held by {owner}", "another worker took it over; stop this one")


def _owned(session: Session, job_id: int, owner: str) -> JobRow:
    row = session.get(JobRow, job_id)
    if row is None or row.lease_owner != owner or row.state != JobState.RUNNING:
        raise LeaseLost(f"job {job_id} is no longer held by {owner}", "another worker took it over; stop this one")
    return row


def finish(ledger: Ledger, job_id: int, owner: str, result: dict[str, Any], session: Session | None = None) -> None:
    """Mark the job done with its result (and its event), in ``session`` if given (so that the
    last step of the work and the job's end commit together)."""
    if session is None:
        with ledger.session() as own:
            finish(ledger, job_id, owner, result, own)
        return
    row = _owned(session, job_id, owner)
    row.state, row.result, row.finished_at, row.lease_expires = str(JobState.DONE), result, _now(), None
    ledger.append(session, "job.done", f"job:{job_id}", {"request": row.request_id, "attempt": row.attempts,
                                                         "state": _request_state(session, row.request_id)})


def fail(ledger: Ledger, job_id: int, owner: str, error: str) -> None:
    """Mark the job failed with its error; the request becomes failed where its lifecycle allows."""
    with ledger.session() as session:
        _fail(ledger, session, _owned(session, job_id, owner), error)


def _fail(ledger: Ledger, session: Session, row: JobRow, error: str) -> None:
    row.state, row.error, row.finished_at, row.lease_expires = str(JobState.FAILED), error[:2000], _now(), None
    current = RequestState(_request_state(session, row.request_id))
    if RequestState.FAILED in TRANSITIONS[current]:
        ledger.transition(session, row.request_id, RequestState.FAILED, {"job": row.id, "error": error[:500]})
    ledger.append(session, "job.failed", f"job:{row.id}", {"request": row.request_id, "attempt": row.attempts,
                                                           "error": error[:500]})


def _request_state(session: Session, request_id: str) -> str:
    return session.scalars(select(RequestRow.state).where(RequestRow.request_id == request_id)).one()


def jobs(ledger: Ledger, state: JobState | None = None, limit: int | None = None) -> list[Job]:
    with Session(ledger.engine) as session:
        query = select(JobRow).order_by(JobRow.id)
        if state is not None:
            query = query.where(JobRow.state == state)
        if limit is not None:
            query = query.limit(limit)
        return [_job(row) for row in session.scalars(query)]


def job_for(ledger: Ledger, request_id: str) -> Job | None:
    with Session(ledger.engine) as session:
        row = session.scalars(select(JobRow).where(JobRow.request_id == request_id)).first()
        return None if row is None else _job(row)


def queue_position(ledger: Ledger, job: Job) -> int | None:
    """How many unfinished jobs are ahead of ``job`` (None once it has ended)."""
    if job.state in (JobState.DONE, JobState.FAILED):
        return None
    with Session(ledger.engine) as session:
        return session.scalar(select(func.count(JobRow.id)).where(
            JobRow.id < job.id, JobRow.state.in_([JobState.QUEUED, JobState.RUNNING])))
