"""Validate influence attribution before any claim: the linear datamodeling score (LDS).

Builds a privacy world and trains its base model (``train_base``, preset ``tiny`` by default),
then draws M random subsets of the training documents (``--fraction`` of them each, uniformly, or
``--by-subject``: that fraction of the people with all their documents, the general facts
always kept), retrains the same recipe on each subset (same model seed; ``--seeds`` lists the
seeds, and the measured losses are averaged over them), and measures each query's loss (the
summed NLL of a probe's answer) on every retrained model. The queries are held-out paraphrase
questions about trained people (``--kinds``). Influence predicts a subset's query loss as
``-sum over the subset's documents of s(q, m)`` (a positive score lowers the loss), scored once on
the base model; per query, LDS is the Spearman correlation between predicted and measured losses
across the subsets, and the reported LDS is the mean over queries with a bootstrap 95% interval
(queries resampled). Each damping in ``--damping`` is scored on the same retrained models, and so
are two references: plain gradient dot products (strategy ``identity``: no curvature) and a
count baseline (minus the number of documents in the subset about the query's person).

The retraining helper repeats ``expunge.pipeline``'s recipe in memory (no files, no ledger); the
script checks that it reproduces ``train_base``'s weights bit for bit on the full set first.

    python benchmarks/influence_lds.py [--people 8] [--subsets 40] [--fraction 0.5] [--seeds 0]
                                       [--damping none,1e-3,1e-2,1e-1] [--by-subject] [--json FILE]

Anchor: EK-FAC reports LDS 0.26-0.47 on GPT-2-sized language models (Grosse et al. 2023); the
goal here is >= 0.3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers.utils import logging as hf_logging

from expunge.data import SequenceDataset, encode_documents, padding_id
from expunge.methods.influence.attribution import Query, attribute
from expunge.methods.influence.factors import FactorSettings, summed_losses
from expunge.models.builders import build_llama
from expunge.models.io import load_model, weights_sha256
from expunge.pipeline import train_base
from expunge.presets import get_preset
from expunge.prompts import example_for
from expunge.training import train_loop
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world


def retrain(world, tokenizer, keep: set[str], preset_name: str, seed: int) -> torch.nn.Module:
    """``_train_on``'s recipe on the kept training documents, in memory."""
    preset = get_preset(preset_name)
    docs = [d for d in world.training_documents() if d.id in keep]
    dataset = SequenceDataset(encode_documents(tokenizer, [example_for(d) for d in docs], preset.max_length))
    batches = math.ceil(len(dataset) / preset.training.batch_size)
    steps_per_epoch = max(1, math.ceil(batches / preset.training.gradient_accumulation_steps))
    max_steps = min(preset.training.max_steps, math.ceil(preset.length.max_epochs * steps_per_epoch))
    config = replace(preset.training, seed=seed, max_steps=max_steps, eval_every=0,
                     warmup_steps=min(preset.training.warmup_steps, max_steps - 1))
    model = build_llama(preset.model, tokenizer, seed)
    train_loop(model, dataset, config, pad_id=padding_id(tokenizer), progress=False)
    return model.eval()


def lds(scores: np.ndarray, masks: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Per query: Spearman(measured loss, -sum of the subset's scores) over the subsets."""
    predicted = -(scores @ masks.T)  # (queries, subsets)
    return np.array([spearmanr(predicted[q], losses[q]).statistic for q in range(len(scores))])


def bootstrap(values: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[float, float, float]:
    values = values[~np.isnan(values)]
    means = [rng.choice(values, len(values)).mean() for _ in range(n)]
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--subsets", type=int, default=40)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--seeds", default="0", help="comma-separated model seeds of the retrained subsets")
    parser.add_argument("--by-subject", action="store_true", help="draw people (with all their documents)")
    parser.add_argument("--kinds", default="paraphrase", help="probe kinds used as queries (trained people's)")
    parser.add_argument("--damping", default="none,1e-3,1e-2,1e-1")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="expunge-lds-"))
    os.environ.setdefault("EXPUNGE_DB", str(root / "ledger.sqlite"))
    seeds = [int(s) for s in args.seeds.split(",")]
    dampings = [None if d.strip().lower() == "none" else float(d) for d in args.damping.split(",")]

    world_dir, base_dir = root / "world", root / "base"
    if not world_dir.exists():
        build_privacy_world(world_dir, PrivacyWorldConfig(seed=args.world_seed, people=args.people))
    world = load_world(world_dir)
    if not base_dir.exists():
        train_base(world_dir, base_dir, preset=args.preset, seed=0, progress=False)
    base, tokenizer, ref = load_model(base_dir)
    docs = world.training_documents()
    ids = [d.id for d in docs]
    check = retrain(world, tokenizer, set(ids), args.preset, 0)
    same = weights_sha256(check) == ref.sha256
    print(f"retraining helper reproduces train_base bit for bit: {same}", flush=True)

    trained = {s.id for s in world.people("train")}
    kinds = set(args.kinds.split(","))
    probes = [p for p in world.probes if p.kind in kinds and p.subject in trained]
    queries = [Query.from_probe(p) for p in probes]
    query_seqs = encode_documents(tokenizer, [(p.prompt, " " + p.answer) for p in probes], 128)

    rng = random.Random(12345)
    masks = np.zeros((args.subsets, len(docs)))
    people = sorted(trained)
    for j in range(args.subsets):
        if args.by_subject:
            chosen = set(rng.sample(people, round(args.fraction * len(people))))
            masks[j] = [not (set(d.subjects) & trained) or bool(set(d.subjects) & chosen) for d in docs]
        else:
            masks[j, rng.sample(range(len(docs)), round(args.fraction * len(docs)))] = 1
    # Each (subsets, seed)'s measured losses are kept in the work directory: scoring again (other
    # dampings) or adding seeds retrains nothing that was retrained before.
    design = hashlib.sha256(json.dumps([masks.tolist(), args.kinds, ref.sha256]).encode()).hexdigest()[:12]
    per_seed = []
    for seed in seeds:
        cached = root / f"losses-{design}-seed{seed}.npy"
        if cached.is_file():
            per_seed.append(np.load(cached))
            print(f"seed {seed}: measured losses read from {cached}", flush=True)
            continue
        measured = np.zeros((len(queries), args.subsets))
        for j in range(args.subsets):
            keep = {ids[i] for i in np.flatnonzero(masks[j])}
            model = retrain(world, tokenizer, keep, args.preset, seed)
            measured[:, j] = summed_losses(model, query_seqs, pad_id=padding_id(tokenizer))
            print(f"seed {seed}, subset {j + 1}/{args.subsets}: {int(masks[j].sum())} documents, mean query loss "
                  f"{measured[:, j].mean():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
        np.save(cached, measured)
        per_seed.append(measured)
    losses = np.mean(per_seed, axis=0)

    boot = np.random.default_rng(0)
    rows = []
    for strategy, damping in [("ekfac", d) for d in dampings] + [("identity", None)]:
        attribution = attribute(base_dir, world_dir, queries, top=1, damping=damping, workspace=root,
                                settings=FactorSettings(strategy=strategy))
        per_query = lds(attribution.scores.numpy().astype(np.float64), masks, losses)
        mean, low, high = bootstrap(per_query, boot)
        rows.append({"scores": strategy, "damping": "heuristic" if damping is None else damping, "lds": mean,
                     "ci95": [low, high], "queries": int((~np.isnan(per_query)).sum())})
    about = np.array([[p.subject in d.subjects for d in docs] for p in probes], dtype=np.float64)
    per_query = lds(about, masks, losses)
    mean, low, high = bootstrap(per_query, boot)
    rows.append({"scores": "count of the subject's documents", "damping": "-", "lds": mean, "ci95": [low, high],
                 "queries": int((~np.isnan(per_query)).sum())})

    print(f"\nLDS on the privacy world ({args.people} people, {len(docs)} training documents, preset {args.preset}); "
          f"{args.subsets} subsets of {args.fraction:.0%} of the " + ("people" if args.by_subject else "documents")
          + f"; retrain seeds {seeds}; {len(queries)} queries ({args.kinds} probes of trained people); "
          f"{time.perf_counter() - started:.0f} s")
    print(f"{'scores':<34} {'damping':>10} {'LDS':>7} {'95% CI':>17}")
    for r in rows:
        print(f"{r['scores']:<34} {str(r['damping']):>10} {r['lds']:7.3f}   [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]")
    if args.json:
        args.json.write_text(json.dumps({"people": args.people, "documents": len(docs), "preset": args.preset,
                                         "subsets": args.subsets, "fraction": args.fraction, "seeds": seeds,
                                         "by_subject": args.by_subject, "queries": len(queries),
                                         "helper_reproduces_base": same, "rows": rows,
                                         "seconds": time.perf_counter() - started}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
