"""How long the CLI takes to reject bad input: each case runs `expunge …` in a fresh process and
times it to the error line (target: under 2 seconds for any option or path error).

    python benchmarks/early_errors.py [--world DIR --request FILE --model DIR]

Without a world, request and model it builds a tiny world and trains a tiny model first (about
ten seconds), in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def timed(args: list[str], repeats: int) -> tuple[float, int, str]:
    times, done = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "expunge.cli", *args], capture_output=True, text=True)
        times.append(time.perf_counter() - started)
    line = next((x for x in done.stderr.splitlines() if x.startswith("error:")), done.stderr.strip()[-80:])
    return statistics.median(times), done.returncode, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path)
    parser.add_argument("--request", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="expunge-early-errors-"))
    if args.world is None:
        from expunge.ledger import make_request, write_request
        from expunge.pipeline import train_base
        from expunge.worlds import PrivacyWorldConfig, build_privacy_world

        world = build_privacy_world(tmp / "world", PrivacyWorldConfig(seed=0, people=8))
        write_request(make_request(world, subjects=[world.people("train")[0].id]), tmp / "request.json")
        train_base(tmp / "world", tmp / "model", preset="tiny", progress=False)
        args.world, args.request, args.model = tmp / "world", tmp / "request.json", tmp / "model"
    edited = json.loads(args.request.read_text())
    edited["document_ids"] = edited["document_ids"][1:]
    (tmp / "edited.json").write_text(json.dumps(edited))
    (tmp / "taken").mkdir(exist_ok=True)
    w, r, m = str(args.world), str(args.request), str(args.model)
    cases = {
        "train: output exists": ["train", "--world", w, "--out", str(tmp / "taken")],
        "train: unknown preset": ["train", "--world", w, "--out", str(tmp / "m"), "--preset", "huge"],
        "request: --random-fraction abc": ["request", "--world", w, "--out", str(tmp / "r.json"),
                                          "--random-fraction", "abc"],
        "retrain: hand-edited request": ["retrain", "--world", w, "--request", str(tmp / "edited.json"),
                                         "--out", str(tmp / "o")],
        "forget: output exists": ["forget", "--model", m, "--world", w, "--request", r, "--out", str(tmp / "taken")],
        "forget: -o learning_rate=abc": ["forget", "--model", m, "--world", w, "--request", r, "--out",
                                         str(tmp / "f"), "-o", "learning_rate=abc"],
        "edit: -o layers=abc": ["edit", "--model", m, "--edits", str(tmp / "edited.json"), "--out", str(tmp / "e"),
                                "--corpus", w, "-o", "layers=abc"],
        "verify: report format .pdf": ["verify", "--model", m, "--original", m, "--oracle", m, "--world", w,
                                       "--request", r, "--report", str(tmp / "r.pdf")],
        "policy: a directory": ["policy", str(tmp)],
    }
    table = Table(title=f"time to the error line (median of {args.repeats}, fresh process each; {os.cpu_count()} CPUs)")
    for column in ("case", "seconds", "exit", "error"):
        table.add_column(column, overflow="fold")
    slow = 0
    for name, case in cases.items():
        seconds, code, line = timed(case, args.repeats)
        slow += seconds >= 2.0
        table.add_row(name, f"{seconds:.2f}", str(code), line[:90])
    Console(width=160).print(table)
    print(f"{len(cases) - slow} of {len(cases)} cases under 2 seconds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
