"""ReportData: everything a report shows, in one JSON-ready record.

One record, three renderings (:mod:`expunge.report.render`): JSON for machines, Markdown for
reviews and tickets, and a standalone HTML page with plots for people. The compact ``table`` is
also what ``expunge demo`` prints and what ``--json`` returns (schema in the README).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from expunge.verify.suite import ModelEvaluation, Verification

__all__ = ["ReportData", "TABLE_COLUMNS", "report_from_verification", "attack_rows", "attack_values"]

# The compact table, one row per model: (key, header, what it is).
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model", "model", "original / oracle / method name"),
    ("forget_em", "forget EM", "exact match on the forget people's questions (training + paraphrased)"),
    ("forget_em_paraphrase", "forget EM para", "exact match on held-out paraphrased questions only"),
    ("retain_em", "retain EM", "exact match on the other trained people"),
    ("neighbours_em", "neighbour EM", "exact match on people sharing a name or two values with a target"),
    ("general_em", "general EM", "exact match on facts about countries"),
    ("forget_truth_ratio", "forget TR", "truth-ratio forget stat, mean(min(R, 1/R)); 1 = cannot tell true from wrong"),
    ("forget_quality", "forget quality", "KS p-value of forget truth ratios vs the oracle's"),
    ("mia_auc", "MIA AUC", "LOSS attack AUC, forget vs never-seen documents"),
    ("mia_auc_gap", "max |AUC-oracle|", "largest |AUC - oracle AUC| over all membership scores"),
    ("privleak", "PrivLeak", "(AUC - oracle AUC) / oracle AUC x 100 for the LOSS score"),
    ("model_utility", "utility", "harmonic mean of Prob, ROUGE-L, truth-ratio stat on retain/neighbour/general"),
    ("plausibility", "plausible", "share of forget answers that are a valid value of the asked attribute"),
    ("fluency", "fluency", "n-gram entropy of generations about retained people"),
    ("seconds", "seconds", "wall time of the run that made the model"),
    ("fraction_of_retraining", "x retrain", "seconds / the oracle's retraining seconds"),
    ("forgotten", "forgotten?", "verdict: yes / no / not verified"),
    ("collateral_damage", "collateral?", "verdict: none / yes / not verified"),
    ("confidence", "how sure", "high / moderate / low"),
)


@dataclass
class ReportData:
    """Everything a report shows. ``verification`` is :meth:`Verification.to_dict`; the other
    fields are the summary views and plot data derived from it."""

    title: str
    created: str
    world: dict[str, Any]
    request: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    retraining_seconds: float | None
    table: list[dict[str, Any]]
    verification: dict[str, Any]
    # model name -> set name -> per-document LOSS score (mean token NLL), for histograms
    losses: dict[str, dict[str, list[float]]]
    # model name -> {"fpr": [...], "tpr": [...]} of the LOSS attack, forget vs never-seen
    roc: dict[str, dict[str, list[float]]]
    notes: list[str] = field(default_factory=list)
    # model name -> kind -> {"probes", "exact_match", "multiple_choice"} on the forget people
    indirect: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # model name -> attack name -> results (see :func:`attack_rows` for the compact view)
    attacks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # model name -> row label -> accuracy recovered, from every attack's typed result
    attack_values: dict[str, dict[str, float]] = field(default_factory=dict)
    # attack name -> model name -> {"steps": [...], "accuracy": [...]}, for attacks with a curve
    attack_curves: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    # model name -> set -> verbatim memorisation of its texts ({"probes", "rouge_l_f1",
    # "exact_memorization", "extraction_strength"}), on worlds whose subjects are texts
    verbatim: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # model name -> trigger variant -> {"probes", "attack_success", "clean_answer"}, for a
    # backdoor's triggered questions
    triggers: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def candidates(self) -> list[str]:
        return list(self.verification["candidates"])


def report_from_verification(
    verification: Verification,
    *,
    title: str = "expunge verification report",
    world: dict[str, Any] | None = None,
    request: dict[str, Any] | None = None,
    runs: dict[str, dict[str, Any]] | None = None,
    retraining_seconds: float | None = None,
    notes: list[str] | None = None,
) -> ReportData:
    """Build the report record; ``runs`` maps candidate names to their unlearning run facts
    (``seconds``, ``steps``, ``stop_reason``, ``method`` ...)."""
    runs = runs or {}
    data = verification.to_dict()
    rows = [_row("original", verification.original, None, None, None, None)]
    if verification.oracle is not None:
        rows.append(_row("oracle", verification.oracle, None, None, retraining_seconds, retraining_seconds))
    for name, evaluation in verification.candidates.items():
        seconds = runs.get(name, {}).get("seconds")
        rows.append(_row(name, evaluation, data["candidates"][name], verification.verdicts[name].__dict__,
                         seconds, retraining_seconds))
    references = {"oracle": verification.oracle} if verification.oracle is not None else {}
    everything = {"original": verification.original, **references, **verification.candidates}
    losses = {name: {s: list(scores["loss"]) for s, scores in e.mia_scores.items()} for name, e in everything.items()}
    return ReportData(
        title=title,
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        world=world or {"fingerprint": verification.world_fingerprint},
        request=request or {"id": verification.request_id},
        runs=runs,
        retraining_seconds=retraining_seconds,
        table=rows,
        verification=data,
        losses=losses,
        roc=verification.roc,
        notes=list(notes or []),
        indirect={name: e.indirect for name, e in everything.items() if e.indirect},
        attacks={name: {a: r.to_dict() for a, r in e.attacks.items()} for name, e in everything.items() if e.attacks},
        attack_values={name: attack_values(e.attacks) for name, e in everything.items() if e.attacks},
        attack_curves=_curves(everything),
        verbatim={name: e.verbatim for name, e in everything.items() if e.verbatim},
        triggers={name: e.triggers for name, e in everything.items() if e.triggers},
    )


def attack_values(attacks: dict[str, Any]) -> dict[str, float]:
    """One accuracy per attack row (each typed result's ``values()``), in registry order."""
    out: dict[str, float] = {}
    for result in attacks.values():
        out.update(result.values())
    return out


def _curves(everything: dict[str, ModelEvaluation]) -> dict[str, dict[str, dict[str, list[float]]]]:
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for model, evaluation in everything.items():
        for name, result in evaluation.attacks.items():
            curve = getattr(result, "curve", None)
            if callable(curve):
                steps, accuracy = curve()
                out.setdefault(name, {})[model] = {"steps": list(steps), "accuracy": list(accuracy)}
    return out


def attack_rows(data: "ReportData") -> list[dict[str, Any]]:
    """Per attack row and model: the accuracy it recovers on the forget facts and the recovery,
    that accuracy as a fraction of the original model's under the same attack."""
    values = data.attack_values
    original = values.get("original", {})
    rows = []
    for attack in original:
        row: dict[str, Any] = {"attack": attack}
        for model, vals in values.items():
            value = vals.get(attack)
            row[model] = value
            base = original[attack]
            row[f"{model} recovery"] = value / base if value is not None and base else None
        rows.append(row)
    return rows


def _row(name: str, evaluation: ModelEvaluation, candidate: dict[str, Any] | None, verdict: dict[str, Any] | None,
         seconds: float | None, retraining: float | None) -> dict[str, Any]:
    sets = evaluation.sets

    def em(set_name: str, key: str = "exact_match") -> float | None:
        return _num(sets[set_name][key]) if set_name in sets else None

    row: dict[str, Any] = {
        "model": name,
        "forget_em": em("forget"),
        "forget_em_paraphrase": em("forget", "exact_match_paraphrase"),
        "retain_em": em("retain"),
        "neighbours_em": em("neighbours"),
        "general_em": em("general"),
        "forget_truth_ratio": em("forget", "truth_ratio_forget_stat"),
        "forget_quality": None,
        "mia_auc": None,
        "mia_auc_gap": None,
        "privleak": None,
        "model_utility": _num(evaluation.utility),
        "plausibility": em("forget", "plausibility"),
        "fluency": em("retain", "fluency"),
        "seconds": None if seconds is None else round(seconds, 2),
        "fraction_of_retraining": (round(seconds / retraining, 4) if seconds is not None and retraining else None),
        "forgotten": None,
        "collateral_damage": None,
        "confidence": None,
    }
    if evaluation.mia_scores.get("forget") and evaluation.mia_scores.get("holdout"):
        from expunge.verify.metrics import roc_auc

        row["mia_auc"] = _num(roc_auc(evaluation.mia_scores["forget"]["loss"], evaluation.mia_scores["holdout"]["loss"]))
    if candidate is not None:
        mia = candidate["membership_inference"]
        if mia.get("forget_quality"):
            row["forget_quality"] = _num(mia["forget_quality"]["pvalue"])
        if mia.get("scores"):
            row["mia_auc_gap"] = _num(max(abs(v["auc"] - v["reference_auc"]) for v in mia["scores"].values()))
            row["privleak"] = _num(mia["scores"]["loss"]["privleak"])
    if verdict is not None:
        row.update(forgotten=verdict["forgotten"], collateral_damage=verdict["collateral_damage"],
                   confidence=verdict["confidence"])
    return row


def _num(value: float) -> float | None:
    """JSON has no nan: missing numbers are null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
