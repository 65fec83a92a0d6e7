"""Running the service: the web app under uvicorn, and its workers as separate processes.

Workers are processes of their own (``expunge worker``), not threads of the web server: a removal
is minutes of CPU that must not stall the API, and a worker that dies (out of memory, ``kill -9``)
must not take the API with it. The server restarts a worker that exits; the job it held is taken
up again once its lease runs out (:mod:`expunge.service.queue`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from expunge.errors import ExpungeError
from expunge.ledger.store import Ledger
from expunge.service.worker import Deployment

__all__ = ["check_deployment", "serve", "worker_command", "BackgroundServer"]


def check_deployment(deployment: Deployment, ledger: Ledger) -> list[str]:
    """Every input of a deployment checked before anything starts; returns warnings to show."""
    from expunge import preflight
    from expunge.methods.registry import get_method
    from expunge.options import parse_pairs
    from expunge.recipe import is_pretrained

    preflight.world(Path(deployment.world))
    record = preflight.model(Path(deployment.model))
    preflight.policy(Path(deployment.policy) if deployment.policy else None)
    if deployment.max_facts is not None and deployment.max_facts < 1:
        raise ExpungeError(f"--max-facts {deployment.max_facts} is below 1", "give a positive number, or leave it out")
    pairs = parse_pairs([f"{k}={v}" for k, v in deployment.options.items()])
    get_method(deployment.method).make_config(pairs, pretrained=is_pretrained(record.get("recipe")))
    warnings = []
    sha = record.get("sha256")
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from expunge.ledger.store import ModelVersion

    with Session(ledger.engine) as session:
        known = sha is not None and session.scalars(select(ModelVersion.id).where(ModelVersion.sha256 == sha)).first()
    if not known:
        warnings.append(f"the model {deployment.model} is not in the ledger {ledger.where}: provenance queries will "
                        "list the versions the service makes, not what the model itself was trained on (train it "
                        "with `expunge train --db` to record that)")
    return warnings


def worker_command(workspace: str, db: str, key: str | None) -> list[str]:
    command = [sys.executable, "-m", "expunge.cli", "worker", "--workspace", workspace, "--db", db]
    return command + (["--key", key] if key else [])


def serve(app: object, host: str, port: int, *, workers: int, command: list[str],
          log: Callable[[str], None] = print) -> None:
    """Serve ``app`` on ``host:port`` with ``workers`` worker processes running ``command``, kept
    running (a worker that exits is started again) until the server stops."""
    import uvicorn

    stop = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []

    def supervise(index: int) -> None:
        delay = 1.0
        while not stop.is_set():
            started = time.monotonic()
            proc = subprocess.Popen(command, env={**os.environ, "EXPUNGE_WORKER_INDEX": str(index)})
            procs.append(proc)
            while proc.poll() is None and not stop.wait(0.5):
                pass
            if stop.is_set():
                return
            # A worker that dies at once (a broken deployment) is restarted ever more slowly.
            delay = 1.0 if time.monotonic() - started > 30 else min(delay * 2, 60.0)
            log(f"worker {index} exited with {proc.returncode}; starting it again in {delay:.0f} s")
            stop.wait(delay)

    threads = [threading.Thread(target=supervise, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")  # type: ignore[arg-type]
    finally:
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


class BackgroundServer:
    """``app`` under a real uvicorn server on a free local port, in a thread of this process: for
    tests, benchmarks and notebooks (``with BackgroundServer(app) as server: server.url``)."""

    def __init__(self, app: object, host: str = "127.0.0.1") -> None:
        import socket

        import uvicorn

        with socket.socket() as probe:
            probe.bind((host, 0))
            self.port = probe.getsockname()[1]
        self.host = host
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning"))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise ExpungeError(f"the server did not start on {self.host}:{self.port}", "check that the port is free")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
