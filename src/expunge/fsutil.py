"""Writing outputs so that a crash never leaves half a result and nothing is ever overwritten."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from expunge.errors import ExpungeError


def ensure_new_output(out: str | os.PathLike[str]) -> Path:
    """Fail early (before any work) when the output path is already taken."""
    out = Path(out)
    if out.exists():
        raise ExpungeError(
            f"output {out} already exists",
            "choose a new --out path; expunge never writes over an existing directory",
        )
    return out


@contextlib.contextmanager
def atomic_directory(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``out`` that becomes ``out`` only on success.

    The temporary directory lives in the same parent, so the final step is a single rename on the
    same filesystem: readers see either no ``out`` or a complete one. On any exception (including
    KeyboardInterrupt) the temporary directory is removed and ``out`` is never created.
    """
    out = ensure_new_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
        if out.exists():  # someone else created it while we worked: keep theirs, drop ours
            raise ExpungeError(
                f"output {out} appeared while this run was writing it",
                "run again with a new --out path",
            )
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
