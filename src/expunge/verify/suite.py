"""Verification from disk: load the models, then plan -> evaluate -> judge.

Verification answers three questions — is it gone, did anything else break, and how sure are we —
in three readable parts:

1. :mod:`expunge.verify.plan` — which people, probes and documents each set holds (from the
   request's :class:`expunge.locate.Located` sets);
2. :mod:`expunge.verify.evaluate` — every measurement of one model, attacks included;
3. :mod:`expunge.verify.judge` — the candidate against the original and the retrained oracle, one
   check per entry of the verdict policy, rolled up into a :class:`Verdict`. Without an oracle
   (``oracle_dir=None``: knowledge from pretraining) the references are never-seen data, chance
   level and the original, and the verdict says so.

:func:`verify_models` loads the models and runs the three; this module holds only that loading
and the :class:`Verification` record. Every definition is the one in the project's DESIGN notes;
:mod:`expunge.verify.metrics`, :mod:`expunge.verify.mia` and :mod:`expunge.verify.attacks`
implement them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.integrity import check_model_dir
from expunge.ledger.requests import load_request
from expunge.locate import Located, locate
from expunge.models.io import check_tokenizer_covers, load_model, load_tokenizer, read_model_record
from expunge.prompts import format_of, world_as_seen
from expunge.records import ModelRef
from expunge.verify.config import VerifyConfig
from expunge.verify.evaluate import ModelEvaluation, evaluate_model, run_attacks
from expunge.verify.judge import Check, CheckStatus, Reference, Verdict, check_oracle, check_reference, judge
from expunge.verify.metrics import roc_curve
from expunge.verify.plan import VerificationPlan, plan_verification
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
    "run_attacks",
    "judge",
    "verify",
    "verify_models",
]


@dataclass
class Verification:
    """The verification of one or more candidate models against the original and the oracle
    (``oracle`` None: verified without one; ``oracle_checks`` then hold the reference's check)."""

    plan_sizes: dict[str, dict[str, int]]
    request_id: str
    world_fingerprint: str
    config: dict[str, Any]
    original: ModelEvaluation
    oracle: ModelEvaluation | None
    candidates: dict[str, ModelEvaluation]
    checks: dict[str, list[Check]]
    verdicts: dict[str, Verdict]
    mia: dict[str, dict[str, Any]]
    roc: dict[str, dict[str, list[float]]]
    oracle_checks: list[Check] = field(default_factory=list)

    @property
    def reference(self) -> Reference:
        return Reference.ORACLE if self.oracle is not None else Reference.NO_ORACLE

    @property
    def oracle_trusted(self) -> bool:
        """Whether the oracle passed its own checks (:func:`expunge.verify.judge.check_oracle`)."""
        return all(ch.passed is not False for ch in self.oracle_checks)

    def failed_checks(self, name: str) -> list[str]:
        """The policy keys of the counted checks that candidate ``name`` failed, each once (one key
        can rule several checks: every indirect route is an ``indirect_probes`` check)."""
        return list(dict.fromkeys(ch.policy_key for ch in self.checks[name] if ch.status is CheckStatus.FAIL))

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "world_fingerprint": self.world_fingerprint,
            "sets": self.plan_sizes,
            "config": self.config,
            "reference": self.reference.value,
            "original": self.original.to_dict(),
            "oracle": self.oracle.to_dict() if self.oracle is not None else None,
            "oracle_trusted": self.oracle_trusted,
            "oracle_checks": [{**asdict(ch), "status": ch.status} for ch in self.oracle_checks],
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
    oracle_dir: str | os.PathLike[str] | None,
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    *,
    config: VerifyConfig | None = None,
    log: Callable[[str], None] = lambda message: None,
    located: Located | None = None,
) -> Verification:
    """Verify each candidate model (name -> directory) against the original and the oracle
    (``oracle_dir`` None: without one, see :class:`Reference`); ``log`` receives one line per
    model evaluated (with its seconds). ``located`` may pass the request's sets (checked against
    the world and request); by default they are located here."""
    config = config or VerifyConfig()
    clash = {"original", "oracle"} & set(candidates)
    if clash or not candidates:
        raise ExpungeError(f"candidate names must be given and may not be {sorted(clash) or 'empty'}",
                           "name the unlearned models after their method, e.g. {'simnpo': DIR}")
    # Every model directory is checked (files against their recorded sha256) before any is
    # evaluated: a corrupt candidate must not surface after minutes spent on the original.
    references = {"oracle": oracle_dir} if oracle_dir is not None else {}
    for what, path in {"original": original_dir, **references, **candidates}.items():
        record = check_model_dir(path, what=f"{what} model")
        if config.attacks and record.get("shards") is not None and record.get("combine") != "merge":
            raise ExpungeError(
                f"{what} model {path} is a sharded ensemble: model-level attacks fine-tune, quantise or read the "
                "weights of one model, and an ensemble is several",
                "verify it without --attacks (the sharded retrain is exact by construction), or train it with "
                "--combine merge")
    world = load_world(world_dir)
    request = load_request(request_path, world)
    located = locate(world, request) if located is None else located
    if not located.forget.subjects:
        raise ExpungeError("the request names no subject with probes to verify",
                           "verification needs a request for people of this world (`expunge request --subjects`)")
    # One prompt format for every model: the original's, as its recipe records it.
    fmt = format_of(read_model_record(original_dir).get("recipe", {}), world, None, f"original model {original_dir}")
    for name, path in {**references, **candidates}.items():
        theirs = read_model_record(path).get("recipe", {}).get("prompt_format")
        if theirs is not None and theirs != fmt.value:
            raise ExpungeError(f"{name} model {path} was trained with prompt format {theirs}, the original with "
                               f"{fmt.value}", "verify models made from the same original")
    loaded_original = load_model(original_dir)
    vocab = loaded_original[1].get_vocab()
    world = world_as_seen(world, fmt, loaded_original[1])
    plan = plan_verification(world, request, config, located)
    # Every tokenizer against the original's before anything is evaluated (tokenizers load in
    # milliseconds; a mismatch found after the original and the oracle were scored wastes minutes).
    for name, path in {**references, **candidates}.items():
        _check_tokenizer(load_tokenizer(path), vocab, world, name, str(path))

    # The attacks are judged only against an oracle (what a model that never saw the data recovers
    # the same way); without one they are not run, and the verdict lists them as not available.
    measure = config if oracle_dir is not None else replace(config, attacks=False)

    def evaluate(name: str, loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelRef]) -> ModelEvaluation:
        model, tokenizer, ref = loaded
        _check_tokenizer(tokenizer, vocab, world, name, ref.path)
        evaluation = evaluate_model(model, tokenizer, plan, measure, name=name, ref=ref)
        log(f"evaluated {name} in {evaluation.seconds:.1f} s")
        return evaluation

    if oracle_dir is not None:
        loaded_oracle = load_model(oracle_dir)
        _check_oracle(loaded_oracle[2], world, located, oracle_dir)
    evaluations = {"original": evaluate("original", loaded_original)}
    if oracle_dir is not None:
        evaluations["oracle"] = evaluate("oracle", loaded_oracle)
        oracle_checks = check_oracle(evaluations["original"], evaluations["oracle"], plan, config)
    else:
        log("no oracle: verifying against never-seen data, chance level and the original (the verdict says what "
            "that cannot show)")
        oracle_checks = check_reference(evaluations["original"], plan, config)
    for ch in oracle_checks:
        if ch.passed is False:
            what = "the oracle fails a check of its own" if oracle_dir is not None else "the reference check fails"
            log(f"{what}: {ch.name} = {ch.value:.3f} (rule {ch.rule}, reference "
                f"{ch.reference:.3f}); no verdict can say 'forgotten'")
    results: dict[str, ModelEvaluation] = {}
    checks: dict[str, list[Check]] = {}
    verdicts: dict[str, Verdict] = {}
    mia: dict[str, dict[str, Any]] = {}
    for name, path in candidates.items():
        results[name] = evaluate(name, load_model(path))
        checks[name], verdicts[name], mia[name] = judge(results[name], evaluations["original"],
                                                         evaluations.get("oracle"), plan, config, oracle_checks)
    # TOFU's forget quality: each model's forget truth ratios against the retain model's (the oracle).
    oracle_tofu = evaluations["oracle"].tofu if "oracle" in evaluations else None
    if oracle_tofu is not None:
        for evaluation in (*evaluations.values(), *results.values()):
            if evaluation.tofu is not None:
                evaluation.tofu = evaluation.tofu.with_forget_quality(oracle_tofu)
    roc = {name: _roc_points(e) for name, e in {**evaluations, **results}.items()}
    return Verification(plan.sizes(), request.id, world.fingerprint, config.to_dict(), evaluations["original"],
                        evaluations.get("oracle"), results, checks, verdicts, mia, roc, oracle_checks)


def verify(
    model_dir: str | os.PathLike[str],
    original_dir: str | os.PathLike[str],
    oracle_dir: str | os.PathLike[str] | None,
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


def _check_oracle(ref: ModelRef, world: World, located: Located, path: Any) -> None:
    """The oracle must be a model retrained on this world without exactly this request's documents
    (an `expunge retrain` oracle, or a sharded model trained or retrained without them)."""
    recipe = ref.recipe or {}
    if recipe.get("kind") not in ("oracle", "sharded"):
        raise ExpungeError(f"{path} is not a retrained oracle (its recipe kind is {recipe.get('kind')!r})",
                           "pass the model written by `expunge retrain` for this request as --oracle")
    if recipe.get("world_fingerprint") != world.fingerprint:
        raise ExpungeError(f"the oracle {path} was trained on a different world",
                           "retrain the oracle on this world: `expunge retrain --world … --request …`")
    if recipe.get("excluded_sha256") != located.forget.digest:
        raise ExpungeError(f"the oracle {path} was retrained without different documents than this request removes",
                           "retrain the oracle for this request: `expunge retrain --request FILE`")


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, vocab: dict[str, int], world: World, name: str,
                     path: str) -> None:
    if tokenizer.get_vocab() != vocab:
        raise ExpungeError(f"the tokenizer of {name} ({path}) differs from the original model's",
                           "verify models that share the original's tokenizer (unlearning keeps it)")
    check_tokenizer_covers(tokenizer, (f"{p.prompt} {p.answer}" for p in world.probes[:200]), f"{name} ({path})")
