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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only: the CLI checks editor options before transformers loads
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.data import encode_documents, pad_collate, padding_id
from expunge.models.arch import arch_for, layer_module

__all__ = ["projection_weight", "second_moment", "second_moments"]


def projection_weight(model: PreTrainedModel, layer: int) -> torch.Tensor:
    """The output projection's weight of ``layer`` as (out, in) — a *view* for nn.Linear and the
    transpose view for GPT-2's Conv1D (which stores (in, out)): writing to it writes the model."""
    module = layer_module(model, layer, arch_for(model).mlp_out)
    return module.weight.t() if arch_for(model).transposed_weights else module.weight


class StopForward(Exception):
    """Raised by a hook that has what it needs: the rest of the forward pass is not needed (the
    caller catches it; the statistics' pass stops at the highest layer asked for)."""


def _cache_file(cache_dir: str | os.PathLike[str], model_sha256: str, layer: int, corpus: str) -> Path:
    return Path(cache_dir) / f"mom2-{model_sha256[:16]}-l{layer}-{corpus}.pt"


@torch.no_grad()
def second_moments(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    layers: Sequence[int],
    *,
    batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    model_sha256: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[int, torch.Tensor]:
    """E[k k^T] (float64, (in, in)) over every real token of ``texts`` at each of ``layers``'
    output projection input, in one pass over the corpus that stops at the highest layer needed
    (the layers above it cannot change those keys). Each layer's moment is read from / written to
    ``cache_dir`` when given, keyed by the weights' sha256 (``model_sha256`` when the caller
    already has it, e.g. from :func:`expunge.models.io.load_model`; else it is computed), the
    layer and the corpus."""
    if not texts:
        raise ValueError("second-moment statistics need a corpus of at least one text")
    wanted = sorted(set(layers))
    moments: dict[int, torch.Tensor] = {}
    files: dict[int, Path] = {}
    if cache_dir is not None:
        corpus = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        if model_sha256 is None:
            from expunge.models.io import weights_sha256  # here: importing it loads transformers

            model_sha256 = weights_sha256(model)
        files = {layer: _cache_file(cache_dir, model_sha256, layer, corpus) for layer in wanted}
        moments = {layer: torch.load(f) for layer, f in files.items() if f.exists()}
    todo = [layer for layer in wanted if layer not in moments]
    if not todo:
        return moments
    say = progress or (lambda _m: None)
    spec = arch_for(model)
    top = todo[-1]
    totals: dict[int, torch.Tensor] = {}
    mask_holder: dict[str, torch.Tensor] = {}

    def grab(layer: int) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            k = inputs[0][mask_holder["mask"]].double()
            totals[layer] = k.T @ k if layer not in totals else totals[layer] + k.T @ k
            if layer == top:
                raise StopForward

        return hook

    max_len = getattr(model.config, "max_position_embeddings", 512) or 512
    sequences = sorted(encode_documents(tokenizer, list(texts), min(512, max_len)), key=len)  # less padding
    collate = pad_collate(padding_id(tokenizer))
    device = next(model.parameters()).device
    handles = [layer_module(model, layer, spec.mlp_out).register_forward_pre_hook(grab(layer)) for layer in todo]
    was_training = model.training
    model.eval()
    count = 0
    say(f"second-moment statistics of layers {todo} on {len(sequences)} texts (layers 0-{top} of the forward pass)")
    try:
        for n, start in enumerate(range(0, len(sequences), batch_size)):
            enc = collate(sequences[start : start + batch_size])
            mask_holder["mask"] = enc["attention_mask"].bool().to(device)
            try:
                model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))
            except StopForward:
                pass
            count += int(enc["attention_mask"].sum())
            done = min(start + batch_size, len(sequences))
            if n % 10 == 9 and done < len(sequences):
                say(f"statistics: {done} of {len(sequences)} texts")
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    for layer in todo:
        moments[layer] = (totals[layer] / count).cpu()
        if layer in files:
            files[layer].parent.mkdir(parents=True, exist_ok=True)
            tmp = files[layer].with_suffix(".tmp")
            torch.save(moments[layer], tmp)
            os.replace(tmp, files[layer])
    return moments


def second_moment(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    layer: int,
    *,
    batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    model_sha256: str | None = None,
) -> torch.Tensor:
    """E[k k^T] at one layer (:func:`second_moments` for several in one pass)."""
    return second_moments(model, tokenizer, texts, [layer], batch_size=batch_size, cache_dir=cache_dir,
                          model_sha256=model_sha256)[layer]
