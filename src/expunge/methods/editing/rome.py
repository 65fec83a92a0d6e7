"""ROME: Rank-One Model Editing (Meng et al. 2022, https://arxiv.org/abs/2202.05262).

A fact "subject -> relation -> object" is read by the MLP of a middle layer at the subject's last
token: the MLP's output projection W acts as a key-value memory, the key k being its input there
and the value v = W k what it writes into the residual stream. ROME rewrites that one memory:

1. **key** k*: the projection's input at the subject's last token, averaged over the edit prompt
   preceded by a few short prefixes (so the key is the subject's, not one sentence's);
2. **value** v*: the projection's output at that token, plus a vector delta optimised so that the
   model predicts the new object after the prompt (in every prefixed context), while a KL term
   keeps what the model says about the subject in general ("{subject} is a") unchanged, and delta
   is clamped to a multiple of the original value's norm;
3. **rank-one update** W' = W + L (C^-1 k*)^T with L = (v* - W k) / ((C^-1 k*)^T k): the smallest
   change (in the metric C = E[k k^T] of ordinary keys, see :mod:`stats`) that maps the key to v*.

Every edit returns the original weight, so :func:`revert` restores the model exactly (ROME's
``return_orig_weights``). Module paths come from :mod:`expunge.models.arch`; GPT-2's Conv1D is
handled by :func:`expunge.methods.editing.stats.projection_weight`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.methods.editing.stats import projection_weight
from expunge.models.arch import arch_for, decoder_layers, layer_module
from expunge.records import FactEdit

__all__ = ["ROMEConfig", "EditResult", "apply_rome", "revert", "subject_last_index"]


@dataclass(frozen=True)
class ROMEConfig:
    """https://arxiv.org/abs/2202.05262 — options of one ROME edit.

    Attributes:
        layer: the decoder layer whose MLP output projection is edited (None: a third of the way
            up, where the papers found facts are read; layer 0 of a 2-layer model).
        context_prefixes: short texts put before the prompt when computing the key and value, so
            that the edit holds in context, not only for the bare prompt ("" is the bare prompt).
        steps: optimisation steps for the value.
        learning_rate: Adam learning rate for the value delta.
        kl_weight: weight of KL(original || edited) on "{subject} is a" (the subject's essence).
        weight_decay: weight of ||delta||^2 / ||v||^2 in the value loss.
        clamp_norm_factor: ||delta|| is kept <= this times the original value's norm.
        mom2_regularisation: added to C's diagonal as a fraction of its mean diagonal, so that a
            small corpus's C stays invertible.
        seed: seeds nothing random at present; recorded with the edit for reproducibility.
    """

    layer: int | None = None
    context_prefixes: tuple[str, ...] = ("", "The company.", "Question:", "In the year", "The city of")
    steps: int = 40
    learning_rate: float = 0.5
    kl_weight: float = 0.0625
    weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    mom2_regularisation: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or not self.learning_rate > 0:
            raise ValueError("steps must be at least 1 and learning_rate positive (e.g. 40 and 0.5)")
        if not self.context_prefixes:
            raise ValueError('context_prefixes needs at least one entry ("" for the bare prompt)')
        if self.kl_weight < 0 or self.weight_decay < 0 or self.mom2_regularisation < 0:
            raise ValueError("kl_weight, weight_decay and mom2_regularisation must be >= 0")
        if not self.clamp_norm_factor > 0:
            raise ValueError("clamp_norm_factor must be positive (e.g. 4)")


@dataclass
class EditResult:
    """What one edit did, and what is needed to undo it."""

    edit: FactEdit
    layer: int
    module: str
    original_weight: torch.Tensor  # (out, in) as before the edit
    delta: torch.Tensor  # (out, in), rank one
    target_loss: list[float] = field(default_factory=list)  # value optimisation, per step


def _default_layer(model: PreTrainedModel) -> int:
    return len(decoder_layers(model)) // 3


def subject_last_index(tokenizer: PreTrainedTokenizerBase, text: str, subject: str) -> int:
    """Index (in ``tokenizer(text)``, special tokens included) of the last token of the first
    occurrence of ``subject`` in ``text``."""
    at = text.find(subject)
    if at < 0:
        raise ExpungeError(f"subject {subject!r} does not occur in {text!r}", "the prompt must contain the subject")
    head = tokenizer(text[: at + len(subject)])["input_ids"]
    full = tokenizer(text)["input_ids"]
    if list(full[: len(head)]) != list(head):
        raise ExpungeError(f"the subject {subject!r} does not end on a token boundary in {text!r}",
                           "rephrase the prompt so that the subject is followed by a space or punctuation")
    return len(head) - 1


def _prompt(edit: FactEdit, prefix: str) -> str:
    text = edit.prompt.format(edit.subject_name)
    return f"{prefix} {text}".strip()


def _batch(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], device: torch.device) -> dict[str, torch.Tensor]:
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"  # positions stay as when encoded alone
    try:
        return tokenizer(list(texts), return_tensors="pt", padding=True).to(device)
    finally:
        tokenizer.padding_side = side


def apply_rome(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    edit: FactEdit,
    second_moment: torch.Tensor,
    config: ROMEConfig | None = None,
) -> EditResult:
    """Edit ``model`` in place so that ``edit.prompt`` about the subject continues with
    ``edit.target_new``; returns the :class:`EditResult` that :func:`revert` undoes."""
    config = config or ROMEConfig()
    spec = arch_for(model)
    layer = _default_layer(model) if config.layer is None else config.layer
    module = layer_module(model, layer, spec.mlp_out)
    weight = projection_weight(model, layer)
    if second_moment.shape != (weight.shape[1], weight.shape[1]):
        raise ExpungeError(f"second-moment statistics of shape {tuple(second_moment.shape)} do not fit layer "
                           f"{layer} (keys of size {weight.shape[1]})", "compute them for this model and layer")
    device = weight.device
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        prompts = [_prompt(edit, prefix) for prefix in config.context_prefixes]
        lookups = [subject_last_index(tokenizer, p, edit.subject_name) for p in prompts]
        keys = _module_io(model, tokenizer, module, prompts, lookups, want="input")
        key_star = keys.mean(0)  # k*: the subject's key averaged over contexts
        key_plain = keys[0]
        value_plain = _module_io(model, tokenizer, module, prompts[:1], lookups[:1], want="output")[0]
        delta_v, losses = _optimise_value(model, tokenizer, module, edit, prompts, lookups, value_plain, config)
        value_star = value_plain + delta_v

        c = second_moment.to(device=device, dtype=torch.float64)
        c = c + config.mom2_regularisation * c.diagonal().mean() * torch.eye(c.shape[0], device=device, dtype=c.dtype)
        left = torch.linalg.solve(c, key_star.double())  # C^-1 k*
        current = weight.double() @ key_plain.double()
        right = (value_star.double() - current) / (left @ key_plain.double())
        delta = torch.outer(right, left).to(weight.dtype)
        original = weight.detach().clone()
        with torch.no_grad():
            weight.add_(delta)
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    return EditResult(edit, layer, f"{spec.layers}.{layer}.{spec.mlp_out}", original, delta, losses)


def revert(model: PreTrainedModel, result: EditResult) -> None:
    """Undo an edit exactly: the projection's weight is restored to the stored original."""
    with torch.no_grad():
        projection_weight(model, result.layer).copy_(result.original_weight)


def _module_io(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, module: torch.nn.Module,
               prompts: Sequence[str], lookups: Sequence[int], *, want: str) -> torch.Tensor:
    """The module's input (the key) or output (the value) at each prompt's lookup position."""
    captured: dict[str, torch.Tensor] = {}

    def hook(_m: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        captured["x"] = (inputs[0] if want == "input" else output).detach()

    handle = module.register_forward_hook(hook)
    try:
        enc = _batch(tokenizer, prompts, next(model.parameters()).device)
        with torch.no_grad():
            model(**enc)
    finally:
        handle.remove()
    rows = torch.arange(len(prompts))
    return captured["x"][rows, torch.tensor(list(lookups))].float()


def _optimise_value(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, module: torch.nn.Module,
                    edit: FactEdit, prompts: list[str], lookups: list[int], value: torch.Tensor,
                    config: ROMEConfig) -> tuple[torch.Tensor, list[float]]:
    """delta such that adding it to the module's output at the subject's last token makes every
    prefixed prompt continue with the new target (ROME's compute_v)."""
    device = value.device
    # Rewriting prompts: prompt + target (teacher-forced); the essence prompt for the KL term.
    texts = [f"{p} {edit.target_new}" for p in prompts]
    # The target's tokens are what the full text adds to the prompt (as in answer_logprobs).
    n_targets = [len(tokenizer(t)["input_ids"]) - len(tokenizer(p)["input_ids"]) for t, p in zip(texts, prompts)]
    if min(n_targets) < 1:
        raise ExpungeError(f"target {edit.target_new!r} adds no tokens to the prompt", "give a non-empty target")
    essence = f"{edit.subject_name} is a"
    all_texts = texts + [essence]
    enc = _batch(tokenizer, all_texts, device)
    lengths = enc["attention_mask"].sum(1).tolist()
    rows_lookup = list(lookups) + [subject_last_index(tokenizer, essence, edit.subject_name)]
    delta = torch.zeros_like(value, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=config.learning_rate)
    row_idx = torch.arange(len(all_texts), device=device)
    lookup_idx = torch.tensor(rows_lookup, device=device)

    def add_delta(_m: torch.nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[row_idx, lookup_idx] = output[row_idx, lookup_idx] + delta.to(output.dtype)
        return output

    with torch.no_grad():
        base_logits = model(**enc).logits
        essence_last = lengths[-1] - 1
        base_essence = torch.log_softmax(base_logits[-1, essence_last].float(), -1)
    losses: list[float] = []
    handle = module.register_forward_hook(add_delta)
    try:
        for _ in range(config.steps):
            optimiser.zero_grad()
            logits = model(**enc).logits.float()
            nll = 0.0
            for r in range(len(texts)):
                end, n_target = lengths[r], n_targets[r]
                # positions end-1-n_target .. end-2 predict the target tokens
                logp = torch.log_softmax(logits[r, end - 1 - n_target : end - 1], -1)
                targets = enc["input_ids"][r, end - n_target : end]
                nll = nll + -logp.gather(-1, targets.unsqueeze(-1)).mean()
            nll = nll / len(texts)
            new_essence = torch.log_softmax(logits[-1, essence_last], -1)
            kl = torch.sum(base_essence.exp() * (base_essence - new_essence))
            decay = delta.norm() ** 2 / value.norm() ** 2
            loss = nll + config.kl_weight * kl + config.weight_decay * decay
            losses.append(float(nll.detach()))
            loss.backward()
            optimiser.step()
            with torch.no_grad():  # keep ||delta|| within the clamp
                limit = config.clamp_norm_factor * value.norm()
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
    finally:
        handle.remove()
    return delta.detach(), losses
