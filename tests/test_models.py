"""Model versions: atomic writes, hashes that catch tampering, tokenizer checks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import subprocess
from pathlib import Path

import pytest
import torch

from expunge.errors import ExpungeError
from expunge.integrity import MODEL_RECORD, UnverifiedModelWarning, check_model_dir, file_sha256
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
    # Found by the file's own hash, before anything is loaded, naming the file.
    with pytest.raises(ExpungeError, match=r"m/model.safetensors: sha256 differs from the one in expunge_model.json"):
        check_model_dir(tmp_path / "m")
    with pytest.raises(ExpungeError, match=r"model.safetensors: sha256 differs"):
        load_model(tmp_path / "m")
    # A record without file hashes (written before they existed) still has the tensors' hash.
    record = json.loads((tmp_path / "m" / MODEL_RECORD).read_text())
    del record["files"]
    (tmp_path / "m" / MODEL_RECORD).write_text(json.dumps(record))
    with pytest.raises(ExpungeError, match="do not match the sha256"):
        load_model(tmp_path / "m")


def test_a_file_hashed_once_is_read_again_whenever_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 4096)
    old = time.time() - 3600
    os.utime(path, (old, old))
    first = file_sha256(path)  # old enough to be remembered (see integrity.RACY_NS)
    assert file_sha256(path) == first == hashlib.sha256(b"a" * 4096).hexdigest()
    # Changed in place, same size, its mtime set back: the inode's ctime still moved.
    with path.open("r+b") as handle:
        handle.write(b"b")
    os.utime(path, (old, old))
    assert file_sha256(path) == hashlib.sha256(b"b" + b"a" * 4095).hexdigest()
    # A file written just now is never remembered: a second write in the same clock tick could
    # leave every stat field as it was.
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"x" * 64)
    assert file_sha256(fresh) == hashlib.sha256(b"x" * 64).hexdigest()
    stat = os.stat(fresh)
    fresh.write_bytes(b"y" * 64)
    os.utime(fresh, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(fresh) == hashlib.sha256(b"y" * 64).hexdigest()


def test_recorded_file_hashes_are_what_sha256sum_prints(small, tmp_path: Path) -> None:
    model, tokenizer = small
    ref = save_model_version(model, tokenizer, tmp_path / "m", parent=None, recipe={})
    record = json.loads((tmp_path / "m" / MODEL_RECORD).read_text())
    on_disk = {p.name for p in (tmp_path / "m").iterdir()} - {MODEL_RECORD}
    assert set(record["files"]) == on_disk and "model.safetensors" in on_disk
    for name, digest in record["files"].items():
        assert hashlib.sha256((tmp_path / "m" / name).read_bytes()).hexdigest() == digest, name
    if shutil.which("sha256sum"):
        printed = subprocess.run(["sha256sum", "model.safetensors"], cwd=tmp_path / "m", capture_output=True,
                                 text=True, check=True).stdout.split()[0]
        assert printed == record["files"]["model.safetensors"]
    # The version's identity is the tensors' hash, and the record says so.
    assert record["sha256"] == ref.sha256 == weights_sha256(model) and "weight tensors" in record["sha256_covers"]
    # A listed file that disappeared is named.
    (tmp_path / "m" / "config.json").rename(tmp_path / "config.json")
    (tmp_path / "m" / "config.json").write_text((tmp_path / "config.json").read_text())  # same bytes: fine
    check_model_dir(tmp_path / "m")
    (tmp_path / "m" / "tokenizer.json").unlink()
    with pytest.raises(ExpungeError, match="tokenizer.json is missing"):
        check_model_dir(tmp_path / "m")


def test_a_directory_without_a_record_loads_as_unverified(small, tmp_path: Path) -> None:
    model, tokenizer = small
    save_model_version(model, tokenizer, tmp_path / "m", parent=None, recipe={})
    (tmp_path / "m" / MODEL_RECORD).unlink()  # deleting the record must not turn the check off silently
    with pytest.warns(UnverifiedModelWarning, match="no expunge_model.json: loaded as a plain Hugging Face model"):
        loaded, _, ref = load_model(tmp_path / "m")
    assert ref.recipe == {} and ref.parent is None and ref.sha256 == weights_sha256(loaded)


def test_mismatched_tokenizer_is_refused(small, tiny_world, tmp_path: Path) -> None:
    model, tokenizer = small
    save_model_version(model, tokenizer, tmp_path / "m", parent=None, recipe={})
    bigger = world_tokenizer(tiny_world)
    bigger.add_tokens([f"extra{i}" for i in range(50)])
    bigger.save_pretrained(tmp_path / "m")
    with pytest.raises(ExpungeError, match="tokenizer.json: sha256 differs"):  # the files say so first
        load_model(tmp_path / "m")
    with pytest.raises(ExpungeError, match="tokenizer has"):
        load_model(tmp_path / "m", verify_hash=False)


def test_missing_or_foreign_directory(tmp_path: Path) -> None:
    with pytest.raises(ExpungeError, match="not found"):
        load_model(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ExpungeError, match="no config.json"):
        load_model(tmp_path / "plain")
