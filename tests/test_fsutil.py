"""Atomic outputs: what a killed writer left behind is cleared when the same output is written again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from expunge.fsutil import _HOST, atomic_directory


def test_a_dead_writers_partial_directory_is_removed_and_no_one_elses(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # a process id that no longer runs
    out = tmp_path / "model[1]"  # glob characters in the name are taken literally
    dead = tmp_path / f".model[1].partial-{finished.pid}@{_HOST}-abc"
    alive = tmp_path / f".model[1].partial-{os.getppid()}@{_HOST}-def"  # a running process's
    elsewhere = tmp_path / f".model[1].partial-{finished.pid}@another_host-ghi"  # not visible from here
    unrelated = tmp_path / f".model[2].partial-{finished.pid}@{_HOST}-jkl"  # another output's
    for directory in (dead, alive, elsewhere, unrelated):
        directory.mkdir()
    with atomic_directory(out) as tmp:
        (tmp / "weights").write_text("w")
        assert tmp.name.startswith(f".model[1].partial-{os.getpid()}@{_HOST}-")
    assert (out / "weights").read_text() == "w"
    assert not dead.exists() and alive.exists() and elsewhere.exists() and unrelated.exists()
