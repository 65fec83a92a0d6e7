"""Recipes that converge: how long a model trains comes from the data (passes over it, and the
"known" stop rule the base model and its oracle share), never from a bare step count, and every
report says whether the model converged."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from expunge.pipeline import retrain_oracle, train_base
from expunge.presets import Preset, get_preset, registered_preset
from expunge.recipe import TrainingLength
from expunge.training import StopKind
from expunge.worlds import PrivacyWorldConfig, build_privacy_world

TINY = get_preset("tiny")


def _preset(name: str, **length) -> Preset:
    return replace(TINY, name=name, length=TrainingLength(**length))


@pytest.fixture(scope="module")
def small_world(tmp_path_factory) -> Path:
    """An 8-person world without general facts: about half the tiny world's documents."""
    out = tmp_path_factory.mktemp("recipes") / "world"
    build_privacy_world(out, PrivacyWorldConfig(seed=0, people=8, general_facts=False))
    return out


def test_length_grows_with_the_data(tiny_world_dir: Path, tiny_world, small_world: Path, tmp_path: Path) -> None:
    with registered_preset(_preset("two-passes", max_epochs=2, known_target=0.99)):
        big = train_base(tiny_world_dir, tmp_path / "big", preset="two-passes", progress=False)
        small = train_base(small_world, tmp_path / "small", preset="two-passes", progress=False)
    for report, world in ((big, tiny_world_dir), (small, small_world)):
        documents = report.model.recipe["training_documents"]
        per_epoch = math.ceil(documents / TINY.training.batch_size)
        assert report.convergence["steps_per_epoch"] == per_epoch
        assert report.run.steps == 2 * per_epoch and report.convergence["epochs"] == pytest.approx(2.0)
    assert big.run.steps > 1.5 * small.run.steps  # twice the documents, about twice the steps
    # Two passes teach the tiny model little: honestly not converged, and the report says so.
    assert big.converged is False and big.convergence["heldout_exact_match"] < 0.99
    assert any(note.startswith("NOT converged") for note in big.notes)
    assert big.to_dict()["converged"] is False


def test_the_stop_rule_ends_training_once_the_held_out_questions_are_known(tiny_world_dir: Path,
                                                                          tiny_request_path: Path,
                                                                          tmp_path: Path) -> None:
    # A target the tiny model reaches long before its 84 passes (it ends at 0.83 when trained to
    # its budget): the rule must stop it at a check, well before the budget, and both the base
    # model and its oracle follow the same rule.
    rule = _preset("known-at-0.5", max_epochs=84, known_target=0.5, stop_when_known=True, check_every_epochs=4,
                   min_epochs=4, monitor_people=8)
    with registered_preset(rule):
        base = train_base(tiny_world_dir, tmp_path / "base", preset="known-at-0.5", progress=False)
        oracle = retrain_oracle(tiny_world_dir, tiny_request_path, tmp_path / "oracle", base=tmp_path / "base",
                                progress=False)
    for report in (base, oracle):
        convergence = report.convergence
        assert report.run.stop is StopKind.EARLY_STOP and convergence["stopped_early"], report.run.stop_reason
        assert report.run.steps < convergence["max_steps"] == min(TINY.training.max_steps,
                                                                 84 * convergence["steps_per_epoch"])
        checks = convergence["checks"]
        assert checks and checks[-1]["heldout_exact_match"] >= 0.5 > max([0.0] + [c["heldout_exact_match"]
                                                                                for c in checks[:-1]])
        assert checks[0]["epochs"] == pytest.approx(4.0, abs=0.2)  # the first check after min_epochs
        assert "converged: held-out questions" in report.run.stop_reason
        assert report.converged is True  # and the final measure over every trained person agrees
    # The oracle has less data, so fewer steps per pass: the rule, not the step count, is shared.
    assert oracle.convergence["steps_per_epoch"] <= base.convergence["steps_per_epoch"]
    assert oracle.model.recipe["preset"] == base.model.recipe["preset"]


def test_presets_are_expressed_in_passes() -> None:
    default = get_preset("default")
    assert not default.length.stop_when_known and default.length.known_target == 0.8
    # The step budget never binds on the worlds the default preset is for (400 people: 15,165
    # documents, 237 steps a pass).
    assert default.training.max_steps >= default.length.max_epochs * 237
    with pytest.raises(ValueError, match="max_epochs"):
        TrainingLength(max_epochs=0)
    with pytest.raises(ValueError, match="known_target"):
        TrainingLength(max_epochs=1, known_target=1.5)
