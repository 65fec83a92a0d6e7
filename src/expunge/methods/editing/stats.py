"""Second-moment statistics of the keys an MLP's output projection reads: C = E[k k^T].

ROME and MEMIT spread an edit along directions the layer rarely uses: the update is shaped by
C^-1, the inverse of the uncentred second moment of the projection's *inputs* (the keys) over
ordinary text. The original papers estimate C on Wikipedia; here it is estimated on a local
corpus (the world's training text, or any texts the caller passes) and cached on disk, keyed by
the model's weights hash, the layer and the corpus, because it costs a pass over the corpus.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only: the CLI checks editor options before transformers loads
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.data import encode_documents, pad_collate, padding_id
from expunge.models.arch import arch_for, layer_module

__all__ = ["projection_weight", "second_moment"]


def projection_weight(model: PreTrainedModel, layer: int) -> torch.Tensor:
    """The output projection's weight of ``layer`` as (out, in) — a *view* for nn.Linear and the
    transpose view for GPT-2's Conv1D (which stores (in, out)): writing to it writes the model."""
    module = layer_module(model, layer, arch_for(model).mlp_out)
    return module.weight.t() if arch_for(model).transposed_weights else module.weight


@torch.no_grad()
def second_moment(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    layer: int,
    *,
    batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """E[k k^T] (float64, (in, in)) over every real token of ``texts`` at ``layer``'s output
    projection input; read from / written to ``cache_dir`` when given."""
    if not texts:
        raise ValueError("second-moment statistics need a corpus of at least one text")
    cache = None
    if cache_dir is not None:
        corpus = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        from expunge.models.io import weights_sha256  # here: importing it loads transformers

        cache = Path(cache_dir) / f"mom2-{weights_sha256(model)[:16]}-l{layer}-{corpus}.pt"
        if cache.exists():
            return torch.load(cache)
    module = layer_module(model, layer, arch_for(model).mlp_out)
    keys: list[torch.Tensor] = []
    mask_holder: dict[str, torch.Tensor] = {}

    def grab(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        k = inputs[0]
        keys.append(k[mask_holder["mask"]].double())

    max_len = getattr(model.config, "max_position_embeddings", 512) or 512
    sequences = encode_documents(tokenizer, list(texts), min(512, max_len))
    collate = pad_collate(padding_id(tokenizer))
    device = next(model.parameters()).device
    handle = module.register_forward_pre_hook(grab)
    was_training = model.training
    model.eval()
    total = None
    count = 0
    try:
        for start in range(0, len(sequences), batch_size):
            enc = collate(sequences[start : start + batch_size])
            mask_holder["mask"] = enc["attention_mask"].bool().to(device)
            model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))
            k = keys.pop()
            total = k.T @ k if total is None else total + k.T @ k
            count += k.shape[0]
    finally:
        handle.remove()
        model.train(was_training)
    moment = (total / count).cpu()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(moment, tmp)
        os.replace(tmp, cache)
    return moment
