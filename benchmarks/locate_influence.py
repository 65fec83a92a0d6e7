"""Locating what a request did not name: influence functions against BM25 on planted documents.

A privacy world with ``--planted`` people, each with four documents that carry their facts
without provenance naming them (two under an alias, "R. Petrov", about no one; two mentions
inside another person's document). A model is trained on the world (``--preset``); then, for each
planted person, a request resolved through provenance (their own documents only) and two
rankings of every other training document: BM25 against the request's documents' text, and
influence on the person's direct questions (EK-FAC, factors fitted once for the model).
Reported: precision and recall at k of the planted documents, overall and per kind, averaged over
the planted people.

    python benchmarks/locate_influence.py [--workspace DIR] [--people 40] [--planted 10]
                                          [--preset tiny] [--seed 0] [--damping 1e-8] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from expunge.ledger.requests import make_request, write_request
from expunge.locate import locate
from expunge.locate.related import bm25_related, precision_recall_at_k
from expunge.methods.influence.locate import influence_related
from expunge.pipeline import train_base
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_planted, load_world

KS = (4, 10, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/expunge-locate-bench"))
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--planted", type=int, default=10)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--damping", default="1e-8", help="none: kronfluence's heuristic (1e-8: the best LDS)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    ws = args.workspace
    if ws.exists():
        sys.exit(f"{ws} exists: pass a new --workspace")
    damping = None if args.damping == "none" else float(args.damping)
    world_dir = ws / "world"
    build_privacy_world(world_dir, PrivacyWorldConfig(seed=args.seed, people=args.people,
                                                      planted_people=args.planted))
    world = load_world(world_dir)
    planted = load_planted(world)
    base = train_base(world_dir, ws / "base", preset=args.preset, seed=args.seed, progress=False)
    rows: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {"bm25": 0.0, "influence": 0.0}
    for i, subject in enumerate(sorted({p.subject for p in planted})):
        path = ws / f"request-{i:02d}.json"
        request = make_request(world, subjects=[subject])
        write_request(request, path)
        located = locate(world, request)
        began = time.perf_counter()
        rankings = {"bm25": bm25_related(world, located)}
        seconds["bm25"] += time.perf_counter() - began
        began = time.perf_counter()
        rankings["influence"] = influence_related(base.model.path, world_dir, path, damping=damping,
                                                  workspace=ws / "influence")
        seconds["influence"] += time.perf_counter() - began
        for kind in ("all", "alias", "mention"):
            truth = [p.document for p in planted if p.subject == subject and kind in ("all", p.kind)]
            for method, ranking in rankings.items():
                for k in KS:
                    p, r = precision_recall_at_k(ranking.document_ids, truth, k)
                    rows.setdefault(f"{method}/{kind}/P@{k}", []).append(p)
                    rows.setdefault(f"{method}/{kind}/R@{k}", []).append(r)
    table = {key: statistics.mean(values) for key, values in rows.items()}
    results: dict[str, Any] = {"people": args.people, "planted_people": args.planted, "preset": args.preset,
                               "seed": args.seed, "damping": args.damping, "candidates": len(world.training_documents()),
                               "base_converged": base.converged, "seconds": seconds, "table": table}
    print(f"\n{len({p.subject for p in planted})} planted people, {len(world.training_documents())} training documents, "
          f"preset {args.preset}, seed {args.seed}\n")
    print("| documents | method | " + " | ".join(f"P@{k} | R@{k}" for k in KS) + " |")
    print("|---|---|" + "---|---|" * len(KS))
    for kind in ("all", "alias", "mention"):
        for method in ("bm25", "influence"):
            cells = " | ".join(f"{table[f'{method}/{kind}/P@{k}']:.3f} | {table[f'{method}/{kind}/R@{k}']:.3f}"
                               for k in KS)
            print(f"| {kind} | {method} | {cells} |")
    print(f"\nseconds: bm25 {seconds['bm25']:.1f}, influence {seconds['influence']:.1f} (factors fitted once)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
