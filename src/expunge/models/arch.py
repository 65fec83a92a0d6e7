"""One table of module paths per model family: everything that differs between GPT-2, Llama and
GPT-NeoX lives here, so that no method hard-codes ``model.layers.7``.

Paths are dotted attribute paths; per-layer paths are relative to one decoder layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from expunge.errors import ExpungeError


@dataclass(frozen=True)
class ArchSpec:
    """Where things are in one model family.

    Attributes:
        layers: the ModuleList of decoder layers.
        mlp_in: the MLP's input projection(s), per layer.
        mlp_out: the MLP's output (down) projection, per layer: the key-value memory that ROME
            and MEMIT edit, and that RMU perturbs.
        attention: attention projections, per layer (LoRA targets).
        final_norm: the norm applied before the unembedding (logit lens).
        lm_head: the unembedding.
        transposed_weights: GPT-2's Conv1D stores weights as (in, out), the transpose of nn.Linear.
    """

    layers: str
    mlp_in: tuple[str, ...]
    mlp_out: str
    attention: tuple[str, ...]
    final_norm: str
    lm_head: str
    transposed_weights: bool = False


_LLAMA = ArchSpec(
    layers="model.layers",
    mlp_in=("mlp.gate_proj", "mlp.up_proj"),
    mlp_out="mlp.down_proj",
    attention=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
    final_norm="model.norm",
    lm_head="lm_head",
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gpt2": ArchSpec(
        layers="transformer.h",
        mlp_in=("mlp.c_fc",),
        mlp_out="mlp.c_proj",
        attention=("attn.c_attn", "attn.c_proj"),
        final_norm="transformer.ln_f",
        lm_head="lm_head",
        transposed_weights=True,
    ),
    "gpt_neox": ArchSpec(
        layers="gpt_neox.layers",
        mlp_in=("mlp.dense_h_to_4h",),
        mlp_out="mlp.dense_4h_to_h",
        attention=("attention.query_key_value", "attention.dense"),
        final_norm="gpt_neox.final_layer_norm",
        lm_head="embed_out",
    ),
}


def arch_for(model: torch.nn.Module) -> ArchSpec:
    """The ArchSpec of ``model`` (by ``config.model_type``), or a clear error listing known families."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ExpungeError(
            f"model family {model_type!r} is not in expunge's architecture table",
            f"use one of: {', '.join(sorted(ARCHITECTURES))} (or add an entry to expunge/models/arch.py)",
        )
    return ARCHITECTURES[model_type]


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    return model.get_submodule(arch_for(model).layers)


def layer_module(model: torch.nn.Module, layer: int, path: str) -> torch.nn.Module:
    """A submodule of decoder layer ``layer`` (negative indices count from the end)."""
    layers = decoder_layers(model)
    if not -len(layers) <= layer < len(layers):
        raise ExpungeError(f"layer {layer} does not exist (the model has {len(layers)})",
                           f"choose a layer between 0 and {len(layers) - 1}")
    return layers[layer].get_submodule(path)
