"""Library functions behind `expunge train` and `expunge retrain`.

Both train a fresh model on a world's training corpus with the one training loop; the oracle
(``retrain_oracle``) simply leaves out the documents a deletion request names. Same preset, same
seed, same initial weights, same rule for how long to train (passes over the data, and for the
default preset "stop once the held-out questions about the trained people are known"): the only
difference is the data, which is what makes the oracle the gold standard every unlearning method is
compared with. Each report says whether the model converged (met the rule's target).

With ``from_model`` (`expunge train --from DIR`), the base model is a pretrained causal LM
fine-tuned on the world's documents (all weights, or LoRA adapters merged at the end) with its own
tokenizer; the oracle (`expunge retrain --base`) repeats that recipe from the same starting weights
(checked by sha256) without the request's documents: for TOFU, the "retain model". Question-answer
documents train on their answer tokens, in the prompt format the recipe records.

Interrupted runs resume: checkpoints live beside the output, in ``.<out>.checkpoints/``, tagged
with a hash of the recipe, and running the same command again continues from the last one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.data import SequenceDataset, encode_documents, padding_id
from expunge.errors import ExpungeError
from expunge.fsutil import ensure_new_output
from expunge.ledger.recording import Provenance
from expunge.ledger.requests import documents_digest, load_request
from expunge.ledger.store import RunKind
from expunge.locate import Located, locate, locate_subjects
from expunge.models.builders import build_llama
from expunge.models.io import load_model, save_model_version, weights_sha256
from expunge.models.lora import merge_lora, wrap_lora
from expunge.models.tokenizer import build_word_tokenizer
from expunge.presets import Preset, get_preset
from expunge.prompts import choose_format, example_for, world_as_seen
from expunge.recipe import SMOLLM2, PromptFormat, Start, TrainingLength
from expunge.records import ModelRef, Probe, read_jsonl
from expunge.methods.refusals import REFUSALS
from expunge.training import EvalResult, StopKind, TrainResult, train_loop
from expunge.verify.probes import answer_probes
from expunge.worlds import World, chance_exact_match, load_world


@dataclass
class TrainingReport:
    """The outcome of `train` or `retrain`: the model version, the run, and what the model knows."""

    kind: str
    model: ModelRef | None
    run: TrainResult
    knowledge: dict[str, dict[str, float]]
    request_id: str | None = None
    removed_documents: int = 0
    notes: list[str] = field(default_factory=list)
    convergence: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool | None:
        """Whether the model met its recipe's "known" target (None: not measured)."""
        return self.convergence.get("converged")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": None if self.model is None else {"path": self.model.path, "sha256": self.model.sha256},
            "request_id": self.request_id,
            "removed_documents": self.removed_documents,
            "completed": self.model is not None,
            "seconds": round(self.run.seconds, 2),
            "steps": self.run.steps,
            "tokens_per_second": round(self.run.tokens_per_second, 1),
            "final_loss": self.run.final_loss,
            "resumed_from_step": self.run.resumed_from_step,
            "converged": self.converged,
            "convergence": self.convergence,
            "knowledge": self.knowledge,
            "notes": self.notes,
        }


def world_tokenizer(world: World, fmt: PromptFormat = PromptFormat.TEXT) -> PreTrainedTokenizerBase:
    """The world's word-level tokenizer: every word of documents and probes (holdout included),
    as ``fmt`` renders their questions, and of the refusal answers the refusal baseline is
    fine-tuned to give."""
    world = world_as_seen(world, fmt)
    texts: list[str] = [d.text for d in world.documents] + list(REFUSALS)
    texts += [d.prompt for d in world.documents if d.prompt]
    probes = list(world.probes)
    if world.path is not None and (world.path / "edit_probes.jsonl").is_file():
        # Update requests name people the training text never mentions (the new CEOs).
        probes += read_jsonl(world.path / "edit_probes.jsonl", Probe)
    for probe in probes:
        texts += [probe.prompt, probe.answer, *probe.alternatives]
    return build_word_tokenizer(texts)


def train_base(
    world_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    preset: str | None = None,
    seed: int = 0,
    progress: bool = True,
    stop_at_step: int | None = None,
    from_model: str | os.PathLike[str] | None = None,
    lora_rank: int = 0,
    prompt_format: str | None = None,
) -> TrainingReport:
    """Train the base model on the whole training corpus of a world: a fresh model of the preset's
    size (default preset ``default``), or ``from_model`` fine-tuned (default preset ``finetune``;
    ``lora_rank`` > 0 trains adapters only)."""
    out = ensure_new_output(out)
    world = load_world(world_dir)
    start = Start(None if from_model is None else str(from_model), None, lora_rank, prompt_format)
    chosen = get_preset(preset or ("default" if from_model is None else "finetune"))
    start.check(chosen)
    return _train_on(world, set(), out, chosen, seed, "base", None, progress, stop_at_step, start=start)


def retrain_oracle(
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    preset: str | None = None,
    seed: int | None = None,
    base: str | os.PathLike[str] | None = None,
    progress: bool = True,
    stop_at_step: int | None = None,
    located: Located | None = None,
    from_model: str | os.PathLike[str] | None = None,
) -> TrainingReport:
    """Retrain without the request's documents: the gold standard of unlearning.

    With ``base``, the preset, seed and starting point (a fresh model, or the pretrained weights
    the base model was fine-tuned from, LoRA rank and prompt format) are read from that model's
    recipe, so the oracle is guaranteed to differ from the base model only in its data.
    ``from_model`` says where those pretrained weights are now, if they moved; their sha256 must
    still be the recorded one.
    """
    out = ensure_new_output(out)
    world = load_world(world_dir)
    request = load_request(request_path, world)
    if base is not None:
        _, _, base_ref = load_model(base)
        recipe = base_ref.recipe
        if recipe.get("world_fingerprint") != world.fingerprint:
            raise ExpungeError(f"base model {base} was not trained on this world", "pass the matching --world")
        if "preset" not in recipe or "seed" not in recipe:
            raise ExpungeError(f"base model {base} has no expunge training recipe", "pass --preset and --seed instead")
        base_preset, base_seed = recipe["preset"]["name"], recipe["seed"]
        if recipe["preset"] != get_preset(base_preset).to_dict():
            raise ExpungeError(
                f"the preset {base_preset!r} changed since base model {base} was trained",
                "retrain the base model with this version of expunge, so that base and oracle share a recipe",
            )
        if (preset not in (None, base_preset)) or (seed not in (None, base_seed)):
            raise ExpungeError(
                f"--preset/--seed differ from the base model's recipe ({base_preset}, seed {base_seed})",
                "drop --preset/--seed when --base is given",
            )
        preset, seed = base_preset, base_seed
        start = _start_of(recipe, base, from_model)
    else:
        start = Start(None if from_model is None else str(from_model))
    if located is None:
        located = locate(world, request)
    else:
        located.check_for(world, request)
    excluded = set(located.forget.documents)
    chosen = get_preset(preset or ("default" if start.model_dir is None else "finetune"))
    start.check(chosen)
    report = _train_on(world, excluded, out, chosen, 0 if seed is None else seed,
                       "oracle", request, progress, stop_at_step, located, start=start)
    report.request_id = request.id
    report.removed_documents = len(excluded)
    return report


def _start_of(recipe: dict[str, Any], base: Any, moved_to: str | os.PathLike[str] | None) -> Start:
    """The base model's starting point, from its recipe."""
    origin = recipe.get("from_model")
    if origin is None and moved_to is not None:
        raise ExpungeError(f"base model {base} was trained from scratch, not from a pretrained model",
                           "drop --from")
    return Start(None if origin is None else str(moved_to or origin["path"]),
                 None if origin is None else origin["sha256"], int(recipe.get("lora_rank", 0)),
                 recipe.get("prompt_format"))


def _load_start(start: Start) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """The pretrained model to fine-tune, its tokenizer and its weights' sha256 (checked against
    the recorded one when there is one)."""
    if start.model_dir == SMOLLM2:
        from expunge.models.pretrained import load_smollm2

        model, tokenizer = load_smollm2()
        sha = weights_sha256(model)
    else:
        model, tokenizer, ref = load_model(start.model_dir)
        sha = ref.sha256
    if start.sha256 is not None and sha != start.sha256:
        raise ExpungeError(
            f"pretrained model {start.model_dir} is not the one the base model started from (weights sha256 "
            f"{sha[:12]}…, recorded {start.sha256[:12]}…)",
            "pass the original starting model with --from, so that base and oracle share their start")
    return model, tokenizer, sha


def _train_on(
    world: World,
    excluded: set[str],
    out: Path,
    preset: Preset,
    seed: int,
    kind: str,
    request: Any,
    progress: bool,
    stop_at_step: int | None,
    located: Located | None = None,
    start: Start = Start(),
) -> TrainingReport:
    documents = [d for d in world.training_documents() if d.id not in excluded]
    if not documents:
        raise ExpungeError("no training documents are left after the request", "remove fewer subjects")
    if start.model_dir is None:
        fmt = choose_format(world, None, start.prompt_format)
        tokenizer = world_tokenizer(world, fmt)
        model, start_sha, parent = build_llama(preset.model, tokenizer, seed), None, None
    else:
        model, tokenizer, start_sha = _load_start(start)
        fmt = choose_format(world, tokenizer, start.prompt_format)
        model.train()
        parent = start_sha
    seen = world_as_seen(world, fmt, tokenizer)
    kept = {d.id for d in documents}
    examples = [example_for(d) for d in seen.training_documents() if d.id in kept]
    dataset = SequenceDataset(encode_documents(tokenizer, examples, preset.max_length))
    recipe = {
        "kind": kind,
        "world_fingerprint": world.fingerprint,
        "preset": preset.to_dict(),
        "seed": seed,
        "training_documents": len(documents),
        "excluded_documents": len(excluded),
        "excluded_sha256": documents_digest(excluded),
        "request_id": None if request is None else request.id,
        "located_sha256": None if located is None else located.digest,
        **start.to_recipe(start_sha, fmt),
    }
    # Under `accelerate launch` this runs once per process; only the main process writes files.
    accelerator = Accelerator()
    checkpoints = out.parent / f".{out.name}.checkpoints"
    if accelerator.is_main_process:
        _claim_checkpoint_dir(checkpoints, recipe)
    accelerator.wait_for_everyone()
    # How long: from the data. A pass is every document once, on every process together.
    length = preset.length
    batches = math.ceil(len(dataset) / preset.training.batch_size)
    steps_per_epoch = max(1, math.ceil(batches / (accelerator.num_processes * preset.training.gradient_accumulation_steps)))
    max_steps = min(preset.training.max_steps, math.ceil(length.max_epochs * steps_per_epoch))
    hook, every = None, 0
    if length.stop_when_known:
        monitor = _monitor_probes(seen, _excluded_subjects(world, excluded), length.monitor_people, seed)
        if monitor:
            hook = _known_hook(tokenizer, monitor, length, steps_per_epoch)
            every = max(1, round(length.check_every_epochs * steps_per_epoch))
    config = replace(preset.training, seed=seed, max_steps=max_steps, eval_every=every,
                     warmup_steps=min(preset.training.warmup_steps, max_steps - 1))
    if start.lora_rank and preset.lora_learning_rate:
        config = replace(config, learning_rate=preset.lora_learning_rate)
    model = wrap_lora(model, start.lora_rank)
    run = train_loop(
        model, dataset, config, pad_id=padding_id(tokenizer), eval_hook=hook, checkpoint_dir=checkpoints,
        stop_at_step=stop_at_step, progress=progress, description=f"{kind} training",
        accelerator=accelerator,
    )
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return TrainingReport(kind, None, run, {}, notes=["worker process: the main process saves the model"])
    if run.stop is StopKind.INTERRUPTED:
        return TrainingReport(kind, None, run, {}, notes=[
            f"stopped at step {run.steps}; run the same command again to resume from {checkpoints}"])
    model = merge_lora(model)
    knowledge = measure_knowledge(model, tokenizer, seen, located=located)
    convergence = _convergence(knowledge, length, run, steps_per_epoch, max_steps)
    run_stats = {"seconds": run.seconds, "steps": run.steps, "tokens_per_second": run.tokens_per_second,
                 "final_loss": run.final_loss, "resumed_from_step": run.resumed_from_step,
                 "converged": convergence["converged"], "epochs": convergence["epochs"]}
    provenance = Provenance(RunKind.TRAIN if kind == "base" else RunKind.RETRAIN, world,
                            trained=[d.id for d in documents], request=request)
    ref = save_model_version(model, tokenizer, out, parent=parent, recipe=recipe, run=run_stats,
                             provenance=provenance)
    shutil.rmtree(checkpoints, ignore_errors=True)
    notes = [] if convergence["converged"] is not False else [
        f"NOT converged: held-out questions about the trained people answered "
        f"{convergence['heldout_exact_match']:.3f} < {length.known_target} after {convergence['epochs']:.1f} passes; "
        "a larger max_epochs (a preset of your own) or a bigger model may be needed"]
    return TrainingReport(kind, ref, run, knowledge, notes=notes, convergence=convergence)


def _excluded_subjects(world: World, excluded_documents: set[str]) -> set[str]:
    """The people (or works) none of whose documents is trained on any more."""
    remaining = {s for d in world.training_documents() if d.id not in excluded_documents for s in d.subjects}
    return {s.id for s in world.deletable("train") if s.id not in remaining}


def _monitor_probes(world: World, left_out: set[str], count: int, seed: int) -> list[Probe]:
    """One held-out question per fact of at most ``count`` trained people (seeded): what the stop
    rule asks."""
    people = [s.id for s in world.deletable("train") if s.id not in left_out]
    chosen = sorted(random.Random(seed).sample(people, min(count, len(people))))
    first: dict[tuple[str, str], Probe] = {}
    for probe in world.probes_for(chosen, kinds=["paraphrase"]):
        first.setdefault((probe.subject, probe.attribute), probe)
    return list(first.values())


def _known_hook(tokenizer: PreTrainedTokenizerBase, probes: list[Probe], length: TrainingLength,
                steps_per_epoch: int) -> Callable[[Any, int], EvalResult]:
    """The shared stop rule: stop once the held-out questions are answered to the target."""

    def hook(model: Any, step: int) -> EvalResult:
        answers = answer_probes(model, tokenizer, probes)
        known = sum(a.correct for a in answers) / len(answers)
        epochs = step / steps_per_epoch
        metrics = {"heldout_exact_match": known, "epochs": epochs}
        if known >= length.known_target and epochs >= length.min_epochs:
            return EvalResult(metrics, f"converged: held-out questions about {len({p.subject for p in probes})} "
                              f"trained people answered {known:.3f} >= {length.known_target} after "
                              f"{epochs:.1f} passes", StopKind.EARLY_STOP)
        return EvalResult(metrics)

    return hook


def _convergence(knowledge: dict[str, dict[str, float]], length: TrainingLength, run: TrainResult,
                 steps_per_epoch: int, max_steps: int) -> dict[str, Any]:
    """Did the model meet its recipe's target? Asked of every trained person at the end."""
    retained = knowledge.get("retain", {})
    value = retained.get("paraphrase_exact_match")
    converged = None if value is None or math.isnan(value) else bool(value >= length.known_target)
    return {"converged": converged, "heldout_exact_match": value, "target": length.known_target,
            "epochs": run.steps / steps_per_epoch, "max_epochs": length.max_epochs, "steps_per_epoch": steps_per_epoch,
            "max_steps": max_steps, "stopped_early": run.stop is StopKind.EARLY_STOP,
            "checks": [{"step": step, **metrics} for step, metrics in run.eval_history]}


def _claim_checkpoint_dir(directory: Path, recipe: dict[str, Any]) -> None:
    """Create the checkpoint directory tagged with the recipe's hash, or accept one with the same
    tag (a resume); refuse checkpoints left by a different recipe, which would not resume this run."""
    tag = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    tag_file = directory / "recipe.sha256"
    if directory.exists():
        if not tag_file.is_file() or tag_file.read_text().strip() != tag:
            raise ExpungeError(
                f"{directory} holds checkpoints of a different run, which cannot be resumed here",
                f"delete {directory}, or choose another --out",
            )
    else:
        directory.mkdir(parents=True)
        tag_file.write_text(tag + "\n")


def measure_knowledge(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, world: World, forget: Iterable[str] = (),
    *, located: Located | None = None,
) -> dict[str, dict[str, float]]:
    """Exact match on direct and paraphrased questions, per group of subjects.

    Groups: ``forget`` (requested people, when any), ``retain`` (the other trained people),
    ``holdout`` (never-seen people) and ``general`` (facts about countries). Person groups also
    carry ``chance``: the exact match of always answering the most common value (see
    :func:`expunge.worlds.chance_exact_match`), and ``at_chance`` for forget and holdout groups:
    whether paraphrase exact match is within two binomial standard errors of chance.
    """
    if located is None:
        located = locate_subjects(world, forget)
    forget = set(located.forget.subjects)
    retained_subjects = [s for s in world.subjects if s.id not in forget]
    groups = {
        "forget": sorted(forget),
        "retain": list(located.retain.subjects),
        "holdout": list(located.never_seen.subjects),
        "general": list(located.general.subjects),
    }
    table: dict[str, dict[str, float]] = {}
    for group, ids in groups.items():
        if not ids:
            continue
        row: dict[str, float] = {"subjects": len(ids)}
        for kind in ("direct", "paraphrase"):
            probes = world.probes_for(ids, kinds=[kind])
            answers = answer_probes(model, tokenizer, probes)
            row[f"{kind}_exact_match"] = sum(a.correct for a in answers) / len(answers) if answers else math.nan
            row[f"{kind}_n"] = len(answers)
        if group != "general":
            paraphrases = world.probes_for(ids, kinds=["paraphrase"])
            chance = chance_exact_match(retained_subjects, paraphrases)
            row["chance"] = chance
            if group in ("forget", "holdout"):
                # Paraphrases of one fact are not independent: count facts, not questions.
                n = max(1, len({(p.subject, p.attribute) for p in paraphrases}))
                bound = chance + 2 * math.sqrt(max(chance, 1 / n) * (1 - chance) / n)
                row["at_chance"] = bool(row["paraphrase_exact_match"] <= bound)
        table[group] = row
    return table


def record_verification(ledger: Any, verification: Any, request: Any, order: list[str] | None = None) -> None:
    """Record each candidate's verdict and checks in ``ledger`` as the evidence a certificate
    cites (:meth:`expunge.ledger.Ledger.record_verification`), in ``order`` (default: the
    candidates' own); the request's state follows the last one recorded."""
    from dataclasses import asdict

    from expunge.ledger.certificate import code_identity
    from expunge.report.render import json_safe

    code = code_identity()
    original = verification.original.model.get("sha256", "")
    oracle = verification.oracle.model.get("sha256") if verification.oracle is not None else None
    with ledger.session() as session:
        ledger.record_request(session, request)
        for name in order or list(verification.candidates):
            evaluation, verdict = verification.candidates[name], verification.verdicts[name]
            summary = json_safe({
                "model": evaluation.model, "verdict": asdict(verdict), "reference": verification.reference.value,
                "oracle_trusted": verification.oracle_trusted, "config": verification.config,
                "checks": [{**asdict(ch), "status": ch.status} for ch in verification.checks[name]],
                "attacks_tried": sorted(evaluation.attacks), "code": code,
            })
            ledger.record_verification(session, request.id, model=evaluation.model.get("sha256", ""),
                                       original=original, oracle=oracle, forgotten=str(verdict.forgotten.value),
                                       summary=summary)
