"""Training speed on real weights: tokens/s and peak memory of expunge's training loop (what
`expunge train --from` runs) against a bare PyTorch/transformers loop, on SmolLM2-135M with the
same batches, full fine-tuning and LoRA. Goal (issue 13): expunge >= 0.8 x bare.

    python benchmarks/real_speed.py [--steps 12] [--repeats 2] [--lora-rank 8] [--json FILE]

Data: question-answer pairs of TOFU's first authors when TOFU's files are found
(``$EXPUNGE_TOFU_DIR`` or ``shared/data/tofu`` above), else a fixed set of invented ones, encoded
as a question-answer document trains (prompt, answer, EOS; loss on the answer). Both loops get
the same dataset, the same seeded length-grouped sampler, batch size, AdamW groups, schedule and
clipping: the `finetune` preset's. The bare loop has nothing else; expunge's runs through
Accelerate with its loss readings (no progress bar, no checkpoints: those are measured by
``benchmarks/train_speed.py``). Each run is its own process, so its peak resident memory (the
kernel's ``ru_maxrss``) is its own; runs alternate between the loops and the median is reported.

`forget` against a bare unlearning loop is `benchmarks/forget_speed.py`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

LOOPS = ("bare", "expunge")


def dataset_and_config(steps: int):
    """The QA dataset (SmolLM2's tokenizer), the finetune preset's config for ``steps`` steps, the pad id."""
    from transformers import AutoTokenizer

    from expunge.data import SequenceDataset, encode_documents, padding_id
    from expunge.models.pretrained import SMOLLM2_FILE, smollm2_path
    from expunge.presets import get_preset
    from expunge.worlds.importers.tofu import find_tofu_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path(), gguf_file=SMOLLM2_FILE)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tofu = find_tofu_dir(Path(__file__).parent) / "full.json"
    if tofu.is_file():
        lines = [line for line in tofu.read_text(encoding="utf-8").splitlines() if line.strip()]
        items = [x for line in lines for x in json.loads(line)][:160]
        pairs = [(f"Question: {x['question']}\nAnswer:", " " + x["answer"]) for x in items]
    else:
        pairs = [(f"Question: What is fact {k} about author {i}?\nAnswer:",
                  f" Author {i} wrote {k} novels about the sea, the city of Varn and its harbour.")
                 for i in range(8) for k in range(20)]
    preset = get_preset("finetune")
    dataset = SequenceDataset(encode_documents(tokenizer, pairs, preset.max_length))
    config = replace(preset.training, max_steps=steps, warmup_steps=min(preset.training.warmup_steps, steps // 4),
                     checkpoint_every=0, eval_every=0)
    return dataset, config, padding_id(tokenizer), preset


def run_one(loop: str, steps: int, lora_rank: int) -> dict:
    """One run in this process: (tokens, seconds) of the loop; the caller reads the peak memory."""
    from train_speed import bare_loop  # benchmarks/ is on sys.path: this script runs from it

    from expunge.models.lora import wrap_lora
    from expunge.models.pretrained import load_smollm2
    from expunge.training import train_loop

    dataset, config, pad, preset = dataset_and_config(steps)
    if lora_rank and preset.lora_learning_rate:
        config = replace(config, learning_rate=preset.lora_learning_rate)
    model, _ = load_smollm2()
    model = wrap_lora(model, lora_rank)
    if loop == "expunge":
        result = train_loop(model, dataset, config, pad_id=pad, progress=False)
        return {"tokens": result.tokens, "seconds": result.seconds}
    result = bare_loop(model, dataset, config, pad)  # train_speed.py's loop, the same for every benchmark
    return {"tokens": result.tokens, "seconds": result.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (batch 8)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per loop and mode (median reported)")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", nargs=2, metavar=("LOOP", "RANK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a child process: one run, its numbers and its peak memory on stdout
        out = run_one(args.one[0], args.steps, int(args.one[1]))
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    measured: dict[tuple[str, int], list[dict]] = {}
    for repeat in range(args.repeats):
        for rank in (0, args.lora_rank):
            order = LOOPS if repeat % 2 == 0 else LOOPS[::-1]  # who goes first alternates
            for loop in order:
                console.print(f"[dim]run {repeat + 1}: {loop}, {'LoRA rank ' + str(rank) if rank else 'full'}…[/dim]")
                done = subprocess.run([sys.executable, __file__, "--one", loop, str(rank), "--steps", str(args.steps)],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"the {loop} run failed:\n{done.stderr[-2000:]}")
                measured.setdefault((loop, rank), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    import torch

    table = Table(title=f"SmolLM2-135M fine-tuning, finetune preset (batch 8), {args.steps} steps per run, "
                        f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for column in ("mode", "loop", "tokens/run", "tokens/s", "vs bare", "peak RSS (MB)"):
        table.add_column(column)
    rows = []
    for rank in (0, args.lora_rank):
        speeds = {loop: statistics.median(r["tokens"] / r["seconds"] for r in measured[loop, rank]) for loop in LOOPS}
        for loop in LOOPS:
            runs = measured[loop, rank]
            row = {"mode": "full" if not rank else f"lora-{rank}", "loop": loop, "tokens": runs[0]["tokens"],
                   "tokens_per_second": speeds[loop], "ratio_vs_bare": speeds[loop] / speeds["bare"],
                   "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs)}
            rows.append(row)
            table.add_row(row["mode"], loop, f"{row['tokens']:,}", f"{row['tokens_per_second']:.1f}",
                          f"{row['ratio_vs_bare']:.2f}x", f"{row['peak_rss_mb']:.0f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "repeats": args.repeats, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
