"""The four built-in attacks as plug-ins: relearning, quantization, logit lens, linear probe.

Each wraps its algorithm from :mod:`expunge.verify.attacks.kernels` with a typed result and the
checks it contributes. JSON keys are those the evaluation has always written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.verify.attacks.kernels import (
    linear_probe_attack,
    logit_lens,
    quantization_attack,
    relearn_texts_from,
    relearning_attack,
    split_facts,
)
from expunge.verify.attacks.registry import Comparison, register_attack

__all__ = ["RelearningResult", "QuantizationResult", "LogitLensResult", "LinearProbeResult",
           "Relearning", "Quantization", "LogitLens", "LinearProbe"]


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)


# --- relearning ---------------------------------------------------------------------------------


@dataclass
class RelearningResult:
    steps: list[int]
    accuracy: list[float]
    relearned_facts: int
    heldout_probes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "accuracy": list(self.accuracy), "relearned_facts": self.relearned_facts,
                "heldout_probes": self.heldout_probes, "seconds": self.seconds}

    def values(self) -> dict[str, float]:
        return {f"relearning ({self.steps[-1]} steps)": self.accuracy[-1]}

    def curve(self) -> tuple[list[int], list[float]]:
        return list(self.steps), list(self.accuracy)


class Relearning:
    name = "relearning"
    summary = "fine-tune a copy on half of the forgotten facts, probe the other half"
    default_margin = 0.15

    def run(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, plan: Any, config: Any
            ) -> RelearningResult | None:
        forget = plan.probes["forget"]
        if not forget:
            return None
        started = time.perf_counter()
        relearn, heldout = split_facts(forget, config.attack.seed)
        curve = relearning_attack(model, tokenizer, relearn_texts_from(relearn), heldout, config.attack)
        return RelearningResult(list(curve.steps), list(curve.accuracy),
                                len({(p.subject, p.attribute) for p in relearn}), len(heldout), _since(started))

    def comparisons(self, candidate: RelearningResult, oracle: RelearningResult,
                    original: RelearningResult) -> list[Comparison]:
        # The step where the candidate is furthest above the oracle decides; the route counts
        # when the original beats the oracle somewhere on the curve.
        cand, ref, base = candidate.accuracy, oracle.accuracy, original.accuracy
        worst = max(range(len(candidate.steps)), key=lambda i: cand[i] - ref[i])
        curve = ", ".join(f"{s}: {x:.2f}/{y:.2f}" for s, x, y in zip(candidate.steps, cand, ref))
        return [Comparison(f"relearning (held-out half after {candidate.steps[worst]} steps)", cand[worst],
                           ref[worst], base[worst], candidate.heldout_probes,
                           f"step: candidate/oracle {curve}; {candidate.relearned_facts} facts relearned",
                           original_gap=max(b - r for b, r in zip(base, ref)))]


# --- quantization -------------------------------------------------------------------------------


@dataclass
class QuantizationResult:
    accuracy: dict[str, float]  # bits (as text, the JSON key) -> forget accuracy after the round trip
    probes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": dict(self.accuracy), "probes": self.probes, "seconds": self.seconds}

    def values(self) -> dict[str, float]:
        return {f"quantization {bits}-bit": value for bits, value in self.accuracy.items()}


class Quantization:
    name = "quantization"
    summary = "round every weight matrix to 8 and 4 bits and back, re-probe"
    default_margin = 0.10

    def run(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, plan: Any, config: Any
            ) -> QuantizationResult | None:
        forget = plan.probes["forget"]
        if not forget:
            return None
        started = time.perf_counter()
        quant = quantization_attack(model, tokenizer, forget, config.attack)
        return QuantizationResult({str(bits): acc for bits, acc in quant.items()}, len(forget), _since(started))

    def comparisons(self, candidate: QuantizationResult, oracle: QuantizationResult,
                    original: QuantizationResult) -> list[Comparison]:
        return [Comparison(f"quantization {bits}-bit round trip", value, oracle.accuracy[bits],
                           original.accuracy[bits], candidate.probes, f"{candidate.probes} forget probes")
                for bits, value in candidate.accuracy.items()]


# --- logit lens ---------------------------------------------------------------------------------


@dataclass
class LogitLensResult:
    per_layer: list[float]
    best_layer: int
    accuracy: float
    probes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"per_layer": list(self.per_layer), "best_layer": self.best_layer, "accuracy": self.accuracy,
                "probes": self.probes, "seconds": self.seconds}

    def values(self) -> dict[str, float]:
        return {"logit lens (best layer)": self.accuracy}


class LogitLens:
    name = "logit_lens"
    summary = "decode every layer through the final norm and unembedding; best layer's answer accuracy"
    default_margin = 0.15

    def run(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, plan: Any, config: Any
            ) -> LogitLensResult | None:
        forget = plan.probes["forget"]
        if not forget:
            return None
        started = time.perf_counter()
        lens = logit_lens(model, tokenizer, forget, config.batch_size)
        return LogitLensResult(list(lens.per_layer), lens.best_layer, lens.best_accuracy, len(forget), _since(started))

    def comparisons(self, candidate: LogitLensResult, oracle: LogitLensResult,
                    original: LogitLensResult) -> list[Comparison]:
        return [Comparison(f"logit lens (best layer {candidate.best_layer})", candidate.accuracy, oracle.accuracy,
                           original.accuracy, candidate.probes, "teacher-forced answer tokens all top-1")]


# --- linear probe -------------------------------------------------------------------------------


@dataclass
class LinearProbeResult:
    accuracy: float
    chance: float
    layer: int
    per_layer_cv: list[float] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "chance": self.chance, "layer": self.layer,
                "per_layer_cv": list(self.per_layer_cv), "n_train": self.n_train, "n_test": self.n_test,
                "seconds": self.seconds}

    def values(self) -> dict[str, float]:
        return {"linear probe": self.accuracy}


class LinearProbe:
    name = "linear_probe"
    summary = "logistic probe on hidden states, trained on retained people, applied to the forgotten"
    default_margin = 0.15

    def run(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, plan: Any, config: Any
            ) -> LinearProbeResult | None:
        if not plan.probes["forget"] or not plan.fact_probes["retain"]:
            return None
        started = time.perf_counter()
        probe = linear_probe_attack(model, tokenizer, plan.fact_probes["retain"], plan.fact_probes["forget"],
                                    config.attack)
        return LinearProbeResult(probe.accuracy, probe.chance, probe.layer, list(probe.per_layer_cv),
                                 probe.n_train, probe.n_test, _since(started))

    def comparisons(self, candidate: LinearProbeResult, oracle: LinearProbeResult,
                    original: LinearProbeResult) -> list[Comparison]:
        return [Comparison(f"linear probe on hidden states (layer {candidate.layer})", candidate.accuracy,
                           oracle.accuracy, original.accuracy, candidate.n_test,
                           f"chance {candidate.chance:.3f}; trained on {candidate.n_train} retained facts, "
                           f"tested on {candidate.n_test}")]


for _attack in (Relearning(), Quantization(), LogitLens(), LinearProbe()):
    register_attack(_attack)
