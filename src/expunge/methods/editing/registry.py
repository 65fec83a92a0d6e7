"""The registry of model editors: one entry per editor, looked up by name (``expunge edit --method``).

Every caller (``edit_model``, ``compare_updates``, the contract test) goes through an
:class:`EditorSpec` and never asks which config class it holds, so a new editor is a plug-in: write
its config dataclass and one ``apply`` function, call :func:`register_editor`, and ``expunge edit
--method NAME -o key=value`` works, options parsed by :func:`expunge.options.build_config`.

The protocol, which ROME (one edit at a time) and MEMIT (one batch) both fit::

    apply(model, tokenizer, edits, config, context: EditContext) -> EditResult

``apply`` edits ``model`` in place and returns *one* :class:`EditResult` for the whole batch, whose
``original_weights`` give every changed MLP output projection back (one ``revert`` undoes the
batch; ``modules`` names exactly the parameters that changed), and leaves the model as it came when
it raises. ``context.moments(layer)`` gives a layer's key statistics on demand. ``stats_layers``
(optional) names the layers whose statistics ``apply`` will ask for, so callers can compute them
first and keep their one-off cost out of the editor's timing.

Registering a name twice raises ``ValueError`` and asking for an unknown one ``ExpungeError``, both
listing the known names (as in peft's registries).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the CLI checks editor options before transformers loads
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.registry import Registry
from expunge.methods.editing.common import NEUTRAL_PREFIXES, EditContext, EditResult
from expunge.methods.editing.memit import MEMITConfig, apply_memit_batch, memit_layers
from expunge.methods.editing.rome import ROMEConfig, apply_rome_sequence, rome_layers
from expunge.models.arch import arch_for, decoder_layers
from expunge.options import build_config
from expunge.records import FactEdit

__all__ = ["ApplyEdits", "EditContext", "EditorSpec", "PRETRAINED_EDIT_DEFAULTS", "PretrainedDefaults", "StatsLayers",
           "editor_names", "get_editor", "register_editor", "unregister_editor"]

# (model, tokenizer, edits, config, context) -> one EditResult for the batch
ApplyEdits = Callable[
    ["PreTrainedModel", "PreTrainedTokenizerBase", Sequence[FactEdit], Any, EditContext], EditResult]
# (model, config) -> the layers whose second moments apply() will ask for
StatsLayers = Callable[["PreTrainedModel", Any], Sequence[int]]
# model -> option values for a pretrained model of that family (over the config's defaults)
PretrainedDefaults = Callable[["PreTrainedModel"], dict[str, Any]]

# What every editor changes for a pretrained model: neutral prefixes, the published step budget
# (EasyEdit's Llama hparams: 25 steps) with the published early stop at a target NLL of 0.05, and a
# lighter weight decay. The published decay (1e-3 x ||delta|| / ||v||^2) is all but nil; the toy
# worlds' 0.5 x (||delta|| / ||v||)^2 kept some SmolLM2 edits from ever reaching the stop (measured:
# "The capital of France is" -> Rome ended its 25 steps at NLL 0.08), 0.05 lets them.
PRETRAINED_EDIT_DEFAULTS: dict[str, Any] = {"context_prefixes": NEUTRAL_PREFIXES, "steps": 25, "stop_loss": 0.05,
                                            "weight_decay": 0.05}


@dataclass(frozen=True)
class EditorSpec:
    """What the shared editing code needs to know about an editor.

    Attributes:
        name: registry key (``expunge edit --method``).
        config_cls: its typed, frozen config dataclass (docstring starting with the paper link);
            its fields' type hints drive the ``-o key=value`` parser.
        summary: one line for listings.
        apply: the editor itself (module docstring: the protocol).
        stats_layers: the layers whose statistics ``apply`` needs (None: it needs none, or
            computing them on demand is fine).
        pretrained_defaults: this editor's option values for a pretrained model (e.g. the
            family's layer, :class:`expunge.models.arch.EditLayers`), over the shared
            :data:`PRETRAINED_EDIT_DEFAULTS`.
    """

    name: str
    config_cls: type[Any]
    summary: str
    apply: ApplyEdits
    stats_layers: StatsLayers | None = None
    pretrained_defaults: PretrainedDefaults | None = None

    def make_config(self, options: Mapping[str, Any] | None = None, *,
                    model: PreTrainedModel | None = None) -> Any:
        """The editor's config with ``options`` (text converted by each field's type); unknown
        options and bad values raise :class:`ExpungeError`. With ``model`` (a pretrained one) the
        options start from :meth:`defaults_for` it, and ``options`` beat them."""
        base = self.defaults_for(model) if model is not None else {}
        return build_config(self.config_cls, {**base, **(options or {})}, owner=f"editor {self.name!r}")

    def defaults_for(self, model: PreTrainedModel) -> dict[str, Any]:
        """The option values that differ from the config's defaults for a pretrained ``model``."""
        own = self.pretrained_defaults(model) if self.pretrained_defaults is not None else {}
        names = {f.name for f in fields(self.config_cls)}
        return {k: v for k, v in {**PRETRAINED_EDIT_DEFAULTS, **own}.items() if k in names}

    def layers_needing_stats(self, model: PreTrainedModel, config: Any) -> tuple[int, ...]:
        """The layers to compute statistics for before ``apply`` runs (possibly none)."""
        return tuple(self.stats_layers(model, config)) if self.stats_layers is not None else ()

    def edit(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, edits: Sequence[FactEdit],
             config: Any, context: EditContext) -> EditResult:
        """``apply`` with the config checked to be this editor's (a MEMIT config handed to ROME
        would otherwise fail deep inside, or silently use the wrong options)."""
        if not isinstance(config, self.config_cls):
            raise TypeError(f"editor {self.name!r} takes a {self.config_cls.__name__}, "
                            f"not {type(config).__name__}")
        return self.apply(model, tokenizer, edits, config, context)


_EDITORS: Registry[EditorSpec] = Registry("editor", unknown="editing method")


def register_editor(spec: EditorSpec) -> EditorSpec:
    """Add ``spec`` to the registry; a taken name raises ``ValueError`` (programming error)."""
    return _EDITORS.register(spec.name, spec)


def unregister_editor(name: str) -> EditorSpec:
    """Remove an editor (tests that register a plug-in undo it with this); returns its spec."""
    get_editor(name)  # an unknown name is the user's ExpungeError, as for a lookup
    return _EDITORS.unregister(name)


def get_editor(name: str) -> EditorSpec:
    """The editor registered as ``name``; an unknown name raises, listing the known ones."""
    return _EDITORS.get(name)


def editor_names() -> list[str]:
    return _EDITORS.names()


def _family_layers(model: PreTrainedModel) -> tuple[int, tuple[int, ...]] | None:
    reference = arch_for(model).edit_layers
    return reference.scaled(len(decoder_layers(model))) if reference is not None else None


def _rome_pretrained(model: PreTrainedModel) -> dict[str, Any]:
    # Values found 16 edits at a time: on real weights a step reads every weight whatever the
    # batch, and finished edits stop running (ROMEConfig.values_batch; docs/editing.md).
    family = _family_layers(model)
    return {"values_batch": 16, **({"layer": family[0]} if family is not None else {})}


def _memit_pretrained(model: PreTrainedModel) -> dict[str, Any]:
    family = _family_layers(model)
    return {"layers": family[1]} if family is not None else {}


register_editor(EditorSpec("rome", ROMEConfig,
                           "rank-one edit of one layer, one fact at a time (Meng et al. 2022)",
                           apply_rome_sequence, rome_layers, _rome_pretrained))
register_editor(EditorSpec("memit", MEMITConfig,
                           "one batch of edits spread over several layers (Meng et al. 2023)",
                           apply_memit_batch, memit_layers, _memit_pretrained))
