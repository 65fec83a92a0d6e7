"""How close is each oracle to what an oracle must be? Base and oracle on several world sizes and seeds.

For each (people, seed): build (or reuse) the world, a random request for ``--fraction`` of the
people, the base model and the oracle (``expunge.demo.prepare_workspace``, cached in the
workspace), evaluate both on the verification plan (no attacks) and run the oracle's own checks
(:func:`expunge.verify.judge.check_oracle`, the policy's ``[oracle]`` table). One row per run:
what the base and the oracle know of the retained people, what the oracle knows of the deleted
and the never-seen people, its membership AUC (deleted vs never-seen, with its 95% interval),
the steps each trained, and whether the oracle can be trusted.

    python benchmarks/oracle_quality.py [--workspace expunge-workspace] [--people 50,100,200,400]
                                        [--seeds 0,1] [--fraction 0.1] [--preset default]
                                        [--json benchmarks/oracle_quality.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from transformers.utils import logging as hf_logging

from expunge.demo import prepare_workspace
from expunge.models.io import load_model, read_model_record
from expunge.records import write_json_atomic
from expunge.report.render import json_safe
from expunge.verify.evaluate import evaluate_model
from expunge.verify.judge import check_oracle
from expunge.verify.plan import plan_verification
from expunge.verify.suite import VerifyConfig


def measure(workspace: Path, preset: str, people: int, seed: int, fraction: float, log) -> dict:
    ws = prepare_workspace(workspace, preset=preset, size=people, seed=seed, fraction=fraction, progress=False,
                           log=log)
    config = VerifyConfig(attacks=False)
    plan = plan_verification(ws.world, ws.request, config, ws.located)
    started = time.perf_counter()
    evaluations = {}
    for name, directory in (("original", ws.base_dir), ("oracle", ws.oracle_dir)):
        model, tokenizer, ref = load_model(directory)
        evaluations[name] = evaluate_model(model, tokenizer, plan, config, name=name, ref=ref)
    checks = check_oracle(evaluations["original"], evaluations["oracle"], plan, config)
    auc = next(c for c in checks if c.policy_key == "oracle.auc_margin")
    o, b = evaluations["oracle"].sets, evaluations["original"].sets
    return {
        "people": people, "seed": seed, "forget_people": len(plan.subjects["forget"]),
        "base_retain_em": b["retain"]["exact_match"], "oracle_retain_em": o["retain"]["exact_match"],
        "oracle_neighbours_em": o["neighbours"]["exact_match"], "base_neighbours_em": b["neighbours"]["exact_match"],
        "oracle_forget_em": o["forget"]["exact_match"], "oracle_never_seen_em": o["holdout"]["exact_match"],
        "oracle_auc": auc.value, "oracle_auc_ci": auc.interval,
        "base_steps": read_model_record(ws.base_dir).get("run", {}).get("steps"),
        "oracle_steps": read_model_record(ws.oracle_dir).get("run", {}).get("steps"),
        "base_final_loss": ws.stages["base"]["final_loss"], "oracle_final_loss": ws.stages["oracle"]["final_loss"],
        "trusted": all(c.passed is not False for c in checks),
        "failed": [c.name for c in checks if c.passed is False],
        "evaluation_seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("expunge-workspace"))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--people", default="50,100,200,400", help="comma-separated world sizes")
    parser.add_argument("--seeds", default="0,1", help="comma-separated world/training seeds")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the people each request deletes")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    log = Console(stderr=True)
    rows = []
    for people in (int(p) for p in args.people.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(measure(args.workspace, args.preset, people, seed, args.fraction, log.print))
            log.print(f"people {people}, seed {seed}: oracle {'trusted' if rows[-1]['trusted'] else 'NOT trusted'}")
    table = Table(title=f"oracle quality ({args.preset} preset; request: {args.fraction:g} of the people)")
    for column in ("people", "seed", "retain EM base / oracle", "neighbours EM base / oracle",
                   "oracle EM deleted / never-seen", "oracle AUC (95% CI)", "steps base / oracle", "trusted"):
        table.add_column(column, justify="right")
    for r in rows:
        ci = r["oracle_auc_ci"]
        table.add_row(str(r["people"]), str(r["seed"]), f"{r['base_retain_em']:.2f} / {r['oracle_retain_em']:.2f}",
                      f"{r['base_neighbours_em']:.2f} / {r['oracle_neighbours_em']:.2f}",
                      f"{r['oracle_forget_em']:.2f} / {r['oracle_never_seen_em']:.2f}",
                      f"{r['oracle_auc']:.2f} ({ci[0]:.2f}-{ci[1]:.2f})", f"{r['base_steps']} / {r['oracle_steps']}",
                      "yes" if r["trusted"] else "NO: " + ", ".join(r["failed"]))
    Console(width=max(Console().width, 140)).print(table)
    if args.json:
        write_json_atomic(args.json, json_safe({"rows": rows}), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
