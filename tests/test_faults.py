"""No traceback on any input or fault: every command answers bad input, a full disk, a read-only
filesystem, an over-long name, a corrupt model and Ctrl-C with one line on stderr (exit 2, or 130
for Ctrl-C) that names the path or option and the fix, and it says so before any work.

Disk-full and read-only cases run on a small tmpfs mounted for the test (root, which ignores
permission bits, cannot otherwise be shown a read-only directory); where mounting is not allowed
they skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expunge.cli import app

runner = CliRunner()
LONG = "n" * 300  # no filesystem in common use allows a 300-byte name


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(result) -> str:
    """The error line, last on stderr and the only one (a progress bar may precede it); the run
    must have failed with exit 2 and no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output and "evaluated " not in result.stderr, result.stderr
    return errors[0]


@pytest.fixture()
def mount(tmp_path: Path) -> Iterator:
    """mount(size, read_only=False) -> a fresh tmpfs directory, unmounted after the test."""
    mounted: list[Path] = []

    def make(size: str = "256k", read_only: bool = False) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("needs root and mount(8) to mount a small tmpfs")
        point = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


def fill(directory: Path) -> None:
    """Use up every byte of the filesystem holding ``directory``."""
    with open(directory / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    try:  # the last partial block, if any
        with open(directory / "filler2", "wb") as handle:
            while True:
                handle.write(b"\0")
                handle.flush()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# over-long names, read-only filesystems, full disks


def test_a_300_byte_name_for_world_and_request_out(tiny_world_dir: Path, tmp_path: Path) -> None:
    line = one_line(run("world", "privacy", "--out", tmp_path / LONG, "--people", "8"))
    assert "a name of 300 bytes" in line and "shorter --out" in line
    line = one_line(run("request", "--world", tiny_world_dir, "--subjects", "person-0000", "--out", tmp_path / LONG))
    assert "a name of 300 bytes" in line
    assert list(tmp_path.iterdir()) == []


def test_train_and_forget_on_a_read_only_filesystem_fail_before_any_work(mount, tiny_world_dir: Path,
                                                                          tiny_request_path: Path, tiny_base) -> None:
    read_only = mount(read_only=True)
    line = one_line(run("train", "--world", tiny_world_dir, "--out", read_only / "base", "--preset", "tiny"))
    assert f"{read_only} is on a read-only filesystem" in line and "writable filesystem" in line
    line = one_line(run("forget", "--model", tiny_base.model.path, "--world", tiny_world_dir, "--request",
                        tiny_request_path, "--out", read_only / "forgot", "-o", "max_steps=2", "-o", "warmup_steps=0"))
    assert "read-only filesystem" in line


def test_request_on_a_full_disk(mount, tiny_world_dir: Path) -> None:
    full = mount("64k")
    fill(full)
    line = one_line(run("request", "--world", tiny_world_dir, "--subjects", "person-0000", "--out", full / "r.json"))
    assert f"no space left on the device holding {full / 'r.json'}" in line
    assert sorted(p.name for p in full.iterdir()) <= ["filler", "filler2"]  # nothing half-written left


def test_forget_saving_its_model_on_a_full_disk(mount, tiny_world_dir: Path, tiny_request_path: Path,
                                                tiny_base) -> None:
    full = mount("64k")
    fill(full)
    line = one_line(run("forget", "--model", tiny_base.model.path, "--world", tiny_world_dir, "--request",
                        tiny_request_path, "--out", full / "forgot", "-o", "max_steps=2", "-o", "warmup_steps=0"))
    assert f"no space left on the device holding {full / 'forgot'}" in line and "run again" in line
    assert sorted(p.name for p in full.iterdir()) <= ["filler", "filler2"]


# ---------------------------------------------------------------------------------------------
# bad options and files


def test_usage_errors_are_one_line(tiny_world_dir: Path, tmp_path: Path) -> None:
    line = one_line(run("request", "--world", tiny_world_dir, "--out", tmp_path / "r.json", "--random-fraction", "abc"))
    assert "--random-fraction" in line and "expunge request --help" in line
    assert "--world" in one_line(run("train"))
    assert "nosuch" in one_line(run("nosuch"))


def test_a_bad_method_option_names_the_option(tiny_world_dir: Path, tiny_request_path: Path, tiny_base,
                                              tmp_path: Path) -> None:
    line = one_line(run("forget", "--model", tiny_base.model.path, "--world", tiny_world_dir, "--request",
                        tiny_request_path, "--out", tmp_path / "f", "-o", "learning_rate=abc"))
    assert "option learning_rate='abc' for method 'simnpo' is not a number" in line


def test_policy_files_a_directory_and_an_unknown_check(tmp_path: Path) -> None:
    line = one_line(run("policy", tmp_path))
    assert f"policy file {tmp_path} is a directory" in line
    bad = tmp_path / "bad.toml"
    bad.write_text("[checks.nosuch]\nmargin = 0.1\n")
    line = one_line(run("policy", bad))
    assert "unknown check [checks.nosuch]" in line  # printed as written, not read as markup


def test_a_hand_edited_request_is_refused_by_forget(tiny_world_dir: Path, tiny_request_path: Path, tiny_base,
                                                    tiny_world, tmp_path: Path) -> None:
    data = json.loads(tiny_request_path.read_text())
    others = [s.id for s in tiny_world.people("train") if s.id not in data["targets"]]
    data["targets"] = others[:2]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    line = one_line(run("forget", "--model", tiny_base.model.path, "--world", tiny_world_dir, "--request", edited,
                        "--out", tmp_path / "f"))
    assert "disagrees with the world's provenance" in line and others[0] in line
    assert not (tmp_path / "f").exists()


def test_verify_finds_a_corrupt_candidate_before_evaluating_anything(tiny_world_dir: Path, tiny_request_path: Path,
                                                                    tiny_base, tiny_oracle, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate"
    shutil.copytree(tiny_base.model.path, candidate)
    weights = candidate / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    result = run("verify", "--model", candidate, "--original", tiny_base.model.path, "--oracle",
                 tiny_oracle.model.path, "--world", tiny_world_dir, "--request", tiny_request_path)
    line = one_line(result)  # and no "evaluated original in ..." line before it
    assert f"{weights}: sha256 differs" in line


def test_a_model_without_its_record_is_loaded_with_a_warning(tiny_world_dir: Path, tiny_request_path: Path,
                                                             tiny_base, tiny_oracle, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_base.model.path, plain)
    (plain / "expunge_model.json").unlink()
    result = run("verify", "--model", plain, "--original", tiny_base.model.path, "--oracle", tiny_oracle.model.path,
                 "--world", tiny_world_dir, "--request", tiny_request_path, "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{plain} has no expunge_model.json" in warnings[0] and "unverified" in warnings[0]
    json.loads(result.stdout)  # stdout stays one JSON object


# ---------------------------------------------------------------------------------------------
# Ctrl-C: each command says what it kept


@pytest.mark.parametrize(("command", "target", "says"), [
    ("train", "expunge.pipeline.train_base", "resume from it"),
    ("forget", "expunge.methods.unlearn.unlearn", "nothing was written"),
])
def test_ctrl_c_tells_the_truth(command: str, target: str, says: str, monkeypatch: pytest.MonkeyPatch,
                                tiny_world_dir: Path, tiny_request_path: Path, tiny_base, tmp_path: Path) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of the work

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(module + "." + name, interrupted)
    args = {"train": ("train", "--world", tiny_world_dir, "--out", tmp_path / "m", "--preset", "tiny"),
            "forget": ("forget", "--model", tiny_base.model.path, "--world", tiny_world_dir, "--request",
                       tiny_request_path, "--out", tmp_path / "m")}[command]
    result = run(*args)
    assert result.exit_code == 130 and says in result.stderr, result.stderr


def test_verify_checks_every_tokenizer_before_evaluating(tiny_world_dir: Path, tiny_request_path: Path, tiny_base,
                                                         tiny_oracle, tmp_path: Path) -> None:
    from expunge.pipeline import world_tokenizer
    from expunge.worlds import PrivacyWorldConfig, build_privacy_world

    candidate = tmp_path / "candidate"
    shutil.copytree(tiny_base.model.path, candidate)
    (candidate / "expunge_model.json").unlink()  # a plain Hugging Face model (loads, with a warning)
    other = build_privacy_world(tmp_path / "other", PrivacyWorldConfig(seed=5, people=8))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (candidate / name).unlink(missing_ok=True)
    world_tokenizer(other).save_pretrained(candidate)
    result = run("verify", "--model", candidate, "--original", tiny_base.model.path, "--oracle",
                 tiny_oracle.model.path, "--world", tiny_world_dir, "--request", tiny_request_path)
    line = one_line(result)  # before "evaluated original in ..."
    assert f"the tokenizer of candidate ({candidate}) differs from the original model's" in line
