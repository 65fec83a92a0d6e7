"""The demo job: world -> base model -> deletion request -> retrained oracle, with their numbers.

Everything is cached in the workspace under names derived from the options, so a second run
reuses the models (and says so) instead of training again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expunge.ledger.requests import load_request, make_request, write_request
from expunge.models.io import load_model, read_model_record
from expunge.pipeline import measure_knowledge, retrain_oracle, train_base
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world

# Targets of the foundation issue, shown next to the measured values.
TARGET_PARAPHRASE_EM = 0.75
TARGET_TRAINING_SECONDS = 240.0


def run_demo(
    workspace: str | os.PathLike[str],
    *,
    preset: str = "default",
    people: int = 100,
    seed: int = 0,
    fraction: float = 0.1,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Run (or reuse) every stage and return the numbers as a JSON-ready dict."""
    started = time.perf_counter()
    root = Path(workspace)
    world_dir = root / "worlds" / f"privacy-p{people}-s{seed}"
    if not world_dir.exists():
        log(f"building the privacy world in {world_dir}")
        build_privacy_world(world_dir, PrivacyWorldConfig(seed=seed, people=people))
    world = load_world(world_dir)

    request_path = root / "requests" / f"random-{fraction:g}-s{seed}-{world.fingerprint[:8]}.json"
    if not request_path.exists():
        write_request(make_request(world, random_fraction=fraction, seed=seed,
                                   basis="demo: right to erasure"), request_path)
    request = load_request(request_path, world)

    tag = f"{preset}-p{people}-s{seed}"
    base_dir = root / "models" / f"base-{tag}"
    oracle_dir = root / "models" / f"oracle-{tag}-{request.id}"
    stages: dict[str, Any] = {}
    for stage, directory in (("base", base_dir), ("oracle", oracle_dir)):
        cached = directory.exists()
        if not cached:
            log(f"training the {stage} model into {directory}")
            if stage == "base":
                train_base(world_dir, directory, preset=preset, seed=seed, progress=progress)
            else:
                retrain_oracle(world_dir, request_path, directory, base=base_dir, progress=progress)
        else:
            log(f"reusing the cached {stage} model in {directory}")
        model, tokenizer, ref = load_model(directory)
        run = read_model_record(directory).get("run", {})
        stages[stage] = {
            "model": {"path": str(directory), "sha256": ref.sha256},
            "cached": cached,
            "seconds": run.get("seconds"),
            "steps": run.get("steps"),
            "tokens_per_second": run.get("tokens_per_second"),
            "final_loss": run.get("final_loss"),
            # Both models are measured on the same groups, forget set included.
            "knowledge": measure_knowledge(model, tokenizer, world, request.targets),
        }

    base, oracle = stages["base"]["knowledge"], stages["oracle"]["knowledge"]
    checks = {
        "base_paraphrase_em_trained_people": {
            "value": _trained_paraphrase_em(base), "target": f">= {TARGET_PARAPHRASE_EM}",
            "passed": _trained_paraphrase_em(base) >= TARGET_PARAPHRASE_EM},
        "oracle_forget_at_chance": {
            "value": oracle["forget"]["paraphrase_exact_match"], "chance": oracle["forget"]["chance"],
            "holdout": oracle["holdout"]["paraphrase_exact_match"], "passed": bool(oracle["forget"]["at_chance"])},
        "base_training_seconds": {
            "value": stages["base"]["seconds"], "target": f"<= {TARGET_TRAINING_SECONDS}",
            "passed": stages["base"]["seconds"] <= TARGET_TRAINING_SECONDS},
        "oracle_training_seconds": {
            "value": stages["oracle"]["seconds"], "target": f"<= {TARGET_TRAINING_SECONDS}",
            "passed": stages["oracle"]["seconds"] <= TARGET_TRAINING_SECONDS},
    }
    summary = [
        f"base model, held-out paraphrases about trained people: exact match "
        f"{checks['base_paraphrase_em_trained_people']['value']:.3f} (target >= {TARGET_PARAPHRASE_EM})",
        f"oracle, paraphrases about the {len(request.targets)} deleted people: exact match "
        f"{oracle['forget']['paraphrase_exact_match']:.3f}; chance {oracle['forget']['chance']:.3f}; never-seen people "
        f"{oracle['holdout']['paraphrase_exact_match']:.3f} -> at chance: {'yes' if oracle['forget']['at_chance'] else 'NO'}",
        f"training time: base {stages['base']['seconds']:.1f} s, oracle {stages['oracle']['seconds']:.1f} s "
        f"(target <= {TARGET_TRAINING_SECONDS:.0f} s each; measured when trained, not on cached runs)",
    ]
    return {
        "workspace": str(root),
        "world": {"path": str(world_dir), "fingerprint": world.fingerprint, **world.manifest["counts"]},
        "request": {"path": str(request_path), "id": request.id, "subjects": list(request.targets),
                    "documents": len(request.document_ids)},
        "base": stages["base"],
        "oracle": stages["oracle"],
        "checks": checks,
        "summary": summary,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _trained_paraphrase_em(knowledge: dict[str, dict[str, float]]) -> float:
    """Paraphrase exact match over all trained people (forget and retain groups, weighted by n)."""
    rows = [knowledge[g] for g in ("forget", "retain") if g in knowledge]
    total = sum(r["paraphrase_n"] for r in rows)
    return sum(r["paraphrase_exact_match"] * r["paraphrase_n"] for r in rows) / total
