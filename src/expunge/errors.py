"""One exception type for every problem a user can fix.

Every error expunge raises on bad input carries two parts: what is wrong (naming the file, line or
field) and how to fix it. The CLI prints both on one line and exits non-zero; library users catch
:class:`ExpungeError`. Faults of the filesystem (disk full, read-only, a name too long, permission
denied) become the same kind of error through :func:`io_error`, named after the path involved.
"""

from __future__ import annotations

import errno
import os
import re

__all__ = ["ExpungeError", "io_error"]


class ExpungeError(Exception):
    """A problem with the user's input or environment, with the fix spelled out."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — fix: {fix}")

    def one_line(self) -> str:
        """The message as a single line (newlines in paths or values are escaped)."""
        return str(self).replace("\n", "\\n")


# errno -> (what happened, how to fix it); {path} is the file or directory involved.
_IO_FAULTS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device holding {path}",
                   "free some disk space, or write to another filesystem; nothing half-written was kept, "
                   "so the same command can simply be run again"),
    errno.EDQUOT: ("disk quota exceeded writing {path}", "free some space in your quota, or write elsewhere"),
    errno.EROFS: ("{path} is on a read-only filesystem", "choose a location on a writable filesystem"),
    errno.ENAMETOOLONG: ("a name in {path} is too long for the filesystem (at most 255 bytes per name)",
                         "use a shorter file or directory name"),
    errno.EACCES: ("permission denied for {path}", "choose a location you can write to, or change its permissions"),
    errno.EPERM: ("operation not permitted on {path}", "choose a location you can write to, or change its permissions"),
    errno.ENOENT: ("{path} does not exist", "check the path"),
    errno.ENOTDIR: ("cannot write {path}: a part of the path is a file, not a directory", "choose another path"),
    errno.EEXIST: ("cannot write {path}: a part of the path already exists and is not a directory",
                   "choose another path"),
    errno.EISDIR: ("{path} is a directory, not a file", "give the path of a file"),
    errno.EIO: ("input/output error on {path}", "check the disk, then run the command again"),
}
# Errors from compiled libraries (safetensors, tokenizers) that carry the OS error in their text.
_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)")


def io_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> ExpungeError | None:
    """The one-line error for a filesystem fault, or None if ``exc`` is not one.

    ``path`` names where it happened when the exception does not (a failed ``write`` reports no
    file name); compiled libraries' errors are recognised by the ``os error N`` they carry.
    """
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None:
        match = _OS_ERROR_IN_TEXT.search(str(exc))
        code = int(match.group(1)) if match else None
    if code is None:
        return None
    where = getattr(exc, "filename", None) or path
    where = str(where) if where is not None else "the output"
    problem, fix = _IO_FAULTS.get(code, (f"{os.strerror(code).lower()} on {{path}}", "check the path and the filesystem"))
    return ExpungeError(problem.format(path=where), fix)
