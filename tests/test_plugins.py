"""Attacks and checks are plug-ins: a toy attack registered in a test reaches the verdict and the
report with no change to the shared code, and the check table matches the policy one-to-one."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from expunge.report import report_from_verification, to_markdown
from expunge.verify.attacks import AttackConfig, Comparison, attack_names, probe_accuracy, registered_attack
from expunge.verify.judge import CheckStatus, check_specs
from expunge.verify.policy import DEFAULT_POLICY_PATH, default_policy, override_policy
from expunge.verify.suite import VerifyConfig, verify_models


@dataclass
class NoiseResult:
    accuracy: float
    probes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "probes": self.probes, "seconds": self.seconds}

    def values(self) -> dict[str, float]:
        return {"toy weight noise": self.accuracy}


class WeightNoise:
    """Toy attack: add small seeded Gaussian noise to every weight of a copy, re-probe the forget
    facts (a suppression that sits on a knife edge can fall off it)."""

    name = "toy_weight_noise"
    summary = "seeded Gaussian noise on every weight, then re-probe"
    default_margin = 0.15

    def run(self, model, tokenizer, plan, config) -> NoiseResult | None:
        forget = plan.probes["forget"]
        if not forget:
            return None
        started = time.perf_counter()
        noisy = copy.deepcopy(model)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in noisy.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.01 * p.std().nan_to_num(0.0))
        hits = probe_accuracy(noisy, tokenizer, forget, config.batch_size)
        return NoiseResult(sum(hits) / len(hits), len(forget), time.perf_counter() - started)

    def comparisons(self, candidate: NoiseResult, oracle: NoiseResult, original: NoiseResult) -> list[Comparison]:
        return [Comparison("toy weight noise", candidate.accuracy, oracle.accuracy, original.accuracy,
                           candidate.probes, f"{candidate.probes} forget probes")]


FAST = VerifyConfig(policy=override_policy(default_policy(), evidence={"min_subjects": 2}), bootstrap_samples=200,
                    attacks=True, attack=AttackConfig(relearn_steps=(0, 5)))


def test_a_toy_attack_reaches_the_verdict_and_the_report(tiny_world_dir, tiny_request_path, tiny_base,
                                                          tiny_oracle) -> None:
    with registered_attack(WeightNoise()):
        assert attack_names()[-1] == "toy_weight_noise"
        result = verify_models({"unchanged": tiny_base.model.path}, tiny_base.model.path, tiny_oracle.model.path,
                               tiny_world_dir, tiny_request_path, config=FAST)
        report = to_markdown(report_from_verification(result))
    assert "toy_weight_noise" not in attack_names()
    verdict = result.verdicts["unchanged"]
    assert "attack: toy_weight_noise" in verdict.attacks_tried
    toy = [c for c in result.checks["unchanged"] if c.policy_key == "toy_weight_noise"]
    assert len(toy) == 1
    # The unchanged model still knows the facts under the toy attack and the oracle does not: a
    # counted check (the original beats the oracle by the policy's gap), and a failed one.
    assert toy[0].decisive and toy[0].status is CheckStatus.FAIL, toy[0]
    assert f"failed: toy weight noise = {toy[0].value:.3f}" in " ".join(verdict.reasons)
    assert "| toy weight noise |" in report
    # The built-in attacks ran beside it.
    assert {"attack: relearning", "attack: linear_probe"} <= set(verdict.attacks_tried)


def test_every_policy_key_has_exactly_one_check_and_back() -> None:
    keys = [spec.key for spec in check_specs()]
    assert len(keys) == len(set(keys)), keys
    assert set(keys) == set(default_policy().checks), set(keys) ^ set(default_policy().checks)
    # And the built-in policy file names each of them once, as a table.
    text = DEFAULT_POLICY_PATH.read_text()
    for key in keys:
        assert text.count(f"[checks.{key}]") == 1, key


def test_registering_an_attack_twice_is_refused() -> None:
    with registered_attack(WeightNoise()):
        with pytest.raises(ValueError, match="already registered"):
            with registered_attack(WeightNoise()):
                pass
    assert "toy_weight_noise" not in attack_names()
