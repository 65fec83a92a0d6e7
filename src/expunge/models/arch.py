"""One table of module paths per model family: everything that differs between GPT-2, Llama and
GPT-NeoX lives here, so that no method hard-codes ``model.layers.7``.

Paths are dotted attribute paths; per-layer paths are relative to one decoder layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from expunge.errors import ExpungeError


@dataclass(frozen=True)
class EditLayers:
    """Where ROME and MEMIT write in a *pretrained* model of a family: the layers published for a
    reference model of the family, scaled to the model's depth (layer l of a ``depth``-layer
    reference becomes round(l * n / depth) in an n-layer model).

    Attributes:
        depth: the reference model's number of decoder layers.
        rome: the layer ROME edits in the reference model.
        memit: the first and last layer MEMIT spreads its update over in the reference model.
        source: where the reference numbers come from.
    """

    depth: int
    rome: int
    memit: tuple[int, int]
    source: str

    def scaled(self, n_layers: int) -> tuple[int, tuple[int, ...]]:
        """(ROME's layer, MEMIT's layers) for a model with ``n_layers`` decoder layers."""
        at = lambda layer: min(n_layers - 2, max(0, round(layer * n_layers / self.depth)))  # noqa: E731
        first, last = at(self.memit[0]), at(self.memit[1])
        return at(self.rome), tuple(range(first, max(first, last) + 1))


# EasyEdit's hparams for Llama-2-7b, Llama-3-8B, Mistral-7B and Qwen2-7B (32-layer models) all edit
# layer 5 with ROME and 4-8 with MEMIT; for SmolLM2-135M (30 layers) that is again 5 and 4-8.
_LLAMA_EDITS = EditLayers(32, 5, (4, 8), "EasyEdit hparams/ROME and hparams/MEMIT for llama-7b (Llama-2-7b)")


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
        edit_layers: the family's editing layers for pretrained models (None: no published
            reference; editors then use their from-scratch rule, a third of the way up).
    """

    layers: str
    mlp_in: tuple[str, ...]
    mlp_out: str
    attention: tuple[str, ...]
    final_norm: str
    lm_head: str
    transposed_weights: bool = False
    edit_layers: EditLayers | None = None


_LLAMA = ArchSpec(
    layers="model.layers",
    mlp_in=("mlp.gate_proj", "mlp.up_proj"),
    mlp_out="mlp.down_proj",
    attention=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
    final_norm="model.norm",
    lm_head="lm_head",
    edit_layers=_LLAMA_EDITS,
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
        # ROME's paper: layer 17 of GPT-2 XL (48 layers); MEMIT's: 13-17.
        edit_layers=EditLayers(48, 17, (13, 17), "Meng et al. 2022 (ROME) and 2023 (MEMIT), GPT-2 XL"),
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
