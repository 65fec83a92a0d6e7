"""Writing outputs so that a crash never leaves half a result and nothing is ever overwritten.

:func:`ensure_new_output` checks an output location before any work (taken? name too long? can a
directory be made there?), and the writers turn a fault while writing (disk full, read-only
filesystem) into one line naming the path, having removed what they had half-written.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from expunge.errors import ExpungeError, io_error

_HOST = socket.gethostname().replace("-", "_").replace("/", "_")[:40]


def ensure_new_output(out: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Fail early (before any work) when the output path cannot be a new file or directory: it
    exists, one of its names is too long for the filesystem, or the directory it would be made in
    is not writable (read-only filesystem, no permission, or a file in the way). ``option`` names
    the command-line option the fix refers to."""
    out = Path(out)
    # Names first: asking whether an over-long name exists is itself an error.
    for part in out.parts:
        if len(os.fsencode(part)) > 255:  # NAME_MAX of every common filesystem
            raise ExpungeError(
                f"output {out.parent / (part[:24] + '…')}: a name of {len(os.fsencode(part))} bytes; "
                "the filesystem allows at most 255",
                f"use a shorter {option} name",
            )
    if out.exists() or out.is_symlink():
        raise ExpungeError(
            f"output {out} already exists",
            f"choose a new {option} path; expunge never writes over an existing directory",
        )
    check_writable_below(out, option)
    return out


def check_writable_below(out: str | os.PathLike[str], option: str = "--out") -> None:
    """The nearest existing directory at or above ``out`` must be writable (so that ``out`` can be
    made, or written into when it is an existing directory)."""
    out = Path(out)
    ancestor = out
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ExpungeError(f"output {out}: {ancestor} is a file, not a directory", f"choose {option} inside a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        if _read_only(ancestor):
            raise ExpungeError(f"output {out}: {ancestor} is on a read-only filesystem",
                               f"choose {option} on a writable filesystem")
        raise ExpungeError(f"output {out}: no permission to write in {ancestor}",
                           f"choose {option} in a directory you can write to")


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _reraise_io(exc: BaseException, path: Path) -> None:
    """Raise the one-line error for a filesystem fault (disk full, read-only, ...) at ``path``."""
    if not isinstance(exc, ExpungeError):
        converted = io_error(exc, path)
        if converted is not None:
            raise converted from None


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
        _remove_dead_partials(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:64]}.partial-{os.getpid()}@{_HOST}-", dir=out.parent))
    except OSError as exc:
        _reraise_io(exc, out)
        raise
    try:
        yield tmp
        if out.exists():  # someone else created it while we worked: keep theirs, drop ours
            raise ExpungeError(
                f"output {out} appeared while this run was writing it",
                "run again with a new --out path",
            )
        os.rename(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _reraise_io(exc, out)
        raise


def _remove_dead_partials(out: Path) -> None:
    """Remove what a killed run (``kill -9``, a power cut) left of its own attempt at ``out``: its
    partial directories name their process and host, and one whose process on this host is gone
    is never finished (another host's are left alone: its processes cannot be seen from here)."""
    for partial in out.parent.glob(f"{glob.escape('.' + out.name[:64])}.partial-*@*"):
        owner = partial.name.rsplit(".partial-", 1)[1].rsplit("-", 1)[0]
        pid, _, host = owner.partition("@")
        if host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_text_atomic(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> None:
    """Write a text file via a temp file beside it, refusing to replace an existing file unless
    ``overwrite``. Readers see either the old state or the complete new file."""
    path = Path(path)
    try:
        taken = path.exists()  # raises for a name too long for the filesystem
    except OSError as exc:
        _reraise_io(exc, path)
        raise
    if taken and not overwrite:
        raise ExpungeError(f"{path} already exists", "choose a new output path or delete the old file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _reraise_io(exc, path)
        raise
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
    except OSError as exc:
        _reraise_io(exc, path)
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)
