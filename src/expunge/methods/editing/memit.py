"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al. 2023, https://arxiv.org/abs/2210.07229).

ROME rewrites one memory in one layer; MEMIT writes thousands at once and spreads each over a
range of layers, so that no single matrix takes the whole change:

1. **targets**: for every edit, a vector delta is optimised at the *last* edited layer's output
   (the residual stream) so that the model predicts the new object (ROME's value step, batched:
   see :func:`expunge.methods.editing.common.optimise_targets`); the target z = h + delta;
2. **spread**: for each edited layer l, in order, with the keys K of every edit at that layer and
   the residuals R = (z - h_now) / (layers left, this one included), solve

       dW_l = R K^T (lambda C_l + K K^T)^-1

   the least-squares update that moves each key's output by its share of the residual while
   staying small on ordinary keys (C_l = E[k k^T], :mod:`stats`); then recompute h_now, so later
   layers only supply what earlier ones did not.

lambda C stands in for K0 K0^T, the keys of every memory that must be kept (the paper's
derivation). Where the lookup position is shared by a whole relation ("prompt_last": every CEO
question ends the same way) ordinary text weighs those keys far too little, so ``preserve`` can
name prompts whose keys are added explicitly: dW = R K^T (lambda C + mu K0 K0^T + K K^T)^-1. They
should be the edit's prompt forms about *other* subjects — and not the subjects a neighbourhood
score is measured on, or that score says nothing.

Keys and targets are taken at the lookup positions of :mod:`expunge.methods.editing.common`:
the subject's last token (as published), or the positions that predict the target
(``token="prompt_last"``), for models that resolve facts at the question's end. Every changed
weight is returned, so :func:`expunge.methods.editing.common.revert` undoes the batch exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

if TYPE_CHECKING:  # annotations only: the CLI checks editor options before transformers loads
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.methods.editing.common import (
    LOOKUP_TOKENS,
    EditContext,
    EditResult,
    LookupToken,
    RewriteBatch,
    check_lookup,
    keys_and_residual,
    keys_at,
    optimise_targets,
    revert,
    rewrite_batch,
    slot_positions_of_prompt_rows,
)
from expunge.methods.editing.rome import regularised
from expunge.methods.editing.stats import projection_weight
from expunge.models.arch import arch_for, decoder_layers
from expunge.records import FactEdit

__all__ = ["MEMITConfig", "LOOKUP_TOKENS", "apply_memit", "apply_memit_batch", "default_memit_layers",
           "memit_layers"]


@dataclass(frozen=True)
class MEMITConfig:
    """https://arxiv.org/abs/2210.07229 — options of one MEMIT batch.

    Attributes:
        layers: the decoder layers whose MLP output projections share the update, ascending
            (None: :func:`default_memit_layers`, a few layers ending a third of the way up; for a
            pretrained model ``expunge edit`` sets the family's layers,
            :class:`expunge.models.arch.EditLayers`).
        token: lookup position, "subject_last" (the paper's) or "prompt_last" (the positions that
            predict the target; for small models trained from scratch, see the module docstring).
        context_prefixes: short texts put before each prompt ("" first: the bare prompt).
        steps: optimisation steps for the targets.
        stop_loss: an edit's optimisation stops once its mean NLL of the new target is below
            this (ROME's and MEMIT's published code stop at 0.05; 0 runs every step, as the
            tuned defaults for the built-in worlds do).
        learning_rate: Adam learning rate for the target deltas.
        kl_weight: weight of KL(original || edited) on "{subject} is a" (subject_last only).
        weight_decay: weight of ||delta||^2 / ||h||^2 in the target loss.
        clamp_norm_factor: ||delta|| is kept <= this times the residual's norm where it is added.
        covariance_weight: lambda, how many ordinary keys' worth of weight the old behaviour gets
            against each new key (the paper's ``mom2_update_weight``, 15000 for GPT-J).
        preserve_weight: mu, the weight of each explicitly preserved key (see ``preserve``).
        mom2_regularisation: added to C's diagonal as a fraction of its mean diagonal.
        chunk_size: edits whose targets are optimised in one forward batch (memory, not results:
            targets of different edits do not interact).
    """

    layers: tuple[int, ...] | None = None
    token: LookupToken = "subject_last"
    context_prefixes: tuple[str, ...] = ("", "The company.", "Question:", "In the year", "The city of")
    steps: int = 40
    stop_loss: float = 0.0
    learning_rate: float = 0.5
    kl_weight: float = 0.0625
    weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    covariance_weight: float = 15000.0
    preserve_weight: float = 1.0
    mom2_regularisation: float = 1e-3
    chunk_size: int = 32

    def __post_init__(self) -> None:
        check_lookup(self.token)
        if self.layers is not None and (not self.layers or list(self.layers) != sorted(set(self.layers))):
            raise ValueError("layers must be distinct and ascending, e.g. (3, 4, 5)")
        if self.steps < 1 or not self.learning_rate > 0:
            raise ValueError("steps must be at least 1 and learning_rate positive (e.g. 40 and 0.5)")
        if self.stop_loss < 0:
            raise ValueError("stop_loss must be >= 0 (e.g. 0.05; 0 runs every step)")
        if not self.context_prefixes or self.context_prefixes[0] != "":
            raise ValueError('context_prefixes must start with "" (the bare prompt), e.g. ("", "The company.")')
        if min(self.kl_weight, self.weight_decay, self.mom2_regularisation, self.preserve_weight) < 0 \
                or not self.covariance_weight > 0:
            raise ValueError("kl_weight, weight_decay, mom2_regularisation, preserve_weight must be >= 0 "
                             "and covariance_weight > 0")
        if not self.clamp_norm_factor > 0 or self.chunk_size < 1:
            raise ValueError("clamp_norm_factor must be positive and chunk_size at least 1")


def default_memit_layers(model: PreTrainedModel) -> tuple[int, ...]:
    """max(2, n/6) consecutive layers ending a third of the way up (GPT-J's 3-8 of 28 in the paper;
    layers 0-1 of a 4-layer model)."""
    n = len(decoder_layers(model))
    end = max(0, min(n - 1, n // 3))
    count = max(2, n // 6)
    return tuple(range(max(0, end - count + 1), end + 1))


SecondMoments = Mapping[int, torch.Tensor] | Callable[[int], torch.Tensor]


def apply_memit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    edits: Sequence[FactEdit],
    second_moments: SecondMoments,
    config: MEMITConfig | None = None,
    *,
    preserve: Sequence[tuple[str, str]] = (),
    progress: Callable[[str], None] | None = None,
) -> EditResult:
    """Apply every edit in one batch, in place; returns the :class:`EditResult` that ``revert`` undoes.

    ``second_moments`` maps a layer to its C = E[k k^T] (or is a function computing it, e.g. a
    cached :func:`expunge.methods.editing.stats.second_moment`). ``preserve`` lists (cloze
    template, subject name) pairs whose keys must keep their outputs (module docstring).
    """
    config = config or MEMITConfig()
    if not edits:
        raise ExpungeError("no edits to apply", "pass at least one FactEdit")
    subjects = [(e.subject, e.relation) for e in edits]
    if len(set(subjects)) != len(subjects):
        raise ExpungeError("two edits in one batch change the same fact", "keep one edit per (subject, relation)")
    spec = arch_for(model)
    n_layers = len(decoder_layers(model))
    layers = tuple(config.layers) if config.layers is not None else default_memit_layers(model)
    if not all(0 <= layer < n_layers for layer in layers):
        raise ExpungeError(f"layers {layers} do not all exist (the model has {n_layers})",
                           f"choose layers between 0 and {n_layers - 1}")
    z_layer = layers[-1]
    if config.token == "subject_last" and z_layer == n_layers - 1:
        raise ExpungeError(f"with token='subject_last' the last edited layer ({z_layer}) must not be the model's last: "
                           "a change at the subject after the final layer reaches no later position",
                           f"choose layers below {n_layers - 1}, or token='prompt_last'")
    note = progress or (lambda _message: None)

    # 1. Targets at the last edited layer, chunk by chunk.
    chunks = [list(edits[i : i + config.chunk_size]) for i in range(0, len(edits), config.chunk_size)]
    batches: list[tuple[RewriteBatch, list[int], torch.Tensor]] = []
    first_losses: list[float] = []
    for n, chunk in enumerate(chunks):
        note(f"targets: edits {n * config.chunk_size + 1}-{n * config.chunk_size + len(chunk)} of {len(edits)}")
        batch = rewrite_batch(tokenizer, chunk, config.context_prefixes, config.token)
        deltas, losses = optimise_targets(model, batch, z_layer, steps=config.steps,
                                          learning_rate=config.learning_rate, kl_weight=config.kl_weight,
                                          weight_decay=config.weight_decay,
                                          clamp_norm_factor=config.clamp_norm_factor,
                                          stop_loss=config.stop_loss)
        first_losses = first_losses or losses
        keep = slot_positions_of_prompt_rows(batch)
        slot_ids = torch.tensor([batch.slots[i][2] for i in keep], device=deltas.device)
        batches.append((batch, keep, deltas[slot_ids].double()))
    # The targets z = h + delta, h the residual at the last layer before any update: read in the
    # first layer's pass below (no update is applied before every batch has been read).
    targets: list[torch.Tensor] = []

    keep_batch = None
    if preserve:
        keep_edits = [FactEdit(f"preserve-{i}", f"preserve-{i}", name, "preserve", template, "", "x")
                      for i, (template, name) in enumerate(preserve)]
        keep_batch = rewrite_batch(tokenizer, keep_edits, ("",), config.token, with_essence=False, prompt_only=True)

    # 2. Spread the change over the layers, recomputing what is still missing after each.
    original: dict[int, torch.Tensor] = {}
    applied: dict[int, torch.Tensor] = {}
    try:
        for i, layer in enumerate(layers):
            note(f"layer {layer}: solving for {len(edits)} edits")
            weight = projection_weight(model, layer)
            keys, residuals = [], []
            for b, (batch, keep, delta) in enumerate(batches):
                k_now, z_now = keys_and_residual(model, batch, layer, spec.mlp_out, z_layer)  # one pass
                if i == 0:
                    targets.append(z_now[keep] + delta)
                keys.append(k_now[keep])
                residuals.append((targets[b] - z_now[keep]) / (len(layers) - i))
            k = torch.cat(keys).T  # (d_in, N)
            r = torch.cat(residuals).T  # (d_out, N)
            moment = second_moments(layer) if callable(second_moments) else second_moments[layer]
            if moment.shape != (k.shape[0], k.shape[0]):
                raise ExpungeError(f"second-moment statistics of shape {tuple(moment.shape)} do not fit layer {layer} "
                                   f"(keys of size {k.shape[0]})", "compute them for this model and layer")
            c = regularised(moment, config.mom2_regularisation, k.device)
            kept = config.covariance_weight * c
            if keep_batch is not None:
                k0 = keys_at(model, keep_batch, layer, spec.mlp_out).T
                kept = kept + config.preserve_weight * (k0 @ k0.T)
            # dW = R K^T (lambda C + K K^T)^-1 = R [(lambda C + K K^T)^-1 K]^T (the matrix is symmetric)
            update = r @ torch.linalg.solve(kept + k @ k.T, k).T
            if not torch.isfinite(update).all():
                raise ExpungeError(f"MEMIT's solve at layer {layer} produced non-finite values",
                                   "raise mom2_regularisation, or recompute the second-moment statistics")
            original[layer] = weight.detach().clone()
            with torch.no_grad():
                weight.add_(update.to(weight.dtype))
            applied[layer] = update.to(weight.dtype)
    except BaseException:
        revert(model, EditResult(list(edits), "memit", list(original), [], original, applied))  # leave no half edit
        raise
    modules = [f"{spec.layers}.{layer}.{spec.mlp_out}" for layer in layers]
    return EditResult(list(edits), "memit", list(layers), modules, original, applied, first_losses)


def memit_layers(model: PreTrainedModel, config: MEMITConfig) -> tuple[int, ...]:
    """The layers MEMIT edits (and needs statistics for)."""
    return tuple(config.layers) if config.layers is not None else default_memit_layers(model)


def apply_memit_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    edits: Sequence[FactEdit],
    config: MEMITConfig,
    context: EditContext,
) -> EditResult:
    """MEMIT as a registered editor: every edit in one batch, with the context's statistics,
    preservation keys and progress messages (:func:`apply_memit`)."""
    return apply_memit(model, tokenizer, edits, context.moments, config, preserve=context.preserve,
                       progress=context.progress)
