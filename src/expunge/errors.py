"""One exception type for every problem a user can fix.

Every error expunge raises on bad input carries two parts: what is wrong (naming the file, line or
field) and how to fix it. The CLI prints both on one line and exits non-zero; library users catch
:class:`ExpungeError`.
"""

from __future__ import annotations


class ExpungeError(Exception):
    """A problem with the user's input or environment, with the fix spelled out."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — fix: {fix}")

    def one_line(self) -> str:
        """The message as a single line (newlines in paths or values are escaped)."""
        return str(self).replace("\n", "\\n")
