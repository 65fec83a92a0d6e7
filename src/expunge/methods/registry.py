"""The explicit registry of unlearning methods, and the small protocol a method implements.

A method is a :class:`MethodSpec`: a typed config, a forget term, a retain term and optional hooks.
The shared run (:mod:`expunge.methods.unlearn`) calls the hooks and never knows a method by name:

- ``needs``: what the run must provide (:class:`Need`: a frozen reference model at every step,
  hidden states in the forward pass, refusal answers as the forget data);
- ``prepare``: precomputations from the original model before training, returning the method's
  state (read by its terms as ``ctx.state``) and per-forget-sequence extras
  (:class:`SequenceExtra`, typed so that the collate pads them without knowing them);
- ``trainable``: which parameters train (default: all);
- ``update``: for a method whose change to the weights is not a series of optimizer steps on its
  terms (influence-based removal: a preconditioned Newton step), the function that replaces the
  training loop; it gets the prepared state and the shared stop rules (:class:`UpdateRun`).

Each built-in method lives in one file under :mod:`expunge.methods.gradient` (config, preparation,
terms, registration). Registering a name twice, or asking for an unknown one, raises with the list
of known names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from expunge.choices import TextEnum
from typing import TYPE_CHECKING, Any

import torch

from expunge.registry import Registry
from expunge.methods.gradient.base import UnlearnConfig, retain_default

if TYPE_CHECKING:  # annotations only: the CLI checks method options before the training loop loads
    from expunge.training import EvalResult, TrainResult

__all__ = [
    "Need",
    "ExtraKind",
    "SequenceExtra",
    "Preparation",
    "Prepared",
    "UnlearnContext",
    "UpdateRun",
    "Term",
    "MethodSpec",
    "register_method",
    "unregister_method",
    "registered_method",
    "get_method",
    "method_names",
    "DEFAULT_METHOD",
    "BASELINE_METHOD",
]


class Need(TextEnum):
    """What a method needs from the shared run."""

    REFERENCE_MODEL = "reference_model"  # a frozen copy of the original model, queried every step
    HIDDEN_STATES = "hidden_states"  # the forward pass returns every layer's hidden states
    REFUSAL_DATA = "refusal_data"  # forget data: the targets' questions answered with a refusal
    TRAINING_DATA = "training_data"  # every training document, encoded (``Preparation.training``)



class ExtraKind(TextEnum):
    """How a per-sequence extra is batched (the collate pads by kind, never by name)."""

    SCALAR = "scalar"  # one number per sequence -> (batch,) tensor
    TOKENS = "tokens"  # token ids, as long as the sequence -> (batch, width), padded with the pad id
    MASK = "mask"  # booleans, as long as the sequence -> (batch, width), padded with False
    VECTORS = "vectors"  # a (length, dim) tensor per sequence -> (batch, width, dim), padded with 0



@dataclass(frozen=True)
class SequenceExtra:
    """Values that travel with each forget sequence: ``values[i]`` belongs to forget sequence i.
    Token-aligned kinds are cut into the same windows as the sequences (``chunk_tokens``)."""

    kind: ExtraKind
    values: list[Any]

    def pad(self, rows: list[Any], width: int, pad_id: int) -> torch.Tensor:
        """The batch's values as one tensor (see :class:`ExtraKind`)."""
        if self.kind is ExtraKind.SCALAR:
            return torch.tensor(rows)
        if self.kind is ExtraKind.VECTORS:
            out = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
            for r, value in enumerate(rows):
                out[r, : len(value)] = value
            return out
        fill = pad_id if self.kind is ExtraKind.TOKENS else False
        dtype = torch.long if self.kind is ExtraKind.TOKENS else torch.bool
        out = torch.full((len(rows), width), fill, dtype=dtype)
        for r, value in enumerate(rows):
            out[r, : len(value)] = torch.tensor(value, dtype=dtype)
        return out


@dataclass
class Preparation:
    """What ``prepare`` may read: the original model (before any update), the method's config and
    the encoded data. ``forget`` are the training sequences as the run will batch them (windows of
    ``chunk_tokens``); ``forget_sample`` a seeded sample of whole forget documents (the stop rules'
    sample); ``training`` every training document of the world, encoded as the model trained on
    them (whole documents: what curvature estimates such as influence factors are fitted on);
    ``model_sha256`` the original's weights hash (a key for caches of such estimates)."""

    model: torch.nn.Module
    config: UnlearnConfig
    pad_id: int
    forget: list[list[int]]
    forget_sample: list[list[int]]
    training: list[list[int]] = field(default_factory=list)
    model_sha256: str = ""


@dataclass
class Prepared:
    """What ``prepare`` returns: method state (``ctx.state`` in the terms) and per-sequence extras
    (``batch["forget"][name]`` in the terms)."""

    state: Any = None
    extras: dict[str, SequenceExtra] = field(default_factory=dict)


@dataclass
class UnlearnContext:
    """What the loss terms may use besides the batch."""

    model: torch.nn.Module
    config: UnlearnConfig
    reference: torch.nn.Module | None = None
    state: Any = None


@dataclass
class UpdateRun:
    """What a method's ``update`` hook gets instead of the training loop: the model to change in
    place, the context (config, prepared state), the forget and retain sequences as the run
    batched them, and the shared stop rules. After each of its steps the hook calls
    ``eval_hook(model, step)`` every ``config.check_every`` steps and at its last step, and stops
    when the result says so (``EvalResult.stop``); the run restores, records and saves as for any
    method. It returns the :class:`~expunge.training.TrainResult` of what it did."""

    model: torch.nn.Module
    context: UnlearnContext
    forget: list[list[int]]
    retain: list[list[int]]
    pad_id: int
    eval_hook: Callable[[torch.nn.Module, int], EvalResult]
    progress: bool = False


# (context, batch, the model's outputs on the batch) -> scalar loss
Term = Callable[[UnlearnContext, dict[str, torch.Tensor], Any], torch.Tensor]


def _all_trainable(model: torch.nn.Module, config: Any, state: Any) -> None:
    """Default ``trainable`` hook: every parameter trains."""


@dataclass(frozen=True)
class MethodSpec:
    """What the shared unlearning run needs to know about a method.

    Attributes:
        name: registry key (the CLI's ``--method``).
        config_cls: its typed config dataclass (a subclass of ``UnlearnConfig``).
        summary: one line for listings.
        forget_term / retain_term: the two losses, functions of the model's outputs on the
            forget / retain half of the batch (the shared loop runs each forward pass once).
        needs: what the run must provide (:class:`Need`).
        prepare: optional; precomputations from the original model (:class:`Preparation` ->
            :class:`Prepared`), run once before training.
        trainable: optional; ``(model, config, state)`` freezes what must not train.
        update: optional; replaces the training loop for a method that changes the weights
            itself (:class:`UpdateRun` -> ``TrainResult``); its terms are then what it
            differentiates, not what an optimizer minimises.
        pretrained_defaults: this method's own defaults for a pretrained model, over the shared
            ones (:data:`expunge.methods.gradient.base.PRETRAINED_DEFAULTS`).
    """

    name: str
    config_cls: type[UnlearnConfig]
    summary: str
    forget_term: Term
    retain_term: Term = retain_default
    needs: frozenset[Need] = frozenset()
    prepare: Callable[[Preparation], Prepared] | None = None
    trainable: Callable[[torch.nn.Module, Any, Any], None] = _all_trainable
    update: Callable[[UpdateRun], TrainResult] | None = None
    pretrained_defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def forget_data(self) -> str:
        """``refusals`` (the targets' questions answered with a refusal) or ``documents``."""
        return "refusals" if Need.REFUSAL_DATA in self.needs else "documents"

    def make_config(self, overrides: Mapping[str, Any] | None = None, *, pretrained: bool = False) -> UnlearnConfig:
        """The method's config with ``overrides`` (strings are converted by the field's type);
        unknown fields or bad values raise ExpungeError naming the option. ``pretrained``: start
        from the defaults for a pretrained model (:meth:`defaults_for`), which ``overrides`` beat."""
        from expunge.options import build_config

        base = self.defaults_for(pretrained=True) if pretrained else {}
        return build_config(self.config_cls, {**base, **(overrides or {})}, owner=f"method {self.name!r}")

    def defaults_for(self, *, pretrained: bool) -> dict[str, Any]:
        """The option values that differ from the config class's defaults for this kind of model:
        none for a model trained from scratch on a built-in world; for a pretrained one, the shared
        :data:`~expunge.methods.gradient.base.PRETRAINED_DEFAULTS` and this method's own."""
        from expunge.methods.gradient.base import PRETRAINED_DEFAULTS

        if not pretrained:
            return {}
        names = {f.name for f in fields(self.config_cls)}
        return {k: v for k, v in {**PRETRAINED_DEFAULTS, **self.pretrained_defaults}.items() if k in names}


_METHODS: Registry[MethodSpec] = Registry("method")


def register_method(spec: MethodSpec) -> MethodSpec:
    return _METHODS.register(spec.name, spec)


def unregister_method(name: str) -> None:
    _METHODS.unregister(name)


def registered_method(spec: MethodSpec) -> AbstractContextManager[MethodSpec]:
    """Register ``spec`` for the duration of a block (tests, experiments)."""
    return _METHODS.registered(spec.name, spec)


def get_method(name: str) -> MethodSpec:
    return _METHODS.get(name)


def method_names() -> list[str]:
    return _METHODS.names()


DEFAULT_METHOD = "simnpo"
BASELINE_METHOD = "idkft"

# The built-in methods register themselves, one file each.
from expunge.methods.gradient import grad_ascent, grad_diff, idkft, npo, rmu, simnpo  # noqa: E402,F401
from expunge.methods.influence import removal  # noqa: E402,F401
