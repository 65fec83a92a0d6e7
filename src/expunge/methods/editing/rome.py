"""ROME: Rank-One Model Editing (Meng et al. 2022, https://arxiv.org/abs/2202.05262).

A fact "subject -> relation -> object" is read by the MLP of a middle layer at the subject's last
token: the MLP's output projection W acts as a key-value memory, the key k being its input there
and the value v = W k what it writes into the residual stream. ROME rewrites that one memory:

1. **key** k*: the projection's input at the subject's last token, averaged over the edit's
   prompts preceded by a few short prefixes (so the key is the subject's, not one sentence's);
2. **value** v*: the projection's output at that token, plus a vector delta optimised so that the
   model predicts the new object after every prompt, while a KL term keeps what the model says
   about the subject in general ("{subject} is a") unchanged, and delta is clamped to a multiple
   of the original value's norm (:func:`expunge.methods.editing.common.optimise_targets`; adding
   delta to the MLP's output or to the layer's output is the same thing);
3. **rank-one update** W' = W + L (C^-1 k*)^T with L = (v* - W k) / ((C^-1 k*)^T k): the smallest
   change (in the metric C = E[k k^T] of ordinary keys, see :mod:`stats`) that maps the key to v*.

Every edit returns the original weight, so :func:`revert` restores the model exactly (ROME's
``return_orig_weights``). ROME writes at the subject's last token, as published; for models that
resolve facts at the question's end use MEMIT with ``token="prompt_last"`` (docs/editing.md).
Module paths come from :mod:`expunge.models.arch`; GPT-2's Conv1D is handled by
:func:`expunge.methods.editing.stats.projection_weight`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Sequence
from dataclasses import dataclass

import torch

if TYPE_CHECKING:  # annotations only: the CLI checks editor options before transformers loads
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.methods.editing.common import (
    EditContext,
    EditResult,
    keys_at,
    merge_results,
    optimise_targets,
    output_norms,
    revert,
    rewrite_batch,
    slot_positions_of_prompt_rows,
    subject_last_index,
)
from expunge.methods.editing.stats import projection_weight
from expunge.models.arch import arch_for, decoder_layers
from expunge.records import FactEdit

__all__ = ["ROMEConfig", "EditResult", "apply_rome", "apply_rome_sequence", "rome_layers", "revert",
           "subject_last_index", "value_batches"]


@dataclass(frozen=True)
class ROMEConfig:
    """https://arxiv.org/abs/2202.05262 — options of one ROME edit.

    Attributes:
        layer: the decoder layer whose MLP output projection is edited (None: a third of the way
            up, where the papers found facts are read; layer 0 of a 2-layer model; for a
            pretrained model ``expunge edit`` sets the family's layer,
            :class:`expunge.models.arch.EditLayers`).
        context_prefixes: short texts put before each prompt when computing the key and value, so
            that the edit holds in context, not only for the bare prompt ("" is the bare prompt
            and must come first).
        steps: optimisation steps for the value.
        stop_loss: an edit's optimisation stops once its mean NLL of the new target is below
            this (ROME's and MEMIT's published code stop at 0.05; 0 runs every step, as the
            tuned defaults for the built-in worlds do).
        learning_rate: Adam learning rate for the value delta.
        kl_weight: weight of KL(original || edited) on "{subject} is a" (the subject's essence).
        weight_decay: weight of ||delta||^2 / ||v||^2 in the value loss.
        clamp_norm_factor: ||delta|| is kept <= this times the original value's norm ||v||.
        mom2_regularisation: added to C's diagonal as a fraction of its mean diagonal, so that a
            small corpus's C stays invertible.
        values_batch: how many edits of a sequence have their values optimised together, on the
            model as the edits before them left it; their rank-one updates are then applied one
            after another, each aimed at its value exactly. 1 is published ROME (each edit's value
            is found on the model the previous edit left). A batch never holds two edits of one
            subject: such an edit starts the next batch, so that it sees the first (both write at
            the subject's key). More pays wherever a step costs about the same for several edits
            as for one, i.e. where reading the weights bounds it: SmolLM2-135M on 2 CPU cores
            (a step for 10 edits cost 2.8x a step for one, and an edit that reached
            ``stop_loss`` stops running; 10 edits: 7.7 s instead of 17-22 s for the values).
            What it gives up: within a batch, an edit's value does not see the other edits'
            updates. The pretrained default is 16; the built-in worlds keep 1.
    """

    layer: int | None = None
    context_prefixes: tuple[str, ...] = ("", "The company.", "Question:", "In the year", "The city of")
    steps: int = 40
    stop_loss: float = 0.0
    learning_rate: float = 0.5
    kl_weight: float = 0.0625
    weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    mom2_regularisation: float = 1e-3
    values_batch: int = 1

    def __post_init__(self) -> None:
        if self.values_batch < 1:
            raise ValueError("values_batch must be at least 1 (1: published ROME, one edit at a time)")
        if self.steps < 1 or not self.learning_rate > 0:
            raise ValueError("steps must be at least 1 and learning_rate positive (e.g. 40 and 0.5)")
        if self.stop_loss < 0:
            raise ValueError("stop_loss must be >= 0 (e.g. 0.05; 0 runs every step)")
        if not self.context_prefixes or self.context_prefixes[0] != "":
            raise ValueError('context_prefixes must start with "" (the bare prompt), e.g. ("", "The company.")')
        if self.kl_weight < 0 or self.weight_decay < 0 or self.mom2_regularisation < 0:
            raise ValueError("kl_weight, weight_decay and mom2_regularisation must be >= 0")
        if not self.clamp_norm_factor > 0:
            raise ValueError("clamp_norm_factor must be positive (e.g. 4)")


def default_rome_layer(model: PreTrainedModel) -> int:
    return len(decoder_layers(model)) // 3


def regularised(second_moment: torch.Tensor, fraction: float, device: torch.device) -> torch.Tensor:
    """C + fraction * mean(diag C) * I in float64 (keeps a small corpus's C invertible)."""
    c = second_moment.to(device=device, dtype=torch.float64)
    return c + fraction * c.diagonal().mean() * torch.eye(c.shape[0], device=device, dtype=c.dtype)


def apply_rome(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    edit: FactEdit,
    second_moment: torch.Tensor,
    config: ROMEConfig | None = None,
) -> EditResult:
    """Edit ``model`` in place so that the edit's prompts about the subject continue with
    ``edit.target_new``; returns the :class:`EditResult` that :func:`revert` undoes."""
    return _apply_batch(model, tokenizer, [edit], second_moment, config or ROMEConfig())


def _apply_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, edits: Sequence[FactEdit],
                 second_moment: torch.Tensor, config: ROMEConfig) -> EditResult:
    """Steps 1-2 for every edit of ``edits`` on the model as it is, then step 3 edit by edit."""
    spec = arch_for(model)
    layer = default_rome_layer(model) if config.layer is None else config.layer
    weight = projection_weight(model, layer)
    if second_moment.shape != (weight.shape[1], weight.shape[1]):
        raise ExpungeError(f"second-moment statistics of shape {tuple(second_moment.shape)} do not fit layer "
                           f"{layer} (keys of size {weight.shape[1]})", "compute them for this model and layer")
    batch = rewrite_batch(tokenizer, edits, config.context_prefixes, "subject_last")
    # As in the paper, the value step is scaled by the MLP output's norm v at the subject. One
    # delta per edit (subject_last: all of an edit's rows share its slot, slot id = edit index).
    delta_v, losses = optimise_targets(model, batch, layer, steps=config.steps, learning_rate=config.learning_rate,
                                       kl_weight=config.kl_weight, weight_decay=config.weight_decay,
                                       clamp_norm_factor=config.clamp_norm_factor, stop_loss=config.stop_loss,
                                       scale=output_norms(model, batch, layer, spec.mlp_out))
    keys = keys_at(model, batch, layer, spec.mlp_out)
    prompt_slots = slot_positions_of_prompt_rows(batch)
    c = regularised(second_moment, config.mom2_regularisation, weight.device)
    original = weight.detach().clone()
    total = torch.zeros_like(original)
    for e in range(len(edits)):
        mine = [i for i in prompt_slots if batch.slots[i][2] == e]
        key_star = keys[mine].mean(0)  # k*: the subject's key averaged over prompts and contexts
        key_plain = keys[mine[0]]  # the bare edit prompt (first prefix is "")
        left = torch.linalg.solve(c, key_star)  # C^-1 k*
        # v* = W0 k + delta, W0 the weight the values were found on: W' k = v*. An earlier edit of
        # the batch moved W k a little; aiming at v* itself takes that back out.
        drift = -(total.double() @ key_plain) if e else 0.0
        right = (delta_v[e].double() + drift) / (left @ key_plain)
        delta = torch.outer(right, left).to(weight.dtype)
        with torch.no_grad():
            weight.add_(delta)
        total += delta
    return EditResult(list(edits), "rome", [layer], [f"{spec.layers}.{layer}.{spec.mlp_out}"], {layer: original},
                      {layer: total}, losses)


def rome_layers(model: PreTrainedModel, config: ROMEConfig) -> tuple[int, ...]:
    """The one layer ROME edits (and needs statistics for)."""
    return (default_rome_layer(model) if config.layer is None else config.layer,)


def value_batches(edits: Sequence[FactEdit], size: int) -> list[list[FactEdit]]:
    """``edits`` in order, cut into runs of at most ``size`` whose values are found together; a
    run ends before an edit whose subject it already holds (that edit must see the first one)."""
    batches: list[list[FactEdit]] = []
    for edit in edits:
        if not batches or len(batches[-1]) >= size or edit.subject in {e.subject for e in batches[-1]}:
            batches.append([])
        batches[-1].append(edit)
    return batches


def apply_rome_sequence(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    edits: Sequence[FactEdit],
    config: ROMEConfig,
    context: EditContext,
) -> EditResult:
    """ROME as a registered editor: the edits one after another (ROME edits one fact at a time;
    each sees the model the previous ones left; ``values_batch`` finds the values of several at
    once), merged into one :class:`EditResult` whose
    :func:`revert` gives the model back as it was before the first. A failure part-way undoes the
    edits already applied, so the model is never left half edited."""
    if not edits:
        raise ExpungeError("no edits to apply", "pass at least one FactEdit")
    (layer,) = rome_layers(model, config)
    second_moment = context.moments(layer)
    results: list[EditResult] = []
    start = 0
    try:
        for chunk in value_batches(edits, config.values_batch):
            what = chunk[0].id if len(chunk) == 1 else f"{chunk[0].id} .. {chunk[-1].id}"
            context.progress(f"rome: edit {start + 1}{f'-{start + len(chunk)}' if len(chunk) > 1 else ''} "
                             f"of {len(edits)} ({what})")
            results.append(_apply_batch(model, tokenizer, chunk, second_moment, config))
            start += len(chunk)
    except BaseException:
        for result in reversed(results):
            revert(model, result)
        raise
    return merge_results(model, results, "rome")
