"""Every registered unlearning method on the default world, verified against the oracle.

Uses (or builds) the demo's cached world, base model, request and oracle in the workspace, runs
each method with its default options into a fresh run directory, verifies all of them together
and prints one table: forget and retain exact match, forget quality, model utility, MIA AUC,
PrivLeak, wall time and time as a fraction of retraining the oracle. The same rows go to JSON.

    python benchmarks/methods.py [--workspace expunge-workspace] [--methods simnpo,npo]
                                 [--json benchmarks/methods.json]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from transformers.utils import logging as hf_logging

from expunge.demo import prepare_workspace
from expunge.methods.registry import method_names
from expunge.records import write_json_atomic
from expunge.methods.unlearn import unlearn
from expunge.report import report_from_verification, write_report
from expunge.report.render import format_value, json_safe
from expunge.verify.suite import verify_models

COLUMNS = (
    ("model", "method"), ("forget_em", "forget EM"), ("retain_em", "retain EM"), ("neighbours_em", "neighbours EM"),
    ("forget_quality", "forget quality"), ("model_utility", "utility"), ("mia_auc", "MIA AUC"),
    ("privleak", "PrivLeak"), ("plausibility", "plausible"), ("seconds", "seconds"),
    ("fraction_of_retraining", "x retrain"), ("forgotten", "forgotten?"), ("collateral_damage", "collateral?"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("expunge-workspace"))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=None, help="share of the people deleted (default: the demo's)")
    parser.add_argument("--methods", default=",".join(method_names()), help="comma-separated method names")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows (and stop reasons) here")
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    console = Console(stderr=True)

    ws = prepare_workspace(args.workspace, preset=args.preset, size=args.people, seed=args.seed,
                           fraction=args.fraction, progress=True, log=console.print)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = ws.root / "runs" / f"{stamp}-benchmark"
    runs = {}
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        console.print(f"unlearning with {name}")
        runs[name] = unlearn(ws.base_dir, ws.world_dir, ws.request_path, run_dir / "models" / name,
                             method=name, progress=True).to_dict()
    console.print("verifying")
    verification = verify_models({n: run_dir / "models" / n for n in runs}, ws.base_dir, ws.oracle_dir,
                                 ws.world_dir, ws.request_path)
    data = report_from_verification(verification, title="expunge methods benchmark", runs=runs,
                                    retraining_seconds=ws.retraining_seconds)
    write_report(data, run_dir / "report.html")

    table = Table(title=f"methods on the {args.people}-person world, preset {args.preset} ({len(ws.request.targets)} "
                        f"people deleted; "
                        f"retraining {ws.retraining_seconds:.1f} s)")
    for _, header in COLUMNS:
        table.add_column(header, justify="left" if header in ("method", "forgotten?", "collateral?") else "right")
    for row in data.table:
        table.add_row(*(format_value(row[key]) for key, _ in COLUMNS))
    Console(width=max(160, Console().width)).print(table)
    for name, run in runs.items():
        print(f"{name}: {run['steps']} steps, {run['stop_reason']}")
    print(f"report: {run_dir / 'report.html'}")
    if args.json:
        rows = json_safe({"table": data.table, "runs": {n: {k: r[k] for k in ("steps", "stop_reason", "seconds", "notes")}
                                                         for n, r in runs.items()},
                          "retraining_seconds": ws.retraining_seconds, "request": ws.request.id})
        write_json_atomic(args.json, rows)  # refuses to replace an earlier result
        print(f"rows written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
