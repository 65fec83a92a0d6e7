"""TOFU's metrics exactly as open-unlearning computes them (Maini et al. 2024,
https://arxiv.org/abs/2401.06121; locuslab/open-unlearning, ``src/evals/metrics/memorization.py``,
``utils.py``, ``utility.py`` and ``configs/eval/tofu_metrics/*.yaml``), on a world made by
``expunge import tofu``. They sit beside expunge's own battery (:mod:`expunge.verify.evaluate`),
which keeps its own definitions; these are the numbers a TOFU table is made of.

Per item, everything starts from the **average loss** of an answer given its question: the mean
NLL of the answer's tokens *and the end-of-sequence token*, the prompt's tokens unscored, encoded
as training encodes a question-answer document (prompt ids, answer ids, EOS). From it:

- **Prob** = mean over items of exp(-avg loss) of the answer (``probability``; forget and retain);
  for real authors and world facts, **normalised** over the options (``probability_w_options``):
  p(answer) / (p(answer) + sum of p(wrong) + 1e-10), each p = exp(-avg loss).
- **ROUGE** = mean rougeL recall of the greedy generation (up to ``max_new_tokens``, cut at EOS,
  stripped) against the answer, with rouge_score's tokenizer and Porter stemming (``rouge``).
- **Truth ratio** per item: exp(-mean avg loss of the perturbed answers) / (exp(-avg loss of the
  correct one) + 1e-10), where the correct one is the paraphrased answer for forget and retain
  items and the answer for real authors and world facts. Aggregated as ``closer_to_1_better``,
  mean(min(tr, 1/(tr + 1e-10))), for the forget set and ``true_better``, mean(max(0, 1 - tr)),
  for the others.
- **Model utility** = the harmonic mean (scipy) of the nine retain / real-author / world-fact
  numbers (:data:`UTILITY_PARTS`).
- **Forget quality** = the p-value of scipy's two-sample KS test of 1 / (tr + 1e-10), the forget
  items' truth ratios, of the model against those of the retain model (``get_forget_quality``).

The item sets (``configs/eval/tofu_metrics``): the forget split's items (``forgetNN_perturbed``);
retain = ``retain_perturbed``, the first 20 authors of ``full.json``; real authors and world facts
from their ``_perturbed`` files. In a world imported with ``--authors N`` the sets are what the
world kept of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import stats

from expunge.data import encode_documents, padding_id
from expunge.records import Probe
from expunge.scoring import suffix_logprobs
from expunge.verify.probes import greedy_answers
from expunge.worlds.importers.tofu import GENERAL_FILES, GENERATOR_NAME, RETAIN_PERTURBED_AUTHORS

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from expunge.worlds.world import World

__all__ = ["UTILITY_PARTS", "TofuSets", "TofuEvaluation", "is_tofu", "tofu_sets", "evaluate_tofu",
           "answer_avg_losses", "normalised_probability", "truth_ratio", "closer_to_1_better", "true_better",
           "rouge_l_recall_stemmed", "tofu_forget_quality", "model_utility"]

# open-unlearning's configs/eval/tofu_metrics/model_utility.yaml: what model utility is the
# harmonic mean of.
UTILITY_PARTS: tuple[str, ...] = (
    "retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio",
)
_EPS = 1e-10  # open-unlearning's guard against 0 in every ratio


def is_tofu(world: World) -> bool:
    """Whether ``world`` was written by ``expunge import tofu``."""
    return world.manifest.get("generator") == GENERATOR_NAME


@dataclass(frozen=True)
class TofuSets:
    """The items of each TOFU evaluation set (direct probes, prompts rendered in the model's
    format; each forget and retain probe holds its paraphrased and five perturbed answers)."""

    forget: list[Probe]
    retain: list[Probe]
    real_authors: list[Probe]
    world_facts: list[Probe]

    def sizes(self) -> dict[str, int]:
        return {"forget": len(self.forget), "retain": len(self.retain), "real_authors": len(self.real_authors),
                "world_facts": len(self.world_facts)}


def tofu_sets(world: World, forget_subjects: Sequence[str]) -> TofuSets:
    """The TOFU sets of an imported TOFU ``world`` (as the model sees it: ``world_as_seen``) for a
    request that forgets ``forget_subjects``."""
    forget = set(forget_subjects)
    retain_ids = {f"tofu-author-{a:03d}" for a in range(RETAIN_PERTURBED_AUTHORS)} - forget
    direct = [p for p in world.probes if p.kind == "direct"]
    ra, wf = GENERAL_FILES["real_authors"], GENERAL_FILES["world_facts"]
    return TofuSets(forget=[p for p in direct if p.subject in forget and p.alternatives and p.paraphrased_answer],
                    retain=[p for p in direct if p.subject in retain_ids and p.alternatives and p.paraphrased_answer],
                    real_authors=[p for p in direct if p.subject == ra and p.alternatives],
                    world_facts=[p for p in direct if p.subject == wf and p.alternatives])


@torch.no_grad()
def answer_avg_losses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                      answers: Sequence[str], *, batch_size: int = 32, max_length: int = 512) -> list[float]:
    """Per pair, the mean NLL of the answer's tokens and EOS after the prompt, encoded as a
    question-answer document trains (open-unlearning's ``avg_loss``)."""
    if len(prompts) != len(answers):
        raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
    if not prompts:
        return []
    sequences = encode_documents(tokenizer, list(zip(prompts, answers)), max_length)
    starts = [s.loss_start for s in sequences]
    scored = suffix_logprobs(model, sequences, starts, padding_id(tokenizer), batch_size)
    return [float(-lp.double().mean()) for lp in scored]


def normalised_probability(correct_loss: float, wrong_losses: Sequence[float]) -> float:
    """p / (p + sum of the wrong p's + 1e-10), every p = exp(-avg loss) (``probability_w_options``)."""
    correct = math.exp(-correct_loss)
    return correct / (correct + sum(math.exp(-w) for w in wrong_losses) + _EPS)


def truth_ratio(correct_loss: float, wrong_losses: Sequence[float]) -> float:
    """exp(-mean of the wrong avg losses) / (exp(-correct avg loss) + 1e-10) (``truth_ratio``)."""
    if not wrong_losses:
        raise ValueError("a truth ratio needs at least one wrong answer")
    return math.exp(-float(np.mean(wrong_losses))) / (math.exp(-correct_loss) + _EPS)


def closer_to_1_better(ratios: Sequence[float]) -> float:
    """mean(min(tr, 1 / (tr + 1e-10))): the forget set's truth-ratio score (1: cannot tell)."""
    r = np.asarray(ratios, dtype=float)
    return float(np.mean(np.minimum(r, 1.0 / (r + _EPS)))) if len(r) else math.nan


def true_better(ratios: Sequence[float]) -> float:
    """mean(max(0, 1 - tr)): the retained sets' truth-ratio score (1: always prefers the truth)."""
    r = np.asarray(ratios, dtype=float)
    return float(np.mean(np.maximum(0.0, 1.0 - r))) if len(r) else math.nan


_SCORER: Any = None


def rouge_l_recall_stemmed(prediction: str, reference: str) -> float:
    """rougeL recall of ``prediction`` against ``reference`` with rouge_score's tokenizer and
    Porter stemming, as open-unlearning scores TOFU (``rouge_scorer.RougeScorer(..., use_stemmer=True)``)."""
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(_SCORER.score(reference, prediction)["rougeL"].recall)


def tofu_forget_quality(model_ratios: Sequence[float], retain_model_ratios: Sequence[float]) -> float:
    """KS p-value of 1 / (tr + 1e-10) of the model's forget truth ratios against the retain
    model's (``get_forget_quality``; nan when either is empty)."""
    if not len(model_ratios) or not len(retain_model_ratios):
        return math.nan
    a = 1.0 / (np.asarray(model_ratios, dtype=float) + _EPS)
    b = 1.0 / (np.asarray(retain_model_ratios, dtype=float) + _EPS)
    return float(stats.ks_2samp(a, b).pvalue)


def model_utility(values: dict[str, float]) -> float:
    """scipy's harmonic mean of the nine :data:`UTILITY_PARTS` (nan when one is missing; 0 when
    one is 0)."""
    parts = [values.get(name, math.nan) for name in UTILITY_PARTS]
    if any(not math.isfinite(v) for v in parts):
        return math.nan
    if min(parts) <= 0:
        return 0.0
    return float(stats.hmean(parts))


@dataclass
class TofuEvaluation:
    """TOFU's numbers for one model: ``values`` by open-unlearning's metric names, the forget
    items' truth ratios (forget quality compares them between models), the set sizes and the
    generations ROUGE scored."""

    values: dict[str, float]
    forget_truth_ratios: list[float]
    sizes: dict[str, int]
    generations: dict[str, list[str]] = field(default_factory=dict)

    def with_forget_quality(self, retain_model: TofuEvaluation) -> TofuEvaluation:
        """This evaluation with ``forget_quality`` against the retain model's."""
        values = {**self.values, "forget_quality": tofu_forget_quality(self.forget_truth_ratios,
                                                                       retain_model.forget_truth_ratios)}
        return TofuEvaluation(values, self.forget_truth_ratios, self.sizes, self.generations)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "sizes": self.sizes}


def evaluate_tofu(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sets: TofuSets, *,
                  max_new_tokens: int = 200, batch_size: int = 32) -> TofuEvaluation:
    """Every TOFU metric of ``model`` on ``sets`` (module doc); forget quality needs the retain
    model's evaluation (:meth:`TofuEvaluation.with_forget_quality`)."""
    values: dict[str, float] = {}
    generations: dict[str, list[str]] = {}
    forget_ratios: list[float] = []
    for prefix, probes, normalised in (("forget", sets.forget, False), ("retain", sets.retain, False),
                                       ("ra", sets.real_authors, True), ("wf", sets.world_facts, True)):
        if not probes:
            continue
        # One flat batch of every (question, candidate) pair: the answer, the correct one for the
        # truth ratio (paraphrased for forget and retain), then the perturbed answers.
        prompts: list[str] = []
        answers: list[str] = []
        for p in probes:
            for candidate in (p.answer, p.paraphrased_answer or p.answer, *p.alternatives):
                prompts.append(p.prompt)
                answers.append(candidate)
        losses = answer_avg_losses(model, tokenizer, prompts, answers, batch_size=batch_size)
        own, ratios, at = [], [], 0
        for p in probes:
            answer_loss, correct_loss = losses[at], losses[at + 1]
            wrong = losses[at + 2: at + 2 + len(p.alternatives)]
            at += 2 + len(p.alternatives)
            own.append(normalised_probability(answer_loss, wrong) if normalised else math.exp(-answer_loss))
            ratios.append(truth_ratio(correct_loss, wrong))
        generated = greedy_answers(model, tokenizer, [p.prompt for p in probes], max_new_tokens=max_new_tokens,
                                   batch_size=batch_size, first_line=False)
        values[f"{prefix}_Q_A_Prob{'_normalised' if normalised else ''}"] = float(np.mean(own))
        values[f"{prefix}_Q_A_ROUGE"] = float(np.mean([rouge_l_recall_stemmed(g, p.answer)
                                                       for g, p in zip(generated, probes)]))
        if prefix == "forget":
            values["forget_truth_ratio"] = closer_to_1_better(ratios)
            forget_ratios = ratios
        else:
            values[f"{prefix}_Truth_Ratio"] = true_better(ratios)
        generations[prefix] = generated
    values["model_utility"] = model_utility(values)
    return TofuEvaluation(values, forget_ratios, sets.sizes(), generations)
