"""Real weights, the whole path, as a user runs it (slow): SmolLM2-135M fine-tuned on a few TOFU
authors, `import tofu` -> `train --from` -> `request --split` -> `retrain` -> `forget` ->
`verify`. TOFU's files are read from the shared data directory (never committed); without them
the test skips."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expunge.cli import app
from expunge.presets import get_preset, registered_preset
from expunge.recipe import TrainingLength
from expunge.verify.judge import Collateral, Confidence, Forgotten

runner = CliRunner()
# The real fine-tuning recipe (`finetune`), one pass only: the path is under test here, not how
# well SmolLM2 learns TOFU (benchmarks/tofu.py measures that). One pass over 2 authors' 40
# answers is 5 steps, about 100 s on 2 cores.
ONE_PASS = replace(get_preset("finetune"), name="finetune-one-pass", length=TrainingLength(max_epochs=1))


def _run(*args: object) -> dict:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else {}


@pytest.mark.slow
def test_tofu_on_smollm2_from_import_to_verdict(shared_tofu: Path, tmp_path: Path) -> None:
    world, request = tmp_path / "tofu", tmp_path / "request.json"
    base, oracle, forgot = tmp_path / "base", tmp_path / "oracle", tmp_path / "simnpo"
    with registered_preset(ONE_PASS):
        _run("import", "tofu", "--dir", shared_tofu, "--out", world, "--authors", 2)
        trained = _run("train", "--world", world, "--from", "smollm2", "--preset", ONE_PASS.name, "--out", base,
                       "--json")
        _run("request", "--world", world, "--split", "forget10", "--out", request)
        retrained = _run("retrain", "--world", world, "--request", request, "--base", base, "--out", oracle, "--json")
        forget = _run("forget", "--model", base, "--world", world, "--request", request, "--out", forgot,
                      "--method", "simnpo", "-o", "max_steps=4", "-o", "batch_size=8", "-o", "check_every=2",
                      "-o", "warmup_steps=1", "--json")
        # TOFU's 217 general facts are sampled to 20 to bound the cost.
        verified = _run("verify", "--model", forgot, "--original", base, "--oracle", oracle, "--world", world,
                        "--request", request, "--max-facts", 20, "--json")
    # The recipes: one starting point (SmolLM2, by sha256), one prompt format, the oracle without
    # the forget author's 20 answers.
    assert trained["model"]["sha256"] != retrained["model"]["sha256"]
    assert retrained["removed_documents"] == 20
    assert forget["parent_sha256"] == trained["model"]["sha256"] and forget["steps"] <= 4
    v = verified["verification"]
    assert v["sets"]["forget"]["documents"] == v["sets"]["holdout"]["documents"] == 20
    assert v["sets"]["general"]["facts"] == 20
    candidate = v["candidates"]["simnpo"]
    verdict = candidate["verdict"]
    assert Forgotten(verdict["forgotten"]) and Collateral(verdict["collateral_damage"])
    assert Confidence(verdict["confidence"]) is Confidence.LOW  # one forget author is thin evidence
    checks = {c["policy_key"]: c for c in candidate["checks"]}
    # TOFU's own metrics are all measured: the perturbed answers give truth ratios (forget
    # quality, a KS p-value) and multiple choice; the never-seen author gives membership inference.
    for key in ("forget_quality", "multiple_choice", "membership_inference", "model_utility"):
        assert key in checks and checks[key]["rule"] != "not available", (key, checks.get(key))
        assert math.isfinite(checks[key]["value"]), checks[key]
    assert 0.0 <= checks["forget_quality"]["value"] <= 1.0
    # The model saw the forget author's answers once and the oracle never did: the original's
    # loss on them is the lower.
    original, oracle_eval = v["original"]["sets"]["forget"], v["oracle"]["sets"]["forget"]
    assert original["prob"] > oracle_eval["prob"], (original["prob"], oracle_eval["prob"])
