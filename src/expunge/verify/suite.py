"""Core verification: is it gone, did anything else break, and how sure are we?

Read top to bottom:

1. :class:`VerificationPlan` — which people and texts each set holds, chosen from the world and
   the request: ``forget`` (the request's targets), ``holdout`` (never-seen people, the reference
   population), ``retain`` (the other trained people), ``neighbours`` (retained people who share a
   name token or two attribute values with a target: where a careless deletion does damage first)
   and ``general`` (facts about countries and companies, not people). The forget people's
   *indirect* probes (context priming, role-play framing, prefilled answers, cloze, multi-hop,
   reverse questions) are kept apart: they ask about the same facts by other routes.
2. :func:`evaluate_model` — every metric of one model: greedy exact match (training and held-out
   questions), ROUGE-L recall, Prob, truth ratios and logit-scored multiple choice (one probe per
   fact), answer plausibility, fluency of free generations, the indirect probes, membership-inference
   scores of the forget, never-seen and retain documents and, when asked, the model-level attacks
   of :mod:`expunge.verify.attacks` (relearning, quantization, logit lens, linear probe).
3. :func:`judge` — compares a candidate with the original model and the retrained oracle (the
   model that never saw the data), check by check, as the verdict policy file says
   (:mod:`expunge.verify.policy`). Checks roll up into three answers: *forgotten?* (yes / no / not
   verified), *collateral damage?* (none / yes / not verified) and *how sure?* (sample sizes,
   bootstrap confidence intervals grouped by subject, which attacks were tried and which were not).
   An indirect probe or attack only decides when the original model beats the oracle on it: a
   route the original cannot use either shows nothing, and is reported as uninformative.
4. :func:`verify` — loads the models from disk and runs the three steps.

Every definition is the one in the project's DESIGN notes; :mod:`expunge.verify.metrics`,
:mod:`expunge.verify.mia` and :mod:`expunge.verify.attacks` implement them.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.ledger.requests import documents_digest, load_request, resolve_documents
from expunge.models.io import check_tokenizer_covers, load_model
from expunge.records import DeletionRequest, ModelRef, Probe
from expunge.verify.attacks import (
    AttackConfig,
    linear_probe_attack,
    logit_lens,
    quantization_attack,
    relearn_texts_from,
    relearning_attack,
    split_facts,
)
from expunge.verify.metrics import (
    candidate_logprobs,
    fluency,
    forget_quality,
    harmonic_mean,
    multiple_choice_correct,
    privleak,
    roc_auc,
    roc_curve,
    rouge_l_recall,
    tpr_at_fpr,
    truth_ratio_forget_stat,
    truth_ratio_from_logprobs,
    truth_ratio_retain_stat,
)
from expunge.verify.mia import SCORE_NAMES, mia_scores
from expunge.verify.plausibility import AnswerValidator, answer_plausibility
from expunge.verify.policy import VerdictPolicy, default_policy
from expunge.verify.probes import greedy_answers, normalize_answer
from expunge.worlds import World, load_world

__all__ = [
    "VerifyConfig",
    "VerificationPlan",
    "ModelEvaluation",
    "Check",
    "Verdict",
    "Verification",
    "plan_verification",
    "evaluate_model",
    "judge",
    "verify",
    "verify_models",
    "ALL_ROUTES",
]

SETS = ("forget", "holdout", "retain", "neighbours", "general")
# The sets whose knowledge must survive; model utility is measured over them (TOFU's choice).
UTILITY_SETS = ("retain", "neighbours", "general")
QA_KINDS = ("direct", "paraphrase")
INDIRECT_KINDS = ("context", "roleplay", "prefill", "cloze", "multihop", "reverse")
ATTACK_NAMES = ("relearning", "quantization", "logit_lens", "linear_probe")
# Every route to the knowledge that verification knows; a verdict lists the ones it did not try.
ALL_ROUTES = (
    "training questions", "held-out paraphrased questions", "truth ratio (true vs wrong answers)",
    "multiple choice scored by logits", "membership inference: " + ", ".join(SCORE_NAMES),
    *(f"indirect: {k}" for k in INDIRECT_KINDS), *(f"attack: {a}" for a in ATTACK_NAMES),
)


@dataclass(frozen=True)
class VerifyConfig:
    """What a verification runs and what it may cost; thresholds live in the ``policy``.

    Attributes:
        policy: the verdict policy (checks, thresholds, evidence floors); see ``policy.toml``.
        attacks: also run the model-level attacks (relearning, quantization, logit lens, linear
            probe) on every model.
        attack: the attacks' settings.
        max_subjects_per_set: cap on the people scored per set (a seeded sample), to bound cost.
        bootstrap_samples: resamples for the confidence intervals (grouped by subject).
        fluency_tokens: tokens generated per fluency prompt (a subject's name).
        batch_size: batch size of every forward pass.
        seed: seeds the subject samples and the bootstrap.
    """

    policy: VerdictPolicy = field(default_factory=default_policy)
    attacks: bool = False
    attack: AttackConfig = field(default_factory=AttackConfig)
    max_subjects_per_set: int = 30
    bootstrap_samples: int = 1000
    fluency_tokens: int = 24
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_subjects_per_set < 1:
            raise ValueError("max_subjects_per_set must be at least 1")
        if self.bootstrap_samples < 100:
            raise ValueError("bootstrap_samples must be at least 100 for a usable 95% interval")
        if self.batch_size < 1 or self.fluency_tokens < 1:
            raise ValueError("batch_size and fluency_tokens must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.to_dict(), "attacks": self.attacks, "attack": asdict(self.attack),
                "max_subjects_per_set": self.max_subjects_per_set, "bootstrap_samples": self.bootstrap_samples,
                "fluency_tokens": self.fluency_tokens, "batch_size": self.batch_size, "seed": self.seed}


# --------------------------------------------------------------------------------------------
# 1. the plan


@dataclass
class VerificationPlan:
    """The people, probes and documents of each set (see the module doc)."""

    world: World
    request: DeletionRequest
    subjects: dict[str, list[str]]
    probes: dict[str, list[Probe]]  # training and paraphrased questions
    fact_probes: dict[str, list[Probe]]  # one question per fact: truth ratio, multiple choice, probe
    indirect: dict[str, list[Probe]]  # kind -> the forget people's indirect probes
    # membership inference: the removed documents, never-seen documents, retained documents
    texts: dict[str, list[str]]
    text_subjects: dict[str, list[str]]
    validator: AnswerValidator

    def sizes(self) -> dict[str, dict[str, int]]:
        out = {
            name: {"subjects": len(self.subjects[name]), "probes": len(self.probes[name]),
                   "facts": len(self.fact_probes[name]), "documents": len(self.texts.get(name, []))}
            for name in SETS
        }
        out["forget"]["indirect_probes"] = sum(len(v) for v in self.indirect.values())
        return out


def _one_per_fact(probes: list[Probe]) -> list[Probe]:
    """The first held-out paraphrase of each (subject, attribute) fact, else its first question.

    Truth ratios and multiple choice are scored on one question per fact: the five phrasings of
    one fact are not five independent observations, and scoring one is five times cheaper.
    """
    chosen: dict[tuple[str, str], Probe] = {}
    for probe in probes:
        key = (probe.subject, probe.attribute)
        if key not in chosen or (probe.kind == "paraphrase" and chosen[key].kind != "paraphrase"):
            chosen[key] = probe
    return list(chosen.values())


def plan_verification(world: World, request: DeletionRequest, config: VerifyConfig | None = None) -> VerificationPlan:
    """Choose the sets for ``request`` (seeded samples of at most ``max_subjects_per_set`` people)."""
    config = config or VerifyConfig()
    rng = random.Random(config.seed)
    targets = set(request.targets)
    forget_docs = resolve_documents(world, request)
    target_people = [s.id for s in world.subjects if s.id in targets]
    retained = [s for s in world.people("train") if s.id not in targets]
    neighbour_ids = {n for t in target_people for n in world.subject_by_id[t].neighbours}
    subjects = {
        "forget": target_people,
        "holdout": [s.id for s in world.people("holdout")],
        "retain": [s.id for s in retained],
        "neighbours": [s.id for s in retained if s.id in neighbour_ids],
        "general": [s.id for s in world.subjects if s.kind != "person" and s.id not in targets],
    }
    for name in ("holdout", "retain", "neighbours", "general"):
        if len(subjects[name]) > config.max_subjects_per_set:
            subjects[name] = sorted(rng.sample(subjects[name], config.max_subjects_per_set))
    probes = {name: world.probes_for(ids, kinds=QA_KINDS) for name, ids in subjects.items()}
    indirect = {kind: world.probes_for(target_people, kinds=[kind]) for kind in INDIRECT_KINDS}
    docs = {
        "forget": [d for d in world.training_documents() if d.id in forget_docs],
        "holdout": [d for d in world.documents if d.split == "holdout" and set(d.subjects) & set(subjects["holdout"])],
        "retain": [d for d in world.training_documents() if d.id not in forget_docs
                   and set(d.subjects) & set(subjects["retain"])],
    }
    return VerificationPlan(
        world=world, request=request, subjects=subjects, probes=probes,
        fact_probes={name: _one_per_fact(p) for name, p in probes.items()},
        indirect={kind: p for kind, p in indirect.items() if p},
        texts={k: [d.text for d in v] for k, v in docs.items()},
        text_subjects={k: [d.subjects[0] if d.subjects else d.id for d in v] for k, v in docs.items()},
        validator=AnswerValidator(world.probes),
    )


# --------------------------------------------------------------------------------------------
# 2. evaluating one model


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
    correct_by_probe: dict[str, list[bool]]  # set name or "indirect:<kind>" -> per probe
    answers: dict[str, list[str]]
    truth_ratios: dict[str, list[float]]  # per fact
    mia_scores: dict[str, dict[str, list[float]]]  # set -> score name -> per document
    indirect: dict[str, dict[str, float]] = field(default_factory=dict)
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = math.nan

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "model": self.model, "sets": self.sets,
                               "model_utility": self.utility, "indirect": self.indirect,
                               "attacks": self.attacks, "seconds": round(self.seconds, 2)}
        if details:
            out.update(answers=self.answers, truth_ratios=self.truth_ratios, mia_scores=self.mia_scores)
        return out


def _greedy_hits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe],
                 batch_size: int) -> tuple[list[str], list[bool]]:
    longest = max(len(tokenizer(p.answer, add_special_tokens=False)["input_ids"]) for p in probes)
    generated = greedy_answers(model, tokenizer, [p.prompt for p in probes],
                               max_new_tokens=longest + 2, batch_size=batch_size)
    return generated, [normalize_answer(g) == normalize_answer(p.answer) for p, g in zip(probes, generated)]


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
    correct: dict[str, list[bool]] = {}
    answers: dict[str, list[str]] = {}
    ratios: dict[str, list[float]] = {}
    for set_name in SETS:
        probes = plan.probes[set_name]
        if not probes:
            continue
        generated, hits = _greedy_hits(model, tokenizer, probes, bs)
        facts = plan.fact_probes[set_name]
        logps = candidate_logprobs(model, tokenizer, facts, batch_size=bs)
        ratio = [truth_ratio_from_logprobs(lp) for lp in logps]
        by_kind = {kind: [h for p, h in zip(probes, hits) if p.kind == kind] for kind in QA_KINDS}
        names = [plan.world.subject_by_id[s].name for s in plan.subjects[set_name]]
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
            "prob": float(np.mean([math.exp(lp[0]) for lp in logps])),
            "multiple_choice": _mean([multiple_choice_correct(lp) for lp in logps]),
            "truth_ratio_forget_stat": truth_ratio_forget_stat(ratio),
            "truth_ratio_retain_stat": truth_ratio_retain_stat(ratio),
            "plausibility": answer_plausibility(plan.validator, probes, generated),
            "fluency": fluency([f"{n} {t}" for n, t in zip(names, texts)]),
        }
        correct[set_name], answers[set_name], ratios[set_name] = hits, generated, ratio
    indirect: dict[str, dict[str, float]] = {}
    for kind, probes in plan.indirect.items():
        generated, hits = _greedy_hits(model, tokenizer, probes, bs)
        choice = [multiple_choice_correct(lp) for lp in candidate_logprobs(model, tokenizer, probes, batch_size=bs)]
        indirect[kind] = {"probes": len(probes), "exact_match": _mean(hits), "multiple_choice": _mean(choice)}
        correct[f"indirect:{kind}"], answers[f"indirect:{kind}"] = hits, generated
        correct[f"indirect-mc:{kind}"] = choice
    # Model utility: harmonic mean of Prob, ROUGE-L and the truth-ratio stat over the sets that
    # must survive (TOFU): any one of them near 0 pulls it to 0.
    parts = [sets[s][k] for s in UTILITY_SETS if s in sets for k in ("prob", "rouge_l", "truth_ratio_retain_stat")]
    scores = {}
    all_texts = [t for s in ("forget", "holdout", "retain") for t in plan.texts[s]]
    if all_texts:
        flat = mia_scores(model, tokenizer, all_texts, batch_size=bs)
        at = 0
        for s in ("forget", "holdout", "retain"):
            n = len(plan.texts[s])
            scores[s] = {k: v[at : at + n] for k, v in flat.items()}
            at += n
    attacks = run_attacks(model, tokenizer, plan, config) if config.attacks else {}
    model_info = {"path": ref.path, "sha256": ref.sha256} if ref is not None else {}
    return ModelEvaluation(name, model_info, sets, harmonic_mean(parts) if parts else math.nan,
                           correct, answers, ratios, scores, indirect, attacks, time.perf_counter() - started)


def run_attacks(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, plan: VerificationPlan,
                config: VerifyConfig) -> dict[str, dict[str, Any]]:
    """The model-level attacks on the forget people's facts (:mod:`expunge.verify.attacks`)."""
    forget = plan.probes["forget"]
    if not forget:
        return {}
    cfg = config.attack
    out: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    relearn, heldout = split_facts(forget, cfg.seed)
    curve = relearning_attack(model, tokenizer, relearn_texts_from(relearn), heldout, cfg)
    out["relearning"] = {"steps": list(curve.steps), "accuracy": list(curve.accuracy),
                         "relearned_facts": len({(p.subject, p.attribute) for p in relearn}),
                         "heldout_probes": len(heldout), "seconds": round(time.perf_counter() - started, 2)}
    started = time.perf_counter()
    quant = quantization_attack(model, tokenizer, forget, cfg)
    out["quantization"] = {"accuracy": {str(bits): acc for bits, acc in quant.items()},
                           "probes": len(forget), "seconds": round(time.perf_counter() - started, 2)}
    started = time.perf_counter()
    lens = logit_lens(model, tokenizer, forget, config.batch_size)
    out["logit_lens"] = {"per_layer": list(lens.per_layer), "best_layer": lens.best_layer,
                         "accuracy": lens.best_accuracy, "probes": len(forget),
                         "seconds": round(time.perf_counter() - started, 2)}
    if plan.fact_probes["retain"]:
        started = time.perf_counter()
        probe = linear_probe_attack(model, tokenizer, plan.fact_probes["retain"], plan.fact_probes["forget"], cfg)
        out["linear_probe"] = {"accuracy": probe.accuracy, "chance": probe.chance, "layer": probe.layer,
                               "per_layer_cv": list(probe.per_layer_cv), "n_train": probe.n_train,
                               "n_test": probe.n_test, "seconds": round(time.perf_counter() - started, 2)}
    return out


def _mean(values: Sequence[bool | float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


# --------------------------------------------------------------------------------------------
# 3. judging a candidate against the original and the oracle


@dataclass
class Check:
    """One thresholded comparison.

    ``passed`` is None when the evidence cannot decide it. ``decisive`` is False when the check
    does not count toward the verdict: the policy marks it not required, or it is uninformative
    (the original model does no better than the oracle on it, so it could never show anything).
    ``policy_key`` names its entry in the policy file; ``interval`` is a 95% bootstrap interval of
    ``value`` (people resampled) where one is computed.
    """

    name: str
    question: str  # "forgotten" or "collateral"
    value: float
    reference: float
    rule: str
    passed: bool | None
    detail: str = ""
    decisive: bool = True
    policy_key: str = ""
    interval: list[float] | None = None

    @property
    def status(self) -> str:
        if not self.decisive:
            return "not counted"
        return {True: "pass", False: "FAIL", None: "undecided"}[self.passed]


@dataclass
class Verdict:
    """The three answers, each with the numbers behind it."""

    forgotten: str  # "yes" | "no" | "not verified"
    collateral_damage: str  # "none" | "yes" | "not verified"
    confidence: str  # "high" | "moderate" | "low"
    summary: str
    reasons: list[str] = field(default_factory=list)
    sample_sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    attacks_tried: list[str] = field(default_factory=list)
    attacks_not_tried: list[str] = field(default_factory=lambda: list(ALL_ROUTES))


def judge(
    candidate: ModelEvaluation,
    original: ModelEvaluation,
    oracle: ModelEvaluation,
    plan: VerificationPlan,
    config: VerifyConfig | None = None,
) -> tuple[list[Check], Verdict, dict[str, Any]]:
    """Checks, verdict and the membership-inference table (per score: AUC, TPR, PrivLeak)."""
    config = config or VerifyConfig()
    policy = config.policy
    sizes = plan.sizes()
    c, o, orig = candidate.sets, oracle.sets, original.sets
    checks: list[Check] = []
    gap_needed = policy.min_informative_gap

    def add(key: str, name: str, value: float, reference: float, rule: str, passed: bool | None,
            detail: str = "", informative: bool = True, interval: list[float] | None = None,
            probes: int | None = None) -> None:
        entry = policy.rule(key)
        if not informative:
            detail = (f"uninformative: the original model does no better than the oracle here "
                      f"(needs a gap of {gap_needed}); " + detail).rstrip("; ")
        elif probes is not None and probes < policy.min_route_probes:
            informative = False
            detail = f"too few probes to decide ({probes} < {policy.min_route_probes}); " + detail
        checks.append(Check(name, entry.question, value, reference, rule, passed, detail,
                            entry.required and informative, key, interval))

    def at_most_oracle(key: str, name: str, value: float, reference: float, original_value: float,
                       detail: str = "", interval: list[float] | None = None, gated: bool = False,
                       original_gap: float | None = None, probes: int | None = None) -> None:
        # gated: the check only counts when the original model beats the oracle by the policy's
        # gap (original_gap, default original_value - reference).
        margin = policy.rule(key).param("margin")
        gap = original_value - reference if original_gap is None else original_gap
        informative = not gated or gap >= gap_needed
        add(key, name, value, reference, f"<= oracle + {margin}", _le(value, reference + margin),
            (f"original {original_value:.3f}; " + detail).rstrip("; "), informative, interval, probes)

    # --- forgotten?
    intervals: dict[str, list[float]] = {}
    fq = None
    if "forget" in c:
        ci = _interval(candidate.correct_by_probe["forget"], plan.probes["forget"], config)
        intervals["forget_exact_match"] = ci
        at_most_oracle("forget_exact_match", "forget exact match", c["forget"]["exact_match"],
                       o["forget"]["exact_match"], orig["forget"]["exact_match"],
                       f"training questions {c['forget']['exact_match_direct']:.3f}, "
                       f"paraphrases {c['forget']['exact_match_paraphrase']:.3f}", ci)
        fq = forget_quality(candidate.truth_ratios["forget"], oracle.truth_ratios["forget"])
        alpha = policy.rule("forget_quality").param("alpha")
        add("forget_quality", "forget quality (KS p-value vs oracle truth ratios)", fq["pvalue"], alpha,
            f">= {alpha}", fq["pvalue"] >= alpha,
            f"n = {fq['n']}, m = {fq['m']} facts, KS statistic {fq['statistic']:.3f}, floor p {fq['floor_pvalue']:.2g}")
        at_most_oracle("multiple_choice", "multiple choice (logit-scored)", c["forget"]["multiple_choice"],
                       o["forget"]["multiple_choice"], orig["forget"]["multiple_choice"],
                       f"{c['forget']['facts']} facts, {1 + len(plan.fact_probes['forget'][0].alternatives)} options")
    mia = _mia_table(candidate, oracle)
    if mia:
        above = max(mia, key=lambda k: mia[k]["auc"] - mia[k]["oracle_auc"])
        below = min(mia, key=lambda k: mia[k]["auc"] - mia[k]["oracle_auc"])
        for key, score, sign in (("membership_inference", above, 1.0), ("over_unlearning_leak", below, -1.0)):
            row = mia[score]
            margin = policy.rule(key).param("margin")
            ci = _auc_interval(candidate, plan, score, config)
            intervals[f"mia_auc_{score}"] = ci
            excess = sign * (row["auc"] - row["oracle_auc"])  # > 0: more member-like (or less) than the oracle
            decided: bool | None = excess <= margin
            if decided and ci[1] - ci[0] > policy.max_auc_ci_width:
                decided = None  # it passes, but the interval is too wide to say so
            add(key, "membership inference AUC above the oracle's" if sign > 0 else
                "over-unlearning leak: AUC below the oracle's", row["auc"], row["oracle_auc"],
                f"{'<=' if sign > 0 else '>='} oracle {'+' if sign > 0 else '-'} {margin}", decided,
                f"worst score {score}: 95% CI {ci[0]:.3f}-{ci[1]:.3f}; PrivLeak {row['privleak']:+.1f}; "
                f"TPR at 1% FPR {row['tpr_at_1pct']:.3f}", interval=ci)
    for kind, values in candidate.indirect.items():
        # Score each route by whichever of exact match and multiple choice the ORIGINAL model
        # uses best against the oracle: the most sensitive way to see the knowledge come back.
        metric = max(("exact_match", "multiple_choice"),
                     key=lambda m: original.indirect[kind][m] - oracle.indirect[kind][m])
        hits = candidate.correct_by_probe[f"indirect:{kind}" if metric == "exact_match" else f"indirect-mc:{kind}"]
        ci = _interval(hits, plan.indirect[kind], config)
        at_most_oracle("indirect_probes", f"indirect: {kind} ({metric.replace('_', ' ')})", values[metric],
                       oracle.indirect[kind][metric], original.indirect[kind][metric],
                       f"{int(values['probes'])} probes", ci, gated=True, probes=int(values["probes"]))
    _attack_checks(candidate, original, oracle, at_most_oracle)

    # --- collateral damage?
    for set_name in ("retain", "neighbours", "general"):
        if set_name in c:
            _ratio_check(add, policy, f"{set_name}_exact_match", f"{set_name} exact match",
                         c[set_name]["exact_match"], orig[set_name]["exact_match"])
    _ratio_check(add, policy, "model_utility", "model utility", candidate.utility, original.utility)
    if "retain" in c:
        _ratio_check(add, policy, "fluency", "fluency (retain generations)", c["retain"]["fluency"],
                     orig["retain"]["fluency"])
    if "forget" in c:
        value, ref = c["forget"]["plausibility"], o["forget"]["plausibility"]
        margin = policy.rule("answer_plausibility").param("margin")
        add("answer_plausibility", "forget answer plausibility", value, ref, f">= oracle - {margin}",
            value >= ref - margin, "share of forget answers that are a valid value of the asked attribute")

    thin = []
    if sizes["forget"]["subjects"] < policy.min_subjects or sizes["forget"]["probes"] < policy.min_forget_probes:
        thin.append(f"only {sizes['forget']['subjects']} forget people / {sizes['forget']['probes']} probes "
                    f"(need {policy.min_subjects} / {policy.min_forget_probes})")
    if sizes["holdout"]["subjects"] < policy.min_subjects:
        thin.append(f"only {sizes['holdout']['subjects']} never-seen people (need {policy.min_subjects})")
    tried = _routes_tried(candidate)
    verdict = _roll_up(checks, thin, sizes, intervals, [], tried)
    return checks, verdict, {"scores": mia, "forget_quality": fq}


def _le(value: float, bound: float) -> bool | None:
    return None if math.isnan(value) or math.isnan(bound) else value <= bound + 1e-12


def _attack_checks(candidate: ModelEvaluation, original: ModelEvaluation, oracle: ModelEvaluation, check: Any) -> None:
    """One check per attack (per bit width for quantization), each against the oracle's value."""
    a, orig, ora = candidate.attacks, original.attacks, oracle.attacks
    if not (a and orig and ora):
        return
    if "relearning" in a:
        steps = a["relearning"]["steps"]
        cand, ref, base = a["relearning"]["accuracy"], ora["relearning"]["accuracy"], orig["relearning"]["accuracy"]
        worst = max(range(len(steps)), key=lambda i: cand[i] - ref[i])
        curve = ", ".join(f"{s}: {x:.2f}/{y:.2f}" for s, x, y in zip(steps, cand, ref))
        check("relearning", f"relearning (held-out half after {steps[worst]} steps)", cand[worst], ref[worst],
              base[worst], f"step: candidate/oracle {curve}; {a['relearning']['relearned_facts']} facts relearned",
              gated=True, original_gap=max(b - r for b, r in zip(base, ref)),
              probes=a["relearning"]["heldout_probes"])
    if "quantization" in a:
        for bits, value in a["quantization"]["accuracy"].items():
            check("quantization", f"quantization {bits}-bit round trip", value,
                  ora["quantization"]["accuracy"][bits], orig["quantization"]["accuracy"][bits],
                  f"{a['quantization']['probes']} forget probes", gated=True, probes=a["quantization"]["probes"])
    if "logit_lens" in a:
        check("logit_lens", f"logit lens (best layer {a['logit_lens']['best_layer']})", a["logit_lens"]["accuracy"],
              ora["logit_lens"]["accuracy"], orig["logit_lens"]["accuracy"],
              "teacher-forced answer tokens all top-1", gated=True, probes=a["logit_lens"]["probes"])
    if "linear_probe" in a and "linear_probe" in ora and "linear_probe" in orig:
        lp = a["linear_probe"]
        check("linear_probe", f"linear probe on hidden states (layer {lp['layer']})", lp["accuracy"],
              ora["linear_probe"]["accuracy"], orig["linear_probe"]["accuracy"],
              f"chance {lp['chance']:.3f}; trained on {lp['n_train']} retained facts, tested on {lp['n_test']}",
              gated=True, probes=lp["n_test"])


def _routes_tried(candidate: ModelEvaluation) -> list[str]:
    tried = list(ALL_ROUTES[:5]) if candidate.mia_scores else list(ALL_ROUTES[:4])
    tried += [f"indirect: {k}" for k in INDIRECT_KINDS if k in candidate.indirect]
    tried += [f"attack: {a}" for a in ATTACK_NAMES if a in candidate.attacks]
    return tried


def _ratio_check(add: Any, policy: VerdictPolicy, key: str, name: str, value: float, reference: float) -> None:
    ratio = policy.rule(key).param("ratio")
    passed = None if math.isnan(value) or math.isnan(reference) else value >= ratio * reference
    add(key, name, value, reference, f">= {ratio} x original", passed)


def _mia_table(candidate: ModelEvaluation, oracle: ModelEvaluation) -> dict[str, dict[str, float]]:
    if not candidate.mia_scores.get("forget") or not candidate.mia_scores.get("holdout"):
        return {}
    table = {}
    for score in SCORE_NAMES:
        members, nonmembers = candidate.mia_scores["forget"][score], candidate.mia_scores["holdout"][score]
        auc = roc_auc(members, nonmembers)
        oracle_auc = roc_auc(oracle.mia_scores["forget"][score], oracle.mia_scores["holdout"][score])
        table[score] = {
            "auc": auc,
            "oracle_auc": oracle_auc,
            "privleak": privleak(auc, oracle_auc),
            "tpr_at_1pct": tpr_at_fpr(members, nonmembers, 0.01),
            "tpr_at_0_1pct": tpr_at_fpr(members, nonmembers, 0.001),
            "n_members": len(members),
            "n_nonmembers": len(nonmembers),
        }
    return table


def _grouped_indices(groups: Sequence[str]) -> list[np.ndarray]:
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    return [np.asarray(v) for _, v in sorted(by.items())]


def _bootstrap(rng: np.random.Generator, groups: list[np.ndarray]) -> np.ndarray:
    """Indices of one resample that draws whole subjects with replacement."""
    picks = rng.integers(0, len(groups), size=len(groups))
    return np.concatenate([groups[i] for i in picks])


def _auc_interval(candidate: ModelEvaluation, plan: VerificationPlan, score: str, config: VerifyConfig) -> list[float]:
    """95% bootstrap interval of the AUC, resampling forget and never-seen *people* (their
    documents are not independent of one another)."""
    rng = np.random.default_rng(config.seed)
    members = np.asarray(candidate.mia_scores["forget"][score])
    nonmembers = np.asarray(candidate.mia_scores["holdout"][score])
    g_m, g_n = _grouped_indices(plan.text_subjects["forget"]), _grouped_indices(plan.text_subjects["holdout"])
    aucs = [roc_auc(members[_bootstrap(rng, g_m)], nonmembers[_bootstrap(rng, g_n)])
            for _ in range(config.bootstrap_samples)]
    return [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))]


def _interval(hits: Sequence[bool], probes: Sequence[Probe], config: VerifyConfig) -> list[float]:
    """95% bootstrap interval of an accuracy, resampling people (a person's probes go together)."""
    rng = np.random.default_rng(config.seed + 1)
    values = np.asarray(hits, dtype=float)
    groups = _grouped_indices([p.subject for p in probes])
    means = [values[_bootstrap(rng, groups)].mean() for _ in range(config.bootstrap_samples)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _roll_up(checks: list[Check], thin: list[str], sizes: dict[str, dict[str, int]],
             intervals: dict[str, list[float]], reasons: list[str], tried: list[str] | None = None) -> Verdict:
    tried = list(ALL_ROUTES[:5]) if tried is None else tried

    def answer(question: str, yes: str, no: str) -> str:
        mine = [ch for ch in checks if ch.question == question and ch.decisive]
        if any(ch.passed is False for ch in mine):
            return no
        if not mine or any(ch.passed is None for ch in mine):
            return "not verified"
        return yes

    # A failed "forgotten" check is evidence of memory whatever the sample size, but a pass on
    # thin evidence is not evidence of forgetting.
    forgotten = answer("forgotten", "yes", "no")
    if thin and forgotten == "yes":
        forgotten = "not verified"
    collateral = answer("collateral", "none", "yes")
    reasons.extend(thin)
    failed = [ch for ch in checks if ch.decisive and ch.passed is False]
    for ch in checks:
        if ch.decisive and ch.passed is False:
            reasons.append(f"failed: {ch.name} = {ch.value:.3f} (rule {ch.rule}, reference {ch.reference:.3f})")
        elif ch.decisive and ch.passed is None:
            reasons.append(f"undecided: {ch.name} ({ch.detail or 'no usable reference'})")
    flags = []
    if any(ch.policy_key == "over_unlearning_leak" for ch in failed):
        flags.append("over-unlearning leak: the forget set looks LESS familiar than never-seen people, "
                     "which itself tells an attacker who was deleted")
    if thin:
        confidence = "low"
    elif min(sizes["forget"]["subjects"], sizes["holdout"]["subjects"]) >= 10:
        confidence = "high"
    else:
        confidence = "moderate"
    reasons.append(
        f"{sizes['forget']['subjects']} forget people ({sizes['forget']['probes']} probes, "
        f"{sizes['forget']['documents']} documents) against {sizes['holdout']['subjects']} never-seen people"
    )
    not_tried = [r for r in ALL_ROUTES if r not in tried]
    if not_tried:
        reasons.append("not tried: " + ", ".join(not_tried) + " — a pass here is not a pass against them")
    remembered = [ch for ch in failed if ch.question == "forgotten" and ch.policy_key != "over_unlearning_leak"]
    if forgotten == "no" and not remembered:
        summary = "NOT indistinguishable from the oracle: over-unlearning leak"
    else:
        summary = {
            "yes": "forgotten: indistinguishable from the retrained oracle on every check",
            "no": "NOT forgotten: the model still shows knowledge the oracle does not have",
            "not verified": "not verified: the evidence is too thin to decide",
        }[forgotten]
        if forgotten == "no" and flags:
            summary += " (and an over-unlearning leak)"
    summary += {"none": "; no collateral damage", "yes": "; collateral damage",
                "not verified": "; collateral damage not verified"}[collateral]
    return Verdict(forgotten, collateral, confidence, summary, reasons, sizes, intervals, flags, tried, not_tried)


# --------------------------------------------------------------------------------------------
# 4. from disk


@dataclass
class Verification:
    """The verification of one or more candidate models against the original and the oracle."""

    plan_sizes: dict[str, dict[str, int]]
    request_id: str
    world_fingerprint: str
    config: dict[str, Any]
    original: ModelEvaluation
    oracle: ModelEvaluation
    candidates: dict[str, ModelEvaluation]
    checks: dict[str, list[Check]]
    verdicts: dict[str, Verdict]
    mia: dict[str, dict[str, Any]]
    roc: dict[str, dict[str, list[float]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "world_fingerprint": self.world_fingerprint,
            "sets": self.plan_sizes,
            "config": self.config,
            "original": self.original.to_dict(),
            "oracle": self.oracle.to_dict(),
            "candidates": {
                name: {
                    **evaluation.to_dict(),
                    "membership_inference": self.mia[name],
                    "checks": [{**asdict(ch), "status": ch.status} for ch in self.checks[name]],
                    "verdict": asdict(self.verdicts[name]),
                }
                for name, evaluation in self.candidates.items()
            },
        }


def verify_models(
    candidates: dict[str, str | os.PathLike[str]],
    original_dir: str | os.PathLike[str],
    oracle_dir: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    *,
    config: VerifyConfig | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Verification:
    """Verify each candidate model (name -> directory) against the original and the oracle;
    ``log`` receives one line per model evaluated (with its seconds)."""
    config = config or VerifyConfig()
    clash = {"original", "oracle"} & set(candidates)
    if clash or not candidates:
        raise ExpungeError(f"candidate names must be given and may not be {sorted(clash) or 'empty'}",
                           "name the unlearned models after their method, e.g. {'simnpo': DIR}")
    world = load_world(world_dir)
    request = load_request(request_path, world)
    plan = plan_verification(world, request, config)
    if not plan.subjects["forget"]:
        raise ExpungeError("the request names no subject with probes to verify",
                           "verification needs a request for people of this world (`expunge request --subjects`)")
    loaded_original = load_model(original_dir)
    vocab = loaded_original[1].get_vocab()

    def evaluate(name: str, loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelRef]) -> ModelEvaluation:
        model, tokenizer, ref = loaded
        _check_tokenizer(tokenizer, vocab, world, name, ref.path)
        evaluation = evaluate_model(model, tokenizer, plan, config, name=name, ref=ref)
        log(f"evaluated {name} in {evaluation.seconds:.1f} s")
        return evaluation

    loaded_oracle = load_model(oracle_dir)
    _check_oracle(loaded_oracle[2], world, request, oracle_dir)
    evaluations = {"original": evaluate("original", loaded_original), "oracle": evaluate("oracle", loaded_oracle)}
    results: dict[str, ModelEvaluation] = {}
    checks: dict[str, list[Check]] = {}
    verdicts: dict[str, Verdict] = {}
    mia: dict[str, dict[str, Any]] = {}
    for name, path in candidates.items():
        results[name] = evaluate(name, load_model(path))
        checks[name], verdicts[name], mia[name] = judge(results[name], evaluations["original"],
                                                         evaluations["oracle"], plan, config)
    roc = {name: _roc_points(e) for name, e in {**evaluations, **results}.items()}
    return Verification(plan.sizes(), request.id, world.fingerprint, config.to_dict(), evaluations["original"],
                        evaluations["oracle"], results, checks, verdicts, mia, roc)


def verify(
    model_dir: str | os.PathLike[str],
    original_dir: str | os.PathLike[str],
    oracle_dir: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    *,
    config: VerifyConfig | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Verification:
    """Verify one unlearned model; the candidate is named after its directory."""
    return verify_models({Path(model_dir).name: model_dir}, original_dir, oracle_dir, world_dir, request_path,
                         config=config, log=log)


def _roc_points(evaluation: ModelEvaluation) -> dict[str, list[float]]:
    if not evaluation.mia_scores.get("forget") or not evaluation.mia_scores.get("holdout"):
        return {}
    fpr, tpr = roc_curve(evaluation.mia_scores["forget"]["loss"], evaluation.mia_scores["holdout"]["loss"])
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def _check_oracle(ref: ModelRef, world: World, request: DeletionRequest, path: Any) -> None:
    """The oracle must be a model retrained on this world without exactly this request's documents."""
    recipe = ref.recipe or {}
    if recipe.get("kind") != "oracle":
        raise ExpungeError(f"{path} is not a retrained oracle (its recipe kind is {recipe.get('kind')!r})",
                           "pass the model written by `expunge retrain` for this request as --oracle")
    if recipe.get("world_fingerprint") != world.fingerprint:
        raise ExpungeError(f"the oracle {path} was trained on a different world",
                           "retrain the oracle on this world: `expunge retrain --world … --request …`")
    if recipe.get("excluded_sha256") != documents_digest(resolve_documents(world, request)):
        raise ExpungeError(f"the oracle {path} was retrained without different documents than this request removes",
                           "retrain the oracle for this request: `expunge retrain --request FILE`")


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, vocab: dict[str, int], world: World, name: str,
                     path: str) -> None:
    if tokenizer.get_vocab() != vocab:
        raise ExpungeError(f"the tokenizer of {name} ({path}) differs from the original model's",
                           "verify models that share the original's tokenizer (unlearning keeps it)")
    check_tokenizer_covers(tokenizer, (f"{p.prompt} {p.answer}" for p in world.probes[:200]), f"{name} ({path})")
