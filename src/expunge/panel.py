"""The verifier's own accuracy: four models whose right verdicts are known, verified blind.

A verifier that calls everything "forgotten" (or nothing) is worthless, and only models with a
known answer can show which it is. The panel:

* ``retrained``: another oracle, retrained without the request's data from a *different* seed.
  It never saw the data, so the right verdict is **forgotten: yes**. (A copy of the reference
  oracle would pass trivially; a second seed tests that the thresholds tolerate the run-to-run
  noise of training.)
* ``unchanged``: the original model itself, before unlearning. Right verdict: **forgotten: no**.
* ``refusal``: the refusal baseline (IdkFT: fine-tuned to say "I don't know" to the forget
  questions), which hides rather than removes. Right verdict: **forgotten: no** — truth ratios,
  prefilled answers, cloze, membership inference or relearning see through it.
* ``collapsed``: gradient ascent on the forget documents with no retain term and no guard, far
  past the point of forgetting. Right verdict: **collateral damage: yes**, *and* the
  over-unlearning leak flagged (its forget documents look less familiar than never-seen ones,
  which itself tells an attacker who was deleted).

:func:`build_panel` trains the three derived models (``unchanged`` is the base model itself);
:func:`judge_panel` checks each verdict against its expectation; :func:`confusion_table` counts
them over runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expunge.methods.unlearn import unlearn
from expunge.models.io import read_model_record
from expunge.pipeline import retrain_oracle
from expunge.verify.judge import Collateral, Forgotten, VerdictFlag
from expunge.verify.suite import Verdict, Verification, VerifyConfig, verify_models

__all__ = ["PANEL", "PanelResult", "build_panel", "judge_panel", "run_panel", "confusion_table"]

# name -> (what it is, the right verdict in words, the test of a verdict)
PANEL: dict[str, tuple[str, str, Callable[[Verdict], bool]]] = {
    "retrained": ("oracle retrained from another seed", "forgotten: yes",
                  lambda v: v.forgotten is Forgotten.YES),
    "unchanged": ("the original model, unchanged", "forgotten: no",
                 lambda v: v.forgotten is Forgotten.NO),
    "refusal": ("refusal fine-tune (IdkFT), hides rather than removes", "forgotten: no",
                lambda v: v.forgotten is Forgotten.NO),
    "collapsed": ("gradient ascent far past forgetting", "collateral damage: yes + over-unlearning leak",
                  lambda v: v.collateral_damage is Collateral.YES and VerdictFlag.OVER_UNLEARNING_LEAK in v.flags),
}

# Gradient ascent with nothing holding it back: no retain term, no early stop, no collapse guard.
COLLAPSE_OPTIONS: dict[str, Any] = {"max_steps": 60, "learning_rate": 2e-3, "early_stop": False,
                                    "max_retain_loss_increase": 1000.0}


@dataclass
class PanelResult:
    """The verification of one panel and, per model, whether its verdict is the right one."""

    verification: Verification
    correct: dict[str, bool]
    seconds: dict[str, float]  # build times of the derived models, and "verify"

    @property
    def score(self) -> str:
        return f"{sum(self.correct.values())}/{len(self.correct)}"

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for name, ok in self.correct.items():
            v = self.verification.verdicts[name]
            out.append({"model": name, "expected": PANEL[name][1], "forgotten": v.forgotten,
                        "collateral_damage": v.collateral_damage, "flags": len(v.flags),
                        "failed_checks": self.verification.failed_checks(name),
                        "correct": ok})
        return out


def build_panel(
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    base_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    retrain_seed: int,
    progress: bool = False,
    log: Callable[[str], None] = lambda message: None,
    names: tuple[str, ...] = tuple(PANEL),
) -> tuple[dict[str, Path], dict[str, float]]:
    """Train the panel's derived models (those of ``names``) into ``out_dir`` (new directories;
    existing ones are reused, so a second call trains nothing). Returns name -> model directory,
    and seconds."""
    unknown = [n for n in names if n not in PANEL]
    if unknown:
        raise ValueError(f"unknown panel models {unknown}; known: {', '.join(PANEL)}")
    out = Path(out_dir)
    recipe = read_model_record(base_dir)["recipe"]
    paths = {"retrained": out / f"retrained-s{retrain_seed}", "unchanged": Path(base_dir),
             "refusal": out / "refusal", "collapsed": out / "collapsed"}
    paths = {name: path for name, path in paths.items() if name in names}
    seconds: dict[str, float] = {}
    for name in [n for n in ("retrained", "refusal", "collapsed") if n in names]:
        if paths[name].exists():
            log(f"reusing panel model {name} in {paths[name]}")
            continue
        log(f"building panel model {name} ({PANEL[name][0]})")
        started = time.perf_counter()
        if name == "retrained":
            retrain_oracle(world_dir, request_path, paths[name], preset=recipe["preset"]["name"], seed=retrain_seed,
                           progress=progress)
        elif name == "refusal":
            unlearn(base_dir, world_dir, request_path, paths[name], method="idkft", progress=progress)
        else:
            unlearn(base_dir, world_dir, request_path, paths[name], method="grad_ascent",
                    options=COLLAPSE_OPTIONS, progress=progress)
        seconds[name] = time.perf_counter() - started
    return paths, seconds


def judge_panel(verification: Verification) -> dict[str, bool]:
    """Per panel model: is its verdict the right one?"""
    return {name: PANEL[name][2](verification.verdicts[name]) for name in PANEL if name in verification.verdicts}


def run_panel(
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    base_dir: str | os.PathLike[str],
    oracle_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    retrain_seed: int,
    config: VerifyConfig | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda message: None,
    names: tuple[str, ...] = tuple(PANEL),
) -> PanelResult:
    """Build the panel (the models of ``names``) and verify it against the original and the
    reference oracle."""
    paths, seconds = build_panel(world_dir, request_path, base_dir, out_dir, retrain_seed=retrain_seed,
                                 progress=progress, log=log, names=names)
    started = time.perf_counter()
    verification = verify_models(paths, base_dir, oracle_dir, world_dir, request_path, config=config, log=log)
    seconds["verify"] = time.perf_counter() - started
    return PanelResult(verification, judge_panel(verification), seconds)


def confusion_table(results: list[PanelResult]) -> list[dict[str, Any]]:
    """Per panel model, over all runs: how often each verdict came out, and how often it was right."""
    rows = []
    for name in PANEL:
        verdicts = [r.verification.verdicts[name] for r in results if name in r.verification.verdicts]
        if not verdicts:  # not in this panel (run_panel's ``names``)
            continue
        counts: dict[str, int] = {}
        for v in verdicts:
            for key in (f"forgotten: {v.forgotten}", f"collateral: {v.collateral_damage}"):
                counts[key] = counts.get(key, 0) + 1
            if v.flags:
                counts["leak flagged"] = counts.get("leak flagged", 0) + 1
        rows.append({"model": name, "expected": PANEL[name][1], "runs": len(verdicts),
                     "correct": sum(r.correct.get(name, False) for r in results), **counts})
    return rows
