"""Loading, saving, hashing and building causal language models.

The names below are imported on first use (PEP 562), so that importing one light submodule
(``expunge.models.arch``, the module-path table) does not pull in transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ModelPreset", "build_llama", "build_word_tokenizer", "load_model", "save_model_version", "weights_sha256"]

_WHERE = {"ModelPreset": "expunge.recipe", "build_llama": "expunge.models.builders",
          "build_word_tokenizer": "expunge.models.tokenizer", "load_model": "expunge.models.io",
          "save_model_version": "expunge.models.io", "weights_sha256": "expunge.models.io"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'expunge.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
