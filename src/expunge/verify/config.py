"""VerifyConfig: what a verification runs and what it may cost (thresholds live in the policy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from expunge.verify.attacks.kernels import AttackConfig
from expunge.verify.policy import VerdictPolicy, default_policy

__all__ = ["VerifyConfig"]


@dataclass(frozen=True)
class VerifyConfig:
    """What a verification runs and what it may cost; thresholds live in the ``policy``.

    Attributes:
        policy: the verdict policy (checks, thresholds, evidence floors); see ``policy.toml``.
        attacks: also run the model-level attacks (every registered attack:
            :mod:`expunge.verify.attacks`) on every model.
        attack: the attacks' settings.
        max_subjects_per_set: cap on the people scored per set (a seeded sample), to bound cost.
        max_facts_per_set: cap on the facts (subject, attribute) scored per set after that, all
            of a chosen fact's questions kept (a seeded sample; None: every fact). It bounds
            sets with many facts per subject, such as TOFU's 217 general facts in two entities.
        bootstrap_samples: resamples for the confidence intervals (grouped by subject).
        fluency_tokens: tokens generated per fluency prompt (a subject's name).
        batch_size: batch size of every forward pass.
        seed: seeds the subject samples and the bootstrap.
        tofu_metrics: on a world made by ``expunge import tofu``, also compute TOFU's metrics as
            open-unlearning defines them (:mod:`expunge.verify.tofu`), beside expunge's own; with
            ``max_facts_per_set`` each TOFU set keeps its first that many items.
        tofu_max_new_tokens: the greedy generation budget of TOFU's ROUGE (200, as TOFU's paper).
        verbatim_max_new_tokens: tokens of a text continued for verbatim memorisation (MUSE's 128);
            the true continuation is cut to as many tokens before ROUGE-L compares the two.
    """

    policy: VerdictPolicy = field(default_factory=default_policy)
    attacks: bool = False
    attack: AttackConfig = field(default_factory=AttackConfig)
    max_subjects_per_set: int = 30
    max_facts_per_set: int | None = None
    bootstrap_samples: int = 1000
    fluency_tokens: int = 24
    batch_size: int = 128
    seed: int = 0
    tofu_metrics: bool = True
    tofu_max_new_tokens: int = 200
    verbatim_max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if self.max_subjects_per_set < 1:
            raise ValueError("max_subjects_per_set must be at least 1")
        if self.max_facts_per_set is not None and self.max_facts_per_set < 1:
            raise ValueError("max_facts_per_set must be at least 1 (or None: every fact)")
        if self.bootstrap_samples < 100:
            raise ValueError("bootstrap_samples must be at least 100 for a usable 95% interval")
        if min(self.batch_size, self.fluency_tokens, self.tofu_max_new_tokens, self.verbatim_max_new_tokens) < 1:
            raise ValueError("batch_size, fluency_tokens, tofu_max_new_tokens and verbatim_max_new_tokens must be "
                             "at least 1")

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.to_dict(), "attacks": self.attacks, "attack": asdict(self.attack),
                "max_subjects_per_set": self.max_subjects_per_set, "max_facts_per_set": self.max_facts_per_set,
                "bootstrap_samples": self.bootstrap_samples,
                "fluency_tokens": self.fluency_tokens, "batch_size": self.batch_size, "seed": self.seed,
                "tofu_metrics": self.tofu_metrics, "tofu_max_new_tokens": self.tofu_max_new_tokens,
                "verbatim_max_new_tokens": self.verbatim_max_new_tokens}
