"""Validate first, then work: every path, output, request and policy error of the CLI comes before
torch is imported (so in about a second, not after a model has loaded), and method and editor
options before any model or world is loaded. Each case runs the CLI in a fresh interpreter and
asks it afterwards whether torch was imported. (How long each takes is measured by
``benchmarks/early_errors.py``; timings are not asserted in tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from expunge import preflight

PROBE = """
import sys
from expunge.cli import app
try:
    app(sys.argv[1:], standalone_mode=True)
except SystemExit as exc:
    code = exc.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code, file=sys.stderr)
"""


def cli(*args) -> tuple[int, str, bool]:
    """(exit code, the error line, whether torch was imported) of one CLI run in a fresh process."""
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    torch_flag, code = lines[-1].split()
    errors = [line for line in lines if line.startswith("error:")]
    return int(code), errors[0] if errors else "", torch_flag == "TORCH"


@pytest.fixture(scope="module")
def bad(tiny_world_dir: Path, tiny_request_path: Path, tiny_base, tiny_oracle, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("preflight")
    edited = json.loads(tiny_request_path.read_text())
    edited["document_ids"] = edited["document_ids"][1:]
    (root / "edited.json").write_text(json.dumps(edited))
    (root / "taken").mkdir()
    (root / "bad.toml").write_text("[checks.nosuch]\nmargin = 0.1\n")
    return {"world": tiny_world_dir, "request": tiny_request_path, "base": tiny_base.model.path,
            "oracle": tiny_oracle.model.path, "root": root}


def _cases(b: dict) -> list[tuple[str, tuple, str]]:
    w, r, m, o, root = b["world"], b["request"], b["base"], b["oracle"], b["root"]
    return [
        ("train: no world", ("train", "--world", root / "nowhere", "--out", root / "m"), "world directory"),
        ("train: output taken", ("train", "--world", w, "--out", root / "taken"), "already exists"),
        ("train: unknown preset", ("train", "--world", w, "--out", root / "m", "--preset", "huge"), "unknown preset"),
        ("retrain: edited request", ("retrain", "--world", w, "--request", root / "edited.json", "--out", root / "o"),
         "disagrees with the world's provenance"),
        ("retrain: missing base", ("retrain", "--world", w, "--request", r, "--out", root / "o", "--base",
                                   root / "nobase"), "base model directory"),
        ("forget: missing model", ("forget", "--model", root / "nomodel", "--world", w, "--request", r, "--out",
                                   root / "f"), "model directory"),
        ("forget: output taken", ("forget", "--model", m, "--world", w, "--request", r, "--out", root / "taken"),
         "already exists"),
        ("verify: bad policy", ("verify", "--model", m, "--original", m, "--oracle", o, "--world", w, "--request", r,
                                "--policy", root / "bad.toml"), "unknown check [checks.nosuch]"),
        ("verify: report format", ("verify", "--model", m, "--original", m, "--oracle", o, "--world", w, "--request",
                                   r, "--report", root / "r.pdf"), "unknown report format"),
        ("verify: missing candidate", ("verify", "--model", root / "gone", "--original", m, "--oracle", o, "--world",
                                       w, "--request", r), "gone model directory"),
        ("demo: workspace is a file", ("demo", "--workspace", root / "bad.toml"), "is a file"),
    ]


def test_path_and_request_errors_come_before_torch(bad: dict) -> None:
    for label, args, message in _cases(bad):
        code, line, imported = cli(*args)
        assert code == 2 and message in line, (label, code, line)
        assert not imported, f"{label}: torch was imported before the error"


def test_method_options_are_checked_before_any_model_loads(bad: dict) -> None:
    code, line, _ = cli("forget", "--model", bad["base"], "--world", bad["world"], "--request", bad["request"],
                        "--out", bad["root"] / "f", "-o", "learning_rate=abc")
    assert code == 2 and "option learning_rate='abc' for method 'simnpo' is not a number" in line
    import expunge.methods.registry  # noqa: F401 - the check needs the method registry, which needs torch
    assert "transformers" not in _modules_after("import expunge.methods.registry")  # ... but not transformers


def _modules_after(statement: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"{statement}\nimport sys\nprint(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True, timeout=120)
    return set(done.stdout.split())


def test_report_suffixes_match_the_renderers() -> None:
    from expunge.report.editing import _RENDERERS as UPDATE_RENDERERS
    from expunge.report.render import RENDERERS

    # Both the verification report and the edit report: a suffix passed early must render later.
    assert set(preflight.REPORT_SUFFIXES) == set(RENDERERS) == set(UPDATE_RENDERERS)
