"""Editors and retrieval side by side, on the same update requests and the same probes.

:func:`compare_updates` applies one set of update requests to a model in every way expunge has —
MEMIT (as tuned for models trained from scratch on a world, and as published), ROME one edit at a
time, and a retrieval layer whose store is updated — scores each with
:func:`expunge.verify.editing.evaluate_edits` against the unedited model, reverts every edit
(checking the weights come back exactly), and returns rows for one table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.methods.editing.common import EditResult, revert
from expunge.methods.editing.memit import MEMITConfig, apply_memit
from expunge.methods.editing.rome import ROMEConfig, apply_rome, default_rome_layer
from expunge.methods.editing.stats import second_moment
from expunge.models.io import weights_sha256
from expunge.records import Document, FactEdit, Probe, Subject
from expunge.retrieval import RetrievalContext, facts_from_world
from expunge.verify.editing import EditEvaluation, edit_probe_sets, evaluate_edits

__all__ = ["WORLD_MEMIT", "UpdateComparison", "compare_updates", "preserve_prompts"]

# MEMIT as measured to work on the companies world's models (4 layers, trained from scratch):
# they resolve a fact at the question's end, so the edit is written where the target is predicted;
# three layers share it; 80 target steps; lambda 1 against the world-text statistics plus explicit
# preservation keys (the reading companies' facts in every trained form). docs/editing.md.
WORLD_MEMIT = MEMITConfig(token="prompt_last", layers=(0, 1, 2), covariance_weight=1.0, steps=80,
                          context_prefixes=("", "The company.", "In the year"))


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
    memit: MEMITConfig = WORLD_MEMIT,
    published_memit: MEMITConfig | None = MEMITConfig(),
    rome: ROMEConfig | None = ROMEConfig(),
    rome_limit: int = 10,
    retrieval_k: int = 2,
    cache_dir: Any = None,
    log: Callable[[str], None] = lambda _m: None,
) -> UpdateComparison:
    """Every update route on ``edits``; the model is left exactly as it came (checked).
    ``documents`` (the world's training documents) give the control texts of ``text_nll``.

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
    references: dict[int, EditEvaluation] = {}

    def moment(layer: int) -> torch.Tensor:
        if layer not in moments:
            moments[layer] = second_moment(model, tokenizer, list(corpus), layer, cache_dir=cache_dir)
        return moments[layer]

    def run(name: str, apply: Callable[[], list[EditResult]], count: int, probe_sets: Any = sets) -> None:
        log(f"{name}: applying {count} edits")
        started = time.perf_counter()
        results = apply()
        seconds = time.perf_counter() - started
        evaluation = evaluate_edits(model, tokenizer, probe_sets, name=name,
                                    reference=base if probe_sets is sets else references[id(probe_sets)])
        for result in reversed(results):  # edits applied in sequence are undone in reverse order
            revert(model, result)
        if weights_sha256(model) != sha:
            raise ExpungeError(f"{name}: reverting did not restore the model exactly", "report this as a bug")
        comparison.add(name, evaluation, count, seconds)

    # Statistics first, so that their one-off cost is not charged to the first editor.
    for layer in memit.layers or ():
        moment(layer)
    run("memit (world-tuned)", lambda: [apply_memit(model, tokenizer, edits, moment, memit, preserve=preserve,
                                                    progress=log)], len(edits))
    if published_memit is not None:
        try:
            run("memit (as published)", lambda: [apply_memit(model, tokenizer, edits, moment, published_memit)],
                len(edits))
        except ExpungeError as exc:
            comparison.notes.append(f"memit (as published) not run: {exc}")
    if rome is not None:
        chosen = list(edits[:rome_limit])
        layer = default_rome_layer(model) if rome.layer is None else rome.layer
        moment(layer)
        rome_sets = sets if len(chosen) == len(edits) else edit_probe_sets(chosen, edit_probes, world_probes,
                                                                           documents=documents)
        if rome_sets is not sets:  # scored against the unedited model on the same smaller sets
            references[id(rome_sets)] = evaluate_edits(model, tokenizer, rome_sets, name="unedited")
        run(f"rome (one at a time, {len(chosen)} edits)",
            lambda: [apply_rome(model, tokenizer, e, moment(layer), rome) for e in chosen], len(chosen), rome_sets)
        if len(chosen) != len(edits):
            comparison.notes.append(f"ROME ran on the first {len(chosen)} edits only (its row scores those)")
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
