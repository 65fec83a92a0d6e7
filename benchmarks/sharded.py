"""Sharded training (SISA with LoRA adapters) against the monolithic model: what it keeps, what a
deletion costs.

A privacy world (``--people`` people, ``--public`` public people for the frozen base, ``--seed``)
and the ``default`` preset. Measured:

1. **Monolithic**: `expunge train` on everything (the model every other method starts from); its
   exact match on held-out paraphrases about its trained people (retain accuracy), and its
   training time: what a full retrain costs.
2. **Sharded, K = 1, 2, 4, 8** (``--shards``): `expunge train --shards K`; the same accuracy under
   each combination (ensemble, mixture, merge), the training time (base, shards), and the time to
   answer every paraphrase probe under each combination (inference cost).
3. **Deletion stream** at K = ``--stream-shards``: ``--requests`` sequential requests, one trained
   person each, each deleted from the previous model (`expunge retrain --base SHARDED`); per
   deletion its seconds, the shards it retrained, and the ratio to a full retrain (the
   monolithic training), in seconds and in tokens trained on (the machine-independent cost: this
   machine's 2 cores are shared, so wall-clock ratios wander with whatever else runs). The last model is checked against one trained from the start
   without all the requests' people (identity sha256: bit-exact).

    python benchmarks/sharded.py [--workspace DIR] [--people 100] [--public 50] [--shards 1,2,4,8]
                                 [--requests 10] [--stream-shards 4] [--json F]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from expunge.ledger.requests import make_request, write_request
from expunge.models.io import load_model
from expunge.models.sharded import Combine, load_sharded
from expunge.pipeline import train_base
from expunge.sharding import ShardingConfig, delete_from_shards, train_sharded
from expunge.verify.probes import answer_probes
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world


def accuracy(model: Any, tokenizer: Any, probes: list[Any]) -> tuple[float, float]:
    """Exact match on ``probes`` and the seconds it took to answer them."""
    began = time.perf_counter()
    answers = answer_probes(model, tokenizer, probes)
    return sum(a.correct for a in answers) / len(answers), time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/expunge-sharded-bench"))
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--public", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--stream-shards", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    ws = args.workspace
    if ws.exists():
        sys.exit(f"{ws} exists: pass a new --workspace")
    world_dir = ws / "world"
    build_privacy_world(world_dir, PrivacyWorldConfig(seed=args.seed, people=args.people, public_people=args.public))
    world = load_world(world_dir)
    people = [s.id for s in world.deletable("train")]
    probes = world.probes_for(people, kinds=["paraphrase"])
    results: dict[str, Any] = {"people": args.people, "public": args.public, "seed": args.seed,
                               "probes": len(probes), "sharded": [], "stream": []}

    report = train_base(world_dir, ws / "monolithic", seed=args.seed, progress=False)
    model, tokenizer, _ = load_model(report.model.path)
    mono_acc, mono_answer = accuracy(model, tokenizer, probes)
    results["monolithic"] = {"accuracy": mono_acc, "train_seconds": report.run.seconds, "answer_seconds": mono_answer,
                             "train_tokens": report.run.tokens}
    print(f"monolithic: retain paraphrase EM {mono_acc:.3f}, trained in {report.run.seconds:.0f} s", flush=True)

    sweep = [int(x) for x in args.shards.split(",")]
    # The stream's K first and its deletions right after it: the acceptance numbers come first.
    order = sorted(sweep, key=lambda x: x != args.stream_shards)
    for k in order:
        sharded = train_sharded(world_dir, ws / f"sharded-{k}", sharding=ShardingConfig(shards=k), seed=args.seed,
                                progress=False)
        row: dict[str, Any] = {"shards": k, "base_seconds": sharded.base_seconds, "base_tokens": sharded.base_tokens,
                               "shard_tokens": sum(s.tokens for s in sharded.shards),
                               "shard_seconds": sum(s.seconds for s in sharded.shards),
                               "largest_shard_seconds": max(s.seconds for s in sharded.shards)}
        for combine in Combine:
            loaded, tok, _ = load_sharded(sharded.model.path, combine=combine)
            acc, seconds = accuracy(loaded, tok, probes)
            row[combine.value] = {"accuracy": acc, "ratio": acc / mono_acc if mono_acc else float("nan"),
                                  "answer_seconds": seconds}
        results["sharded"].append(row)
        print(f"K={k}: " + ", ".join(f"{c.value} {row[c.value]['accuracy']:.3f} ({row[c.value]['answer_seconds']:.1f} s)"
                                     for c in Combine)
              + f"; base {row['base_seconds']:.0f} s, shards {row['shard_seconds']:.0f} s", flush=True)
        if k == args.stream_shards:
            stream_deletions(args, world, world_dir, people, probes, report, sharded, results)

    if args.stream_shards not in sweep:
        source = train_sharded(world_dir, ws / f"sharded-{args.stream_shards}",
                               sharding=ShardingConfig(shards=args.stream_shards), seed=args.seed, progress=False)
        stream_deletions(args, world, world_dir, people, probes, report, source, results)
    k = args.stream_shards
    print_tables(results, k)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def stream_deletions(args: Any, world: Any, world_dir: Path, people: list[str], probes: list[Any], report: Any,
                     source: Any, results: dict[str, Any]) -> None:
    """The deletion stream on the sharded model ``source``, and the check against training without all."""
    k, ws = args.stream_shards, args.workspace
    chosen = random.Random(args.seed).sample(people, args.requests)
    current = source.model.path
    for i, person in enumerate(chosen):
        path = ws / f"request-{i:02d}.json"
        write_request(make_request(world, subjects=[person]), path)
        began = time.perf_counter()
        deleted = delete_from_shards(current, world_dir, path, ws / f"deleted-{i:02d}", progress=False)
        seconds = time.perf_counter() - began
        current = deleted.model.path
        results["stream"].append({"request": i, "person": person, "touched": deleted.touched,
                                  "seconds": seconds, "training_seconds": deleted.training_seconds,
                                  "ratio": seconds / report.run.seconds,
                                  "token_ratio": deleted.training_tokens / report.run.tokens})
        print(f"deletion {i}: shard {deleted.touched}, {seconds:.1f} s ({seconds / report.run.seconds:.3f} of a full "
              f"retrain; tokens {results['stream'][-1]['token_ratio']:.3f})", flush=True)
    together = ws / "request-all.json"
    write_request(make_request(world, subjects=chosen), together)
    scratch = train_sharded(world_dir, ws / "scratch", sharding=ShardingConfig(shards=k), seed=args.seed,
                            request_path=together, progress=False)
    results["bit_exact"] = scratch.model.sha256 == json.loads((Path(current) / "expunge_sharded.json").read_text())["sha256"]
    last, tok, _ = load_sharded(current)
    kept = [p for p in probes if p.subject not in set(chosen)]
    results["after_stream_accuracy"], _ = accuracy(last, tok, kept)
    mean = sum(r["seconds"] for r in results["stream"]) / len(results["stream"])
    results["mean_deletion_ratio"] = mean / report.run.seconds
    results["mean_token_ratio"] = sum(r["token_ratio"] for r in results["stream"]) / len(results["stream"])
    print(f"stream: mean deletion / full retrain {results['mean_deletion_ratio']:.3f} s, "
          f"{results['mean_token_ratio']:.3f} tokens; bit-exact: {results['bit_exact']}; retain EM after: "
          f"{results['after_stream_accuracy']:.3f}", flush=True)

def print_tables(results: dict[str, Any], k: int) -> None:
    mono = results["monolithic"]
    print("\n| model | ensemble | mixture | merge | training s | answering s (ensemble / mixture / merge) |")
    print("|---|---|---|---|---|---|")
    print(f"| monolithic | {mono['accuracy']:.3f} | | | {mono['train_seconds']:.0f} | {mono['answer_seconds']:.1f} |")
    for row in results["sharded"]:
        cells = [f"{row[c.value]['accuracy']:.3f} ({row[c.value]['ratio']:.2f}x)" for c in Combine]
        times = " / ".join(f"{row[c.value]['answer_seconds']:.1f}" for c in Combine)
        print(f"| K={row['shards']} | {' | '.join(cells)} | {row['base_seconds']:.0f} + {row['shard_seconds']:.0f} "
              f"({(row['base_tokens'] + row['shard_tokens']) / mono['train_tokens']:.2f}x tokens) | {times} |")
    print(f"\n| deletion (K={k}) | shard | seconds | of a full retrain (seconds) | (tokens trained) |")
    print("|---|---|---|---|---|")
    for row in results["stream"]:
        print(f"| {row['request']} | {row['touched']} | {row['seconds']:.1f} | {row['ratio']:.3f} | {row['token_ratio']:.3f} |")
    print(f"\nmean deletion / full retrain: {results['mean_deletion_ratio']:.3f} in seconds, "
          f"{results['mean_token_ratio']:.3f} in tokens (1/K = {1 / k:.3f}); "
          f"bit-exact against training without all {len(results['stream'])} people: {results['bit_exact']}; "
          f"retain paraphrase EM after the stream (ensemble): {results['after_stream_accuracy']:.3f}")


if __name__ == "__main__":
    main()
