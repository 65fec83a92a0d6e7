"""The oracle: retrained without the requested people, it knows the others and not them."""

from __future__ import annotations

from pathlib import Path

import pytest

from expunge.errors import ExpungeError
from expunge.ledger import load_request
from expunge.models import load_model
from expunge.pipeline import retrain_oracle, train_base


def test_oracle_forgets_requested_people_only(tiny_world, tiny_request_path, tiny_base, tiny_oracle) -> None:
    # The session's oracle: retrain_oracle(world, request, out, base=tiny_base).
    oracle = tiny_oracle
    request = load_request(tiny_request_path, tiny_world)
    assert oracle.removed_documents == len(request.document_ids) > 0
    _, _, ref = load_model(oracle.model.path)
    base_recipe = tiny_base.model.recipe
    # Identical recipe and seed; only the data differ.
    assert ref.recipe["preset"] == base_recipe["preset"] and ref.recipe["seed"] == base_recipe["seed"]
    assert ref.recipe["training_documents"] == base_recipe["training_documents"] - oracle.removed_documents
    assert oracle.run.steps == tiny_base.run.steps
    # The oracle still knows the people it was trained on (chance is below 0.1)...
    assert oracle.knowledge["retain"]["direct_exact_match"] >= 0.5
    # ...and knows the deleted people no better than never-seen ones.
    assert oracle.knowledge["forget"]["at_chance"], oracle.knowledge
    assert oracle.knowledge["forget"]["direct_exact_match"] <= oracle.knowledge["forget"]["chance"] + 0.2


def test_base_knows_what_the_oracle_does_not(tiny_world_dir, tiny_world, tiny_request_path, tiny_base) -> None:
    from expunge.pipeline import measure_knowledge

    model, tokenizer, _ = load_model(tiny_base.model.path)
    request = load_request(tiny_request_path, tiny_world)
    table = measure_knowledge(model, tokenizer, tiny_world, request.targets)
    assert table["forget"]["direct_exact_match"] >= 0.6
    assert table["forget"]["direct_exact_match"] > table["forget"]["chance"] + 0.3


def test_base_with_conflicting_seed_is_refused(tiny_world_dir, tiny_request_path, tiny_base, tmp_path: Path) -> None:
    with pytest.raises(ExpungeError, match="differ from the base model"):
        retrain_oracle(tiny_world_dir, tiny_request_path, tmp_path / "o", base=tiny_base.model.path,
                       seed=7, progress=False)
    assert not (tmp_path / "o").exists()


def test_interrupted_training_resumes(tiny_world_dir, tmp_path: Path) -> None:
    out = tmp_path / "m"
    first = train_base(tiny_world_dir, out, preset="tiny", progress=False, stop_at_step=100)
    assert first.model is None and not out.exists()
    assert (tmp_path / ".m.checkpoints").is_dir()
    second = train_base(tiny_world_dir, out, preset="tiny", progress=False)
    assert second.run.resumed_from_step == 100 and second.model is not None
    assert not (tmp_path / ".m.checkpoints").exists()  # cleaned up after success


def test_checkpoints_of_another_recipe_are_not_resumed(tiny_world_dir, tmp_path: Path) -> None:
    train_base(tiny_world_dir, tmp_path / "m", preset="tiny", seed=0, progress=False, stop_at_step=100)
    with pytest.raises(ExpungeError, match="different run"):
        train_base(tiny_world_dir, tmp_path / "m", preset="tiny", seed=1, progress=False)
