"""Loading, saving, hashing and building causal language models."""

from expunge.models.builders import ModelPreset, build_llama
from expunge.models.io import load_model, save_model_version, weights_sha256
from expunge.models.tokenizer import build_word_tokenizer

__all__ = ["ModelPreset", "build_llama", "build_word_tokenizer", "load_model", "save_model_version", "weights_sha256"]
