"""TextEnum: decisions as enum members that read, print and serialise as their text.

Control flow compares members (``verdict.forgotten is Forgotten.NO``), never prose; JSON, reports
and the CLI keep writing the same strings as before (a member *is* its string: ``str`` subclass).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["TextEnum"]


class TextEnum(str, Enum):
    """A ``str`` enum whose ``str()`` and ``format()`` are its value on every Python version."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
