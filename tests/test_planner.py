"""The route planner (`expunge plan`): which routes apply to which request on which model, the
bar, the expected cost of routes that must pass verification, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expunge.cli import app
from expunge.errors import ExpungeError
from expunge.planner import Bar, Route, Strength, plan_request
from expunge.records import FactEdit, write_jsonl
from expunge.retrieval import FactStore, StoredFact

runner = CliRunner()


def test_a_monolithic_model_retrains_for_an_exact_bar(tiny_world_dir: Path, tiny_base, tiny_request_path: Path) -> None:
    plan = plan_request(tiny_request_path, tiny_world_dir, tiny_base.model.path, bar=Bar.EXACT)
    assert plan.chosen is Route.FULL_RETRAIN
    full = plan.estimate(Route.FULL_RETRAIN)
    request = json.loads(tiny_request_path.read_text())
    trained = tiny_base.model.recipe["training_documents"]
    # The training run's own time, in proportion to the documents that remain.
    assert full.seconds == pytest.approx(tiny_base.run.seconds * (trained - len(request["document_ids"])) / trained,
                                         rel=0.01)
    assert not plan.estimate(Route.SHARDED_RETRAIN).applicable
    gradient = plan.estimate(Route.GRADIENT)
    assert gradient.applicable and not gradient.meets_bar and gradient.strength is Strength.VERIFIED


def test_the_pass_rate_decides_between_unlearning_and_retraining(tiny_world_dir: Path, tiny_base,
                                                                 tiny_request_path: Path) -> None:
    sure = plan_request(tiny_request_path, tiny_world_dir, tiny_base.model.path, pass_rate=1.0)
    never = plan_request(tiny_request_path, tiny_world_dir, tiny_base.model.path, pass_rate=0.0)
    gradient, full = sure.estimate(Route.GRADIENT), sure.estimate(Route.FULL_RETRAIN)
    assert gradient.expected_seconds == pytest.approx(gradient.seconds)
    assert sure.chosen is (Route.GRADIENT if gradient.seconds < full.seconds else Route.FULL_RETRAIN)
    # A route that never passes costs itself and the retrain after it: never cheaper.
    failing = never.estimate(Route.GRADIENT)
    assert failing.expected_seconds == pytest.approx(failing.seconds + full.seconds)
    assert never.chosen is Route.FULL_RETRAIN
    assert any("pass rate" in line for line in sure.explanation)


def test_a_suppressed_bar_takes_the_guard(tiny_world_dir: Path, tiny_base, tiny_request_path: Path) -> None:
    plan = plan_request(tiny_request_path, tiny_world_dir, tiny_base.model.path, bar="suppressed")
    assert plan.chosen is Route.GUARD
    assert all(r.meets_bar == r.applicable for r in plan.routes)


def test_an_update_is_edited_and_never_retrained(tiny_companies, tmp_path: Path) -> None:
    world_dir, model_dir = tiny_companies
    edits = world_dir / "edits.jsonl"
    plan = plan_request(edits, world_dir, model_dir)
    assert plan.kind == "update" and plan.chosen is Route.EDIT
    assert not plan.estimate(Route.FULL_RETRAIN).applicable
    assert not plan.estimate(Route.GRADIENT).applicable


def _edit_for(world, subject) -> FactEdit:
    return FactEdit(id="edit-x", subject=subject.id, subject_name=subject.name, relation="birthplace",
                    prompt="{} was born in", target_old=subject.attributes["birthplace"], target_new="Lima")


def test_a_fact_held_only_in_the_store_is_changed_there(tiny_world, tiny_world_dir: Path, tiny_base,
                                                        tmp_path: Path) -> None:
    outsider = tiny_world.people("holdout")[0]  # no training document is about them
    edits = tmp_path / "edits.jsonl"
    write_jsonl(edits, [_edit_for(tiny_world, outsider)])
    store = tmp_path / "store.json"
    FactStore([StoredFact("f1", outsider.id, "birthplace", f"{outsider.name} was born in Oslo.")]).save(store)
    plan = plan_request(edits, tiny_world_dir, tiny_base.model.path, store=store)
    assert plan.chosen is Route.RETRIEVAL_DELETE
    assert plan.estimate(Route.RETRIEVAL_DELETE).strength is Strength.EXACT
    # A trained person's fact is in the weights as well: the store alone cannot change it.
    trained = tiny_world.people("train")[0]
    write_jsonl(edits, [_edit_for(tiny_world, trained)])
    FactStore([StoredFact("f2", trained.id, "birthplace", f"{trained.name} was born in Oslo.")]).save(store)
    held = plan_request(edits, tiny_world_dir, tiny_base.model.path, store=store)
    assert not held.estimate(Route.RETRIEVAL_DELETE).applicable and held.chosen is Route.EDIT


def test_plan_cli_prints_json_and_refuses_bad_options(tiny_world_dir: Path, tiny_base,
                                                      tiny_request_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(tiny_request_path), "--world", str(tiny_world_dir), "--model",
                                 tiny_base.model.path, "--bar", "exact", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["chosen"] == "full-retrain" and {r["route"] for r in data["routes"]} == {r.value for r in Route}
    human = runner.invoke(app, ["plan", str(tiny_request_path), "--world", str(tiny_world_dir), "--model",
                                tiny_base.model.path])
    assert human.exit_code == 0 and "chosen:" in human.stdout
    for args, says in ((["--bar", "nope"], "--bar 'nope'"), (["--pass-rate", "2"], "--pass-rate 2"),
                       (["--store", str(tmp_path / "none.json")], "store"),
                       (["--method", "nosuch"], "nosuch")):
        bad = runner.invoke(app, ["plan", str(tiny_request_path), "--world", str(tiny_world_dir), "--model",
                                  tiny_base.model.path, *args])
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert bad.exit_code == 2 and len(lines) == 1 and says in lines[0], bad.output


def test_an_unknown_bar_is_refused_before_loading_anything(tmp_path: Path) -> None:
    with pytest.raises(ExpungeError, match="not a bar"):
        plan_request(tmp_path / "r.json", tmp_path / "no-world", tmp_path / "no-model", bar="nope")
