"""LoRA adapters (peft) on the model families of :mod:`expunge.models.arch`: wrap a model so
that only low-rank adapters train, and merge them back so the result is a plain model."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from expunge.errors import ExpungeError
from expunge.models.arch import arch_for

__all__ = ["wrap_lora", "merge_lora"]


def wrap_lora(model: PreTrainedModel, rank: int) -> torch.nn.Module:
    """``model`` with rank-``rank`` adapters on its attention and MLP projections (alpha = 2 x
    rank, no dropout); ``rank`` 0 returns the model unchanged (every weight trains)."""
    if not rank:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ExpungeError("LoRA needs the peft package", "pip install 'expunge[lora]'") from None
    arch = arch_for(model)
    targets = sorted({path.rsplit(".", 1)[-1] for path in (*arch.attention, *arch.mlp_in, arch.mlp_out)})
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets))


def merge_lora(model: torch.nn.Module) -> PreTrainedModel:
    """The adapters folded into the weights (a model :func:`wrap_lora` did not wrap is returned
    as it is)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
