"""The worker: takes the queue's jobs in order and serves each request end to end.

A deployment (:class:`Deployment`, ``deployment.json`` in the service's workspace) is one world
and the model it serves. Each ``forget`` job:

1. starts from the deployment's current model: the output of the last job that finished, else
   the deployment's model;
2. unlearns the request's documents with the deployment's method into
   ``models/job-NNNNNN`` (the version is recorded in the ledger, and the request becomes
   ``removed``, before its directory appears);
3. verifies the result without an oracle (never-seen data, chance and the original are the
   references), and records the verdict: the request becomes ``verified`` or ``failed``;
4. certifies a verified request: the signed certificate is kept in the job's result, in the same
   transaction that ends the job; a failed one gets an output guard (:mod:`expunge.guard`) and
   becomes ``fallback``.

A worker can die anywhere (``kill -9``). Every step first asks the ledger whether it was done
already (a version of this request made from this job's starting model; a verification of that
version; the certificate), so the next worker to claim the job finishes it without doing any
step twice. While it works it renews its lease from a background thread; a worker that lost its
lease (it stalled longer than the lease) stops before writing anything more.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from expunge.errors import ExpungeError
from expunge.ledger.store import TRANSITIONS, Ledger, ModelVersion, RequestRow, RequestState, Run, VerificationRow
from expunge.records import read_json, write_json_atomic
from expunge.service.queue import MAX_ATTEMPTS, Job, JobState, LeaseLost, Route, claim, fail, finish, heartbeat, release
from expunge.service.tables import JobRow

__all__ = ["Deployment", "DEPLOYMENT_FILE", "load_deployment", "save_deployment", "current_model", "process_job",
           "run_worker"]

DEPLOYMENT_FILE = "deployment.json"


@dataclass(frozen=True)
class Deployment:
    """What a service serves and how it removes.

    Attributes:
        workspace: the service's directory (models, request files, ``deployment.json``).
        world: the world directory whose subjects and documents requests name.
        model: the model the deployment started from (never modified; each request's removal
            writes a new version under ``workspace/models``).
        method: the unlearning method of the ``forget`` route (see ``expunge methods``).
        options: the method's options (``key=value`` strings, as ``expunge forget -o``).
        verify: verify each removal (without an oracle) and certify what is verified forgotten.
        max_facts: bound the verification's cost: facts scored per set (None: all).
        policy: a verdict policy TOML file (see ``expunge policy``); None: the built-in policy.
        guard_fallback: where a removal is verified and found wanting, put an output guard in
            front of the request (``guards/REQUEST.json``; the request becomes ``fallback``).
    """

    workspace: str
    world: str
    model: str
    method: str = "simnpo"
    options: dict[str, str] = field(default_factory=dict)
    verify: bool = True
    max_facts: int | None = None
    policy: str | None = None
    guard_fallback: bool = True

    @property
    def models_dir(self) -> Path:
        return Path(self.workspace) / "models"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_deployment(deployment: Deployment) -> Path:
    """Write ``deployment.json``; an existing one must say the same (a workspace serves one
    deployment: its models form one chain)."""
    path = Path(deployment.workspace) / DEPLOYMENT_FILE
    if path.exists():
        existing = load_deployment(deployment.workspace)
        if existing != deployment:
            changed = [k for k, v in deployment.to_dict().items() if existing.to_dict().get(k) != v]
            raise ExpungeError(f"{path} serves another deployment (differs in: {', '.join(changed)})",
                               "use a new --workspace for a new deployment, or leave those options out")
        return path
    write_json_atomic(path, deployment.to_dict())
    return path


def load_deployment(workspace: str | os.PathLike[str]) -> Deployment:
    path = Path(workspace) / DEPLOYMENT_FILE
    if not path.is_file():
        raise ExpungeError(f"no deployment in {workspace} ({DEPLOYMENT_FILE} is missing)",
                           "start it once with `expunge serve --workspace DIR --world DIR --model DIR`")
    data = read_json(path, "deployment file")
    try:
        return Deployment(**data)
    except TypeError as exc:
        raise ExpungeError(f"{path} is not a deployment file ({exc})", "start a new deployment in a new workspace") \
            from None


def current_model(ledger: Ledger, deployment: Deployment) -> tuple[str, str | None]:
    """The directory the next removal starts from, and the request that made it (None: the
    deployment's own model)."""
    with Session(ledger.engine) as session:  # the newest finished job only, not the whole queue
        last = session.scalars(select(JobRow).where(JobRow.state == JobState.DONE)
                               .order_by(JobRow.id.desc()).limit(1)).first()
        if last is None or not (last.result or {}).get("model"):
            return deployment.model, None
        return last.result["model"]["path"], last.request_id


def _model_sha(path: str) -> str:
    from expunge.models.io import read_model_record

    return str(read_model_record(path)["sha256"])


class _Lease:
    """Renews the job's lease every third of its length until stopped; remembers a lost lease."""

    def __init__(self, ledger: Ledger, job: Job, owner: str, seconds: float) -> None:
        self.ledger, self.job, self.owner, self.seconds = ledger, job, owner, seconds
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job.id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                heartbeat(self.ledger, self.job.id, self.owner, self.seconds)
            except LeaseLost as exc:
                self.lost = exc
                return
            except Exception:  # noqa: BLE001 (a busy database: try again at the next beat)
                continue

    def check(self) -> None:
        if self.lost is not None:
            raise self.lost


def process_job(ledger: Ledger, deployment: Deployment, job: Job, owner: str, *, lease_seconds: float = 60.0,
                log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Serve ``job``'s request (see the module's docstring); returns the job's result. Steps a
    killed worker finished are found in the ledger and not done again."""
    if job.route is not Route.FORGET:
        raise ExpungeError(f"job {job.id} has route {job.route}, which this worker does not serve",
                           f"routes served: {', '.join(Route)}")
    from expunge.ledger.recording import recording
    from expunge.methods.unlearn import unlearn

    request = job.deletion_request
    workdir = Path(deployment.workspace) / "jobs" / f"job-{job.id:06d}"
    workdir.mkdir(parents=True, exist_ok=True)
    request_file = workdir / "request.json"
    if not request_file.exists():
        write_json_atomic(request_file, job.request)
    start_dir, _ = current_model(ledger, deployment)
    start_sha = _model_sha(start_dir)
    out = deployment.models_dir / f"job-{job.id:06d}"
    with _Lease(ledger, job, owner, lease_seconds) as lease:
        # 1. Removal: a version of this request from this start, already on disk, is this job's.
        made = _removal(ledger, request.id, start_sha)
        if made is not None and Path(made.path).is_dir() and _model_sha(made.path) == made.sha256:
            log(f"job {job.id}: removal found ({made.sha256[:12]}), not redone")
            out = Path(made.path)
        else:
            if out.exists():  # a complete directory whose row says otherwise: never written over
                raise ExpungeError(f"{out} exists but the ledger has no removal of {request.id} there",
                                   "move that directory away, then let the job be retried")
            log(f"job {job.id}: unlearning {request.id} from {start_sha[:12]} with {deployment.method}")
            with recording(ledger):
                unlearn(start_dir, deployment.world, request_file, out, method=deployment.method,
                        options=dict(deployment.options), progress=False)
        lease.check()
        sha = _model_sha(str(out))
        result: dict[str, Any] = {"model": {"path": str(out), "sha256": sha}, "parent_sha256": start_sha,
                                  "method": deployment.method}
        # 2. Verification of that version, unless the ledger has it.
        if deployment.verify:
            verdict = _verification(ledger, request.id, sha)
            if verdict is None:
                log(f"job {job.id}: verifying {sha[:12]}")
                verdict = _verify(ledger, deployment, start_dir, out, request_file, request, lease)
            result["forgotten"] = verdict
        lease.check()
        # 3. A removal found wanting gets the guard in front of it (the file first: a guard that
        #    exists without its transition is made again identically, never half).
        guard_file = Path(deployment.workspace) / "guards" / f"{request.id}.json"
        if deployment.guard_fallback and result.get("forgotten") not in (None, "yes") and not guard_file.exists():
            from expunge.guard import build_guard_spec, write_guard_spec
            from expunge.worlds import load_world

            write_guard_spec(build_guard_spec(load_world(deployment.world), request), guard_file)
        lease.check()
        # 4. The certificate, or the fallback, in the transaction that ends the job.
        with ledger.session() as session:
            state = RequestState(session.scalars(select(RequestRow.state)
                                                 .where(RequestRow.request_id == request.id)).one())
            if state is RequestState.VERIFIED:
                from expunge.ledger.certificate import issue_certificate_in

                result["certificate"] = issue_certificate_in(ledger, session, request.id, sha)
                state = RequestState.CERTIFIED
            elif guard_file.exists() and state is not RequestState.FALLBACK \
                    and RequestState.FALLBACK in TRANSITIONS[state]:
                from expunge.guard import load_guard_spec

                spec = load_guard_spec(guard_file)
                ledger.transition(session, request.id, RequestState.FALLBACK,
                                  {"guard_sha256": spec.sha256, **spec.counts()})
                state = RequestState.FALLBACK
            if guard_file.exists():
                result["guard"] = str(guard_file)
            result["state"] = str(state)
            finish(ledger, job.id, owner, result, session)
    return result


def _removal(ledger: Ledger, request_id: str, parent: str) -> ModelVersion | None:
    with Session(ledger.engine) as session:
        return session.scalars(select(ModelVersion).join(Run, Run.id == ModelVersion.run_id)
                               .where(Run.request_id == request_id, ModelVersion.parent_sha256 == parent)
                               .order_by(ModelVersion.id.desc())).first()


def _verification(ledger: Ledger, request_id: str, sha: str) -> str | None:
    with Session(ledger.engine) as session:
        return session.scalars(select(VerificationRow.forgotten).where(
            VerificationRow.request_id == request_id, VerificationRow.model_sha256 == sha)).first()


def _verify(ledger: Ledger, deployment: Deployment, original: str, out: Path, request_file: Path, request: Any,
            lease: _Lease) -> str:
    from expunge.pipeline import record_verification
    from expunge.verify.policy import load_policy
    from expunge.verify.suite import VerifyConfig, verify_models

    config = VerifyConfig(policy=load_policy(Path(deployment.policy) if deployment.policy else None),
                          max_facts_per_set=deployment.max_facts)
    verification = verify_models({deployment.method: out}, original, None, deployment.world, request_file,
                                 config=config)
    lease.check()  # a worker that lost the job records nothing more
    record_verification(ledger, verification, request)
    return str(verification.verdicts[deployment.method].forgotten.value)


def run_worker(ledger: Ledger, deployment: Deployment, *, once: bool = False, poll_seconds: float = 1.0,
               lease_seconds: float = 60.0, max_attempts: int = MAX_ATTEMPTS, owner: str | None = None,
               stop: threading.Event | None = None, log: Callable[[str], None] = lambda message: None) -> int:
    """Drain the queue: claim the oldest job, serve it, repeat; ``once``: return when nothing is
    left to claim. Returns the number of jobs this worker ended (done or failed)."""
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    stop = stop or threading.Event()
    ended = 0
    while not stop.is_set():
        job = claim(ledger, owner, lease_seconds, max_attempts)
        if job is None:
            if once:
                return ended
            stop.wait(poll_seconds)
            continue
        log(f"job {job.id}: claimed ({job.request_id}, attempt {job.attempts})")
        try:
            result = process_job(ledger, deployment, job, owner, lease_seconds=lease_seconds, log=log)
            log(f"job {job.id}: done, request {result.get('state')}")
        except KeyboardInterrupt:
            # Told to stop (Ctrl-C, SIGTERM from `expunge serve`): hand the job back at once.
            log(f"job {job.id}: stopping; the job goes back to the queue")
            try:
                release(ledger, job.id, owner)
            except LeaseLost:
                pass
            raise
        except LeaseLost as exc:
            log(f"job {job.id}: {exc.problem}; left to the worker that holds it")
            continue
        except ExpungeError as exc:
            log(f"job {job.id}: failed: {exc.problem}")
            fail(ledger, job.id, owner, exc.one_line())
        except Exception as exc:  # noqa: BLE001 (the job fails with its error; the worker goes on)
            log(f"job {job.id}: failed: {type(exc).__name__}: {exc}")
            fail(ledger, job.id, owner, f"{type(exc).__name__}: {exc}")
        ended += 1
    return ended

