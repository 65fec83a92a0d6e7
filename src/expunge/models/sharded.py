"""Sharded models (SISA with adapters): one frozen base plus one LoRA adapter per disjoint shard
of the deletable training documents, combined at inference.

A sharded model is a directory (written once, atomically, like every model version)::

    OUT/expunge_sharded.json     the record: identity sha256, parent, recipe, the shards (which
                                 subjects each holds, its documents' digest, its adapter's sha256,
                                 its seed) and the sha256 of every file below
    OUT/base/                    the frozen base: an ordinary model version (config, weights,
                                 tokenizer, expunge_model.json), trained on nothing deletable
    OUT/shard-00/ ...            each shard's adapter in peft's own format (adapter_config.json,
                                 adapter_model.safetensors); a shard whose documents were all
                                 deleted has no directory

The shards are combined in one of three ways (:class:`Combine`), chosen when loading:

- ``ensemble`` (the default): the mixture of the shards' whole-sequence distributions,
  p(x) = mean_k p_k(x); token by token, each shard's next-token distribution weighted by how
  likely it found the text so far (a posterior over shards from a uniform prior). The shard that
  was trained on the person a prompt names explains the prompt best and takes over.
- ``mixture``: the mean of the shards' next-token probabilities (SISA's averaging of the
  constituent models' outputs). A shard confidently wrong about someone it never saw outvotes
  the one that knows them once there are more than two shards.
- ``product``: a product of experts: the mean of the shards' next-token log-probabilities,
  renormalised.
- ``merge``: every adapter's low-rank update added into the base weights: one plain model, the
  cost of one forward pass, and the adapters' updates interfering with one another.

The ensembles run every shard on each forward pass (one batched pass through peft's mixed-adapter
batches in eval mode), so they cost K forward passes' worth of compute; ``benchmarks/sharded.py``
measures it. An ensemble is a ``torch.nn.Module`` with the causal-LM interface verification uses
(``forward`` returning logits, greedy ``generate``), not a transformers model: attacks that edit
or fine-tune weights need ``merge``.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase
from transformers.modeling_outputs import CausalLMOutputWithPast

from expunge.choices import TextEnum
from expunge.errors import ExpungeError
from expunge.integrity import SHARDED_RECORD, check_model_files
from expunge.records import ModelRef, read_json

__all__ = [
    "SHARDED_RECORD",
    "Combine",
    "ShardEnsemble",
    "adapter_sha256",
    "is_sharded",
    "load_adapter_state",
    "load_sharded",
    "read_sharded_record",
    "shard_dir_name",
    "sharded_identity",
]

BASE_DIR = "base"


class Combine(TextEnum):
    """How a sharded model's shards answer together (see the module doc)."""

    ENSEMBLE = "ensemble"
    MIXTURE = "mixture"
    PRODUCT = "product"
    MERGE = "merge"


def shard_dir_name(index: int) -> str:
    return f"shard-{index:02d}"


def is_sharded(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a sharded model directory (it holds ``expunge_sharded.json``)."""
    return (Path(path) / SHARDED_RECORD).is_file()


def read_sharded_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record of a sharded model, unchecked (its files are checked by :func:`load_sharded`)."""
    record = read_json(Path(path) / SHARDED_RECORD, "sharded model record")
    if not isinstance(record, dict) or not isinstance(record.get("shards"), list):
        raise ExpungeError(f"{Path(path) / SHARDED_RECORD}: not a sharded model record",
                           "re-create this model with `expunge train --shards`")
    return record


def adapter_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over an adapter's tensors, as a whole model's weights are hashed."""
    from expunge.models.io import tensors_sha256

    return tensors_sha256(state)


def sharded_identity(base_sha256: str, shard_sha256s: Sequence[str | None]) -> str:
    """A sharded model's identity: the base's weights and every shard's adapter, in shard order
    (an empty shard as ``-``)."""
    digest = hashlib.sha256(b"expunge-sharded-v1\n")
    digest.update(base_sha256.encode() + b"\n")
    for sha in shard_sha256s:
        digest.update((sha or "-").encode() + b"\n")
    return digest.hexdigest()


def load_adapter_state(directory: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """An adapter's tensors as peft saved them (``adapter_model.safetensors``)."""
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / "adapter_model.safetensors"))


class ShardEnsemble(torch.nn.Module):
    """The shards of a sharded model answering together (``ensemble`` or ``mixture``).

    ``model`` is the base wrapped by peft with one named adapter per shard. The forward pass runs
    every adapter on the same input and combines their next-token distributions; the returned
    ``logits`` are log-probabilities (a log-softmax of them is themselves), so every score that
    expunge computes from logits reads the combined distribution.
    """

    def __init__(self, model: torch.nn.Module, adapters: Sequence[str], combine: Combine) -> None:
        super().__init__()
        if combine is Combine.MERGE:
            raise ValueError("merge makes one plain model; ShardEnsemble combines distributions")
        if not adapters:
            raise ValueError("an ensemble needs at least one adapter")
        self.model = model
        self.adapters = list(adapters)
        self.combine = combine

    @property
    def config(self) -> Any:
        return self.model.get_base_model().config

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.get_base_model().get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **_: Any) -> CausalLMOutputWithPast:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            # Positions from the mask, as generation computes them: a left-padded row's first real
            # token is at position 0 (for right padding this is plain counting).
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        k, batch = len(self.adapters), input_ids.shape[0]
        if self.model.training:
            # peft's mixed-adapter batches are for inference only: one adapter at a time.
            outputs = []
            for name in self.adapters:
                self.model.set_adapter(name)
                outputs.append(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                          position_ids=position_ids, use_cache=False).logits)
            logits = torch.stack(outputs)
        else:
            names = [name for name in self.adapters for _ in range(batch)]
            logits = self.model(input_ids=input_ids.repeat(k, 1), attention_mask=attention_mask.repeat(k, 1),
                                position_ids=position_ids.repeat(k, 1), adapter_names=names,
                                use_cache=False).logits
            logits = logits.view(k, batch, *logits.shape[1:])
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        if self.combine is Combine.MIXTURE:
            combined = torch.logsumexp(logprobs, dim=0) - math.log(k)
        elif self.combine is Combine.PRODUCT:  # the product of experts, renormalised
            combined = torch.log_softmax(logprobs.mean(dim=0), dim=-1)
        else:  # ENSEMBLE: each shard weighted by how well it explains the text so far
            combined = torch.logsumexp(_posterior(logprobs, input_ids, attention_mask)[..., None] + logprobs, dim=0)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(combined[:, :-1].reshape(-1, combined.shape[-1]),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=combined)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                 max_new_tokens: int = 20, do_sample: bool = False, pad_token_id: int | None = None,
                 eos_token_id: int | None = None, stopping_criteria: Any = None, **kwargs: Any) -> torch.Tensor:
        """Greedy decoding (the only decoding verification uses), without a key/value cache:
        each step reruns the whole sequence through every shard."""
        if do_sample or kwargs.get("num_beams", 1) != 1:
            raise ExpungeError("a sharded ensemble decodes greedily only",
                               "use greedy decoding, or load the model with combine=merge")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ids, mask = input_ids, attention_mask
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        pad = pad_token_id if pad_token_id is not None else (eos_token_id if eos_token_id is not None else 0)
        for _ in range(max_new_tokens):
            logits = self(input_ids=ids, attention_mask=mask).logits[:, -1]
            token = logits.argmax(-1)
            token = torch.where(done, torch.full_like(token, pad), token)
            ids = torch.cat([ids, token[:, None]], 1)
            mask = torch.cat([mask, (~done).long()[:, None]], 1)
            if eos_token_id is not None:
                done |= token == eos_token_id
            if stopping_criteria is not None:
                stop = stopping_criteria(ids, logits)
                done |= stop if isinstance(stop, torch.Tensor) else torch.full_like(done, bool(stop))
            if bool(done.all()):
                break
        return ids


def _posterior(logprobs: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log p(shard | tokens up to t), (K, batch, time), from a uniform prior: each shard's
    likelihood of the text so far, normalised over the shards. Predicting with these weights is
    the mixture of the shards' whole-sequence distributions, p(x) = mean_k p_k(x): the shard that
    has seen the person a prompt names explains the prompt best and takes over. A token counts
    only when it and the one before it are real (a left-padded row's first token is predicted
    from padding, which no shard has seen)."""
    k = logprobs.shape[0]
    targets = input_ids[:, 1:].unsqueeze(0).expand(k, -1, -1).unsqueeze(-1)
    token = torch.gather(logprobs[:, :, :-1], -1, targets).squeeze(-1)  # log p_k(x_t | x_<t), t >= 1
    real = (attention_mask[:, 1:] * attention_mask[:, :-1]).to(token.dtype)
    so_far = torch.cumsum(token * real, dim=-1)
    weights = torch.cat([torch.zeros_like(so_far[..., :1]), so_far], dim=-1)
    return weights - torch.logsumexp(weights, dim=0, keepdim=True)


def load_sharded(
    path: str | os.PathLike[str], *, combine: Combine | str | None = None, verify_hash: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase, ModelRef]:
    """Load a sharded model: check every file against its record, load the base (itself a checked
    model version) and the adapters (each against its recorded sha256), and combine them
    (``combine``, default: the one the record names)."""
    from expunge.models.io import load_model

    path = Path(path)
    record = read_sharded_record(path)
    if verify_hash:
        check_model_files(path, record)
    try:
        chosen = Combine(combine or record.get("combine", Combine.ENSEMBLE.value))
    except ValueError:
        raise ExpungeError(f"unknown combination {combine!r}",
                           f"use one of: {', '.join(c.value for c in Combine)}") from None
    base, tokenizer, base_ref = load_model(path / BASE_DIR, verify_hash=verify_hash, dtype=dtype)
    if verify_hash and base_ref.sha256 != record["base"]["sha256"]:
        raise ExpungeError(f"{path / BASE_DIR}: the base's weights are not the ones {SHARDED_RECORD} records",
                           "restore the original base, or re-create this sharded model")
    present = [s for s in record["shards"] if s.get("adapter_sha256")]
    ref = ModelRef(str(path), record["sha256"], record.get("parent"),
                   {**record.get("recipe", {}), "combine": chosen.value})
    if not present:
        return base, tokenizer, ref
    from peft import PeftModel

    model: Any = None
    for shard in present:
        directory, name = path / shard_dir_name(shard["index"]), shard_dir_name(shard["index"])
        if verify_hash and adapter_sha256(load_adapter_state(directory)) != shard["adapter_sha256"]:
            raise ExpungeError(f"{directory}: the adapter's weights are not the ones {SHARDED_RECORD} records",
                               "restore the original adapter, or re-create this sharded model")
        if model is None:
            model = PeftModel.from_pretrained(base, str(directory), adapter_name=name)
        else:
            model.load_adapter(str(directory), adapter_name=name)
    names = [shard_dir_name(s["index"]) for s in present]
    if chosen is Combine.MERGE:
        # Every adapter's update added into the base: W + sum_k (alpha/r) B_k A_k.
        merged = model.merge_and_unload(adapter_names=names)
        merged.eval()
        return merged, tokenizer, ref
    model.eval()
    ensemble = ShardEnsemble(model, names, chosen)
    ensemble.eval()
    return ensemble, tokenizer, ref

