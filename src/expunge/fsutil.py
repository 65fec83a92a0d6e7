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
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise ExpungeError(f"cannot create {out} ({exc.strerror})",
                           "choose an output path in a writable directory") from None
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


def write_text_atomic(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> None:
    """Write a text file via a temp file beside it, refusing to replace an existing file unless
    ``overwrite``. Readers see either the old state or the complete new file."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExpungeError(f"{path} already exists", "choose a new output path or delete the old file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ExpungeError(f"cannot write {path} ({exc.strerror})", "choose an output path in a writable directory") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the name was taken meanwhile; rename would silently replace it.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ExpungeError(f"{path} already exists", "choose a new output path") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
