"""Did an update land, and only there? Scores for edited models and for the retrieval layer.

Every score is multiple choice by logits (:func:`expunge.verify.metrics.multiple_choice_correct`)
among the probe's answer and its wrong answers; for an update probe the answer is the new fact
and the old fact is the first wrong answer. On one set of update requests:

* **efficacy**: the new fact wins on every form the request states (its prompt and
  ``more_prompts``); ``efficacy_new_over_old`` is CounterFact's weaker score, P(new) > P(old);
* **paraphrase**: the new fact wins on held-out paraphrases (never used by an editor);
  ``paraphrase_old`` is the *old* fact's accuracy on them, so the base model's value is the
  reference for "paraphrase >= 0.8 x the base model's";
* **old / new fact probability**: mean Prob(answer | prompt) over the stated forms;
* **alias**, **implied_reverse** ("Which company does <new CEO> lead?"), **implied_multihop**
  ("Who runs the company where <employee> works?"): the new fact through other routes;
* **neighbourhood**: on other companies' questions of the same relation, the fraction whose chosen
  answer is the unedited model's (``neighbourhood_accuracy`` is plain accuracy);
* **other_relations**: the edited subjects' other facts (headquarters, founding year, industry),
  accuracy and fraction unchanged from the unedited model;
* **generation_new / generation_old**: the first answer span of the greedy continuation of the
  request's prompt is the new (old) fact (:func:`expunge.verify.probes.answer_matches`: up to the
  first span end after as many words as the fact has, so a pretrained model that writes on after
  "Rome." still counts; the continuation is cut at the end of the text or a line);
* **fluency**: ROME's generation entropy of those continuations (bits). Low means repetitive text;
  on a world whose answers are short, a *rise* means the model no longer stops after the answer;
* **text_nll**: mean next-token NLL on control documents (training text about other subjects):
  damage to the model as a language model, before vs after.

A ``prompt_context`` function lets the same probes score a retrieval-augmented model (the
retrieved facts are put before each prompt): one table, editors and retrieval side by side.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.data import encode_documents
from expunge.scoring import max_length, padding_id, sequence_nlls
from expunge.records import Document, FactEdit, Probe
from expunge.verify.metrics import candidate_logprobs, fluency, multiple_choice_correct
from expunge.verify.probes import answer_matches, greedy_answers

__all__ = ["EditProbeSets", "EditEvaluation", "edit_probe_sets", "evaluate_edits", "EDIT_METRICS"]

# (metric, what it means) in the order tables show them.
EDIT_METRICS: tuple[tuple[str, str], ...] = (
    ("efficacy", "new fact wins on the requested forms"),
    ("efficacy_new_over_old", "P(new) > P(old) on the requested forms"),
    ("paraphrase", "new fact wins on held-out paraphrases"),
    ("paraphrase_old", "old fact wins on held-out paraphrases"),
    ("new_fact_probability", "mean Prob(new | requested form)"),
    ("old_fact_probability", "mean Prob(old | requested form)"),
    ("alias", "new fact through the subject's alias"),
    ("implied_reverse", "reverse question names the subject"),
    ("implied_multihop", "two-hop question gives the new fact"),
    ("neighbourhood", "other subjects' answers unchanged"),
    ("neighbourhood_accuracy", "other subjects' answers correct"),
    ("other_relations", "edited subjects' other facts correct"),
    ("other_relations_unchanged", "edited subjects' other facts unchanged"),
    ("generation_new", "greedy continuation's first answer span is the new fact"),
    ("generation_old", "greedy continuation's first answer span is the old fact"),
    ("fluency", "generation entropy (bits)"),
    ("text_nll", "NLL on control documents (lower is better)"),
)


@dataclass
class EditProbeSets:
    """The probes that judge one set of update requests (see the module docstring)."""

    edits: list[FactEdit]
    requested: list[Probe]
    paraphrase: list[Probe]
    paraphrase_old: list[Probe]
    alias: list[Probe]
    implied_reverse: list[Probe]
    implied_multihop: list[Probe]
    neighbourhood: list[Probe]
    other_relations: list[Probe]
    fluency_prompts: list[str]
    control_texts: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {f.name: len(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "fluency_prompts"}


def edit_probe_sets(edits: Sequence[FactEdit], edit_probes: Sequence[Probe], world_probes: Sequence[Probe],
                    *, neighbourhood_kinds: tuple[str, ...] = ("direct", "paraphrase"),
                    documents: Sequence[Document] = (), control_size: int = 200) -> EditProbeSets:
    """Group a world's probes for ``edits``: update probes by kind (their ids start with the edit's
    id), the old-fact paraphrases, neighbours (the edited relation, on subjects no edit touches),
    the edited subjects' other relations, and up to ``control_size`` of ``documents`` that are
    about none of the edited subjects (for ``text_nll``)."""
    if not edits:
        raise ExpungeError("no edits to evaluate", "pass at least one FactEdit")
    by_edit = {e.id: e for e in edits}
    mine: dict[str, list[Probe]] = {}
    for probe in edit_probes:
        edit_id = probe.id.split("/", 1)[0]
        if edit_id in by_edit:
            mine.setdefault(probe.kind, []).append(probe)
    missing = [e.id for e in edits if not any(p.id.startswith(f"{e.id}/") for p in edit_probes)]
    if missing:
        raise ExpungeError(f"no update probes for edits {', '.join(missing[:5])}",
                           "pass the world's edit_probes.jsonl that belongs to these edits")
    # The request's own prompts, scored like the trained question forms (new first, then old + wrongs).
    wrong_by_edit = {p.id.split("/", 1)[0]: p.alternatives for p in mine.get("direct", [])}
    requested = list(mine.get("direct", []))
    for e in edits:
        alternatives = wrong_by_edit.get(e.id, (e.target_old,))
        requested.append(Probe(f"{e.id}/prompt", e.subject, "direct", e.relation, e.prompt.format(e.subject_name),
                               e.target_new, alternatives))
    edited = {(e.subject, e.relation) for e in edits}
    subjects = {e.subject for e in edits}
    relations = {e.relation for e in edits}
    paraphrase_old = [p for p in world_probes if (p.subject, p.attribute) in edited and p.kind == "paraphrase"]
    neighbourhood = [p for p in world_probes if p.subject not in subjects and p.attribute in relations
                     and p.kind in neighbourhood_kinds and p.alternatives]
    other = [p for p in world_probes if p.subject in subjects and p.attribute not in relations
             and p.kind in ("direct", "paraphrase") and p.alternatives]
    control = [d.text for d in documents if not subjects.intersection(d.subjects)][:control_size]
    return EditProbeSets(list(edits), requested, mine.get("paraphrase", []), paraphrase_old, mine.get("alias", []),
                         mine.get("reverse", []), mine.get("multihop", []), neighbourhood, other,
                         [e.prompt.format(e.subject_name) for e in edits], control)


@dataclass
class EditEvaluation:
    """Scores of one model (or retrieval setup) on one :class:`EditProbeSets`."""

    name: str
    metrics: dict[str, float]
    sizes: dict[str, int]
    choices: dict[str, list[int]] = field(default_factory=dict)  # set -> chosen candidate per probe

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metrics": self.metrics, "sizes": self.sizes}


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def _choice(mean_logps: Sequence[float]) -> int:
    return max(range(len(mean_logps)), key=lambda i: mean_logps[i])


def evaluate_edits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sets: EditProbeSets,
    *,
    name: str = "model",
    reference: EditEvaluation | None = None,
    prompt_context: Callable[[str], str] | None = None,
    batch_size: int = 64,
    fluency_tokens: int = 20,
) -> EditEvaluation:
    """Score ``model`` on ``sets``; "unchanged" metrics compare with ``reference`` (the unedited
    model's evaluation; without it they are 1.0 by definition, the model being its own reference).
    ``prompt_context(prompt)`` returns the text to put before a prompt (retrieval), or "".
    """

    def with_context(probes: list[Probe]) -> list[Probe]:
        if prompt_context is None:
            return probes
        return [dataclasses.replace(p, prompt=f"{prompt_context(p.prompt)}{p.prompt}") for p in probes]

    metrics: dict[str, float] = {}
    choices: dict[str, list[int]] = {}
    scored: dict[str, list[list[float]]] = {}
    for set_name in ("requested", "paraphrase", "paraphrase_old", "alias", "implied_reverse", "implied_multihop",
                     "neighbourhood", "other_relations"):
        probes = getattr(sets, set_name)
        scored[set_name] = candidate_logprobs(model, tokenizer, with_context(probes), batch_size) if probes else []
        choices[set_name] = [_choice(s) for s in scored[set_name]]

    def accuracy(set_name: str) -> float:
        rows = scored[set_name]
        return sum(multiple_choice_correct(r) for r in rows) / len(rows) if rows else float("nan")

    def unchanged(set_name: str) -> float:
        if reference is None:
            return 1.0 if choices[set_name] else float("nan")
        before = reference.choices[set_name]
        if len(before) != len(choices[set_name]):
            raise ExpungeError("the reference evaluation was made on other probes", "evaluate both on the same sets")
        return sum(a == b for a, b in zip(before, choices[set_name])) / len(before) if before else float("nan")

    requested = scored["requested"]
    metrics["efficacy"] = accuracy("requested")
    metrics["efficacy_new_over_old"] = sum(r[0] > r[1] for r in requested) / len(requested)
    metrics["paraphrase"] = accuracy("paraphrase")
    metrics["paraphrase_old"] = accuracy("paraphrase_old")
    metrics["new_fact_probability"] = sum(math.exp(r[0]) for r in requested) / len(requested)
    metrics["old_fact_probability"] = sum(math.exp(r[1]) for r in requested) / len(requested)
    metrics["alias"] = accuracy("alias")
    metrics["implied_reverse"] = accuracy("implied_reverse")
    metrics["implied_multihop"] = accuracy("implied_multihop")
    metrics["neighbourhood"] = unchanged("neighbourhood")
    metrics["neighbourhood_accuracy"] = accuracy("neighbourhood")
    metrics["other_relations"] = accuracy("other_relations")
    metrics["other_relations_unchanged"] = unchanged("other_relations")
    prompts = [f"{prompt_context(p)}{p}" if prompt_context else p for p in sets.fluency_prompts]
    generations = greedy_answers(model, tokenizer, prompts, max_new_tokens=fluency_tokens) if prompts else []
    metrics["generation_new"] = _share([answer_matches(g, e.target_new) for g, e in zip(generations, sets.edits)])
    metrics["generation_old"] = _share([answer_matches(g, e.target_old) for g, e in zip(generations, sets.edits)])
    metrics["fluency"] = fluency(generations)
    if sets.control_texts:
        sequences = encode_documents(tokenizer, sets.control_texts, max_length(model))
        metrics["text_nll"] = sequence_nlls(model, sequences, padding_id(tokenizer))[1]
    else:
        metrics["text_nll"] = float("nan")
    return EditEvaluation(name, metrics, sets.sizes(), choices)
