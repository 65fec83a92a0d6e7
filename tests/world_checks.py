"""Checks every world generator must pass, shared by the generators' test files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from expunge.worlds import load_world
from expunge.worlds.world import WORLD_FILES


def assert_same_files_across_processes(tmp_path: Path, config: str, build: str, options: str) -> None:
    """Build ``build(dir, config(seed=…, options))`` from ``expunge.worlds`` in fresh processes:
    seed 3 under two hash salts must give byte-identical files (Python salts str hashes per
    process; a generator iterating a set would differ), and seed 4 another world."""
    code = (f"import sys; from expunge.worlds import {config}, {build}; "
            f"{build}(sys.argv[1], {config}(seed=int(sys.argv[2]), {options}))")
    for run, hash_seed, seed in (("a", "1", "3"), ("b", "777", "3"), ("c", "1", "4")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / run), seed], check=True, env=env)
    for name in (*WORLD_FILES, "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert load_world(tmp_path / "a").fingerprint != load_world(tmp_path / "c").fingerprint
