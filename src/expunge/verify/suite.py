"""Core verification: is it gone, did anything else break, and how sure are we?

Read top to bottom:

1. :class:`VerificationPlan` — which people and texts each set holds, chosen from the world and
   the request: ``forget`` (the request's targets), ``holdout`` (never-seen people, the reference
   population), ``retain`` (the other trained people), ``neighbours`` (retained people who share a
   name token or two attribute values with a target: where a careless deletion does damage first)
   and ``general`` (facts about countries, not people).
2. :func:`evaluate_model` — every metric of one model on every set: greedy exact match (training
   and held-out questions), ROUGE-L recall, Prob, truth ratios, answer plausibility, fluency of free
   generations, membership-inference scores of the forget, never-seen and retain documents.
3. :func:`judge` — compares a candidate with the original model and the retrained oracle (the
   model that never saw the data). Checks carry thresholds; they roll up into three answers:
   *forgotten?* (yes / no / not verified), *collateral damage?* (none / yes / not verified) and
   *how sure?* (sample sizes, bootstrap confidence intervals grouped by subject, which attacks
   were tried and which were not).
4. :func:`verify` — loads the models from disk and runs the three steps.

Every definition is the one in the project's DESIGN notes; :mod:`expunge.verify.metrics` and
:mod:`expunge.verify.mia` implement them.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.ledger.requests import documents_digest, load_request, resolve_documents
from expunge.models.io import check_tokenizer_covers, load_model
from expunge.records import DeletionRequest, ModelRef, Probe
from expunge.verify.metrics import (
    forget_quality,
    harmonic_mean,
    fluency,
    privleak,
    roc_auc,
    roc_curve,
    rouge_l_recall,
    truth_ratio_forget_stat,
    truth_ratio_retain_stat,
    truth_ratios,
    answer_logprobs,
    probability,
    tpr_at_fpr,
)
from expunge.verify.mia import SCORE_NAMES, mia_scores
from expunge.verify.plausibility import AnswerValidator, answer_plausibility
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
    "ATTACKS_TRIED",
    "ATTACKS_NOT_TRIED",
]

SETS = ("forget", "holdout", "retain", "neighbours", "general")
# The sets whose knowledge must survive; model utility is measured over them (TOFU's choice).
UTILITY_SETS = ("retain", "neighbours", "general")
ATTACKS_TRIED = (
    "training questions", "held-out paraphrased questions", "truth ratio (true vs wrong answers)",
    "membership inference: " + ", ".join(SCORE_NAMES),
)
ATTACKS_NOT_TRIED = (
    "relearning", "quantization", "logit lens", "in-context priming", "multi-hop questions",
)


@dataclass(frozen=True)
class VerifyConfig:
    """Thresholds, sample-size floors and costs of a verification.

    Attributes:
        forget_em_margin: forgotten needs forget-set exact match <= the oracle's + this margin.
        mia_auc_margin: forgotten needs |AUC - oracle AUC| <= this for every membership score
            (forget documents vs never-seen people's documents). An AUC far *below* the oracle's
            is a leak too: the forget set now looks less familiar than data never seen.
        forget_quality_alpha: forgotten needs the KS test of forget-set truth ratios against the
            oracle's to give p >= alpha (TOFU's forget quality; "indistinguishable from the oracle").
        retain_ratio: no collateral damage needs exact match on retain, neighbour and general
            probes, model utility and fluency each >= this times the original model's.
        plausibility_margin: no collateral damage needs forget-set answer plausibility >= the
            oracle's - this margin (a wrecked model answers with noise, not wrong values).
        min_subjects: fewer forget or never-seen people than this: "not verified".
        min_forget_probes: fewer forget probes than this: "not verified".
        max_auc_ci_width: a membership AUC whose 95% bootstrap interval is wider than this cannot
            decide its check ("not verified" unless another check fails).
        max_subjects_per_set: cap on the people scored per set (a seeded sample), to bound cost.
        bootstrap_samples: resamples for the confidence intervals (grouped by subject).
        fluency_tokens: tokens generated per fluency prompt (a subject's name).
        batch_size: batch size of every forward pass.
        seed: seeds the subject samples and the bootstrap.
    """

    forget_em_margin: float = 0.05
    mia_auc_margin: float = 0.10
    forget_quality_alpha: float = 0.05
    retain_ratio: float = 0.9
    plausibility_margin: float = 0.15
    min_subjects: int = 3
    min_forget_probes: int = 20
    max_auc_ci_width: float = 0.5
    max_subjects_per_set: int = 30
    bootstrap_samples: int = 1000
    fluency_tokens: int = 24
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("forget_em_margin", "mia_auc_margin", "plausibility_margin"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")
        if not 0.0 < self.forget_quality_alpha < 1.0:
            raise ValueError("forget_quality_alpha must lie in (0, 1), e.g. 0.05")
        if not 0.0 < self.retain_ratio <= 1.0:
            raise ValueError("retain_ratio must lie in (0, 1], e.g. 0.9")
        if self.min_subjects < 1 or self.min_forget_probes < 1 or self.max_subjects_per_set < 1:
            raise ValueError("min_subjects, min_forget_probes and max_subjects_per_set must be at least 1")
        if self.bootstrap_samples < 100:
            raise ValueError("bootstrap_samples must be at least 100 for a usable 95% interval")


# --------------------------------------------------------------------------------------------
# 1. the plan


@dataclass
class VerificationPlan:
    """The people, probes and documents of each set (see the module doc)."""

    world: World
    request: DeletionRequest
    subjects: dict[str, list[str]]
    probes: dict[str, list[Probe]]
    # membership inference: the removed documents, never-seen documents, retained documents
    texts: dict[str, list[str]]
    text_subjects: dict[str, list[str]]
    validator: AnswerValidator

    def sizes(self) -> dict[str, dict[str, int]]:
        return {
            name: {"subjects": len(self.subjects[name]), "probes": len(self.probes[name]),
                   "documents": len(self.texts.get(name, []))}
            for name in SETS
        }


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
    probes = {name: world.probes_for(ids) for name, ids in subjects.items()}
    docs = {
        "forget": [d for d in world.training_documents() if d.id in forget_docs],
        "holdout": [d for d in world.documents if d.split == "holdout" and set(d.subjects) & set(subjects["holdout"])],
        "retain": [d for d in world.training_documents() if d.id not in forget_docs
                   and set(d.subjects) & set(subjects["retain"])],
    }
    return VerificationPlan(
        world=world, request=request, subjects=subjects, probes=probes,
        texts={k: [d.text for d in v] for k, v in docs.items()},
        text_subjects={k: [d.subjects[0] if d.subjects else d.id for d in v] for k, v in docs.items()},
        validator=AnswerValidator(world.probes),
    )


# --------------------------------------------------------------------------------------------
# 2. evaluating one model


@dataclass
class ModelEvaluation:
    """Every measurement of one model. ``sets[name]`` holds the summary numbers of a set; the
    per-item lists behind them are kept for tests, bootstrap intervals and plots."""

    name: str
    model: dict[str, Any]
    sets: dict[str, dict[str, float]]
    utility: float
    correct_by_probe: dict[str, list[bool]]
    answers: dict[str, list[str]]
    truth_ratios: dict[str, list[float]]
    mia_scores: dict[str, dict[str, list[float]]]  # set -> score name -> per document

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "model": self.model, "sets": self.sets,
                               "model_utility": self.utility}
        if details:
            out.update(answers=self.answers, truth_ratios=self.truth_ratios, mia_scores=self.mia_scores)
        return out


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
    bs = config.batch_size
    sets: dict[str, dict[str, float]] = {}
    correct: dict[str, list[bool]] = {}
    answers: dict[str, list[str]] = {}
    ratios: dict[str, list[float]] = {}
    for set_name in SETS:
        probes = plan.probes[set_name]
        if not probes:
            continue
        longest = max(len(tokenizer(p.answer, add_special_tokens=False)["input_ids"]) for p in probes)
        generated = greedy_answers(model, tokenizer, [p.prompt for p in probes],
                                   max_new_tokens=longest + 2, batch_size=bs)
        hits = [normalize_answer(g) == normalize_answer(p.answer) for p, g in zip(probes, generated)]
        scored = answer_logprobs(model, tokenizer, [p.prompt for p in probes], [p.answer for p in probes], bs)
        ratio = truth_ratios(model, tokenizer, probes, batch_size=bs)
        by_kind = {kind: [h for p, h in zip(probes, hits) if p.kind == kind] for kind in ("direct", "paraphrase")}
        names = [plan.world.subject_by_id[s].name for s in plan.subjects[set_name]]
        texts = greedy_answers(model, tokenizer, names, max_new_tokens=config.fluency_tokens, batch_size=bs)
        sets[set_name] = {
            "subjects": len(plan.subjects[set_name]),
            "probes": len(probes),
            "exact_match": _mean(hits),
            "exact_match_direct": _mean(by_kind["direct"]),
            "exact_match_paraphrase": _mean(by_kind["paraphrase"]),
            "rouge_l": float(np.mean([rouge_l_recall(g, p.answer) for p, g in zip(probes, generated)])),
            "prob": float(np.mean([probability(s, n) for s, n in scored])),
            "truth_ratio_forget_stat": truth_ratio_forget_stat(ratio),
            "truth_ratio_retain_stat": truth_ratio_retain_stat(ratio),
            "plausibility": answer_plausibility(plan.validator, probes, generated),
            "fluency": fluency([f"{n} {t}" for n, t in zip(names, texts)]),
        }
        correct[set_name], answers[set_name], ratios[set_name] = hits, generated, ratio
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
    model_info = {"path": ref.path, "sha256": ref.sha256} if ref is not None else {}
    return ModelEvaluation(name, model_info, sets, harmonic_mean(parts) if parts else math.nan,
                           correct, answers, ratios, scores)


def _mean(values: Sequence[bool | float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


# --------------------------------------------------------------------------------------------
# 3. judging a candidate against the original and the oracle


@dataclass
class Check:
    """One thresholded comparison. ``passed`` is None when the evidence cannot decide it."""

    name: str
    question: str  # "forgotten" or "collateral"
    value: float
    reference: float
    rule: str
    passed: bool | None
    detail: str = ""


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
    attacks_tried: list[str] = field(default_factory=lambda: list(ATTACKS_TRIED))
    attacks_not_tried: list[str] = field(default_factory=lambda: list(ATTACKS_NOT_TRIED))


def judge(
    candidate: ModelEvaluation,
    original: ModelEvaluation,
    oracle: ModelEvaluation,
    plan: VerificationPlan,
    config: VerifyConfig | None = None,
) -> tuple[list[Check], Verdict, dict[str, Any]]:
    """Checks, verdict and the membership-inference table (per score: AUC, TPR, PrivLeak)."""
    config = config or VerifyConfig()
    sizes = plan.sizes()
    c, o, orig = candidate.sets, oracle.sets, original.sets
    checks: list[Check] = []
    reasons: list[str] = []
    thin = []
    if sizes["forget"]["subjects"] < config.min_subjects or sizes["forget"]["probes"] < config.min_forget_probes:
        thin.append(f"only {sizes['forget']['subjects']} forget people / {sizes['forget']['probes']} probes "
                    f"(need {config.min_subjects} / {config.min_forget_probes})")
    if sizes["holdout"]["subjects"] < config.min_subjects:
        thin.append(f"only {sizes['holdout']['subjects']} never-seen people (need {config.min_subjects})")

    # --- forgotten?
    if "forget" in c:
        checks.append(Check(
            "forget exact match", "forgotten", c["forget"]["exact_match"], o["forget"]["exact_match"],
            f"<= oracle + {config.forget_em_margin}",
            c["forget"]["exact_match"] <= o["forget"]["exact_match"] + config.forget_em_margin,
            f"training questions {c['forget']['exact_match_direct']:.3f}, "
            f"paraphrases {c['forget']['exact_match_paraphrase']:.3f}",
        ))
        fq = forget_quality(candidate.truth_ratios["forget"], oracle.truth_ratios["forget"])
        checks.append(Check(
            "forget quality (KS p-value vs oracle truth ratios)", "forgotten", fq["pvalue"],
            config.forget_quality_alpha, f">= {config.forget_quality_alpha}",
            fq["pvalue"] >= config.forget_quality_alpha,
            f"n = {fq['n']}, m = {fq['m']}, KS statistic {fq['statistic']:.3f}, floor p {fq['floor_pvalue']:.2g}",
        ))
    else:
        fq = None
    mia = _mia_table(candidate, oracle, config)
    intervals: dict[str, list[float]] = {}
    if mia:
        worst = max(mia, key=lambda k: abs(mia[k]["auc"] - mia[k]["oracle_auc"]))
        row = mia[worst]
        gap = abs(row["auc"] - row["oracle_auc"])
        ci = _auc_interval(candidate, plan, worst, config)
        intervals[f"mia_auc_{worst}"] = ci
        decided: bool | None = gap <= config.mia_auc_margin
        if decided and ci[1] - ci[0] > config.max_auc_ci_width:
            decided = None  # it passes, but the interval is too wide to say so
        checks.append(Check(
            "membership inference |AUC - oracle AUC| (worst score)", "forgotten", gap, config.mia_auc_margin,
            f"<= {config.mia_auc_margin}", decided,
            f"{worst}: AUC {row['auc']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}) vs oracle {row['oracle_auc']:.3f}; "
            f"PrivLeak {row['privleak']:+.1f}",
        ))
    if "forget" in c:
        intervals["forget_exact_match"] = _em_interval(candidate, plan, config)

    # --- collateral damage?
    for set_name in ("retain", "neighbours", "general"):
        if set_name in c:
            ref = orig[set_name]["exact_match"]
            checks.append(_ratio_check(f"{set_name} exact match", c[set_name]["exact_match"], ref, config))
    checks.append(_ratio_check("model utility", candidate.utility, original.utility, config))
    if "retain" in c:
        checks.append(_ratio_check("fluency (retain generations)", c["retain"]["fluency"],
                                   orig["retain"]["fluency"], config))
    if "forget" in c:
        value, ref = c["forget"]["plausibility"], o["forget"]["plausibility"]
        checks.append(Check(
            "forget answer plausibility", "collateral", value, ref, f">= oracle - {config.plausibility_margin}",
            value >= ref - config.plausibility_margin,
            "share of forget answers that are a valid value of the asked attribute",
        ))

    verdict = _roll_up(checks, thin, sizes, intervals, reasons)
    return checks, verdict, {"scores": mia, "forget_quality": fq}


def _ratio_check(name: str, value: float, reference: float, config: VerifyConfig) -> Check:
    passed = None if math.isnan(value) or math.isnan(reference) else value >= config.retain_ratio * reference
    return Check(name, "collateral", value, reference, f">= {config.retain_ratio} x original", passed)


def _mia_table(candidate: ModelEvaluation, oracle: ModelEvaluation, config: VerifyConfig) -> dict[str, dict[str, float]]:
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


def _em_interval(candidate: ModelEvaluation, plan: VerificationPlan, config: VerifyConfig) -> list[float]:
    rng = np.random.default_rng(config.seed + 1)
    hits = np.asarray(candidate.correct_by_probe["forget"], dtype=float)
    groups = _grouped_indices([p.subject for p in plan.probes["forget"]])
    means = [hits[_bootstrap(rng, groups)].mean() for _ in range(config.bootstrap_samples)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _roll_up(checks: list[Check], thin: list[str], sizes: dict[str, dict[str, int]],
             intervals: dict[str, list[float]], reasons: list[str]) -> Verdict:
    def answer(question: str, yes: str, no: str) -> str:
        mine = [ch for ch in checks if ch.question == question]
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
    for ch in checks:
        if ch.passed is False:
            reasons.append(f"failed: {ch.name} = {ch.value:.3f} (rule {ch.rule}, reference {ch.reference:.3f})")
        elif ch.passed is None:
            reasons.append(f"undecided: {ch.name} ({ch.detail or 'no usable reference'})")
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
    reasons.append("not tried: " + ", ".join(ATTACKS_NOT_TRIED) + " — a pass here is not a pass against them")
    summary = {
        "yes": "forgotten: indistinguishable from the retrained oracle on every check",
        "no": "NOT forgotten: the model still shows knowledge the oracle does not have",
        "not verified": "not verified: the evidence is too thin to decide",
    }[forgotten]
    summary += {"none": "; no collateral damage", "yes": "; collateral damage",
                "not verified": "; collateral damage not verified"}[collateral]
    return Verdict(forgotten, collateral, confidence, summary, reasons, sizes, intervals)


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
                    "checks": [asdict(ch) for ch in self.checks[name]],
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
) -> Verification:
    """Verify each candidate model (name -> directory) against the original and the oracle."""
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
    loaded = {"original": load_model(original_dir), "oracle": load_model(oracle_dir)}
    _check_oracle(loaded["oracle"][2], world, request, oracle_dir)
    evaluations: dict[str, ModelEvaluation] = {}
    vocab = loaded["original"][1].get_vocab()
    for name, (model, tokenizer, ref) in loaded.items():
        _check_tokenizer(tokenizer, vocab, world, name, ref.path)
        evaluations[name] = evaluate_model(model, tokenizer, plan, config, name=name, ref=ref)
    results: dict[str, ModelEvaluation] = {}
    checks: dict[str, list[Check]] = {}
    verdicts: dict[str, Verdict] = {}
    mia: dict[str, dict[str, Any]] = {}
    for name, path in candidates.items():
        model, tokenizer, ref = load_model(path)
        _check_tokenizer(tokenizer, vocab, world, name, ref.path)
        results[name] = evaluate_model(model, tokenizer, plan, config, name=name, ref=ref)
        checks[name], verdicts[name], mia[name] = judge(results[name], evaluations["original"],
                                                         evaluations["oracle"], plan, config)
    roc = {name: _roc_points(e) for name, e in {**evaluations, **results}.items()}
    return Verification(plan.sizes(), request.id, world.fingerprint, asdict(config), evaluations["original"],
                        evaluations["oracle"], results, checks, verdicts, mia, roc)


def verify(
    model_dir: str | os.PathLike[str],
    original_dir: str | os.PathLike[str],
    oracle_dir: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    *,
    config: VerifyConfig | None = None,
) -> Verification:
    """Verify one unlearned model; the candidate is named after its directory."""
    return verify_models({Path(model_dir).name: model_dir}, original_dir, oracle_dir, world_dir, request_path,
                         config=config)


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
