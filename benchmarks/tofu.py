"""The TOFU table on SmolLM2-135M: the fine-tuned model, the retain model and every registered
unlearning method with its defaults, on forget01 / forget05 / forget10, scored with TOFU's metrics
as open-unlearning defines them (expunge.verify.tofu) and with expunge's verdict.

    python benchmarks/tofu.py [--tofu DIR] [--authors N | --budget-minutes 90] [--splits forget01,forget05,forget10]
                              [--methods simnpo,npo,...] [--work DIR] [--max-new-tokens 200] [--json FILE]
    # a smoke run of the whole path (not the table): --authors 2 --splits forget10 --methods simnpo \
    #     --epochs 1 -o max_steps=4 --max-new-tokens 16 --max-facts 10

The path is the user's: ``import tofu`` -> ``train --from smollm2`` (preset ``finetune``: 5 epochs,
as open-unlearning) -> per split ``request --split`` -> ``retrain`` (the retain model, from the same
SmolLM2 weights) -> ``forget`` with each method's defaults (no per-benchmark tuning) -> ``verify``.

All of TOFU is 200 authors; fine-tuning SmolLM2 on it is hours per epoch on 2 CPU cores. Without
``--authors`` the script measures the training throughput first (a few steps on 2 authors) and
takes the largest author count whose base fine-tune and retrain models (one per split) fit in
60% of ``--budget-minutes`` (the rest is for the methods and verification), keeping TOFU's
1 / 5 / 10 % forget shares (``import tofu --authors``: at least one author per split). It prints
the sizes chosen and the estimate. Below 100 authors the shares round to the same authors (at 10
authors forget01, forget05 and forget10 are all one author): splits that name the same authors are
one request, run once and shown under the largest split's name.

Columns: forget quality (KS p-value of the forget truth ratios against the retain model's), model
utility (harmonic mean of the nine retain / real-author / world-fact numbers; also as a ratio to
the retain model's), forget ROUGE-L recall and truth ratio, MIA AUC (loss score, forget vs the
never-seen holdout authors) and PrivLeak against the retain model, expunge's verdict (forgotten /
collateral damage; on the retain model's row, whether it passed its own checks as the oracle),
seconds and the share of retraining time. Under the table, each method's failed checks (policy
keys); the whole verification is written beside it as ``report-SPLIT-TIME.md`` in the work
directory, and the JSON keeps each row's ``failed_checks``.

Beside it, open-unlearning's published numbers (``docs/results.md`` of locuslab/open-unlearning,
commit 8f9872c: Llama-2-7b-hf-chat and Llama-3.2-1B-Instruct, lr 1e-5, 10 epochs), model utility
shown as a ratio to each model's own retain model. They come from 7B and 1B models on GPUs with
tuned-for-the-paper hyperparameters; the comparison is of shape, not of value.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

# open-unlearning docs/results.md (commit 8f9872c): (forget quality, model utility, forget truth
# ratio) per split; the "Retain" row gives each model's own reference utility.
PUBLISHED = {
    "Llama-2-7b-hf-chat": {
        "Finetuned": {"forget01": (1.27e-03, 0.63, 0.53), "forget05": (1.33e-13, 0.63, 0.51), "forget10": (4.35e-25, 0.63, 0.52)},
        "Retain": {"forget01": (1.0, 0.63, 0.68), "forget05": (1.0, 0.63, 0.67), "forget10": (1.0, 0.61, 0.68)},
        "GradAscent": {"forget01": (1.88e-04, 0.55, 0.36), "forget05": (1.94e-119, 0.0, 8.82e-96), "forget10": (1.06e-239, 0.0, 2.21e-32)},
        "GradDiff": {"forget01": (3.02e-03, 0.57, 0.41), "forget05": (1.94e-119, 0.56, 4.14e-95), "forget10": (1.80e-229, 0.58, 1.46e-07)},
        "IdkDPO": {"forget01": (0.1, 0.56, 0.67), "forget05": (4.02e-06, 0.04, 0.67), "forget10": (5.42e-13, 0.04, 0.64)},
        "NPO": {"forget01": (0.4, 0.58, 0.65), "forget05": (0.09, 0.53, 0.71), "forget10": (0.42, 0.54, 0.73)},
        "SimNPO": {"forget01": (1.27e-03, 0.58, 0.41), "forget05": (1.06e-106, 0.6, 3.94e-05), "forget10": (1.47e-198, 0.6, 3.17e-04)},
        "RMU": {"forget01": (6.76e-03, 7.18e-04, 0.84), "forget05": (1.21e-10, 0.0, 0.81), "forget10": (1.18e-17, 0.0, 0.8)},
    },
    "Llama-3.2-1B-Instruct": {
        "Finetuned": {"forget01": (0.01, 0.60, 0.47), "forget05": (2.96e-13, 0.6, 0.47), "forget10": (8.08e-22, 0.6, 0.48)},
        "Retain": {"forget01": (1.0, 0.60, 0.65), "forget05": (1.0, 0.6, 0.63), "forget10": (1.0, 0.59, 0.63)},
        "GradAscent": {"forget01": (0.27, 0.33, 0.59), "forget05": (1.94e-119, 0.0, 2.52e-23), "forget10": (1.06e-239, 0.0, 2.25e-18)},
        "GradDiff": {"forget01": (0.77, 0.43, 0.57), "forget05": (1.94e-119, 0.53, 3.87e-34), "forget10": (1.06e-239, 0.49, 3.53e-27)},
        "IdkDPO": {"forget01": (0.01, 0.51, 0.60), "forget05": (1.12e-05, 0.07, 0.62), "forget10": (4.64e-12, 0.23, 0.6)},
        "NPO": {"forget01": (0.92, 0.56, 0.66), "forget05": (0.14, 0.45, 0.7), "forget10": (0.02, 0.46, 0.7)},
        "SimNPO": {"forget01": (0.58, 0.46, 0.55), "forget05": (5.01e-100, 0.58, 4.19e-03), "forget10": (2.47e-203, 0.54, 1.07e-05)},
        "RMU": {"forget01": (6.76e-03, 0.60, 0.47), "forget05": (2.89e-11, 0.6, 0.47), "forget10": (0.32, 0.59, 0.64)},
    },
}
TRAINING_SHARE = 0.6  # of the budget, for the base fine-tune and the retrain models


def _num(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.2e}" if value != 0 and abs(value) < 1e-2 else f"{value:.3f}"


def measure_throughput(tofu: Path, work: Path) -> float:
    """Training tokens per second of the `finetune` recipe on SmolLM2, from a few steps."""
    from expunge.pipeline import train_base
    from expunge.worlds.importers import import_tofu

    if not (work / "calibration-world").is_dir():
        import_tofu(tofu, work / "calibration-world", authors=2)
    report = train_base(work / "calibration-world", work / f"calibration-{time.time_ns()}", from_model="smollm2",
                        stop_at_step=3, progress=False)
    return report.run.tokens_per_second


def tokens_per_author(tofu: Path, work: Path) -> float:
    """Mean training tokens of one TOFU author (SmolLM2's tokenizer, each QA pair in the plain
    "Question: ... Answer: ..." form plus EOS: an estimate, the chat template adds a few)."""
    from transformers import AutoTokenizer

    from expunge.models.pretrained import SMOLLM2_FILE, smollm2_path
    from expunge.worlds.importers import import_tofu

    from expunge.worlds import load_world

    where = work / "count-world"
    world = load_world(where) if where.is_dir() else import_tofu(tofu, where, authors=10)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path(), gguf_file=SMOLLM2_FILE)
    docs = [d for d in world.training_documents() if d.subjects[0].startswith("tofu-author")]
    people = {d.subjects[0] for d in docs}
    total = sum(len(tokenizer(f"Question: {d.prompt}\nAnswer: {d.text}")["input_ids"]) + 1 for d in docs)
    return total / max(len(people), 1)


def choose_authors(budget_minutes: float, tok_per_s: float, per_author: float, splits: list[str]) -> tuple[int, float]:
    """The largest author count (10-200) whose training fits, and its estimated seconds."""
    from expunge.presets import get_preset

    epochs = get_preset("finetune").length.max_epochs
    best = (10, math.inf)
    for n in range(10, 201, 10):
        shares = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}
        # splits of equal size name the same (last) authors: one retrain model between them
        forget = {max(1, round(n * shares[s])) for s in splits}
        tokens = epochs * per_author * (n + sum(n - f for f in forget))
        seconds = tokens / tok_per_s
        if seconds <= TRAINING_SHARE * budget_minutes * 60 or n == 10:
            best = (n, seconds)
    return best


def main(argv: list[str] | None = None) -> int:
    from expunge.methods.registry import method_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tofu", type=Path, help="TOFU's files (default: ../shared/data/tofu or $EXPUNGE_TOFU_DIR)")
    parser.add_argument("--authors", type=int, help="authors to use (default: chosen from measured throughput)")
    parser.add_argument("--budget-minutes", type=float, default=90.0)
    parser.add_argument("--splits", default="forget01,forget05,forget10")
    parser.add_argument("--methods", default=",".join(method_names()))
    parser.add_argument("--work", type=Path, help="work directory (kept; default: a temporary one)")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="ROUGE's generation budget")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (default: the finetune preset's 5)")
    parser.add_argument("--max-facts", type=int, help="facts per set in verification (smoke runs; default: all)")
    parser.add_argument("-o", "--option", action="append", default=[],
                        help="key=value for every method (smoke runs only: the table is of the defaults)")
    args = parser.parse_args(argv)
    console = Console(width=200)
    started = time.perf_counter()

    from expunge.options import parse_pairs
    from expunge.pipeline import train_base
    from expunge.presets import get_preset, registered_preset
    from expunge.recipe import TrainingLength
    from expunge.verify.config import VerifyConfig
    from expunge.worlds import load_world
    from expunge.worlds.importers import import_tofu
    from expunge.worlds.importers.tofu import find_tofu_dir

    tofu = args.tofu or find_tofu_dir(Path(__file__).parent)
    if not (tofu / "full.json").is_file():
        raise SystemExit(f"TOFU's files are not at {tofu}: pass --tofu DIR (or set EXPUNGE_TOFU_DIR)")
    work = args.work or Path(tempfile.mkdtemp(prefix="expunge-tofu-"))
    work.mkdir(parents=True, exist_ok=True)
    splits = args.splits.split(",")
    methods = args.methods.split(",")
    from expunge.worlds.importers.tofu import TOFU_SPLITS

    if any(s not in TOFU_SPLITS for s in splits):
        parser.error(f"unknown split in {args.splits!r}; use: {', '.join(TOFU_SPLITS)}")
    unknown = [m for m in methods if m not in method_names()]
    if unknown:  # before minutes of fine-tuning, not after
        parser.error(f"unknown method(s) {', '.join(unknown)}; use: {', '.join(method_names())}")
    if args.authors is None:
        console.print("[dim]measuring the training throughput of SmolLM2 (3 steps on 2 authors)…[/dim]")
        tok_per_s, per_author = measure_throughput(tofu, work), tokens_per_author(tofu, work)
        authors, estimate = choose_authors(args.budget_minutes, tok_per_s, per_author, splits)
        console.print(f"measured {tok_per_s:.0f} training tokens/s, {per_author:.0f} tokens per author: "
                      f"{authors} authors (of 200), base + {len(splits)} retrain models estimated at "
                      f"{estimate / 60:.0f} min ({TRAINING_SHARE:.0%} of a {args.budget_minutes:.0f}-minute budget)")
    else:
        authors = args.authors
    world_dir = work / f"tofu-{authors}"
    if not world_dir.is_dir():
        import_tofu(tofu, world_dir, authors=authors)
    world = load_world(world_dir)
    console.print(f"world: {authors} authors; splits " + ", ".join(f"{s} {len(world.splits[s])}" for s in splits))
    # Below 100 authors TOFU's 1 / 5 / 10 % shares round to the same few authors (each split keeps
    # at least one): a split that names the same authors as a larger one is the same request, run
    # once and shown under the largest split's name.
    same: dict[tuple[str, ...], list[str]] = {}
    for split in splits:
        same.setdefault(tuple(sorted(world.splits[split])), []).append(split)
    for names in same.values():
        if len(names) > 1:
            console.print(f"[yellow]{' = '.join(names)} at {authors} authors (the same "
                          f"{len(world.splits[names[0]])} author(s)): run once, as {names[-1]}[/yellow]")
    run_splits = [names[-1] for names in same.values()]

    recipe = get_preset("finetune")
    if args.epochs is not None:
        recipe = replace(recipe, name=f"finetune-{args.epochs}-epochs", length=TrainingLength(max_epochs=args.epochs))
    options = parse_pairs(args.option)
    if options:
        console.print(f"[yellow]method options {options}: a smoke run, not the defaults' table[/yellow]")
    with registered_preset(recipe) if recipe.name != "finetune" else nullcontext():
        base = work / "finetuned"
        if not base.is_dir():
            clock = time.perf_counter()
            train_base(world_dir, base, from_model="smollm2", preset=recipe.name, progress=True)
            console.print(f"fine-tuned in {time.perf_counter() - clock:.0f} s")
        verify_config = VerifyConfig(tofu_max_new_tokens=args.max_new_tokens, max_facts_per_set=args.max_facts)
        rows = [row for split in run_splits for row in run_split(split, world, world_dir, work, base, methods, options,
                                                             verify_config, console)]
    print_tables(console, rows, authors, splits)
    console.print(f"verification: {args.max_facts or 'all'} items per set, TOFU's ROUGE on {args.max_new_tokens}-token "
                  f"answers; fine-tuning {recipe.length.max_epochs} epochs")
    console.print(f"total {(time.perf_counter() - started) / 60:.1f} min; work directory {work}")
    if args.json:
        args.json.write_text(json.dumps({"authors": authors, "same_splits": [n for n in same.values() if len(n) > 1],
                                         "epochs": recipe.length.max_epochs, "max_facts": args.max_facts,
                                         "max_new_tokens": args.max_new_tokens, "options": options,
                                         "rows": rows}, indent=2, default=str))
    return 0


def run_split(split: str, world, world_dir: Path, work: Path, base: Path, methods: list[str], options: dict,
              verify_config, console: Console) -> list[dict]:
    """One split: the request, the retain model, every method, one verification of them all."""
    from expunge.ledger import make_request, write_request
    from expunge.methods.unlearn import unlearn
    from expunge.models.io import read_model_record
    from expunge.pipeline import retrain_oracle
    from expunge.report import report_from_verification, write_report
    from expunge.verify.metrics import privleak, roc_auc
    from expunge.verify.suite import verify_models

    request_path = work / f"request-{split}.json"
    if not request_path.is_file():
        write_request(make_request(world, split=split), request_path)
    # Seconds are wall-clock of the command's work in this run. A model reused from an earlier run
    # of the same work directory shows the seconds its own record kept (``run.seconds``: the
    # retain model's training loop, a method's whole run before its save), not the 0 its reuse took.
    def made(directory: Path, make) -> float:
        if directory.is_dir():
            return float(read_model_record(directory).get("run", {}).get("seconds", math.nan))
        clock = time.perf_counter()
        make()
        return time.perf_counter() - clock

    retain = work / f"retain-{split}"
    retrain_seconds = made(retain, lambda: retrain_oracle(world_dir, request_path, retain, base=base, progress=True))
    seconds: dict[str, float] = {}
    candidates: dict[str, str] = {}
    for method in methods:
        out = work / f"{method}-{split}"
        seconds[method] = made(out, lambda: unlearn(base, world_dir, request_path, out, method=method, options=options,
                                                    progress=True))
        candidates[method] = str(out)
    verification = verify_models(candidates, base, retain, world_dir, request_path,
                                 config=verify_config,
                                 log=lambda m: console.print(f"[dim]{m}[/dim]"))
    # The whole evidence behind the verdict column (every check, the oracle's own checks), beside
    # the table; a new file per run, since a report is never overwritten.
    report = write_report(report_from_verification(verification),
                          work / f"report-{split}-{time.strftime('%Y%m%dT%H%M%S')}.md")
    console.print(f"report: {report}")

    def loss_auc(evaluation) -> float:  # LOSS-score MIA: forget documents vs never-seen holdout ones
        scores = evaluation.mia_scores
        if not scores.get("forget") or not scores.get("holdout"):
            return math.nan
        return roc_auc(scores["forget"]["loss"], scores["holdout"]["loss"])

    retain_auc = loss_auc(verification.oracle)
    retain_utility = verification.oracle.tofu.values["model_utility"]
    entries = [("finetuned", verification.original, None, None), ("retain", verification.oracle, None, retrain_seconds)]
    entries += [(m, verification.candidates[m], verification.verdicts[m], seconds[m]) for m in methods]
    rows = []
    for name, evaluation, verdict, secs in entries:
        values = evaluation.tofu.values
        auc = loss_auc(evaluation)
        rows.append({
            "split": split, "model": name,
            "forget_quality": values.get("forget_quality", math.nan),
            "model_utility": values["model_utility"],
            "utility_vs_retain": values["model_utility"] / retain_utility if retain_utility else math.nan,
            "forget_rouge": values.get("forget_Q_A_ROUGE", math.nan),
            "forget_truth_ratio": values.get("forget_truth_ratio", math.nan),
            "mia_auc": auc, "privleak": privleak(auc, retain_auc) if math.isfinite(auc + retain_auc) else math.nan,
            "verdict": (f"{verdict.forgotten.value} / {verdict.collateral_damage.value}" if verdict else
                        "" if name == "finetuned" else "oracle: trusted" if verification.oracle_trusted else
                        "oracle: NOT trusted (its own checks failed)"),
            "failed_checks": [] if verdict is None else verification.failed_checks(name),
            "seconds": secs if secs is not None else math.nan,
            "x_retrain": secs / retrain_seconds if secs is not None else math.nan,  # nan when either is
        })
    return rows


def print_tables(console: Console, rows: list[dict], authors: int, splits: list[str]) -> None:
    """The measured table, open-unlearning's published ones, and the issue's bar on the last split."""
    table = Table(title=f"TOFU on SmolLM2-135M ({authors} authors of 200), methods with their defaults")
    for column in ("split", "model", "forget quality", "model utility", "utility / retain", "forget ROUGE",
                   "forget truth ratio", "MIA AUC", "PrivLeak", "verdict (forgotten / collateral)", "seconds",
                   "x retrain"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["split"], r["model"], _num(r["forget_quality"]), _num(r["model_utility"]),
                      _num(r["utility_vs_retain"]), _num(r["forget_rouge"]), _num(r["forget_truth_ratio"]),
                      _num(r["mia_auc"]), "n/a" if not math.isfinite(r["privleak"]) else f"{r['privleak']:+.1f}",
                      r["verdict"], "" if not math.isfinite(r["seconds"]) else f"{r['seconds']:.0f}",
                      "" if not math.isfinite(r["x_retrain"]) else f"{r['x_retrain']:.2f}")
    console.print(table)
    for model_name, published in PUBLISHED.items():
        ref = Table(title=f"published: open-unlearning docs/results.md, {model_name} (forget quality / model utility "
                          "as a ratio to its retain model / forget truth ratio)")
        ref.add_column("method")
        for split in splits:
            ref.add_column(split)
        for method, by_split in published.items():
            ref.add_row(method, *(f"{_num(by_split[s][0])} / {by_split[s][1] / published['Retain'][s][1]:.2f} / "
                                  f"{_num(by_split[s][2])}" for s in splits))
        console.print(ref)
    for r in rows:
        if r.get("failed_checks"):
            console.print(f"{r['split']} {r['model']}: failed checks {', '.join(r['failed_checks'])}")
    for r in rows:
        if r["split"] == splits[-1] and r["model"] not in ("finetuned", "retain"):
            meets = r["forget_quality"] >= 0.05 and r["utility_vs_retain"] >= 0.9
            console.print(f"{splits[-1]} {r['model']}: forget quality {_num(r['forget_quality'])} (bar 0.05), model "
                          f"utility {_num(r['utility_vs_retain'])} x the retain model's (bar 0.9): "
                          + ("meets both" if meets else "does not meet both"))


if __name__ == "__main__":
    sys.exit(main())
