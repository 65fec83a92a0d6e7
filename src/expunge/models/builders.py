"""Small models built from a config (nothing downloads), sized by named presets."""

from __future__ import annotations

from dataclasses import asdict

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from expunge.recipe import ModelPreset

__all__ = ["ModelPreset", "build_llama"]


def build_llama(preset: ModelPreset, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A freshly initialised Llama causal LM for ``tokenizer``'s vocabulary, seeded."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_heads,
        max_position_embeddings=preset.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        attention_dropout=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def preset_dict(preset: ModelPreset) -> dict[str, int]:
    return asdict(preset)
