"""What a model version's hashes cover, checked with nothing but ``hashlib`` (no torch, no model
loaded), so that a changed or corrupt model directory is found before any work starts.

Every model expunge writes carries ``expunge_model.json`` with two kinds of hash:

- ``files``: the sha256 of every file of the directory as written (``model.safetensors``,
  ``config.json``, the tokenizer's files, ...), by path relative to the directory. Anyone can
  check them with standard tools: ``sha256sum model.safetensors``.
- ``sha256``: the model version's identity, a sha256 over the weight tensors themselves (names,
  dtypes, shapes and bytes, in sorted name order; :func:`expunge.models.weights_sha256`). It does
  not depend on how the tensors were serialised, so a model saved again keeps its identity; it is
  what recipes, parents and the ledger refer to.

A directory without ``expunge_model.json`` is a plain Hugging Face model: it can be loaded, but it
is *unverified*, and expunge says so (:class:`UnverifiedModelWarning`) rather than trusting it.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError
from expunge.records import read_json

__all__ = ["MODEL_RECORD", "SHARDED_RECORD", "UnverifiedModelWarning", "file_sha256", "files_sha256", "check_model_dir",
           "check_model_files"]

MODEL_RECORD = "expunge_model.json"
SHARDED_RECORD = "expunge_sharded.json"  # a sharded model (expunge.models.sharded): base + adapters


class UnverifiedModelWarning(UserWarning):
    """A model directory has no ``expunge_model.json``: nothing vouches for its weights."""


# (resolved path, size, mtime and ctime in ns, inode) -> sha256: a file this process hashed and
# that has not changed since (its stat would differ) is not read again. The CLI checks a model's
# files before any work and loading checks them again; for a 540 MB model the second read costs
# most of a second. As git does, a file modified less than RACY_NS before it was hashed is not
# remembered: a write in the same clock tick could leave the stat unchanged. The weights' own
# sha256 is always recomputed from the loaded tensors, whatever this cache says.
_HASHED: dict[tuple[str, int, int, int, int], str] = {}
RACY_NS = 2_000_000_000


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes (what ``sha256sum`` prints)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if key in _HASHED:
        return _HASHED[key]
    started = time.time_ns()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    if started - max(stat.st_mtime_ns, stat.st_ctime_ns) > RACY_NS:
        _HASHED[key] = sha
    return sha


def files_sha256(directory: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the records (a model's, a sharded model's),
    by relative POSIX path."""
    root = Path(directory)
    return {p.relative_to(root).as_posix(): file_sha256(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in (MODEL_RECORD, SHARDED_RECORD)}


def check_model_dir(path: str | os.PathLike[str], *, what: str = "model", files: bool = True) -> dict[str, Any]:
    """Check a model directory without loading it; return its record ({} for a plain Hugging Face
    model, with an :class:`UnverifiedModelWarning`).

    Refuses a missing directory, one without ``config.json``, and (``files``; else see
    :func:`check_model_files`) one whose files differ from the sha256 its record lists (naming
    the file).
    """
    path = Path(path)
    if not path.is_dir():
        raise ExpungeError(f"{what} directory {path} not found", "check the path, or train one with `expunge train`")
    if (path / SHARDED_RECORD).is_file():  # a sharded model: its record lists every file below it
        record = read_json(path / SHARDED_RECORD, "sharded model record")
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
            raise ExpungeError(f"{path / SHARDED_RECORD}: not a sharded model record",
                               "re-create this model with `expunge train --shards`")
        if files:
            check_model_files(path, record)
        return record
    if not (path / "config.json").is_file():
        raise ExpungeError(
            f"{path} is not a Hugging Face model directory (no config.json)",
            "point at a directory written by save_pretrained or `expunge train`",
        )
    if not (path / MODEL_RECORD).is_file():
        warnings.warn(f"{path} has no {MODEL_RECORD}: loaded as a plain Hugging Face model, unverified (nothing "
                      "vouches for its weights)", UnverifiedModelWarning)  # once per path and process
        return {}
    record = read_json(path / MODEL_RECORD, "model record")
    if not isinstance(record, dict):
        raise ExpungeError(f"{path / MODEL_RECORD}: not a model record", "re-create this model version")
    if files:
        check_model_files(path, record)
    return record


def check_model_files(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Every file ``record`` lists is present in ``path`` with that sha256 (the error names the
    file)."""
    path = Path(path)
    listed_in = SHARDED_RECORD if (path / SHARDED_RECORD).is_file() else MODEL_RECORD
    for name, expected in sorted((record.get("files") or {}).items()):
        file = path / name
        if not file.is_file():
            raise ExpungeError(f"{file} is missing (listed in {listed_in})",
                               "restore the file, or re-create this model version")
        if file_sha256(file) != expected:
            raise ExpungeError(
                f"{file}: sha256 differs from the one in {listed_in} (changed after it was written)",
                "restore the original file, or re-create this model version",
            )
