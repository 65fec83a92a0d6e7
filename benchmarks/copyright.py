"""Copyright requests over time and at scale, on the passages world (MUSE's last two criteria).

* **Sustainability**: four requests, one book each, applied one after another to the same model
  (each unlearning run starts from the previous one's output). After request k the model is
  verified against an oracle retrained without all k books so far, and the table shows whether
  it still forgets what it should and still keeps the other books. Run k is given the k books
  deleted so far, not the new one alone: a deletion stays a deletion, and a run told only of the
  new book would count the earlier ones as retained and let its retain term train on them again.
  Its stop rules read the new book alone (the model's lineage records what was removed before).
* **Scalability**: forget sets of growing size (1, 2, 4 books by default), each unlearned from the
  original model and verified against its own oracle.

Every number is MUSE's: the removed books' verbatim continuation ROUGE-L F1 and knowledge exact
match, against the oracle's; the kept books' verbatim and knowledge scores as a share of the
original's; the membership AUC; the time as a share of retraining. The world, base model and
oracles are cached in the workspace (a second run trains nothing it has).

    python benchmarks/copyright.py [--workspace expunge-workspace] [--seed 0] [--method simnpo]
                                   [--steps 4] [--sizes 1,2,4] [--books N] [--json F]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from transformers.utils import logging as hf_logging

from expunge.demo import get_scenario, prepare_workspace
from expunge.ledger.requests import make_request, write_request
from expunge.methods.unlearn import unlearn
from expunge.models.io import read_model_record
from expunge.pipeline import retrain_oracle
from expunge.records import write_json_atomic
from expunge.report import report_from_verification
from expunge.report.render import format_value, json_safe
from expunge.verify.suite import Verification, verify_models

COLUMNS = ("books", "verbatim", "oracle verbatim", "knowledge", "oracle knowledge", "kept verbatim x",
           "kept knowledge x", "MIA AUC", "oracle AUC", "x retrain", "forgotten?", "collateral?")


def _request(ws: Any, books: list[str], root: Path) -> Path:
    path = root / "requests" / f"books-{'-'.join(b.split('-')[-1] for b in books)}-{ws.world.fingerprint[:8]}.json"
    if not path.exists():
        write_request(make_request(ws.world, subjects=books, basis="benchmark: copyright"), path)
    return path


def _oracle(ws: Any, request: Path, root: Path, console: Console) -> Path:
    out = root / "models" / f"oracle-{ws.base_dir.name}-{request.stem}"
    if not out.exists():
        console.print(f"retraining the oracle without {request.stem}")
        retrain_oracle(ws.world_dir, request, out, base=ws.base_dir, progress=False)
    return out


def _row(label: str, v: Verification, name: str, seconds: float, retraining: float) -> dict[str, Any]:
    c, o, b = v.candidates[name], v.oracle, v.original

    def ratio(x: float, y: float) -> float:
        return x / y if y else float("nan")

    rows = {r["model"]: r for r in report_from_verification(v, runs={name: {"seconds": seconds}},
                                                            retraining_seconds=retraining).table}
    kept = "retain" in c.verbatim and "retain" in c.sets
    return {
        "books": label,
        "verbatim": c.verbatim["forget"]["rouge_l_f1"], "oracle verbatim": o.verbatim["forget"]["rouge_l_f1"],
        "knowledge": c.sets["forget"]["exact_match"], "oracle knowledge": o.sets["forget"]["exact_match"],
        "kept verbatim x": ratio(c.verbatim["retain"]["rouge_l_f1"], b.verbatim["retain"]["rouge_l_f1"])
        if kept else float("nan"),
        "kept knowledge x": ratio(c.sets["retain"]["exact_match"], b.sets["retain"]["exact_match"])
        if kept else float("nan"),
        "MIA AUC": rows[name]["mia_auc"], "oracle AUC": rows["oracle"]["mia_auc"],
        "x retrain": seconds / retraining,
        "forgotten?": str(v.verdicts[name].forgotten), "collateral?": str(v.verdicts[name].collateral_damage),
    }


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*(format_value(row[c]) if not isinstance(row[c], str) else row[c] for c in COLUMNS))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("expunge-workspace"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="simnpo")
    parser.add_argument("--steps", type=int, default=4, help="sequential requests (one book each)")
    parser.add_argument("--sizes", default="1,2,4", help="forget-set sizes in books")
    parser.add_argument("--books", type=int, default=None, help="books in the world (default: the demo's)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    console = Console(stderr=True)
    out = Console(width=max(Console().width, 150))
    scenario = get_scenario("copyright")
    options = dict(scenario.method_options.get(args.method, {}))
    ws = prepare_workspace(args.workspace, size=args.books, seed=args.seed, progress=False, log=console.print,
                           scenario="copyright")
    root = ws.root / "copyright-benchmark"
    books = [s.id for s in ws.world.deletable("train")]
    order = random.Random(args.seed).sample(books, len(books))
    results: dict[str, list[dict[str, Any]]] = {"sustainability": [], "scalability": []}

    # Sustainability: request k removes one more book from the previous step's model.
    model = ws.base_dir
    for k in range(1, args.steps + 1):
        so_far = _request(ws, order[:k], root)
        oracle = _oracle(ws, so_far, root, console)
        out_dir = root / "runs" / f"{args.method}-sequential-{k}"
        if not out_dir.exists():
            console.print(f"request {k}: unlearning {order[k - 1]} with {args.method}")
            unlearn(model, ws.world_dir, so_far, out_dir, method=args.method, options=options, progress=False)
        seconds = read_model_record(out_dir)["run"]["seconds"]
        retraining = read_model_record(oracle)["run"]["seconds"]
        v = verify_models({args.method: out_dir}, ws.base_dir, oracle, ws.world_dir, so_far)
        results["sustainability"].append(_row(f"{k} (after {k} requests)", v, args.method, seconds, retraining))
        model = out_dir

    # Scalability: one request of n books from the original model.
    for n in (int(x) for x in args.sizes.split(",")):
        request = _request(ws, order[:n], root)
        oracle = _oracle(ws, request, root, console)
        out_dir = root / "runs" / f"{args.method}-at-once-{n}"
        if not out_dir.exists():
            console.print(f"{n} books at once: unlearning with {args.method}")
            unlearn(ws.base_dir, ws.world_dir, request, out_dir, method=args.method, options=options, progress=False)
        seconds = read_model_record(out_dir)["run"]["seconds"]
        retraining = read_model_record(oracle)["run"]["seconds"]
        v = verify_models({args.method: out_dir}, ws.base_dir, oracle, ws.world_dir, request)
        results["scalability"].append(_row(str(n), v, args.method, seconds, retraining))

    out.print(_table(f"sustainability: {args.steps} requests one after another ({args.method}, seed {args.seed})",
                     results["sustainability"]))
    out.print(_table(f"scalability: forget sets of {args.sizes} books ({args.method}, seed {args.seed})",
                     results["scalability"]))
    if args.json:
        write_json_atomic(args.json, json_safe({"method": args.method, "options": options, "seed": args.seed,
                                                **results}), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
