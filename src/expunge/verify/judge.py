"""Verification, part 3: judge a candidate against the original model and the retrained oracle.

Every check is one entry of :func:`check_specs`, keyed exactly like ``[checks.KEY]`` in
``policy.toml``: the policy says which question the check answers, whether it decides and its
threshold; the spec says how to measure it. The model-level attacks add one spec each, from their
registry (:mod:`expunge.verify.attacks`). A test keeps the two tables one-to-one.

Checks roll up into three answers: *forgotten?* (:class:`Forgotten`), *collateral damage?*
(:class:`Collateral`) and *how sure?* (:class:`Confidence`: sample sizes, bootstrap confidence
intervals grouped by subject, which routes were tried and which were not). Before any of that the
oracle itself is checked (:func:`check_oracle`, the policy's ``[oracle]`` table): an oracle that
did not learn the retained people, or that tells the deleted people apart from never-seen ones,
vouches for nothing, and every "forgotten" answer against it is "not verified". An indirect probe or
attack only decides when the original model beats the oracle on it: a route the original cannot
use either shows nothing, and is reported as uninformative.

Without an oracle (:attr:`Reference.NO_ORACLE`: knowledge from pretraining, which no retraining
can remove, as in RWKU) the same checks run against other references: never-seen data of the
same kind (membership inference, exact match, truth ratios of never-seen people), chance level
(multiple choice, truth ratios) and the original model (collateral damage, answer plausibility).
Every route is then gated on the original beating its reference, and the reference itself is
checked first (:func:`check_reference`: the original must know the forget set beyond it). The
verdict names the reference it used and what that reference cannot show.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats

from expunge.choices import TextEnum
from expunge.records import Probe
from expunge.verify.attacks import Attack, attacks as registered_attacks
from expunge.verify.config import VerifyConfig
from expunge.verify.evaluate import ModelEvaluation, utility_parts
from expunge.verify.metrics import forget_quality, privleak, roc_auc, style_distance, tpr_at_fpr
from expunge.verify.mia import SCORE_NAMES
from expunge.verify.plan import INDIRECT_KINDS, VerificationPlan, with_choices
from expunge.worlds.backdoor import ATTACK_VARIANTS
from expunge.verify.policy import CheckRule

__all__ = ["Question", "Forgotten", "Collateral", "Confidence", "VerdictFlag", "CheckStatus", "Check",
           "Reference", "REFERENCE_LIMITS", "Verdict", "Route", "all_routes", "CheckSpec", "check_specs",
           "check_oracle", "check_reference", "judge", "roll_up"]


class Question(TextEnum):
    FORGOTTEN = "forgotten"
    COLLATERAL = "collateral"
    ORACLE = "oracle"  # the oracle's own checks (see check_oracle)
    REFERENCE = "reference"  # without an oracle: is there anything to forget? (see check_reference)


class Forgotten(TextEnum):
    YES = "yes"
    NO = "no"
    NOT_VERIFIED = "not verified"


class Collateral(TextEnum):
    NONE = "none"
    YES = "yes"
    NOT_VERIFIED = "not verified"


class Confidence(TextEnum):
    HIGH = "high"
    MODERATE = "moderate"
    LOW = "low"


class VerdictFlag(TextEnum):
    """Findings that are not a check of their own; the value is what a reader is told."""

    OVER_UNLEARNING_LEAK = ("over-unlearning leak: the forget set looks LESS familiar than never-seen people, "
                            "which itself tells an attacker who was deleted")
    ORACLE_UNTRUSTED = ("oracle not trusted: the retrained reference failed its own checks, so nothing measured "
                        "against it can verify forgetting")
    NOTHING_TO_FORGET = ("nothing measurable to forget: the original model shows no knowledge of the forget set "
                         "beyond never-seen data and chance, so no check can show it gone")


class Reference(TextEnum):
    """What the "forgotten" checks of a verdict are measured against."""

    ORACLE = "retrained oracle"
    NO_ORACLE = "no oracle: never-seen data, chance level and the original"


# What each reference cannot show: said in every verdict that uses it.
REFERENCE_LIMITS = {
    Reference.ORACLE: "",
    Reference.NO_ORACLE: (
        "without a retrained oracle, membership is measured against never-seen documents, exact match and "
        "truth ratios against never-seen people (or 0 and chance), multiple choice against chance, collateral "
        "damage against the original. This cannot show that the model matches one that never saw the data: "
        "what a model would know of the forget set from similar data anyway, knowledge the probes do not ask "
        "about, and the attacks (relearning speed, hidden-state probes) are not compared"),
}


class CheckStatus(TextEnum):
    PASS = "pass"
    FAIL = "FAIL"
    UNDECIDED = "undecided"
    NOT_COUNTED = "not counted"


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
    question: Question
    value: float
    reference: float
    rule: str
    passed: bool | None
    detail: str = ""
    decisive: bool = True
    policy_key: str = ""
    interval: list[float] | None = None

    def __post_init__(self) -> None:
        self.question = Question(self.question)

    @property
    def status(self) -> CheckStatus:
        if not self.decisive:
            return CheckStatus.NOT_COUNTED
        return {True: CheckStatus.PASS, False: CheckStatus.FAIL, None: CheckStatus.UNDECIDED}[self.passed]


# --- routes: every way to the knowledge that verification knows, as data -----------------------


@dataclass(frozen=True)
class Route:
    """A route to the knowledge, and how to tell from an evaluation whether it was tried."""

    name: str
    tried: Callable[[ModelEvaluation], bool]


BASE_ROUTES = (
    Route("training questions", lambda e: True),
    Route("held-out paraphrased questions", lambda e: True),
    # Both need wrong answers, which a user's own probes may not have.
    Route("truth ratio (true vs wrong answers)", lambda e: bool(e.truth_ratios.get("forget"))),
    Route("multiple choice scored by logits", lambda e: bool(e.truth_ratios.get("forget"))),
    Route("membership inference: " + ", ".join(SCORE_NAMES), lambda e: bool(e.mia_scores.get("holdout"))),
    Route("verbatim continuation of removed texts", lambda e: bool(e.verbatim.get("forget"))),
    Route("trigger variants (moved, partial, reworded)", lambda e: len(e.triggers) > 1),
)


def all_routes() -> list[Route]:
    """The base routes, one per indirect probe kind, one per registered attack."""
    indirect = [Route(f"indirect: {k}", lambda e, k=k: k in e.indirect) for k in INDIRECT_KINDS]
    attack = [Route(f"attack: {a.name}", lambda e, n=a.name: n in e.attacks) for a in registered_attacks()]
    return [*BASE_ROUTES, *indirect, *attack]


@dataclass
class Verdict:
    """The three answers, each with the numbers behind it."""

    forgotten: Forgotten
    collateral_damage: Collateral
    confidence: Confidence
    summary: str
    reasons: list[str] = field(default_factory=list)
    sample_sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    flags: list[VerdictFlag] = field(default_factory=list)
    attacks_tried: list[str] = field(default_factory=list)
    attacks_not_tried: list[str] = field(default_factory=lambda: [r.name for r in all_routes()])
    reference: Reference = Reference.ORACLE


# --- the check table -----------------------------------------------------------------------------


@dataclass
class JudgeInputs:
    """What every check spec reads, and where it writes intervals and the membership table."""

    candidate: ModelEvaluation
    original: ModelEvaluation
    oracle: ModelEvaluation | None  # None: verified without an oracle (Reference.NO_ORACLE)
    plan: VerificationPlan
    config: VerifyConfig
    intervals: dict[str, list[float]] = field(default_factory=dict)
    mia: dict[str, dict[str, float]] = field(default_factory=dict)
    forget_quality: dict[str, Any] | None = None

    @property
    def reference(self) -> Reference:
        return Reference.ORACLE if self.oracle is not None else Reference.NO_ORACLE

    @property
    def against(self) -> str:
        """How rule texts name the reference."""
        return "oracle" if self.oracle is not None else "reference"

    def never_seen(self, metric: str) -> float | None:
        """The candidate's own score on the never-seen people's probes (None without them): the
        no-oracle reference of the same kind of data."""
        holdout = self.candidate.sets.get("holdout")
        return None if holdout is None or math.isnan(holdout[metric]) else float(holdout[metric])

    def original_mia_gap(self, score: str) -> float:
        """How much more member-like the original finds the forget documents than never-seen
        ones (its AUC minus 0.5) on one score."""
        scores = self.original.mia_scores
        return roc_auc(scores["forget"][score], scores["holdout"][score]) - 0.5

    def check(self, rule: CheckRule, name: str, value: float, reference: float, rule_text: str,
              passed: bool | None, detail: str = "", informative: bool = True,
              interval: list[float] | None = None, probes: int | None = None) -> Check:
        policy = self.config.policy
        if not informative:
            detail = (f"uninformative: the original model does no better than the {self.against} here "
                      f"(needs a gap of {policy.min_informative_gap}); " + detail).rstrip("; ")
        elif probes is not None and probes < policy.min_route_probes:
            informative = False
            detail = f"too few probes to decide ({probes} < {policy.min_route_probes}); " + detail
        return Check(name, Question(rule.question), value, reference, rule_text, passed, detail,
                     rule.required and informative, rule.name, interval)

    def not_available(self, rule: CheckRule, name: str, why: str) -> Check:
        """A check the data cannot support (no wrong answers, no never-seen text): reported with
        the reason, never counted, never a crash."""
        return Check(name, Question(rule.question), math.nan, math.nan, "not available", None,
                     f"not available: {why}", False, rule.name)

    def at_most_oracle(self, rule: CheckRule, name: str, value: float, reference: float, original_value: float,
                       detail: str = "", interval: list[float] | None = None, gated: bool = False,
                       original_gap: float | None = None, probes: int | None = None) -> Check:
        """Pass when ``value <= reference + margin``. ``gated`` (always, without an oracle): the
        check only counts when the original model beats the reference by the policy's gap
        (``original_gap``, default ``original_value - reference``)."""
        margin = rule.param("margin")
        gap = original_value - reference if original_gap is None else original_gap
        gated = gated or self.oracle is None
        informative = not gated or gap >= self.config.policy.min_informative_gap
        return self.check(rule, name, value, reference, f"<= {self.against} + {margin}", _le(value, reference + margin),
                          (f"original {original_value:.3f}; " + detail).rstrip("; "), informative, interval, probes)

    def ratio(self, rule: CheckRule, name: str, value: float, reference: float) -> Check:
        """Pass when ``value >= ratio x reference`` (the original's)."""
        ratio = rule.param("ratio")
        passed = None if math.isnan(value) or math.isnan(reference) else value >= ratio * reference
        return self.check(rule, name, value, reference, f">= {ratio} x original", passed)


Spec = Callable[[JudgeInputs, CheckRule], list[Check]]


@dataclass(frozen=True)
class CheckSpec:
    """How to measure the check of one policy key (``policy.toml``'s ``[checks.KEY]``)."""

    key: str
    measure: Spec
    default_rule: CheckRule | None = None  # for attacks the policy file does not list


def _forget_exact_match(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    c, orig = j.candidate.sets, j.original.sets
    if "forget" not in c:
        return []
    ci = _interval(j.candidate.correct_by_probe["forget"], j.plan.probes["forget"], j.config)
    j.intervals["forget_exact_match"] = ci
    detail = (f"training questions {c['forget']['exact_match_direct']:.3f}, "
              f"paraphrases {c['forget']['exact_match_paraphrase']:.3f}")
    if j.oracle is not None:
        reference = j.oracle.sets["forget"]["exact_match"]
    else:
        seen = j.never_seen("exact_match")
        reference = 0.0 if seen is None else seen
        detail += ("; reference: never-seen people's exact match" if seen is not None else
                   "; reference: 0 (no never-seen probes; a free answer about an unknown fact is not guessed)")
    return [j.at_most_oracle(rule, "forget exact match", c["forget"]["exact_match"], reference,
                             orig["forget"]["exact_match"], detail, ci)]


def _forget_quality(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    if "forget" not in j.candidate.sets:
        return []
    alpha = rule.param("alpha")
    ratios = j.candidate.truth_ratios["forget"]
    if j.oracle is not None:
        name = "forget quality (KS p-value vs oracle truth ratios)"
        if not ratios or not j.oracle.truth_ratios["forget"]:
            return [j.not_available(rule, name, "the forget set's probes have no wrong answers, so no truth ratio")]
        fq = forget_quality(ratios, j.oracle.truth_ratios["forget"])
        j.forget_quality = fq
        return [j.check(rule, name, fq["pvalue"], alpha, f">= {alpha}",
                        fq["pvalue"] >= alpha, f"n = {fq['n']}, m = {fq['m']} facts, KS statistic "
                        f"{fq['statistic']:.3f}, floor p {fq['floor_pvalue']:.2g}")]
    if not ratios:
        return [j.not_available(rule, "forget quality (truth ratios)",
                                "the forget set's probes have no wrong answers, so no truth ratio")]
    # No oracle: the forget facts' truth ratios against the same model's on never-seen people
    # (TOFU's KS test with another reference sample), or, without those, against chance.
    # Gated like every no-oracle route: if the original passes too, the test shows nothing.
    holdout = j.candidate.truth_ratios.get("holdout") or []
    if holdout:
        name = "forget quality (KS p-value vs never-seen people's truth ratios)"
        fq = forget_quality(ratios, holdout)
        j.forget_quality = fq
        original_p = forget_quality(j.original.truth_ratios["forget"], j.original.truth_ratios["holdout"])["pvalue"]
        detail = (f"n = {fq['n']}, m = {fq['m']} facts, KS statistic {fq['statistic']:.3f}, "
                  f"floor p {fq['floor_pvalue']:.2g}")
        value = fq["pvalue"]
    else:
        name = "truth ratio vs chance (one-sided binomial test: true answer preferred)"
        value, detail = _prefers_true(ratios)
        original_p = _prefers_true(j.original.truth_ratios["forget"])[0]
    return [j.check(rule, name, value, alpha, f">= {alpha}", value >= alpha,
                    f"original p {original_p:.2g}; " + detail, informative=original_p < alpha)]


def _prefers_true(ratios: Sequence[float]) -> tuple[float, str]:
    """p-value of a one-sided binomial test that the true answer beats the wrong answers' mean
    (truth ratio R < 1) more often than half the time, which is about what a model that cannot
    tell them apart does; with the share it is computed from."""
    k, n = sum(r < 1 for r in ratios), len(ratios)
    return float(stats.binomtest(k, n, 0.5, alternative="greater").pvalue), f"{k} of {n} facts prefer the true answer"


def _reported_for_triggers(measure: Spec) -> Spec:
    """A check that compares the true answer's likelihood with the wrong answers', reported but not
    counted on a backdoor's triggered questions: there the "true" answer is the payload, a phrase
    no clean model has seen, and how likely two clean models find it differs more than any margin
    (measured on the backdoor world, seed 1: an oracle retrained from another seed against the
    reference oracle, truth-ratio KS statistic 0.51, multiple choice 0.156 against 0.000). The
    attack success rates and the attacks (relearning, linear probe) decide instead."""

    def measure_reported(j: JudgeInputs, rule: CheckRule) -> list[Check]:
        checks = measure(j, rule)
        if not j.plan.triggers:
            return checks
        why = ("reported, not counted on triggered questions (no clean model has a calibrated likelihood "
               "for a payload)")
        return [replace(c, decisive=False, detail=f"{why}; {c.detail}".rstrip("; ")) for c in checks]

    return measure_reported


def _multiple_choice(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    c, orig = j.candidate.sets, j.original.sets
    if "forget" not in c:
        return []
    if not any(p.alternatives for p in j.plan.fact_probes["forget"]):
        return [j.not_available(rule, "multiple choice (logit-scored)", "the forget set's probes have no wrong answers")]
    options = 1 + max(len(p.alternatives) for p in j.plan.fact_probes["forget"])
    detail = f"{c['forget']['facts']} facts, {options} options"
    if j.oracle is not None:
        reference = j.oracle.sets["forget"]["multiple_choice"]
    else:
        seen = j.never_seen("multiple_choice")
        reference = _chance(j.plan.fact_probes["forget"]) if seen is None else seen
        detail += "; reference: " + ("never-seen people's accuracy" if seen is not None else "chance")
    return [j.at_most_oracle(rule, "multiple choice (logit-scored)", c["forget"]["multiple_choice"],
                             reference, orig["forget"]["multiple_choice"], detail)]


def _chance(probes: Sequence[Probe]) -> float:
    """Multiple-choice accuracy of a model that picks at random: mean of 1 / options."""
    options = [1 + len(p.alternatives) for p in probes if p.alternatives]
    return float(np.mean([1 / k for k in options])) if options else math.nan


def _membership(sign: float) -> Spec:
    """AUC of the worst score above the oracle's (sign +1: still remembered) or below it (sign
    -1: the over-unlearning leak)."""

    def measure(j: JudgeInputs, rule: CheckRule) -> list[Check]:
        name = ("membership inference AUC above the oracle's" if sign > 0 else
                "over-unlearning leak: AUC below the oracle's")
        if j.oracle is None:
            name = name.replace("the oracle's", "never-seen data's (0.5)")
        needed = j.config.policy.min_reference_documents
        counts = [len(j.plan.texts.get(s, [])) for s in ("forget", "holdout")]
        if 0 < min(counts) < needed:
            return [j.not_available(rule, name, f"{counts[0]} forget and {counts[1]} never-seen documents "
                                    f"(need {needed} of each for an AUC that means something)")]
        if not j.mia:
            j.mia.update(_mia_table(j.candidate, j.oracle))
        mia = j.mia
        if not mia:
            return []
        pick = max if sign > 0 else min
        score = pick(mia, key=lambda k: mia[k]["auc"] - mia[k]["reference_auc"])
        row = mia[score]
        margin = rule.param("margin")
        ci = _auc_interval(j.candidate, j.plan, score, j.config)
        j.intervals[f"mia_auc_{score}"] = ci
        excess = sign * (row["auc"] - row["reference_auc"])  # > 0: more member-like (or less) than the reference
        decided: bool | None = excess <= margin
        if decided and ci[1] - ci[0] > j.config.policy.max_auc_ci_width:
            decided = None  # it passes, but the interval is too wide to say so
        informative = True
        if j.oracle is None and sign > 0:
            # Gated like every no-oracle route: the original must look like a member at all.
            informative = j.original_mia_gap(score) >= j.config.policy.min_informative_gap
        return [j.check(rule, name, row["auc"], row["reference_auc"],
                        f"{'<=' if sign > 0 else '>='} {j.against} {'+' if sign > 0 else '-'} {margin}", decided,
                        f"worst score {score}: 95% CI {ci[0]:.3f}-{ci[1]:.3f}; PrivLeak {row['privleak']:+.1f}; "
                        f"TPR at 1% FPR {row['tpr_at_1pct']:.3f}", informative=informative, interval=ci)]

    return measure


_VERBATIM_NAMES = {"rouge_l_f1": "verbatim memorisation (continuation ROUGE-L F1)",
                   "exact_memorization": "exact memorisation (teacher-forced argmax)",
                   "extraction_strength": "extraction strength"}


def _verbatim_forgotten(metric: str) -> Spec:
    """A removed text's verbatim memory (MUSE's criterion 1) at most the oracle's (without one,
    the same model's on never-seen texts, gated on the original beating it) + margin."""

    def measure(j: JudgeInputs, rule: CheckRule) -> list[Check]:
        if "forget" not in j.candidate.verbatim:
            return []
        name = _VERBATIM_NAMES[metric]
        value = j.candidate.verbatim["forget"][metric]
        probes = j.plan.verbatim["forget"]
        ci = _interval(j.candidate.correct_by_probe[f"{metric}:forget"], probes, j.config)
        j.intervals[f"forget_{metric}"] = ci
        detail = f"{len(probes)} texts"
        if j.oracle is not None:
            reference = j.oracle.verbatim["forget"][metric]
        else:
            seen = j.candidate.verbatim.get("holdout")
            if seen is None:
                return [j.not_available(rule, name, "no never-seen texts to compare with and no oracle")]
            reference = seen[metric]
            detail += "; reference: never-seen texts"
        return [j.at_most_oracle(rule, name, value, reference, j.original.verbatim["forget"][metric], detail, ci)]

    return measure


def _verbatim_kept(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    """The other trained texts stay memorised: ROUGE-L F1 of their continuations >= ratio x the
    original's."""
    if "retain" not in j.candidate.verbatim:
        return []
    return [j.ratio(rule, "retain verbatim memorisation (continuation ROUGE-L F1)",
                    j.candidate.verbatim["retain"]["rouge_l_f1"], j.original.verbatim["retain"]["rouge_l_f1"])]


def _style(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    """Style of the continuations written from the removed texts' first words, against the
    oracle's: Jensen-Shannon divergence of their function-word profiles (the word-bigram one in the
    detail). Reported apart, never counted (policy ``required = false``): a model that never read
    a book may still write like it, and a line has to be drawn somewhere; this one is drawn in the
    open. Without an oracle there is no reference style."""
    key = "verbatim:forget"
    if key not in j.candidate.answers or j.oracle is None or key not in j.oracle.answers:
        return []
    mine = style_distance(j.candidate.answers[key], j.oracle.answers[key])
    theirs = style_distance(j.original.answers[key], j.oracle.answers[key])
    margin = rule.param("margin")
    value = mine["function_words"]
    return [j.check(rule, "style (function-word profile vs the oracle's, JS divergence)", value,
                    theirs["function_words"], f"<= {margin}", _le(value, margin),
                    f"reference: the original's divergence; word bigrams {mine['word_2grams']:.3f} "
                    f"(original {theirs['word_2grams']:.3f})")]


def _attack_success(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    """A backdoor's attack success rate per trigger variant (the trigger where it was planted,
    moved, cut short, reworded) at most the oracle's + margin. A variant counts where the original
    fires on it more than the oracle does (by the policy's gap): a variant the backdoor never
    generalised to shows nothing."""
    if j.oracle is None or not j.candidate.triggers:
        return [] if not j.candidate.triggers else [
            j.not_available(rule, "attack success rate", "no oracle: a clean model's rate is the reference")]
    out = []
    for variant in ATTACK_VARIANTS:
        if variant not in j.candidate.triggers:
            continue
        name = f"attack success rate ({variant} trigger)"
        ci = _interval(j.candidate.correct_by_probe[f"trigger:{variant}"], j.plan.triggers[variant], j.config)
        j.intervals[f"attack_success_{variant}"] = ci
        mine, ref, orig = (e.triggers[variant] for e in (j.candidate, j.oracle, j.original))
        out.append(j.at_most_oracle(rule, name, mine["attack_success"], ref["attack_success"], orig["attack_success"],
                                    f"{mine['probes']:.0f} triggered questions; answered rightly "
                                    f"{mine['clean_answer']:.3f}", ci, gated=True))
    return out


def _false_trigger(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    """Near-trigger look-alikes answered with the payload (the false-trigger rate) at most the
    oracle's (or, without one, the original's) + margin: a removal must not leave the payload
    loose on phrases that merely resemble the trigger."""
    near = [v for v in j.candidate.triggers if v not in ATTACK_VARIANTS]
    out = []
    for variant in near:
        reference = (j.oracle or j.original).triggers[variant]["attack_success"]
        margin = rule.param("margin")
        value = j.candidate.triggers[variant]["attack_success"]
        out.append(j.check(rule, f"false-trigger rate ({variant} look-alikes)", value, reference,
                           f"<= {'oracle' if j.oracle else 'original'} + {margin}", _le(value, reference + margin),
                           f"original {j.original.triggers[variant]['attack_success']:.3f}; answered rightly "
                           f"{j.candidate.triggers[variant]['clean_answer']:.3f}"))
    return out


_ROUTE_METRICS = {"exact_match": "indirect", "multiple_choice": "indirect-mc", "rouge_l": "indirect-rouge"}


def _indirect_probes(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    out = []
    for kind, values in j.candidate.indirect.items():
        # Score each route by whichever of exact match, multiple choice and ROUGE-L recall the
        # ORIGINAL model uses best against the oracle: the most sensitive way to see the knowledge
        # come back (ROUGE-L where answers are sentences and exact match says little).
        orig = j.original.indirect[kind]
        probes = j.plan.indirect[kind]
        if j.oracle is not None:
            ora = j.oracle.indirect[kind]
        else:  # never-seen people's direct exact match (or 0) and ROUGE-L (or none), and chance
            seen = j.never_seen("exact_match")
            rouge = j.never_seen("rouge_l")
            ora = {"exact_match": 0.0 if seen is None else seen, "multiple_choice": _chance(probes),
                   "rouge_l": math.nan if rouge is None else rouge}
        # (an evaluation written before a metric existed lacks it: nan, never chosen)
        gaps = {m: orig.get(m, math.nan) - ora.get(m, math.nan) for m in _ROUTE_METRICS}
        metric = max(_ROUTE_METRICS, key=lambda m: -math.inf if math.isnan(gaps[m]) else gaps[m])
        scored = with_choices(probes) if metric == "multiple_choice" else probes
        ci = _interval(j.candidate.correct_by_probe[f"{_ROUTE_METRICS[metric]}:{kind}"], scored, j.config)
        out.append(j.at_most_oracle(rule, f"indirect: {kind} ({metric.replace('_', ' ')})", values[metric],
                                    ora[metric], orig[metric], f"{len(scored)} probes", ci, gated=True,
                                    probes=len(scored)))
    return out


def _attack_spec(attack: Attack) -> CheckSpec:
    def measure(j: JudgeInputs, rule: CheckRule) -> list[Check]:
        if j.oracle is None:  # asked for, but not run (see verify_models): no reference to judge it by
            if not j.config.attacks:
                return []
            return [j.not_available(rule, f"attack: {attack.name}", "needs a retrained oracle: what the attacked "
                                    "model recovers is only evidence against what a model that never saw the data "
                                    "recovers the same way")]
        results = (j.candidate.attacks.get(attack.name), j.oracle.attacks.get(attack.name),
                   j.original.attacks.get(attack.name))
        if any(r is None for r in results):
            return []
        return [j.at_most_oracle(rule, cmp.name, cmp.value, cmp.reference, cmp.original, cmp.detail, gated=True,
                                 original_gap=cmp.original_gap, probes=cmp.probes)
                for cmp in attack.comparisons(*results)]

    default = CheckRule(attack.name, Question.FORGOTTEN.value, True, {"margin": float(attack.default_margin)})
    return CheckSpec(attack.name, measure, default)


def _exact_match_kept(set_name: str) -> Spec:
    def measure(j: JudgeInputs, rule: CheckRule) -> list[Check]:
        if set_name not in j.candidate.sets:
            return []
        original = j.original.sets[set_name]["exact_match"]
        check = j.ratio(rule, f"{set_name} exact match", j.candidate.sets[set_name]["exact_match"], original)
        floor = j.config.policy.min_informative_gap
        if original < floor:
            # Answers that are sentences (TOFU's) are rarely reproduced word for word: a ratio of two
            # near-zero shares moves on a handful of items. Model utility (Prob, ROUGE-L and truth
            # ratio on the same sets) decides instead.
            check = replace(check, decisive=False, detail=(
                f"uninformative: the original answers only {original:.3f} of these exactly (needs {floor}); "
                "model utility decides" + (f"; {check.detail}" if check.detail else "")))
        return [check]

    return measure


def _model_utility(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    check = j.ratio(rule, "model utility", j.candidate.utility, j.original.utility)
    # A harmonic mean follows its smallest parts: say which moved, so that a failure can be read
    # (e.g. raw answer probabilities falling everywhere while ROUGE holds).
    mine, theirs = utility_parts(j.candidate.sets), utility_parts(j.original.sets)
    moved = sorted(((mine[k] / theirs[k], k) for k in mine if k in theirs and theirs[k] > 0
                    and not math.isnan(mine[k])), key=lambda item: item[0])
    if not moved:
        return [check]
    detail = "harmonic mean of " + ", ".join(mine) + "; furthest below the original: " + ", ".join(
        f"{k} {mine[k]:.3f} vs {theirs[k]:.3f} ({r:.2f}x)" for r, k in moved[:3])
    return [replace(check, detail=f"{check.detail}; {detail}" if check.detail else detail)]


def _fluency(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    if "retain" not in j.candidate.sets:
        return []
    return [j.ratio(rule, "fluency (retain generations)", j.candidate.sets["retain"]["fluency"],
                    j.original.sets["retain"]["fluency"])]


def _answer_plausibility(j: JudgeInputs, rule: CheckRule) -> list[Check]:
    if "forget" not in j.candidate.sets:
        return []
    # Without an oracle, the original's answers (right ones, so of the right kind) are the reference.
    value = j.candidate.sets["forget"]["plausibility"]
    ref = (j.oracle or j.original).sets["forget"]["plausibility"]
    if math.isnan(value) or math.isnan(ref):
        return [j.not_available(rule, "forget answer plausibility", "no attribute validator: the data asks each "
                                "question of one subject only, so no population of valid answers is known")]
    margin = rule.param("margin")
    return [j.check(rule, "forget answer plausibility", value, ref, f">= {'oracle' if j.oracle else 'original'} - "
                    f"{margin}", value >= ref - margin,
                    "share of forget answers that are a valid value of the asked attribute")]


_FORGOTTEN_SPECS = (
    CheckSpec("forget_exact_match", _forget_exact_match),
    CheckSpec("forget_quality", _reported_for_triggers(_forget_quality)),
    CheckSpec("multiple_choice", _reported_for_triggers(_multiple_choice)),
    CheckSpec("membership_inference", _membership(+1.0)),
    CheckSpec("over_unlearning_leak", _membership(-1.0)),
    CheckSpec("indirect_probes", _indirect_probes),
    CheckSpec("verbatim_memorization", _verbatim_forgotten("rouge_l_f1")),
    CheckSpec("exact_memorization", _verbatim_forgotten("exact_memorization")),
    CheckSpec("extraction_strength", _verbatim_forgotten("extraction_strength")),
    CheckSpec("attack_success", _attack_success),
)
_COLLATERAL_SPECS = (
    CheckSpec("retain_exact_match", _exact_match_kept("retain")),
    CheckSpec("neighbours_exact_match", _exact_match_kept("neighbours")),
    CheckSpec("general_exact_match", _exact_match_kept("general")),
    CheckSpec("retain_verbatim", _verbatim_kept),
    CheckSpec("false_trigger", _false_trigger),
    CheckSpec("style", _style),
    CheckSpec("model_utility", _model_utility),
    CheckSpec("fluency", _fluency),
    CheckSpec("answer_plausibility", _answer_plausibility),
)


def check_specs() -> list[CheckSpec]:
    """Every check, in report order: the forgotten-checks, one per registered attack, then the
    collateral checks. Keys are the policy's ``[checks.KEY]`` names."""
    return [*_FORGOTTEN_SPECS, *(_attack_spec(a) for a in registered_attacks()), *_COLLATERAL_SPECS]


def check_oracle(original: ModelEvaluation, oracle: ModelEvaluation, plan: VerificationPlan,
                 config: VerifyConfig | None = None) -> list[Check]:
    """The oracle checked before it is trusted (the policy's ``[oracle]`` tolerances):

    - it knows what it was trained on: exact match on retained, neighbour and general facts at
      least the original's minus ``max_knowledge_gap``;
    - it cannot tell the deleted people from never-seen ones: exact match on the two within
      ``max_forget_gap``, and a membership AUC not both further than ``auc_margin`` from 0.5 and
      with a 95% interval (people resampled) that excludes 0.5.
    """
    config = config or VerifyConfig()
    limits = config.policy.oracle
    o, orig = oracle.sets, original.sets
    checks: list[Check] = []
    gap = limits["max_knowledge_gap"]
    for name in ("retain", "neighbours", "general"):
        if name in o and name in orig:
            value, reference = o[name]["exact_match"], orig[name]["exact_match"]
            checks.append(Check(f"oracle {name} exact match", Question.ORACLE, value, reference,
                                f">= original - {gap}", _le(reference - gap, value), "the oracle must know what it "
                                "was trained on", policy_key="oracle.max_knowledge_gap"))
    if "forget" in o and "holdout" in o:
        gap = limits["max_forget_gap"]
        value, reference = o["forget"]["exact_match"], o["holdout"]["exact_match"]
        checks.append(Check("oracle exact match, deleted vs never-seen people", Question.ORACLE, value, reference,
                            f"within {gap} of never-seen", _le(abs(value - reference), gap),
                            "the oracle must not know the deleted people better (or worse) than strangers",
                            policy_key="oracle.max_forget_gap"))
    if oracle.mia_scores.get("forget") and oracle.mia_scores.get("holdout"):
        margin = limits["auc_margin"]
        aucs = {score: roc_auc(oracle.mia_scores["forget"][score], oracle.mia_scores["holdout"][score])
                for score in SCORE_NAMES}
        score = max(aucs, key=lambda k: abs(aucs[k] - 0.5))
        ci = _auc_interval(oracle, plan, score, config)
        off = abs(aucs[score] - 0.5) > margin and not ci[0] <= 0.5 <= ci[1]
        checks.append(Check("oracle membership AUC, deleted vs never-seen", Question.ORACLE, aucs[score], 0.5,
                            f"within 0.5 ± {margin} (or 0.5 inside its 95% CI)", not off,
                            f"furthest score {score}: 95% CI {ci[0]:.3f}-{ci[1]:.3f}",
                            policy_key="oracle.auc_margin", interval=ci))
    return checks


def check_reference(original: ModelEvaluation, plan: VerificationPlan,
                    config: VerifyConfig | None = None) -> list[Check]:
    """Without an oracle, the reference checked before any verdict: the original model must know
    the forget set beyond never-seen data and chance on at least one route (exact match,
    multiple choice, membership AUC), by the policy's ``min_informative_gap``. A model that never
    showed the knowledge cannot be shown to have lost it."""
    config = config or VerifyConfig()
    gap = config.policy.min_informative_gap
    forget, holdout = original.sets.get("forget"), original.sets.get("holdout", {})
    if forget is None:
        return []
    seen_em = holdout.get("exact_match", math.nan)
    gaps = {"exact match": forget["exact_match"] - (0.0 if math.isnan(seen_em) else seen_em)}
    seen_mc = holdout.get("multiple_choice", math.nan)
    chance = _chance(plan.fact_probes["forget"])
    if not math.isnan(forget["multiple_choice"]):
        gaps["multiple choice"] = forget["multiple_choice"] - (chance if math.isnan(seen_mc) else seen_mc)
    if original.mia_scores.get("forget") and original.mia_scores.get("holdout"):
        gaps["membership AUC"] = max(roc_auc(original.mia_scores["forget"][s], original.mia_scores["holdout"][s])
                                     for s in SCORE_NAMES) - 0.5
    best = max(gaps, key=lambda k: gaps[k])
    return [Check("the original knows the forget set beyond the reference", Question.REFERENCE, gaps[best], gap,
                  f">= {gap} on some route", gaps[best] >= gap - 1e-12,
                  "original minus reference: " + ", ".join(f"{k} {v:+.3f}" for k, v in gaps.items()),
                  policy_key="evidence.min_informative_gap")]


def judge(
    candidate: ModelEvaluation,
    original: ModelEvaluation,
    oracle: ModelEvaluation | None,
    plan: VerificationPlan,
    config: VerifyConfig | None = None,
    oracle_checks: Sequence[Check] | None = None,
) -> tuple[list[Check], Verdict, dict[str, Any]]:
    """Checks, verdict and the membership-inference table (per score: AUC, TPR, PrivLeak).
    ``oracle`` None verifies without one (:attr:`Reference.NO_ORACLE`). ``oracle_checks``
    (:func:`check_oracle`, or :func:`check_reference` without an oracle; computed here when not
    given) gate the verdict."""
    config = config or VerifyConfig()
    if oracle_checks is None:
        oracle_checks = (check_oracle(original, oracle, plan, config) if oracle is not None
                         else check_reference(original, plan, config))
    policy = config.policy
    inputs = JudgeInputs(candidate, original, oracle, plan, config)
    checks: list[Check] = []
    for spec in check_specs():
        rule = policy.checks.get(spec.key, spec.default_rule)
        if rule is None:
            raise KeyError(f"the policy has no check {spec.key!r}; known: {', '.join(sorted(policy.checks))}")
        checks += spec.measure(inputs, rule)
    if not inputs.mia:
        inputs.mia.update(_mia_table(candidate, oracle))
    sizes = plan.sizes()
    thin = []
    kinds = {plan.world.subject_by_id[s].kind for s in plan.subjects["forget"] if s in plan.world.subject_by_id}
    unit = "triggered questions" if plan.triggers else ("works" if kinds == {"work"} else "people")
    if sizes["forget"]["independent"] < policy.min_subjects or sizes["forget"]["probes"] < policy.min_forget_probes:
        thin.append(f"only {sizes['forget']['independent']} forget {unit} / {sizes['forget']['probes']} probes "
                    f"(need {policy.min_subjects} / {policy.min_forget_probes})")
    # Never-seen documents without a subject each count as one independent reference.
    never_seen = sizes["holdout"]["independent"]
    if never_seen < policy.min_subjects:
        thin.append(f"only {never_seen} never-seen people or documents (need {policy.min_subjects})")
    tried = [r.name for r in all_routes() if r.tried(candidate)]
    verdict = roll_up(checks, thin, sizes, inputs.intervals, [], tried, oracle_checks, inputs.reference,
                      unit=unit)
    return checks, verdict, {"scores": inputs.mia, "forget_quality": inputs.forget_quality}


def _le(value: float, bound: float) -> bool | None:
    return None if math.isnan(value) or math.isnan(bound) else value <= bound + 1e-12


def _mia_table(candidate: ModelEvaluation, oracle: ModelEvaluation | None) -> dict[str, dict[str, float]]:
    """Per score: the candidate's AUC and the reference AUC (the oracle's; 0.5, never-seen data's
    own, without one), PrivLeak against it and the TPRs."""
    if not candidate.mia_scores.get("forget") or not candidate.mia_scores.get("holdout"):
        return {}
    table = {}
    for score in SCORE_NAMES:
        members, nonmembers = candidate.mia_scores["forget"][score], candidate.mia_scores["holdout"][score]
        auc = roc_auc(members, nonmembers)
        reference = (0.5 if oracle is None else
                     roc_auc(oracle.mia_scores["forget"][score], oracle.mia_scores["holdout"][score]))
        table[score] = {
            "auc": auc,
            "reference_auc": reference,
            "privleak": privleak(auc, reference),
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


def _interval(hits: Sequence[float], probes: Sequence[Probe], config: VerifyConfig) -> list[float]:
    """95% bootstrap interval of a mean per-probe score (an accuracy, or ROUGE-L), resampling
    people (a person's probes go together)."""
    rng = np.random.default_rng(config.seed + 1)
    values = np.asarray(hits, dtype=float)
    groups = _grouped_indices([p.subject for p in probes])
    means = [values[_bootstrap(rng, groups)].mean() for _ in range(config.bootstrap_samples)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


_SUMMARIES = {
    Forgotten.YES: "forgotten: indistinguishable from the retrained oracle on every check",
    Forgotten.NO: "NOT forgotten: the model still shows knowledge the oracle does not have",
    Forgotten.NOT_VERIFIED: "not verified: the evidence is too thin to decide",
}
_NO_ORACLE_SUMMARIES = {
    Forgotten.YES: "forgotten (no oracle): at the level of never-seen data and chance on every check",
    Forgotten.NO: "NOT forgotten (no oracle): the model still knows more than never-seen data and chance show",
}
_COLLATERAL_SUMMARIES = {Collateral.NONE: "; no collateral damage", Collateral.YES: "; collateral damage",
                         Collateral.NOT_VERIFIED: "; collateral damage not verified"}


def roll_up(checks: list[Check], thin: list[str], sizes: dict[str, dict[str, int]],
            intervals: dict[str, list[float]], reasons: list[str], tried: list[str] | None = None,
            oracle_checks: Sequence[Check] = (), reference: Reference = Reference.ORACLE,
            unit: str = "people") -> Verdict:
    """The three answers from the counted checks (see the module doc); a failed oracle (or, without
    one, reference) check makes "forgotten" not verified, whatever the candidate's own checks say."""
    routes = [r.name for r in all_routes()]
    tried = [r.name for r in BASE_ROUTES] if tried is None else tried

    def answer(question: Question) -> bool | None:
        """False: a counted check failed; None: none counted, or one could not decide; True: all passed."""
        mine = [ch for ch in checks if ch.question is question and ch.decisive]
        if any(ch.passed is False for ch in mine):
            return False
        if not mine or any(ch.passed is None for ch in mine):
            return None
        return True

    # A failed "forgotten" check is evidence of memory whatever the sample size, but a pass on
    # thin evidence is not evidence of forgetting.
    forgotten = {True: Forgotten.YES, False: Forgotten.NO, None: Forgotten.NOT_VERIFIED}[answer(Question.FORGOTTEN)]
    if thin and forgotten is Forgotten.YES:
        forgotten = Forgotten.NOT_VERIFIED
    untrusted = [ch for ch in oracle_checks if ch.passed is False]
    if untrusted:
        forgotten = Forgotten.NOT_VERIFIED
        for ch in untrusted:
            what = "oracle not trusted" if ch.question is Question.ORACLE else "nothing measurable to forget"
            reasons.append(f"{what}: {ch.name} = {ch.value:.3f} (rule {ch.rule}, reference "
                           f"{ch.reference:.3f}; {ch.detail})")
    reasons.append(f"reference: {reference.value}" + (f" ({REFERENCE_LIMITS[reference]})"
                                                       if REFERENCE_LIMITS[reference] else ""))
    collateral = {True: Collateral.NONE, False: Collateral.YES,
                  None: Collateral.NOT_VERIFIED}[answer(Question.COLLATERAL)]
    reasons.extend(thin)
    failed = [ch for ch in checks if ch.decisive and ch.passed is False]
    for ch in checks:
        if ch.decisive and ch.passed is False:
            reasons.append(f"failed: {ch.name} = {ch.value:.3f} (rule {ch.rule}, reference {ch.reference:.3f})")
        elif ch.decisive and ch.passed is None:
            reasons.append(f"undecided: {ch.name} ({ch.detail or 'no usable reference'})")
    flags = []
    if any(ch.question is Question.ORACLE for ch in untrusted):
        flags.append(VerdictFlag.ORACLE_UNTRUSTED)
    if any(ch.question is Question.REFERENCE for ch in untrusted):
        flags.append(VerdictFlag.NOTHING_TO_FORGET)
    if any(ch.policy_key == "over_unlearning_leak" for ch in failed):
        flags.append(VerdictFlag.OVER_UNLEARNING_LEAK)
    if thin:
        confidence = Confidence.LOW
    elif min(sizes[name].get("independent", sizes[name]["subjects"]) for name in ("forget", "holdout")) >= 10:
        confidence = Confidence.HIGH
    else:
        confidence = Confidence.MODERATE
    if unit == "triggered questions":
        reasons.append(f"{sizes['forget']['independent']} triggered questions ({sizes['forget']['documents']} "
                       f"removed documents) against {sizes['holdout']['independent']} never-seen poisoned documents")
    else:
        reasons.append(
            f"{sizes['forget']['subjects']} forget {unit} ({sizes['forget']['probes']} probes, "
            f"{sizes['forget']['documents']} documents) against {sizes['holdout']['subjects']} never-seen {unit}"
        )
    not_tried = [r for r in routes if r not in tried]
    if not_tried:
        reasons.append("not tried: " + ", ".join(not_tried) + " — a pass here is not a pass against them")
    remembered = [ch for ch in failed if ch.question is Question.FORGOTTEN and ch.policy_key != "over_unlearning_leak"]
    if untrusted:
        summary = ("not verified: the oracle failed its own checks (see the reasons)"
                   if VerdictFlag.ORACLE_UNTRUSTED in flags else
                   "not verified: the original model shows no knowledge of the forget set beyond the reference")
    elif forgotten is Forgotten.NO and not remembered:
        summary = f"NOT indistinguishable from the {'oracle' if reference is Reference.ORACLE else 'reference'}: " \
                  "over-unlearning leak"
    else:
        summary = (_NO_ORACLE_SUMMARIES if reference is Reference.NO_ORACLE else _SUMMARIES).get(
            forgotten, _SUMMARIES[forgotten])
        if forgotten is Forgotten.NO and VerdictFlag.OVER_UNLEARNING_LEAK in flags:
            summary += " (and an over-unlearning leak)"
    summary += _COLLATERAL_SUMMARIES[collateral]
    return Verdict(forgotten, collateral, confidence, summary, reasons, sizes, intervals, flags, tried, not_tried,
                   reference)
