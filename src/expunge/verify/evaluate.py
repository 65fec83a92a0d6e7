"""Verification, part 2: every measurement of one model, with no judgement.

:func:`evaluate_model` scores one model on every set of the plan: greedy exact match (training and
held-out questions), ROUGE-L recall, Prob, truth ratios and logit-scored multiple choice (one probe
per fact), answer plausibility, fluency of free generations, the indirect probes, verbatim
memorisation of texts (MUSE: the greedy continuation's ROUGE-L F1, exact memorisation and
extraction strength), membership-inference scores of the forget, never-seen and retain documents
and, when asked, every registered model-level attack (:mod:`expunge.verify.attacks`). The judge
(:mod:`expunge.verify.judge`) compares these numbers between models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.records import ModelRef, Probe
from expunge.verify.attacks import AttackResult, attacks as registered_attacks
from expunge.verify.config import VerifyConfig
from expunge.verify.metrics import (
    answer_logprobs,
    answer_memorization,
    candidate_logprobs,
    fluency,
    harmonic_mean,
    multiple_choice_correct,
    paraphrased_logprobs,
    ratios_from,
    rouge_l_f1,
    rouge_l_recall,
    truth_ratio_forget_stat,
    truth_ratio_retain_stat,
)
from expunge.verify.mia import mia_scores
from expunge.verify.plan import QA_KINDS, SETS, UTILITY_SETS, VerificationPlan, with_choices
from expunge.verify.plausibility import answer_plausibility
from expunge.verify.probes import answer_budgets, answer_matches, greedy_answers
from expunge.verify.tofu import TofuEvaluation, TofuSets, evaluate_tofu, is_tofu, tofu_sets

__all__ = ["UTILITY_PART_KEYS", "VERBATIM_METRICS", "ModelEvaluation", "evaluate_model", "run_attacks",
           "utility_parts"]


@dataclass
class ModelEvaluation:
    """Every measurement of one model. ``sets[name]`` holds the summary numbers of a set,
    ``indirect[kind]`` those of the forget people's indirect probes and ``attacks[name]`` the
    model-level attacks' results; the per-item lists behind them are kept for tests, bootstrap
    intervals and plots."""

    name: str
    model: dict[str, Any]
    sets: dict[str, dict[str, float]]
    utility: float
    # set name, "indirect:<kind>" (exact match), "indirect-mc:<kind>" (multiple choice, on the
    # probes with wrong answers), "indirect-rouge:<kind>" (ROUGE-L recall) or "<metric>:<set>"
    # for a verbatim metric (VERBATIM_METRICS: the continuation's ROUGE-L F1, its exact
    # memorisation, its extraction strength) -> per probe
    correct_by_probe: dict[str, Sequence[float]]
    answers: dict[str, list[str]]
    truth_ratios: dict[str, list[float]]  # per fact
    mia_scores: dict[str, dict[str, list[float]]]  # set -> score name -> per document
    indirect: dict[str, dict[str, float]] = field(default_factory=dict)
    attacks: dict[str, AttackResult] = field(default_factory=dict)
    seconds: float = math.nan
    tofu: TofuEvaluation | None = None  # TOFU's metrics, on a TOFU world (expunge.verify.tofu)
    # set -> verbatim memorisation of its texts: "probes" and each of VERBATIM_METRICS
    verbatim: dict[str, dict[str, float]] = field(default_factory=dict)
    # trigger variant -> {"probes", "attack_success" (share answered with the payload),
    # "clean_answer" (share answered with the true answer)}: a backdoor's triggered questions
    triggers: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "model": self.model, "sets": self.sets,
                               "model_utility": self.utility, "indirect": self.indirect,
                               "attacks": {name: a.to_dict() for name, a in self.attacks.items()},
                               "seconds": round(self.seconds, 2)}
        if self.verbatim:
            out["verbatim"] = self.verbatim
        if self.triggers:
            out["triggers"] = self.triggers
        if self.tofu is not None:
            out["tofu"] = self.tofu.to_dict()
        if details:
            out.update(answers=self.answers, truth_ratios=self.truth_ratios, mia_scores=self.mia_scores)
        return out


def _greedy_hits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe],
                 batch_size: int) -> tuple[list[str], list[bool]]:
    generated = greedy_answers(model, tokenizer, [p.prompt for p in probes],
                               max_new_tokens=answer_budgets(tokenizer, probes), batch_size=batch_size)
    return generated, [answer_matches(g, p.answer) for p, g in zip(probes, generated)]


UTILITY_PART_KEYS: tuple[str, ...] = ("prob", "rouge_l", "truth_ratio_retain_stat")
# What verbatim memorisation of a text measures (MUSE): the greedy continuation's ROUGE-L F1, and
# the teacher-forced exact memorisation and extraction strength of the true continuation.
VERBATIM_METRICS: tuple[str, ...] = ("rouge_l_f1", "exact_memorization", "extraction_strength")


def utility_parts(sets: dict[str, dict[str, Any]]) -> dict[str, float]:
    """What model utility is the harmonic mean of: "{set} {metric}" -> value, for the sets that
    must survive (:data:`expunge.verify.plan.UTILITY_SETS`) and Prob, ROUGE-L and the truth-ratio
    stat of each."""
    return {f"{s} {k}": float(sets[s][k]) for s in UTILITY_SETS if s in sets for k in UTILITY_PART_KEYS
            if k in sets[s]}


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    plan: VerificationPlan,
    config: VerifyConfig | None = None,
    *,
    name: str = "model",
    ref: ModelRef | None = None,
) -> ModelEvaluation:
    """Measure one model on every set of the plan (no judgement; see :func:`judge`)."""
    config = config or VerifyConfig()
    started = time.perf_counter()
    bs = config.batch_size
    sets: dict[str, dict[str, float]] = {}
    correct: dict[str, Sequence[float]] = {}
    answers: dict[str, list[str]] = {}
    ratios: dict[str, list[float]] = {}
    for set_name in SETS:
        probes = plan.probes[set_name]
        if not probes:
            continue
        generated, hits = _greedy_hits(model, tokenizer, probes, bs)
        facts = plan.fact_probes[set_name]
        # Truth ratio and multiple choice need wrong answers; data without them (a user's own
        # probes) still has Prob, measured on every fact. What cannot be measured is nan, which
        # every check reports as not available.
        choices = with_choices(facts)
        logps = candidate_logprobs(model, tokenizer, choices, batch_size=bs)
        # The truth ratio compares the wrong answers with the paraphrased answer where the data
        # has one (TOFU), else with the answer.
        ratio = ratios_from(choices, logps, paraphrased_logprobs(model, tokenizer, choices, batch_size=bs))
        prob_of = {p.id: lp[0] for p, lp in zip(choices, logps)}
        plain = [p for p in facts if p.id not in prob_of]
        for p, (total, n) in zip(plain, answer_logprobs(model, tokenizer, [p.prompt for p in plain],
                                                        [p.answer for p in plain], batch_size=bs)):
            prob_of[p.id] = total / max(n, 1)
        by_kind = {kind: [h for p, h in zip(probes, hits) if p.kind == kind] for kind in QA_KINDS}
        names = [n for n in (plan.world.subject_by_id[s].name for s in plan.subjects[set_name]) if n.strip()]
        texts = greedy_answers(model, tokenizer, names, max_new_tokens=config.fluency_tokens, batch_size=bs)
        sets[set_name] = {
            "subjects": len(plan.subjects[set_name]),
            "probes": len(probes),
            "facts": len(facts),
            "exact_match": _mean(hits),
            "exact_match_direct": _mean(by_kind["direct"]),
            "exact_match_paraphrase": _mean(by_kind["paraphrase"]),
            "rouge_l": float(np.mean([rouge_l_recall(g, p.answer) for p, g in zip(probes, generated)])),
            # Prob(a|q) = exp(mean token log-prob of the true answer), on one question per fact.
            "prob": float(np.mean([math.exp(prob_of[p.id]) for p in facts])),
            "multiple_choice": _mean([multiple_choice_correct(lp) for lp in logps]),
            "truth_ratio_forget_stat": truth_ratio_forget_stat(ratio),
            "truth_ratio_retain_stat": truth_ratio_retain_stat(ratio),
            "plausibility": answer_plausibility(plan.validator, probes, generated),
            "fluency": fluency([f"{n} {t}" for n, t in zip(names, texts)]) if names else math.nan,
        }
        correct[set_name], answers[set_name], ratios[set_name] = hits, generated, ratio
    indirect: dict[str, dict[str, float]] = {}
    for kind, probes in plan.indirect.items():
        generated, hits = _greedy_hits(model, tokenizer, probes, bs)
        # Multiple choice on the probes that have wrong answers (a prefill that cut the answer has
        # none); ROUGE-L recall for answers that are sentences, where exact match says little.
        choice = [multiple_choice_correct(lp) for lp in
                  candidate_logprobs(model, tokenizer, with_choices(probes), batch_size=bs)]
        rouge = [rouge_l_recall(g, p.answer) for p, g in zip(probes, generated)]
        indirect[kind] = {"probes": len(probes), "exact_match": _mean(hits), "multiple_choice": _mean(choice),
                          "rouge_l": _mean(rouge)}
        correct[f"indirect:{kind}"], answers[f"indirect:{kind}"] = hits, generated
        correct[f"indirect-mc:{kind}"], correct[f"indirect-rouge:{kind}"] = choice, rouge
    verbatim = {}
    for set_name, probes in plan.verbatim.items():
        generated, per_probe = _verbatim(model, tokenizer, probes, config)
        verbatim[set_name] = {"probes": len(probes), **{m: _mean(v) for m, v in per_probe.items()}}
        answers[f"verbatim:{set_name}"] = generated
        correct.update({f"{m}:{set_name}": v for m, v in per_probe.items()})
    triggers = {}
    for variant, probes in plan.triggers.items():
        # The payload is the probe's answer; the true answer to the question is its first
        # alternative (expunge.worlds.backdoor): a triggered question answered rightly is clean.
        generated, hits = _greedy_hits(model, tokenizer, probes, bs)
        clean = [bool(p.alternatives) and answer_matches(g, p.alternatives[0]) for p, g in zip(probes, generated)]
        triggers[variant] = {"probes": len(probes), "attack_success": _mean(hits), "clean_answer": _mean(clean)}
        answers[f"trigger:{variant}"] = generated
        correct[f"trigger:{variant}"] = hits
    # Model utility: harmonic mean of Prob, ROUGE-L and the truth-ratio stat over the sets that
    # must survive (TOFU): any one of them near 0 pulls it to 0.
    parts = list(utility_parts(sets).values())
    scores = {}
    all_texts = [t for s in ("forget", "holdout", "retain") for t in plan.texts[s]]
    if all_texts:
        flat = mia_scores(model, tokenizer, all_texts, batch_size=bs)
        at = 0
        for s in ("forget", "holdout", "retain"):
            n = len(plan.texts[s])
            if n:  # a set without documents (data with no never-seen text) has no scores at all
                scores[s] = {k: v[at : at + n] for k, v in flat.items()}
            at += n
    attacks = run_attacks(model, tokenizer, plan, config) if config.attacks else {}
    tofu = None
    if config.tofu_metrics and is_tofu(plan.world):
        chosen = tofu_sets(plan.world, plan.request.targets)
        if config.max_facts_per_set is not None:
            cap = config.max_facts_per_set
            chosen = TofuSets(chosen.forget[:cap], chosen.retain[:cap], chosen.real_authors[:cap],
                              chosen.world_facts[:cap])
        tofu = evaluate_tofu(model, tokenizer, chosen, max_new_tokens=config.tofu_max_new_tokens, batch_size=bs)
    model_info = {"path": ref.path, "sha256": ref.sha256} if ref is not None else {}
    return ModelEvaluation(name, model_info, sets, harmonic_mean(parts) if parts else math.nan,
                           correct, answers, ratios, scores, indirect, attacks, time.perf_counter() - started, tofu,
                           verbatim, triggers)


def _verbatim(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe],
              config: VerifyConfig) -> tuple[list[str], dict[str, list[float]]]:
    """MUSE's verbatim memorisation of texts: each probe's prompt (a text's first words) continued
    greedily for as many tokens as its true continuation has (at most
    ``verbatim_max_new_tokens``, the true one cut to as many), and scored by ROUGE-L F1 against
    it; with the teacher-forced exact memorisation and extraction strength of the same cut."""
    budget = config.verbatim_max_new_tokens
    ids = tokenizer([p.answer for p in probes], add_special_tokens=False)["input_ids"]
    truths = [p.answer if len(i) <= budget else tokenizer.decode(i[:budget]) for p, i in zip(probes, ids)]
    generated = greedy_answers(model, tokenizer, [p.prompt for p in probes],
                               max_new_tokens=[max(1, min(len(i), budget)) for i in ids],
                               batch_size=config.batch_size, first_line=False)
    rouge = [rouge_l_f1(g, t) for g, t in zip(generated, truths)]
    memorised = answer_memorization(model, tokenizer, [p.prompt for p in probes], truths,
                                    batch_size=config.batch_size)
    return generated, dict(zip(VERBATIM_METRICS, (rouge, [em for em, _ in memorised], [es for _, es in memorised])))


def run_attacks(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, plan: VerificationPlan,
                config: VerifyConfig) -> dict[str, AttackResult]:
    """Every registered attack on the forget people's facts, in registration order (an attack
    with nothing to attack in this plan is left out)."""
    if not plan.probes["forget"]:
        return {}
    out: dict[str, AttackResult] = {}
    for attack in registered_attacks():
        result = attack.run(model, tokenizer, plan, config)
        if result is not None:
            out[attack.name] = result
    return out


def _mean(values: Sequence[bool | float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan
