"""Editors and retrieval side by side, on the same update requests and the same probes.

:func:`compare_updates` applies one set of update requests to a model in every way asked —
by default MEMIT (as tuned for models trained from scratch on a world, and as published), ROME one
edit at a time, and a retrieval layer whose store is updated — scores each with
:func:`expunge.verify.editing.evaluate_edits` against the unedited model, reverts every edit
(checking the weights come back exactly), and returns rows for one table. Editors are named rows
(:class:`EditorRun`) looked up in :mod:`expunge.methods.editing.registry`, so a registered plug-in
editor can join the comparison without a change here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.methods.editing.common import EditContext, revert
from expunge.methods.editing.memit import MEMITConfig
from expunge.methods.editing.registry import get_editor
from expunge.methods.editing.rome import ROMEConfig
from expunge.methods.editing.stats import second_moment
from expunge.models.io import weights_sha256
from expunge.records import Document, FactEdit, Probe, Subject
from expunge.retrieval import RetrievalContext, facts_from_world
from expunge.verify.editing import EditEvaluation, edit_probe_sets, evaluate_edits

__all__ = ["WORLD_EDITORS", "WORLD_MEMIT", "EditorRun", "UpdateComparison", "compare_updates",
           "preserve_prompts"]

# MEMIT as measured to work on the companies world's models (4 layers, trained from scratch):
# they resolve a fact at the question's end, so the edit is written where the target is predicted;
# three layers share it; 80 target steps; lambda 1 against the world-text statistics plus explicit
# preservation keys (the reading companies' facts in every trained form). docs/editing.md.
WORLD_MEMIT = MEMITConfig(token="prompt_last", layers=(0, 1, 2), covariance_weight=1.0, steps=80,
                          context_prefixes=("", "The company.", "In the year"))


@dataclass(frozen=True)
class EditorRun:
    """One editor row of :func:`compare_updates`.

    Attributes:
        label: the row's setup name; ``{n}`` in it becomes the number of edits applied.
        editor: the editor's registry name.
        config: its config (None: the editor's defaults).
        limit: apply only the first ``limit`` edits (ROME, one at a time, is slow); the row is
            then scored on the probes of those edits, against the unedited model on the same.
        preserve: pass the comparison's preservation keys (editors without such a term ignore them).
        optional: an :class:`ExpungeError` while applying (a config that cannot work on this
            model) becomes a note instead of failing the whole comparison.
    """

    label: str
    editor: str
    config: Any = None
    limit: int | None = None
    preserve: bool = False
    optional: bool = False


# The benchmark's rows (docs/editing.md): MEMIT world-tuned with preservation keys, MEMIT as
# published (may not apply to a model: then a note), ROME one at a time on the first 10 edits.
WORLD_EDITORS: tuple[EditorRun, ...] = (
    EditorRun("memit (world-tuned)", "memit", WORLD_MEMIT, preserve=True),
    EditorRun("memit (as published)", "memit", MEMITConfig(), optional=True),
    EditorRun("rome (one at a time, {n} edits)", "rome", ROMEConfig(), limit=10),
)


@dataclass
class UpdateComparison:
    """Rows of one comparison: setup, edits, seconds, seconds per edit, then every metric."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, setup: str, evaluation: EditEvaluation, edits: int, seconds: float) -> None:
        self.rows.append({"setup": setup, "edits": edits, "seconds": seconds,
                          "seconds_per_edit": seconds / edits if edits else 0.0, **evaluation.metrics})

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "sizes": self.sizes, "notes": self.notes}


def preserve_prompts(subjects: Sequence[Subject], forms: Sequence[str]) -> list[tuple[str, str]]:
    """(form, subject name) for every subject and form: keys MEMIT must leave alone."""
    return [(form, s.name) for s in subjects for form in forms]


def compare_updates(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    edits: Sequence[FactEdit],
    edit_probes: Sequence[Probe],
    world_probes: Sequence[Probe],
    corpus: Sequence[str],
    *,
    documents: Sequence[Document] = (),
    store_subjects: Sequence[Subject] = (),
    fact_templates: dict[str, str] | None = None,
    retrieval_model: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None,
    preserve: Sequence[tuple[str, str]] = (),
    editors: Sequence[EditorRun] = WORLD_EDITORS,
    retrieval_k: int = 2,
    cache_dir: Any = None,
    log: Callable[[str], None] = lambda _m: None,
) -> UpdateComparison:
    """Every update route on ``edits``; the model is left exactly as it came (checked).
    ``documents`` (the world's training documents) give the control texts of ``text_nll``.

    One row per entry of ``editors``, in order; each editor's second-moment statistics are
    computed (and cached for later rows) before its clock starts, so a row's seconds are the
    edit's own. ``preserve`` holds the preservation keys for the rows that ask for them.

    Retrieval rows (with ``store_subjects`` and ``fact_templates``) score ``retrieval_model``
    (default: ``model``) with the store's facts put before each prompt, first with the store as
    it was, then after the update; the second row's "unchanged" metrics compare with the first.
    A model that holds the updated relation in its weights tends to ignore the context; the
    intended retrieval model keeps that relation out of its training text (the companies world's
    ``store_only``), so the store is its only source."""
    sha = weights_sha256(model)
    sets = edit_probe_sets(edits, edit_probes, world_probes, documents=documents)
    comparison = UpdateComparison(sizes=sets.sizes())
    log(f"scoring the unedited model on {len(edits)} update requests")
    base = evaluate_edits(model, tokenizer, sets, name="unedited")
    comparison.add("unedited", base, 0, 0.0)
    moments: dict[int, torch.Tensor] = {}

    def moment(layer: int) -> torch.Tensor:
        if layer not in moments:
            moments[layer] = second_moment(model, tokenizer, list(corpus), layer, cache_dir=cache_dir)
        return moments[layer]

    for entry in editors:
        spec = get_editor(entry.editor)
        config = entry.config if entry.config is not None else spec.config_cls()
        chosen = list(edits if entry.limit is None else edits[: entry.limit])
        label = entry.label.format(n=len(chosen))
        probe_sets, reference = sets, base
        if len(chosen) != len(edits):  # scored against the unedited model on the same smaller sets
            probe_sets = edit_probe_sets(chosen, edit_probes, world_probes, documents=documents)
            reference = evaluate_edits(model, tokenizer, probe_sets, name="unedited")
        try:
            for layer in spec.layers_needing_stats(model, config):  # not charged to the editor
                moment(layer)
            log(f"{label}: applying {len(chosen)} edits")
            context = EditContext(moment, preserve if entry.preserve else (), log)
            started = time.perf_counter()
            result = spec.edit(model, tokenizer, chosen, config, context)
            seconds = time.perf_counter() - started
        except ExpungeError as exc:
            if not entry.optional:
                raise
            comparison.notes.append(f"{label} not run: {exc}")
            continue
        evaluation = evaluate_edits(model, tokenizer, probe_sets, name=label, reference=reference)
        revert(model, result)
        if weights_sha256(model) != sha:
            raise ExpungeError(f"{label}: reverting did not restore the model exactly",
                               "report this as a bug")
        comparison.add(label, evaluation, len(chosen), seconds)
        if len(chosen) != len(edits):
            comparison.notes.append(
                f"{entry.editor} ran on the first {len(chosen)} edits only (its row scores those)")
    if store_subjects and fact_templates:
        reader, reader_tokenizer = retrieval_model or (model, tokenizer)
        store = facts_from_world(store_subjects, fact_templates)
        context = RetrievalContext(store, retrieval_k)
        log("retrieval: scoring with the store as it was, then after the update")
        before = evaluate_edits(reader, reader_tokenizer, sets, name="retrieval-before", prompt_context=context)
        comparison.add("retrieval (store as it was)", before, 0, 0.0)
        started = time.perf_counter()
        store.apply_edits(edits)
        seconds = time.perf_counter() - started
        comparison.add("retrieval (store updated)",
                       evaluate_edits(reader, reader_tokenizer, sets, name="retrieval", reference=before,
                                      prompt_context=context), len(edits), seconds)
    return comparison
