"""Importers: the user's data, or a public benchmark, turned into a world directory.

A world directory is the one internal format (see :mod:`expunge.worlds.world`): generators and
importers both produce it, and every later step reads only that. An importer validates every
input line first (errors name ``file:line`` and the field), keeps the user's ids, and records the
sha256 of each source file in the manifest, so provenance reaches back to the files it came from.

- :func:`import_jsonl`: documents (and optionally probes and subjects) as JSON Lines;
- :func:`import_tofu`: the TOFU benchmark's files (Maini et al. 2024) from a directory;
- :func:`import_text`: plain-text files (books, articles) as works cut into passages;
- :mod:`~expunge.worlds.importers.routes`: the indirect routes (context, role-play, prefill) both
  build from the data's own question–answer pairs.
"""

from __future__ import annotations

from expunge.worlds.importers.jsonl import JsonlSources, import_jsonl
from expunge.worlds.importers.text import TextSources, import_text
from expunge.worlds.importers.tofu import TOFU_SPLITS, import_tofu

__all__ = ["JsonlSources", "TOFU_SPLITS", "TextSources", "import_jsonl", "import_text", "import_tofu"]
