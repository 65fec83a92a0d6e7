"""Crash safety, measured: `kill -9` at random points of `expunge forget` and of service jobs.

Part 1, `forget`: an uninterrupted run gives its length T; then each of N runs is killed with
SIGKILL at a uniform random time in (0.3 s, 1.05 T), and after each kill:
- the ledger verifies (`Ledger.verify`);
- `--out` is absent or complete (`check_model_dir`: every file against its recorded sha256),
  never half-written;
- the same command run again finishes: `--out` complete, its weights' sha256 recorded in the
  ledger once, and no partial directory left beside it.
Each run has a ledger of its own (the same request unlearned again gives the same weights, which a
shared ledger would record once).

Part 2, the service: R requests queued in one deployment; worker processes (`expunge worker
--once --lease 3`) are killed at random points, N times in all, the ledger checked after each
(verifies; no partial or half-written model); then a last worker finishes. In the end every job is
done, in order, each request with exactly one recorded model version, one `job.done`, at most one
verification per version, and each version made from the one before.

    python benchmarks/crash.py [--kills 20] [--requests 20] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from expunge.integrity import check_model_dir
from expunge.ledger import make_request, write_request
from expunge.ledger.store import KEY_FILE, Ledger, ModelVersion, VerificationRow, resolve_url
from expunge.pipeline import train_base
from expunge.service.queue import JobState, Route, enqueue, jobs
from expunge.service.worker import Deployment, save_deployment
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world

FORGET_OPTIONS = ["-o", "max_steps=20", "-o", "check_every=10", "-o", "warmup_steps=2"]


def _expunge(*args: object) -> list[str]:
    return [sys.executable, "-m", "expunge.cli", *[str(a) for a in args]]


def _partials(directory: Path) -> list[Path]:
    return [p for p in directory.glob(".*.partial-*")] if directory.exists() else []


def _out_state(out: Path) -> str:
    if not out.exists():
        return "absent"
    try:
        check_model_dir(out, files=True)
        return "complete"
    except Exception as exc:  # noqa: BLE001 (any failure is the finding)
        return f"BROKEN ({exc})"


def forget_part(work: Path, world: Path, base: Path, kills: int, rng: random.Random) -> list[dict]:
    people = [s.id for s in load_world(world).people("train")]
    request = work / "request.json"
    if not request.exists():
        write_request(make_request(load_world(world), subjects=people[:2]), request)
    env = {**os.environ, "EXPUNGE_DB": ""}

    def command(out: Path, db: Path) -> list[str]:
        return _expunge("forget", "--model", base, "--world", world, "--request", request, "--out", out,
                        "--db", db, *FORGET_OPTIONS)

    ref_out, ref_db = work / "forget-ref", work / "forget-ref.sqlite"
    started = time.perf_counter()
    subprocess.run(command(ref_out, ref_db), check=True, env=env, capture_output=True)
    length = time.perf_counter() - started
    print(f"uninterrupted `expunge forget`: {length:.1f} s (process start included)")
    rows = []
    for i in range(kills):
        out, db = work / f"forget-{i:02d}", work / f"forget-{i:02d}.sqlite"
        at = rng.uniform(0.3, 1.05 * length)
        proc = subprocess.Popen(command(out, db), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=at)
            killed = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
        after = _out_state(out)
        ledger_ok = (not db.exists()) or Ledger.open(resolve_url(str(db)), create=False).verify().ok
        rerun = "not needed"
        if after == "absent":
            done = subprocess.run(command(out, db), env=env, capture_output=True, text=True)
            rerun = "finished" if done.returncode == 0 else f"FAILED: {done.stderr.strip()[-200:]}"
        final = _out_state(out)
        ledger = Ledger.open(resolve_url(str(db)), create=False)
        sha = json.loads((out / "expunge_model.json").read_text())["sha256"] if final == "complete" else None
        with Session(ledger.engine) as session:
            mine = select(ModelVersion).where(ModelVersion.path == str(out.resolve()))
            recorded = [v.sha256 for v in session.scalars(mine)]
        rows.append({"run": i, "kill_at_s": round(at, 1), "killed": killed, "after_kill": after,
                     "ledger_verifies": ledger_ok, "rerun": rerun, "final": final,
                     "recorded_once": recorded == [sha], "verifies_at_end": ledger.verify().ok,
                     "partials_left": len([p for p in _partials(out.parent) if p.name.startswith(f".{out.name}.")])})
    return rows


def service_part(work: Path, world: Path, base: Path, kills: int, requests: int, rng: random.Random) -> dict:
    db = resolve_url(str(work / "service.sqlite"))
    ledger = Ledger.open(db, key_path=work / KEY_FILE)
    deployment = Deployment(workspace=str(work / "svc"), world=str(world), model=str(base),
                            options={"max_steps": "20", "check_every": "10", "warmup_steps": "2"}, max_facts=10)
    Path(deployment.workspace).mkdir(parents=True, exist_ok=True)
    save_deployment(deployment)
    loaded = load_world(world)
    people = [s.id for s in loaded.people("train")]
    # Pairs of people: more requests than the tiny world has people, each a job of a few seconds.
    pairs = list(itertools.combinations(people, 2))
    made = [make_request(loaded, subjects=list(pair)) for pair in pairs[:requests]]
    for request in made:
        enqueue(ledger, request, Route.FORGET, "benchmark")
    log = (work / "workers.log").open("ab")

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(_expunge("worker", "--workspace", deployment.workspace, "--db", db, "--key",
                                         work / KEY_FILE, "--lease", 3, "--once", "--max-attempts", kills + 5),
                                stdout=log, stderr=subprocess.STDOUT)

    checks = []
    started = time.perf_counter()
    for i in range(kills):
        proc = worker()
        at = rng.uniform(0.5, 10.0)  # a worker's start is ~3 s, a job a few seconds more
        try:
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        models = Path(deployment.models_dir)
        broken = [d.name for d in models.glob("*") if not d.name.startswith(".") and _out_state(d) != "complete"] \
            if models.exists() else []
        states = [str(j.state) for j in jobs(ledger)]
        checks.append({"kill": i, "at_s": round(at, 1), "ledger_verifies": ledger.verify().ok, "broken_models": broken,
                       "jobs": " ".join(s[0] for s in states)})
        time.sleep(3.3)  # the killed worker's lease runs out
    final = worker()
    final.wait()
    seconds = time.perf_counter() - started
    served = jobs(ledger)
    kinds = [json.loads(e.body)["kind"] for e in ledger.rows()[0]]
    with Session(ledger.engine) as session:
        versions = list(session.scalars(select(ModelVersion)))
        verifications = list(session.scalars(select(VerificationRow)))
    per_request = {r.id: sum(1 for e in ledger.rows()[0] if json.loads(e.body)["kind"] == "model.recorded"
                             and json.loads(e.body)["payload"].get("request") == r.id) for r in made}
    chain = all(served[i].result["parent_sha256"] == served[i - 1].result["model"]["sha256"]
                for i in range(1, len(served)) if served[i].result and served[i - 1].result)
    return {"checks": checks, "seconds": seconds,
            "all_done_in_order": [j.state for j in served] == [JobState.DONE] * len(made)
            and [j.request_id for j in served] == [r.id for r in made],
            "attempts": [j.attempts for j in served], "versions": len(versions),
            "versions_per_request": per_request, "jobs_done_events": kinds.count("job.done"),
            "verifications": len(verifications),
            "one_verification_per_version": len({(v.request_id, v.model_sha256) for v in verifications})
            == len(verifications), "chain": chain, "ledger_verifies": ledger.verify().ok,
            "partials_left": len(_partials(Path(deployment.models_dir)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--part", choices=["forget", "service", "both"], default="both")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="expunge-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    world, base = work / "world", work / "base"
    if not world.exists():
        build_privacy_world(world, PrivacyWorldConfig(seed=0, people=8))
    if not base.exists():
        train_base(world, base, preset="tiny", seed=0, progress=False)
    rng = random.Random(args.seed)
    run = work / time.strftime("run-%Y%m%d-%H%M%S")  # the world and base are reused; runs are not
    print(f"work directory: {run}")
    if args.part in ("forget", "both"):
        (run / "forget").mkdir(parents=True)
        rows = forget_part(run / "forget", world, base, args.kills, rng)
        print("\n| run | kill at (s) | killed | after the kill | ledger verifies | rerun | final | recorded once "
              "| partial dirs left |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['run']} | {r['kill_at_s']} | {r['killed']} | {r['after_kill']} | {r['ledger_verifies']} | "
                  f"{r['rerun']} | {r['final']} | {r['recorded_once']} | {r['partials_left']} |")
        good = sum(r["ledger_verifies"] and r["final"] == "complete" and r["recorded_once"] and r["verifies_at_end"]
                   and not r["partials_left"] and not r["after_kill"].startswith("BROKEN") for r in rows)
        print(f"\nforget: {good}/{len(rows)} runs left a verifying ledger, no half-written model, and finished on "
              f"rerun with the version recorded once ({sum(r['killed'] for r in rows)} were killed before they ended)")
    if args.part in ("service", "both"):
        (run / "service").mkdir(parents=True)
        result = service_part(run / "service", world, base, args.kills, args.requests, rng)
        print("\n| kill | at (s) | ledger verifies | half-written models | jobs (q/r/d/f) |")
        print("|---|---|---|---|---|")
        for c in result["checks"]:
            print(f"| {c['kill']} | {c['at_s']} | {c['ledger_verifies']} | {len(c['broken_models'])} | {c['jobs']} |")
        print("\nservice: " + json.dumps({k: v for k, v in result.items() if k != "checks"}))


if __name__ == "__main__":
    main()
