"""Model versions: atomic writes, hashes that catch tampering, tokenizer checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from expunge.errors import ExpungeError
from expunge.models import ModelPreset, build_llama, load_model, save_model_version, weights_sha256
from expunge.pipeline import world_tokenizer

SMALL = ModelPreset(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)


@pytest.fixture()
def small(tiny_world):
    tokenizer = world_tokenizer(tiny_world)
    return build_llama(SMALL, tokenizer, seed=0), tokenizer


def test_save_load_round_trip(small, tmp_path: Path) -> None:
    model, tokenizer = small
    ref = save_model_version(model, tokenizer, tmp_path / "m", parent="abc", recipe={"kind": "test"})
    loaded, loaded_tok, loaded_ref = load_model(tmp_path / "m")
    assert loaded_ref.sha256 == ref.sha256 == weights_sha256(model)
    assert loaded_ref.parent == "abc" and loaded_ref.recipe == {"kind": "test"}
    ids = tokenizer("Question: Where was Anna born? Answer:", return_tensors="pt")["input_ids"]
    assert loaded_tok("Question: Where was Anna born? Answer:", return_tensors="pt")["input_ids"].equal(ids)
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)


def test_tokenizer_covers_every_name(tiny_world) -> None:
    tokenizer = world_tokenizer(tiny_world)
    for person in tiny_world.people():
        ids = tokenizer(person.name, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids and len(ids) == 2


def test_hash_changes_with_any_weight(small) -> None:
    model, _ = small
    before = weights_sha256(model)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] += 1e-3
    assert weights_sha256(model) != before


def test_refuses_existing_output_and_keeps_it(small, tmp_path: Path) -> None:
    model, tokenizer = small
    out = tmp_path / "m"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ExpungeError, match="already exists"):
        save_model_version(model, tokenizer, out, parent=None, recipe={})
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_crash_mid_write_leaves_nothing(small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = small

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", explode)
    with pytest.raises(OSError, match="disk full"):
        save_model_version(model, tokenizer, tmp_path / "m", parent=None, recipe={})
    assert list(tmp_path.iterdir()) == []


def test_tampered_weights_are_refused(small, tmp_path: Path) -> None:
    model, tokenizer = small
    save_model_version(model, tokenizer, tmp_path / "m", parent=None, recipe={})
    with torch.no_grad():
        model.model.norm.weight.mul_(2)
    model.save_pretrained(tmp_path / "m")  # overwrite the weights behind expunge's back
    with pytest.raises(ExpungeError, match="do not match the sha256"):
        load_model(tmp_path / "m")


def test_mismatched_tokenizer_is_refused(small, tiny_world, tmp_path: Path) -> None:
    model, tokenizer = small
    save_model_version(model, tokenizer, tmp_path / "m", parent=None, recipe={})
    bigger = world_tokenizer(tiny_world)
    bigger.add_tokens([f"extra{i}" for i in range(50)])
    bigger.save_pretrained(tmp_path / "m")
    with pytest.raises(ExpungeError, match="tokenizer has"):
        load_model(tmp_path / "m")


def test_missing_or_foreign_directory(tmp_path: Path) -> None:
    with pytest.raises(ExpungeError, match="not found"):
        load_model(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ExpungeError, match="no config.json"):
        load_model(tmp_path / "plain")
