"""Unlearning speed on real weights: tokens/s and peak memory of `expunge forget` (SimNPO, its
defaults for a pretrained model) against a bare PyTorch loop on the same batches, on SmolLM2-135M
as a user's own Hugging Face model, full and LoRA, with a profile of where expunge's run spends
its time. Goal (issue 13, item 7): expunge >= 0.8 x bare.

    python benchmarks/forget_speed.py [--steps 20] [--repeats 1] [--lora-rank 8] [--modes full,lora] [--forget-people 1]
                                      [--json FILE]

The data is the user's path: a JSONL of plain-text facts about invented people (the privacy
world's documents, so SmolLM2's BPE tokenizer and the generic anchor's stand-in names are those
of a real import) brought in with ``import jsonl``; the request names ``--forget-people`` of them
(about 29 facts each), and five never-seen people are the membership reference.

Both runs are one call of :func:`expunge.methods.unlearn.unlearn` with the same options
(``max_steps``, ``early_stop=False`` so both take every step): the same located sets, encoding,
precomputed teacher log-probabilities, batches (one seeded length-grouped sampler), loss terms,
AdamW groups, schedule and clipping. In the bare run the training loop itself is replaced by the
minimal one a researcher writes (no Accelerate, no stop-rule checks, no best-state copies, no
loss readings), so "steps" compares the loops, "steps + checks" adds the stop-rule checks a user
waits for between steps (the bare loop has none), and "end to end" is the whole command. Each run is its
own process, so its peak resident memory (the kernel's ``ru_maxrss``) is its own.

The profile splits expunge's run into its phases (load, locate, the original's NLL on the stop
rules' sets, the generic anchor's stand-in texts and teacher log-probabilities, training steps,
stop-rule checks, save), timed around the functions :mod:`expunge.methods.unlearn` calls.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOOPS = ("bare", "expunge")
PEOPLE_TRAIN, PEOPLE_HOLDOUT = 24, 5
PHASES = ("load_model", "locate", "mean_token_nll", "generic_targets", "_teacher_logprobs", "save_model_version")


def build(work: Path, forget_people: int) -> None:
    """The user's files: the model dir (SmolLM2 saved as a plain HF dir), a JSONL world, a request."""
    from expunge.ledger import make_request, write_request
    from expunge.models.pretrained import load_smollm2
    from expunge.worlds.importers.jsonl import JsonlSources, import_jsonl
    from expunge.worlds.privacy import PrivacyWorldConfig, generate_privacy_world

    if (work / "request.json").is_file():
        return
    model, tokenizer = load_smollm2()
    model.save_pretrained(work / "mine")
    tokenizer.save_pretrained(work / "mine")
    generated = generate_privacy_world(PrivacyWorldConfig(seed=0))
    train = [s for s in generated.subjects if s.role == "train"][:PEOPLE_TRAIN]
    holdout = [s for s in generated.subjects if s.role == "holdout"][:PEOPLE_HOLDOUT]
    split = {s.id: "train" for s in train} | {s.id: "holdout" for s in holdout}
    docs = [{"id": d.id, "text": d.text, "subjects": list(d.subjects), "split": split[d.subjects[0]]}
            for d in generated.documents if d.subjects[0] in split]
    (work / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (work / "subjects.jsonl").write_text("".join(json.dumps({"id": s.id, "name": s.name, "kind": "person"}) + "\n"
                                                 for s in train + holdout))
    world = import_jsonl(work / "world", JsonlSources(documents=work / "docs.jsonl", subjects=work / "subjects.jsonl"))
    write_request(make_request(world, subjects=[s.id for s in train[:forget_people]]), work / "request.json")


def run_one(loop: str, work: Path, steps: int, lora_rank: int) -> dict:
    """One `forget` in this process, its step throughput, end-to-end seconds and phase profile."""
    import expunge.methods.unlearn as unlearn_module

    spent: dict[str, float] = {}

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            clock = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - clock
        return wrapper

    for name in PHASES:
        setattr(unlearn_module, name, timed(name, getattr(unlearn_module, name)))
    # The bare loop is train_speed.py's, the same for every benchmark, given the method's own
    # batches and loss (benchmarks/ is on sys.path: this script runs from it).
    from train_speed import bare_loop

    def bare_train_loop(model, dataset, config, *, collate_fn, loss_fn, **_: Any):
        return bare_loop(model, dataset, config, collate_fn=collate_fn, loss_fn=loss_fn)

    loop_fn = bare_train_loop if loop == "bare" else unlearn_module.train_loop

    def training(model, dataset, config, **kwargs):
        if kwargs.get("eval_hook") is not None:
            kwargs["eval_hook"] = timed("checks", kwargs["eval_hook"])
        clock = time.perf_counter()
        result = loop_fn(model, dataset, config, **kwargs)
        spent["train_loop"] = time.perf_counter() - clock
        return result

    unlearn_module.train_loop = training
    out = Path(tempfile.mkdtemp(dir=work)) / "forgot"
    options = {"max_steps": steps, "early_stop": False, "lora_rank": lora_rank}
    report = unlearn_module.unlearn(work / "mine", work / "world", work / "request.json", out, method="simnpo",
                                    options=options, progress=False)
    spent["steps"] = spent.pop("train_loop") - spent.get("checks", 0.0)
    return {"tokens": report.run.tokens, "steps": report.run.steps, "step_seconds": spent["steps"],
            "seconds": report.seconds, "phases": spent, "notes": report.notes,
            "generic_weight": report.config["generic_weight"], "batch_size": report.config["batch_size"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per loop and mode (median reported)")
    parser.add_argument("--lora-rank", type=int, default=8, help="the LoRA runs' rank (0: full fine-tuning only)")
    parser.add_argument("--modes", default="full,lora", help="which runs: full, lora or both (comma-separated)")
    parser.add_argument("--forget-people", type=int, default=1)
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", nargs=2, metavar=("LOOP", "RANK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a child process: one run, its numbers and its peak memory on stdout
        out = run_one(args.one[0], args.work, args.steps, int(args.one[1]))
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    work = args.work or Path(tempfile.mkdtemp(prefix="expunge-forget-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    build(work, args.forget_people)
    measured: dict[tuple[str, int], list[dict]] = {}
    modes = set(args.modes.split(","))
    if not modes or modes - {"full", "lora"} or ("lora" in modes and not args.lora_rank):
        raise SystemExit(f"--modes {args.modes}: use full, lora or full,lora (lora needs --lora-rank above 0)")
    ranks = tuple(r for mode, r in (("full", 0), ("lora", args.lora_rank)) if mode in modes)
    for repeat in range(args.repeats):
        for rank in ranks:
            for loop in (LOOPS if repeat % 2 == 0 else LOOPS[::-1]):  # who goes first alternates
                console.print(f"[dim]run {repeat + 1}: {loop}, {'LoRA rank ' + str(rank) if rank else 'full'}…[/dim]")
                done = subprocess.run([sys.executable, __file__, "--one", loop, str(rank), "--steps", str(args.steps),
                                       "--work", str(work)], capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"the {loop} run failed:\n{done.stderr[-3000:]}")
                measured.setdefault((loop, rank), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    import torch

    first = measured["expunge", ranks[0]][0]
    table = Table(title=f"SmolLM2-135M `forget` (SimNPO, pretrained defaults: batch {first['batch_size']} forget + "
                        f"{first['batch_size']} retain, generic anchor weight {first['generic_weight']}), "
                        f"{args.steps} steps, {torch.get_num_threads()} threads, median of {args.repeats}")
    for column in ("mode", "loop", "tokens/run", "steps tok/s", "vs bare", "steps + checks tok/s", "vs bare",
                   "end to end (s)", "vs bare", "peak RSS (MB)"):
        table.add_column(column)
    rows = []
    for rank in ranks:
        speed = {loop: statistics.median(r["tokens"] / r["step_seconds"] for r in measured[loop, rank]) for loop in LOOPS}
        # What a user waits for per step: the steps and the stop-rule checks between them.
        looped = {loop: statistics.median(r["tokens"] / (r["step_seconds"] + r["phases"].get("checks", 0.0))
                                          for r in measured[loop, rank]) for loop in LOOPS}
        wall = {loop: statistics.median(r["seconds"] for r in measured[loop, rank]) for loop in LOOPS}
        for loop in LOOPS:
            runs = measured[loop, rank]
            row = {"mode": "full" if not rank else f"lora-{rank}", "loop": loop, "tokens": runs[0]["tokens"],
                   "tokens_per_second": speed[loop], "ratio_vs_bare": speed[loop] / speed["bare"],
                   "with_checks_tokens_per_second": looped[loop], "with_checks_ratio_vs_bare": looped[loop] / looped["bare"],
                   "seconds": wall[loop], "seconds_ratio_vs_bare": wall["bare"] / wall[loop],
                   "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                   "phases": {k: statistics.median(r["phases"].get(k, 0.0) for r in runs)
                              for k in {p for r in runs for p in r["phases"]}}}
            rows.append(row)
            table.add_row(row["mode"], loop, f"{row['tokens']:,}", f"{speed[loop]:.1f}",
                          f"{row['ratio_vs_bare']:.2f}x", f"{looped[loop]:.1f}", f"{row['with_checks_ratio_vs_bare']:.2f}x",
                          f"{wall[loop]:.0f}", f"{row['seconds_ratio_vs_bare']:.2f}x",
                          f"{row['peak_rss_mb']:.0f}")
    console.print(table)
    profile = Table(title="where the time goes (seconds, median)")
    names = ("load_model", "locate", "mean_token_nll", "generic_targets", "_teacher_logprobs", "steps", "checks",
             "save_model_version")
    profile.add_column("mode")
    profile.add_column("loop")
    for name in names:
        profile.add_column(name.strip("_"))
    profile.add_column("end to end")
    for row in rows:
        profile.add_row(row["mode"], row["loop"], *(f"{row['phases'].get(n, 0.0):.1f}" for n in names),
                        f"{row['seconds']:.1f}")
    console.print(profile)
    console.print(f"notes of expunge's {'full' if not ranks[0] else 'LoRA'} run: " + "; ".join(first["notes"]))
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "repeats": args.repeats, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
