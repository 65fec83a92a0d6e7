"""The main job: a privacy deletion end to end, with the evidence.

1. Build (or reuse) the default privacy world, train the base model on it, file a deletion
   request for a share of its people, and retrain the oracle without them (all cached in the
   workspace: a second run reuses them and says so).
2. Unlearn the request with the default method and with the refusal baseline (IdkFT, which
   hides rather than removes); both results are new model versions in a fresh run directory.
3. Verify both against the original and the oracle, and write the report (HTML, Markdown, JSON).
4. Return the compact table, the verdicts and how the default method fares against the targets
   of the main-job issue — whatever the numbers are.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError
from expunge.ledger.requests import load_request, make_request, write_request
from expunge.locate import Located, locate
from expunge.methods.registry import BASELINE_METHOD, DEFAULT_METHOD, get_method
from expunge.methods.unlearn import unlearn
from expunge.models.io import read_model_record
from expunge.pipeline import retrain_oracle, train_base
from expunge.report import report_from_verification, write_report
from expunge.report.render import json_safe
from expunge.verify.judge import Forgotten
from expunge.verify.suite import verify_models
from expunge.recipe import SMOLLM2
from expunge.records import DeletionRequest
from expunge.worlds import PrivacyWorldConfig, World, build_privacy_world, load_world
from expunge.worlds.privacy import GENERATOR_VERSION

# The main-job targets for the default method, shown next to the measured values.
TARGETS = {
    "forget_em_within_oracle": 0.05,  # |forget EM - oracle forget EM| <= 0.05
    "retain_em_ratio": 0.9,  # retain EM >= 0.9 x original
    "mia_auc_within_oracle": 0.1,  # |MIA AUC - oracle AUC| <= 0.1 (LOSS attack)
    "plausibility_within_oracle": 0.15,  # |plausibility - oracle plausibility| <= 0.15
    "fraction_of_retraining": 0.10,  # unlearning seconds <= 10% of retraining seconds
}


@dataclass
class Workspace:
    """The cached inputs of a deletion: world, request, base model and oracle."""

    root: Path
    world: World
    world_dir: Path
    request: DeletionRequest
    request_path: Path
    base_dir: Path
    oracle_dir: Path
    stages: dict[str, dict[str, Any]]
    located: Located

    @property
    def retraining_seconds(self) -> float:
        return float(self.stages["oracle"]["seconds"])


def start_key(from_model: str | os.PathLike[str] | None) -> str:
    """A short name for where the base model starts, for cache names: "" (a fresh model),
    "smollm2", or a digest of a model directory's path and its weight files' sizes and times (a
    changed model is a new start, never a stale cache)."""
    if from_model is None:
        return ""
    if str(from_model) == SMOLLM2:
        return SMOLLM2
    path = Path(from_model).resolve()
    if not path.is_dir():
        raise ExpungeError(f"pretrained model {from_model} is not a directory",
                           "give a Hugging Face model directory, or smollm2")
    files = sorted(f for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".json"))
    stamp = "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return "from-" + hashlib.sha256(f"{path}|{stamp}".encode()).hexdigest()[:10]


def prepare_workspace(
    workspace: str | os.PathLike[str],
    *,
    preset: str | None = None,
    people: int = 100,
    seed: int = 0,
    fraction: float = 0.1,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
    from_model: str | os.PathLike[str] | None = None,
) -> Workspace:
    """Build or reuse the world, the request, the base model and the oracle (names derive from
    the options, so a second call with the same options trains nothing). With ``from_model`` (a
    Hugging Face model directory, or ``smollm2``) the base model is that model fine-tuned on the
    world (preset ``finetune`` by default) and the oracle repeats the recipe from the same
    weights without the request's documents."""
    preset = preset or ("default" if from_model is None else "finetune")
    root = Path(workspace)
    # The generator version is in the name: a newer generator never reuses an older world.
    world_dir = root / "worlds" / f"privacy-v{GENERATOR_VERSION}-p{people}-s{seed}"
    if not world_dir.exists():
        log(f"building the privacy world in {world_dir}")
        try:
            config = PrivacyWorldConfig(seed=seed, people=people)
        except ValueError as exc:
            raise ExpungeError(f"invalid demo options: {exc}", "adjust --people") from None
        build_privacy_world(world_dir, config)
    world = load_world(world_dir)

    request_path = root / "requests" / f"random-{fraction:g}-s{seed}-{world.fingerprint[:8]}.json"
    if not request_path.exists():
        write_request(make_request(world, random_fraction=fraction, seed=seed,
                                   basis="demo: right to erasure"), request_path)
    request = load_request(request_path, world)

    start = start_key(from_model)
    tag = f"{preset}{'-' + start if start else ''}-p{people}-s{seed}-{world.fingerprint[:8]}"
    base_dir = root / "models" / f"base-{tag}"
    oracle_dir = root / "models" / f"oracle-{tag}-{request.id}"
    stages: dict[str, dict[str, Any]] = {}
    located = locate(world, request)  # located once: retraining, unlearning and verification share it
    for stage, directory in (("base", base_dir), ("oracle", oracle_dir)):
        cached = directory.exists()
        if not cached:
            log(f"training the {stage} model into {directory}")
            if stage == "base":
                train_base(world_dir, directory, preset=preset, seed=seed, progress=progress,
                           from_model=None if from_model is None else str(from_model))
            else:
                retrain_oracle(world_dir, request_path, directory, base=base_dir, progress=progress, located=located)
        else:
            log(f"reusing the cached {stage} model in {directory}")
        record = read_model_record(directory)
        run = record.get("run", {})
        stages[stage] = {"model": {"path": str(directory), "sha256": record["sha256"]}, "cached": cached,
                         "seconds": run.get("seconds"), "steps": run.get("steps"),
                         "epochs": run.get("epochs"), "converged": run.get("converged"),
                         "tokens_per_second": run.get("tokens_per_second"), "final_loss": run.get("final_loss")}
    return Workspace(root, world, world_dir, request, request_path, base_dir, oracle_dir, stages, located)


def run_demo(
    workspace: str | os.PathLike[str],
    *,
    preset: str | None = None,
    people: int = 100,
    seed: int = 0,
    fraction: float = 0.1,
    method: str = DEFAULT_METHOD,
    baseline: str = BASELINE_METHOD,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
    from_model: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run (or reuse) every stage and return the numbers as a JSON-ready dict (README: schema);
    ``from_model`` starts the base model from pretrained weights (:func:`prepare_workspace`)."""
    started = time.perf_counter()
    get_method(method), get_method(baseline)  # unknown names fail before any work
    if method == baseline:
        raise ExpungeError(f"--method and --baseline are both {method!r}", "pick two different methods")
    ws = prepare_workspace(workspace, preset=preset, people=people, seed=seed, fraction=fraction,
                           progress=progress, log=log, from_model=from_model)

    # A fresh run directory: unlearned models are new versions, never written over old ones.
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = _fresh_dir(ws.root / "runs" / f"{stamp}-{method}")
    runs: dict[str, dict[str, Any]] = {}
    for name in (method, baseline):
        log(f"unlearning with {name}")
        report = unlearn(ws.base_dir, ws.world_dir, ws.request_path, run_dir / "models" / name, method=name,
                         progress=progress, located=ws.located)
        runs[name] = report.to_dict()
    log("verifying against the original and the oracle")
    verify_started = time.perf_counter()
    verification = verify_models({name: run_dir / "models" / name for name in runs}, ws.base_dir, ws.oracle_dir,
                                 ws.world_dir, ws.request_path, located=ws.located)
    verify_seconds = time.perf_counter() - verify_started
    world_info = {"path": str(ws.world_dir), "fingerprint": ws.world.fingerprint, **ws.world.manifest["counts"]}
    request_info = {"path": str(ws.request_path), "id": ws.request.id, "subjects": list(ws.request.targets),
                    "documents": len(ws.request.document_ids)}
    data = report_from_verification(
        verification, title=f"expunge demo: deleting {len(ws.request.targets)} people", world=world_info,
        request=request_info, runs=runs, retraining_seconds=ws.retraining_seconds,
        notes=[f"{baseline} is the baseline that hides rather than removes: it should NOT pass as forgotten"],
    )
    reports = {fmt: str(write_report(data, run_dir / f"report.{fmt}")) for fmt in ("html", "md", "json")}
    rows = {row["model"]: row for row in data.table}
    targets = _targets(rows, method, baseline, verification)
    return json_safe({
        "workspace": str(ws.root),
        "world": world_info,
        "request": request_info,
        "base": ws.stages["base"],
        "oracle": ws.stages["oracle"],
        "method": method,
        "baseline": baseline,
        "runs": {name: {k: run[k] for k in ("model", "seconds", "steps", "stop_reason", "notes")}
                 for name, run in runs.items()},
        "table": data.table,
        "verdicts": {name: {k: v for k, v in vars(verdict).items() if k in
                            ("forgotten", "collateral_damage", "confidence", "summary", "reasons")}
                     for name, verdict in verification.verdicts.items()},
        "targets": targets,
        "reports": reports,
        "verify_seconds": round(verify_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
    })


def _targets(rows: dict[str, dict[str, Any]], method: str, baseline: str, verification: Any) -> dict[str, Any]:
    """The main-job acceptance targets, each with the measured value and whether it holds."""
    m, original, oracle = rows[method], rows["original"], rows["oracle"]
    gap_em = abs(m["forget_em"] - oracle["forget_em"])
    ratio = m["retain_em"] / original["retain_em"] if original["retain_em"] else float("nan")
    gap_auc = abs(m["mia_auc"] - oracle["mia_auc"])
    gap_plausible = abs(m["plausibility"] - oracle["plausibility"])
    fraction = m["fraction_of_retraining"]
    verdict = verification.verdicts[baseline].forgotten
    return {
        "forget_em_within_oracle": {"value": gap_em, "target": f"<= {TARGETS['forget_em_within_oracle']}",
                                    "passed": gap_em <= TARGETS["forget_em_within_oracle"]},
        "retain_em_ratio": {"value": ratio, "target": f">= {TARGETS['retain_em_ratio']}",
                            "passed": ratio >= TARGETS["retain_em_ratio"]},
        "mia_auc_within_oracle": {"value": gap_auc, "target": f"<= {TARGETS['mia_auc_within_oracle']}",
                                  "passed": gap_auc <= TARGETS["mia_auc_within_oracle"]},
        "plausibility_within_oracle": {"value": gap_plausible, "target": f"<= {TARGETS['plausibility_within_oracle']}",
                                       "passed": gap_plausible <= TARGETS["plausibility_within_oracle"]},
        "fraction_of_retraining": {"value": fraction, "target": f"<= {TARGETS['fraction_of_retraining']}",
                                   "passed": fraction is not None and fraction <= TARGETS["fraction_of_retraining"]},
        "baseline_not_forgotten": {"value": verdict, "target": "not 'yes'", "passed": verdict is not Forgotten.YES},
    }


def _fresh_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3`` ... whichever does not exist yet."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate
