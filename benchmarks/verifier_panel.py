"""The verifier's accuracy panel on the default world, for several seeds, with the full battery.

For each seed: build (or reuse) the demo's world, base model, request and oracle for that seed;
build the panel (an oracle retrained from another seed, the original, the refusal baseline, a
collapsed model: see :mod:`expunge.panel`); verify all four with every probe and attack
(`expunge verify --attacks`); print each verdict, the confusion table over seeds, and what the
battery cost next to the oracle's retraining time.

    python benchmarks/verifier_panel.py [--workspace expunge-workspace] [--seeds 0,1,2] [--no-attacks]
                                        [--scenario privacy|copyright|backdoor] [--models a,b]
                                        [--json benchmarks/verifier_panel.json]

``--scenario`` picks the demo's scenario (its world, recipe and request); ``--models`` a subset of
the panel (retrained, unchanged, refusal, collapsed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from transformers.utils import logging as hf_logging

from expunge.demo import prepare_workspace
from expunge.records import write_json_atomic
from expunge.report.data import attack_values
from expunge.report.render import format_value, json_safe
from expunge.panel import PANEL, confusion_table, run_panel
from expunge.verify.suite import VerifyConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("expunge-workspace"))
    parser.add_argument("--scenario", default="privacy", help="privacy, copyright or backdoor")
    parser.add_argument("--preset", default=None, help="default: the scenario's")
    parser.add_argument("--people", type=int, default=None, help="people or books (default: the scenario's)")
    parser.add_argument("--models", default=",".join(PANEL), help="comma-separated panel models")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated world/training seeds")
    parser.add_argument("--no-attacks", action="store_true", help="probes only (no model-level attacks)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    log = Console(stderr=True)
    console = Console(width=max(Console().width, 150))
    config = VerifyConfig(attacks=not args.no_attacks)
    results, runs = [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        ws = prepare_workspace(args.workspace, preset=args.preset, size=args.people, seed=seed, progress=False,
                               log=log.print, scenario=args.scenario)
        result = run_panel(ws.world_dir, ws.request_path, ws.base_dir, ws.oracle_dir,
                           ws.root / "panels" / f"{ws.base_dir.name}-{ws.request.id}", retrain_seed=seed + 1000,
                           config=config, log=log.print, names=tuple(args.models.split(",")))
        results.append(result)
        v = result.verification
        everything = {"original": v.original, "oracle": v.oracle, **v.candidates}
        cost = {name: e.seconds for name, e in {"original": v.original, "oracle": v.oracle, **v.candidates}.items()}
        run = {"seed": seed, "score": result.score, "rows": result.rows(), "retraining_seconds": ws.retraining_seconds,
               "evaluation_seconds": cost, "verify_seconds": result.seconds["verify"],
               "attack_seconds": {name: {k: a.seconds for k, a in e.attacks.items()}
                                  for name, e in {"original": v.original, **v.candidates}.items()},
               "attack_accuracy": {name: attack_values(e.attacks) for name, e in everything.items()},
               "indirect": {name: e.indirect for name, e in everything.items()}}
        runs.append(run)
        table = Table(title=f"seed {seed}: {result.score} right verdicts")
        for column in ("model", "expected", "forgotten", "collateral_damage", "flags", "failed checks", "right?"):
            table.add_column(column)
        for row in result.rows():
            table.add_row(row["model"], row["expected"], row["forgotten"], row["collateral_damage"], str(row["flags"]),
                          ", ".join(row["failed_checks"]) or "–", "yes" if row["correct"] else "NO")
        console.print(table)
        if config.attacks:
            values = run["attack_accuracy"]
            table = Table(title=f"seed {seed}: accuracy recovered on the forget facts (recovery = / original's)")
            table.add_column("attack")
            for name in values:
                table.add_column(name)
            for attack, base in values["original"].items():
                table.add_row(attack, *(f"{values[m][attack]:.2f} ({values[m][attack] / base:.2f})" if base else
                                        f"{values[m][attack]:.2f}" for m in values))
            console.print(table)
        one = max(cost[name] for name in v.candidates)
        console.print(f"battery cost: one model {one:.1f} s (slowest candidate) = {one / ws.retraining_seconds:.0%} of "
                      f"retraining ({ws.retraining_seconds:.1f} s); original + oracle + candidate "
                      f"{cost['original'] + cost['oracle'] + one:.1f} s = "
                      f"{(cost['original'] + cost['oracle'] + one) / ws.retraining_seconds:.0%}")
    confusion = confusion_table(results)
    keys = sorted({k for row in confusion for k in row if k not in ("model", "expected", "runs", "correct")})
    table = Table(title="confusion table over seeds " + args.seeds)
    for column in ("model", "expected", "right", *keys):
        table.add_column(column)
    for row in confusion:
        table.add_row(row["model"], row["expected"], f"{row['correct']}/{row['runs']}",
                      *(format_value(row.get(k, 0)) for k in keys))
    console.print(table)
    total = sum(r.correct[name] for r in results for name in PANEL if name in r.correct)
    console.print(f"right verdicts: {total}/{sum(len(r.correct) for r in results)}")
    if args.json:
        write_json_atomic(args.json, json_safe({"runs": runs, "confusion": confusion}), overwrite=True)
    return 0 if all(all(r.correct.values()) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
