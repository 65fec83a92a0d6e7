"""Load on the deletion-request service: concurrent submissions, then the worker drains the queue.

A real uvicorn server (in this process's thread, the app as `expunge serve` builds it) on an
SQLite ledger (or `--db URL`). C clients each submit N/C requests (one training document each) and
read each one's status right after, all at once; p50 and p99 of both are reported. Then one worker
serves every job and the script checks: every submission recorded exactly once, served in job
order, each version made from the one before, the log verifies.

    python benchmarks/service_load.py [--requests 200] [--clients 20] [--no-process] [--db URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from expunge.ledger.store import KEY_FILE, Ledger, resolve_url
from expunge.pipeline import train_base
from expunge.service.app import ServiceConfig, create_app
from expunge.service.auth import create_token
from expunge.service.queue import JobState, jobs
from expunge.service.server import BackgroundServer
from expunge.service.worker import Deployment, run_worker, save_deployment
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--no-process", action="store_true", help="submit only; do not serve the jobs")
    parser.add_argument("--db", default=None)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="expunge-load-"))
    world, base = work / "world", work / "base"
    if not world.exists():
        build_privacy_world(world, PrivacyWorldConfig(seed=0, people=8))
    if not base.exists():
        train_base(world, base, preset="tiny", seed=0, progress=False)
    ledger = Ledger.open(args.db or resolve_url(str(work / f"ledger-{time.time_ns()}.sqlite")),
                         key_path=work / KEY_FILE)
    deployment = Deployment(workspace=str(work / f"svc-{time.time_ns()}"), world=str(world), model=str(base),
                            options={"max_steps": "2", "check_every": "2", "warmup_steps": "1"}, verify=False)
    Path(deployment.workspace).mkdir(parents=True)
    save_deployment(deployment)
    token = create_token(ledger, f"load-{time.time_ns()}", ["submit", "read"])
    documents = [d.id for d in load_world(world).training_documents()][: args.requests]
    submit_ms: list[float] = []
    status_ms: list[float] = []
    answers: dict[str, int] = {}

    def client(index: int, url: str) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            for document in documents[index :: args.clients]:
                t0 = time.perf_counter()
                answer = http.post("/api/requests", json={"documents": [document]})
                submit_ms.append((time.perf_counter() - t0) * 1000)
                answer.raise_for_status()
                answers[document] = answer.json()["job"]
                t0 = time.perf_counter()
                http.get(answer.json()["status"]).raise_for_status()
                status_ms.append((time.perf_counter() - t0) * 1000)

    app = create_app(ServiceConfig(ledger, deployment))
    started = time.perf_counter()
    with BackgroundServer(app) as server, ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(lambda i: client(i, server.url), range(args.clients)))
    wall = time.perf_counter() - started
    queued = jobs(ledger)
    once = len(queued) == len(documents) == len({j.request_id for j in queued}) == len(set(answers.values()))
    per_client_order = all([answers[d] for d in documents[i :: args.clients]]
                           == sorted(answers[d] for d in documents[i :: args.clients]) for i in range(args.clients))
    print(f"{len(documents)} submissions from {args.clients} clients in {wall:.1f} s "
          f"({ledger.engine.dialect.name} ledger)")
    print("\n| call | n | p50 (ms) | p99 (ms) | max (ms) |\n|---|---|---|---|---|")
    for name, values in (("submit (POST /api/requests)", submit_ms), ("status (GET /api/requests/{id})", status_ms)):
        print(f"| {name} | {len(values)} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} | "
              f"{max(values):.1f} |")
    print(f"\nrecorded exactly once: {once}; each client's submissions queued in its order: {per_client_order}")
    if not args.no_process:
        t0 = time.perf_counter()
        ended = run_worker(ledger, deployment, once=True)
        seconds = time.perf_counter() - t0
        served = jobs(ledger)
        order = [j.finished_at for j in served]
        in_order = order == sorted(order) and all(j.state is JobState.DONE for j in served)
        chain = all(served[i].result["parent_sha256"] == served[i - 1].result["model"]["sha256"]
                    for i in range(1, len(served)))
        kinds = [json.loads(e.body)["kind"] for e in ledger.rows()[0]]
        print(f"worker: {ended} jobs in {seconds:.1f} s ({seconds / max(ended, 1):.2f} s per job); all done, finished "
              f"in job order: {in_order}; each version made from the one before: {chain}; job.done events: "
              f"{kinds.count('job.done')}; the log verifies: {ledger.verify().ok}")


if __name__ == "__main__":
    main()
