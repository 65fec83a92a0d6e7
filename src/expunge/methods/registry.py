"""The explicit registry of unlearning methods: one entry per method, looked up by name.

Registering a name twice, or asking for an unknown one, raises with the list of known names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch

from expunge.errors import ExpungeError
from expunge.methods.gradient import methods as g

# (context, batch, the model's outputs on the batch) -> scalar loss
Term = Callable[[Any, dict[str, torch.Tensor], Any], torch.Tensor]


@dataclass(frozen=True)
class MethodSpec:
    """What the shared unlearning run needs to know about a method.

    Attributes:
        name: registry key (the CLI's ``--method``).
        config_cls: its typed config dataclass.
        forget_term / retain_term: the two losses, functions of the model's outputs on the
            forget / retain half of the batch (the shared loop runs each forward pass once).
        forget_data: ``documents`` (the requested training documents) or ``refusals`` (the
            targets' training questions answered with a refusal).
        needs_reference: keep a frozen copy of the original model (KL, RMU, NPO's log-probs).
        summary: one line for listings.
        hidden_states: the terms read hidden states (the forward pass must return them).
    """

    name: str
    config_cls: type[g.UnlearnConfig]
    forget_term: Term
    retain_term: Term
    forget_data: str
    needs_reference: bool
    summary: str
    hidden_states: bool = False

    def make_config(self, overrides: dict[str, Any] | None = None) -> g.UnlearnConfig:
        """The method's config with ``overrides``; unknown fields or bad values raise ExpungeError."""
        overrides = dict(overrides or {})
        known = {f.name for f in fields(self.config_cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ExpungeError(
                f"unknown option(s) {', '.join(unknown)} for method {self.name!r}",
                f"use some of: {', '.join(sorted(known))}",
            )
        try:
            return self.config_cls(**overrides)
        except (ValueError, TypeError) as exc:
            raise ExpungeError(f"invalid option for method {self.name!r}: {exc}", "correct the value") from None


_METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> None:
    if spec.name in _METHODS:
        raise ValueError(f"method {spec.name!r} is already registered; known: {', '.join(sorted(_METHODS))}")
    _METHODS[spec.name] = spec


def get_method(name: str) -> MethodSpec:
    if name not in _METHODS:
        raise ExpungeError(f"unknown method {name!r}", f"use one of: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def method_names() -> list[str]:
    return sorted(_METHODS)


DEFAULT_METHOD = "simnpo"
BASELINE_METHOD = "idkft"

for _spec in (
    MethodSpec("grad_ascent", g.GradAscentConfig, g.forget_gradient_ascent, g.retain_default, "documents",
               False, "maximise the forget data's loss (collapses without a retain term)"),
    MethodSpec("grad_diff", g.GradDiffConfig, g.forget_gradient_ascent, g.retain_default, "documents",
               True, "ascend on forget, descend (nll) or stay close (kl) on retain"),
    MethodSpec("npo", g.NPOConfig, g.forget_npo, g.retain_default, "documents",
               True, "negative preference optimisation against the original model"),
    MethodSpec("simnpo", g.SimNPOConfig, g.forget_simnpo, g.retain_default, "documents",
               False, "reference-free, length-normalised NPO (default)"),
    MethodSpec("rmu", g.RMUConfig, g.forget_rmu, g.retain_rmu, "documents",
               True, "misdirect forget hidden states to a random vector at one layer", hidden_states=True),
    MethodSpec("idkft", g.IdkFTConfig, g.forget_nll, g.retain_default, "refusals",
               False, "refusal fine-tune: the baseline that hides rather than removes"),
):
    register_method(_spec)
