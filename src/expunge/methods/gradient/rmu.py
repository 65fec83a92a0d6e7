"""Representation Misdirection for Unlearning (Li et al. 2024, WMDP, https://arxiv.org/abs/2403.03218).

Push the hidden states of forget tokens at one layer towards a fixed random direction (scaled),
keep the retain tokens' hidden states at the original model's; only the MLPs of the layers up to
that one train. ``prepare`` picks the layer and draws the control vector from the original model's
activation scale; ``trainable`` freezes everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from expunge.data import pad_collate
from expunge.methods.gradient import losses
from expunge.methods.gradient.base import UnlearnConfig, forward
from expunge.methods.registry import MethodSpec, Need, Prepared, Preparation, register_method
from expunge.models.arch import arch_for, decoder_layers


@dataclass(frozen=True)
class RMUConfig(UnlearnConfig):
    """https://arxiv.org/abs/2403.03218 — Representation Misdirection for Unlearning (Li et al. 2024,
    WMDP): push the hidden states of forget tokens at one layer towards a fixed random direction
    (scaled), keep the retain tokens' hidden states at the original model's; only the MLPs of the
    layers up to that one are trained.

    Attributes:
        layer: decoder layer whose output is steered (negative counts from the end; default a
            quarter of the depth, as the paper's layer 7 of 32).
        steering_coeff: length of the random control vector, as a multiple of the mean hidden-state
            norm at that layer on the forget data (the paper's fixed coefficient assumes one
            model's activation scale; a multiple carries over between model sizes).
        trainable_layers: how many layers, ending at ``layer``, have their MLPs trained.
    """

    layer: int | None = None
    steering_coeff: float = 4.0
    trainable_layers: int = 3
    # The paper's alpha (100-1200) was tuned on 7B models; on small models it freezes the forget
    # push entirely (measured: no change in 20 steps at 100), so the default is lower.
    retain_weight: float = 10.0
    retain_loss: Literal["nll", "kl", "none"] = "none"  # RMU's retain term is on hidden states, not tokens
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.steering_coeff > 0 or self.trainable_layers < 1:
            raise ValueError("steering_coeff must be positive and trainable_layers at least 1")


@dataclass(frozen=True)
class RMUState:
    """The steered layer (0-based decoder index) and the scaled random control vector."""

    layer: int
    control: torch.Tensor


@torch.no_grad()
def prepare_rmu(prep: Preparation) -> Prepared:
    """Pick the layer and draw the control vector, scaled by the mean hidden-state norm there."""
    config: RMUConfig = prep.config  # type: ignore[assignment]
    model = prep.model
    n_layers = len(decoder_layers(model))
    layer = (config.layer if config.layer is not None else n_layers // 4) % n_layers
    batch = pad_collate(prep.pad_id)(prep.forget_sample[:128])
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   output_hidden_states=True).hidden_states[layer + 1]
    mask = batch["attention_mask"].bool()
    mean_norm = hidden[mask].norm(dim=-1).mean()
    generator = torch.Generator().manual_seed(config.seed)
    direction = torch.rand(hidden.shape[-1], generator=generator)
    control = (config.steering_coeff * mean_norm * direction / direction.norm()).to(hidden.device)
    return Prepared(state=RMUState(layer, control))


def trainable_rmu(model: torch.nn.Module, config: Any, state: RMUState) -> None:
    """Only the MLPs of ``trainable_layers`` layers ending at the steered one train."""
    arch = arch_for(model)
    model.requires_grad_(False)
    for index in range(max(0, state.layer - config.trainable_layers + 1), state.layer + 1):
        for path in (*arch.mlp_in, arch.mlp_out):
            decoder_layers(model)[index].get_submodule(path).requires_grad_(True)


def forget_rmu(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    return losses.rmu_forget(outputs.hidden_states[ctx.state.layer + 1], ctx.state.control, batch["attention_mask"])


def retain_rmu(ctx: Any, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
    layer = ctx.state.layer + 1
    with torch.no_grad():
        ref_hidden = forward(ctx.reference, batch, hidden_states=True).hidden_states[layer]
    return losses.rmu_retain(outputs.hidden_states[layer], ref_hidden, batch["attention_mask"])


SPEC = register_method(MethodSpec(
    "rmu", RMUConfig, "misdirect forget hidden states to a random vector at one layer",
    forget_term=forget_rmu, retain_term=retain_rmu,
    needs=frozenset({Need.REFERENCE_MODEL, Need.HIDDEN_STATES}),
    prepare=prepare_rmu, trainable=trainable_rmu,
))
