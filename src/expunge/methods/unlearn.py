"""The shared unlearning run: every gradient method goes through :func:`unlearn`.

Read top to bottom:

1. Load the original model (never modified on disk), the world and the request, and locate the
   request's sets (:func:`expunge.locate.locate`): the forget documents, the documents that stay
   and never-seen people's documents. What stays is split by subject
   (:func:`expunge.locate.split_retain`): the retain term trains on one part, and the collapse
   guard (like verification) scores the other, so "nothing else broke" is never measured on
   the sentences the retain term fitted.
2. Build pairs (forget sequence, retain sequence) so that each step sees as many retain as
   forget sequences; let the method prepare what it needs from the original model (its
   ``prepare`` hook: state and typed per-sequence extras) and freeze what must not train (its
   ``trainable`` hook). The run knows no method by name: it reads the spec's hooks and ``needs``.
   A method with an ``update`` hook (influence-based removal) changes the weights itself in
   step 3 instead of the training loop, under the same stop rules.
3. Run :func:`expunge.training.train_loop` with ``loss = forget_weight * forget_term +
   generic_weight * generic anchor + retain_weight * retain_term``. Every ``check_every`` steps
   the stop rules score three samples of documents: the forget documents (those an earlier run of
   the model's lineage did not remove already: the recipe records what each run removed),
   never-seen people's documents and retain documents.
   * early stop: a membership-inference attacker (LOSS score) can no longer tell the forget
     documents from never-seen ones (AUC <= ``early_stop_auc``); only with at least
     ``early_stop_min_documents`` of each (an AUC on a dozen sentences means nothing). With fewer
     forget documents but enough never-seen ones (a request for one book or one person), the
     forget documents' median NLL reaching the never-seen ones' median stops it instead: a median
     of a few documents' mean token NLLs is steadier than a rank statistic over them. With too
     few never-seen documents the run takes its fixed budget of ``max_steps`` and says why;
   * collapse guard: the retain NLL rose too far — stop, restore the last state that was within
     the bound, and say so.
4. Save the result as a new model version whose parent is the original's hash and whose recipe
   records the located sets' digest.
"""

from __future__ import annotations

import copy
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedModel

from expunge.data import Example, TokenSequence, encode_documents, pad_collate
from expunge.errors import ExpungeError
from expunge.fsutil import ensure_new_output
from expunge.ledger.recording import Provenance
from expunge.ledger.requests import load_request
from expunge.ledger.store import RunKind
from expunge.locate import Located, locate, split_retain
from expunge.methods.generic import generic_targets
from expunge.methods.gradient.base import UnlearnConfig, forward, generic_anchor
from expunge.methods.refusals import REFUSALS
from expunge.methods.registry import (
    ExtraKind,
    Need,
    Preparation,
    SequenceExtra,
    UnlearnContext,
    UpdateRun,
    get_method,
)
from expunge.models.lora import merge_lora, wrap_lora
from expunge.models.io import check_tokenizer_covers, load_model, read_model_record, save_model_version
from expunge.prompts import example_for, format_of, world_as_seen
from expunge.recipe import PromptFormat, is_pretrained
from expunge.records import ModelRef, question_and_answer
from expunge.scoring import batched_logits, max_length, padding_id, sequence_nlls
from expunge.training import EvalResult, StopKind, TrainingConfig, TrainResult, train_loop
from expunge.verify.metrics import roc_auc
from expunge.worlds import World, load_world

__all__ = ["UnlearnReport", "PairedDataset", "paired_collate", "unlearn", "chunk_sequences", "mean_token_nll"]



@dataclass
class UnlearnReport:
    """The outcome of one unlearning run (``stop`` is the decision; ``stop_reason`` says it)."""

    method: str
    config: dict[str, Any]
    model: ModelRef
    parent_sha256: str
    run: TrainResult
    seconds: float
    stop_reason: str
    original_nll: dict[str, float]
    checks: list[dict[str, float]] = field(default_factory=list)
    restored_step: int | None = None
    notes: list[str] = field(default_factory=list)
    located_sha256: str = ""

    @property
    def stop(self) -> StopKind:
        return self.run.stop

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "model": {"path": self.model.path, "sha256": self.model.sha256},
            "parent_sha256": self.parent_sha256,
            "seconds": round(self.seconds, 2),
            "steps": self.run.steps,
            "stop_reason": self.stop_reason,
            "stop": self.run.stop.value,
            "restored_step": self.restored_step,
            "original_nll": self.original_nll,
            "checks": self.checks,
            "notes": self.notes,
            "located_sha256": self.located_sha256,
        }


class PairedDataset(Dataset):
    """Pairs of (forget sequence, retain sequence), one per retain sequence (or per forget
    sequence when there are more of those).

    Each retain sequence is paired with the forget sequence of the same length rank, so the two
    halves of a pair have similar lengths and the length-grouped sampler can batch pairs with
    little padding (a batch pads to its longest member; mixing 60-token biographies with
    10-token statements wastes most of a step). Every forget sequence appears equally often.
    ``extras`` are typed per-forget-sequence values that travel with it (NPO's reference
    log-probabilities, the generic anchor's stand-in tokens, ...).
    """

    def __init__(self, forget: list[list[int]], retain: list[list[int]],
                 extras: dict[str, SequenceExtra] | None = None) -> None:
        if not forget:
            raise ExpungeError("the forget set is empty", "check that the request names trained subjects")
        self.forget, self.retain, self.extras = forget, retain, dict(extras or {})
        for name, extra in self.extras.items():
            if len(extra.values) != len(forget):
                raise ValueError(f"extra {name!r} has {len(extra.values)} values for {len(forget)} forget sequences")
        size = max(len(forget), len(retain))
        forget_by_length = sorted(range(len(forget)), key=lambda i: (len(forget[i]), i))
        retain_by_length = sorted(range(len(retain)), key=lambda i: (len(retain[i]), i))
        self.pairs: list[tuple[int, int | None]] = []
        for rank in range(size):
            f = forget_by_length[rank * len(forget) // size]
            r = retain_by_length[rank * len(retain) // size] if retain else None
            self.pairs.append((f, r))

    def __len__(self) -> int:
        return len(self.pairs)

    def lengths(self) -> list[int]:
        return [max(len(self.forget[f]), len(self.retain[r]) if r is not None else 0) for f, r in self.pairs]

    def __getitem__(self, index: int) -> dict[str, Any]:
        f, r = self.pairs[index]
        return {"forget": self.forget[f], "retain": self.retain[r] if r is not None else [],
                "extras": {name: extra.values[f] for name, extra in self.extras.items()}}


def paired_collate(pad_id: int, extras: dict[str, SequenceExtra] | None = None):
    """Batches of pairs: both halves padded to one common width, so that the loop can run them
    through the model in a single call; every extra padded by its kind into ``batch["forget"]``."""
    pad = pad_collate(pad_id)
    extras = dict(extras or {})

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(max(len(i["forget"]), len(i["retain"])) for i in items)
        batch: dict[str, Any] = {"forget": pad([i["forget"] for i in items], width)}
        if items[0]["retain"]:
            batch["retain"] = pad([i["retain"] for i in items], width)
        for name, extra in extras.items():
            batch["forget"][name] = extra.pad([i["extras"][name] for i in items], width, pad_id)
        return batch

    return collate


def mean_token_nll(model: torch.nn.Module, sequences: list[list[int]], pad_id: int, batch_size: int = 32) -> float:
    """Mean next-token NLL over all tokens of ``sequences`` (teacher forcing)."""
    return sequence_nlls(model, sequences, pad_id, batch_size)[1]


def unlearn(
    model_dir: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = "simnpo",
    options: dict[str, Any] | None = None,
    progress: bool = True,
    located: Located | None = None,
) -> UnlearnReport:
    """Make the model at ``model_dir`` forget what the request names; write the result to ``out``.

    ``located`` may pass the request's sets when the caller has them already (they are checked
    against the world and the request); by default they are located here."""
    started = time.perf_counter()
    out = ensure_new_output(out)
    spec = get_method(method)
    # A pretrained model gets the defaults measured for pretrained models (the built-in worlds'
    # small models are trained from scratch and take far larger steps).
    pretrained = is_pretrained(read_model_record(model_dir).get("recipe"))
    config = spec.make_config(options, pretrained=pretrained)
    if config.generic_weight and spec.forget_data != "documents":
        raise ExpungeError(f"generic_weight needs documents as forget data; {spec.name} trains on {spec.forget_data}",
                           "leave generic_weight at 0 for this method")
    world = load_world(world_dir)
    request = load_request(request_path, world)
    if located is None:
        located = locate(world, request)
    else:
        located.check_for(world, request)
    model, tokenizer, original = load_model(model_dir)
    # Questions as the model was trained to read them (its recipe's prompt format).
    fmt = format_of(original.recipe, world, tokenizer, str(model_dir))
    world = world_as_seen(world, fmt, tokenizer)
    notes: list[str] = []
    if pretrained:
        chosen = spec.defaults_for(pretrained=True)
        notes.append("pretrained model: the defaults for pretrained models (" + ", ".join(
            f"{k}={v}" for k, v in chosen.items() if k not in (options or {})) + "); -o overrides them")
    if config.generic_weight and any(d.prompt for d in located.documents(world, "forget")):
        # The anchor swaps names inside one text; a question-answer pair names its subject in the
        # question, which is context, not trained on.
        config = replace(config, generic_weight=0.0)
        notes.append("generic anchor off: the forget documents are question-answer pairs (generic_weight set to 0)")
    refusals = Need.REFUSAL_DATA in spec.needs
    samples = [d.text for d in world.training_documents()[:50]]
    check_tokenizer_covers(tokenizer, samples + (list(REFUSALS) if refusals else []), str(model_dir))

    forget_docs = located.documents(world, "forget")
    split = split_retain(world, located)
    trained_ids, kept_ids = set(split.train.documents), set(split.kept.documents)
    retain_docs = [d for d in world.documents if d.id in trained_ids]
    kept_docs = [d for d in world.documents if d.id in kept_ids]
    if config.retain_weight and not retain_docs:
        notes.append("retain term trained on nothing: no retained document outside the scored set")
    if not kept_docs:  # nothing else to score: the guard reads the retain term's own documents
        kept_docs = retain_docs
        notes.append("the collapse guard scores the retain term's own documents (no other retained document)")
    limit = max_length(model)
    encode = lambda texts: encode_documents(tokenizer, texts, limit)  # noqa: E731
    # Documents an earlier run in this model's lineage removed already (a request that repeats a
    # deletion so that no retain term trains on it again): the stop rules read only the new ones,
    # or the old ones, long since unfamiliar, would stop the run before the new ones are.
    earlier = set((original.recipe or {}).get("forgotten_document_ids") or ())
    new_docs = [d for d in forget_docs if d.id not in earlier]
    if earlier and len(new_docs) < len(forget_docs):
        notes.append(f"{len(forget_docs) - len(new_docs)} of the {len(forget_docs)} forget documents were removed by "
                     "an earlier run of this model's lineage: the stop rules read "
                     + (f"the {len(new_docs)} new ones" if new_docs else "them all (none is new)"))
    forget_doc_seqs = encode([example_for(d) for d in forget_docs])
    new_seqs = encode([example_for(d) for d in new_docs]) if new_docs and earlier else forget_doc_seqs
    forget_train = encode(_refusal_texts(world, request, config.seed, fmt)) if refusals else forget_doc_seqs
    retain_seqs = encode([example_for(d) for d in retain_docs])
    rng = random.Random(config.seed)
    eval_sets = {
        "forget": _cap(new_seqs, rng, config.check_documents),
        "holdout": _cap(encode([example_for(d) for d in located.documents(world, "never_seen")]), rng,
                        config.check_documents),
        "retain": _cap(encode([example_for(d) for d in kept_docs]), rng, config.check_documents),
    }
    early_stop = config.early_stop
    by_median = False  # the early stop compares medians (few forget documents) instead of an AUC
    n_forget, n_holdout = len(eval_sets["forget"]), len(eval_sets["holdout"])
    if early_stop and n_holdout >= config.early_stop_min_documents and n_forget < config.early_stop_min_documents:
        by_median = True
        notes.append(f"early stop by median NLL: {n_forget} forget documents (an AUC needs "
                     f"{config.early_stop_min_documents}); stops when their median NLL reaches the {n_holdout} "
                     "never-seen documents' median")
    elif early_stop and min(n_forget, n_holdout) < config.early_stop_min_documents:
        early_stop = False
        notes.append(f"early stop off: {n_forget} forget and {n_holdout} never-seen "
                     f"documents (needs {config.early_stop_min_documents} of each for a membership AUC that means "
                     f"something); ran the fixed budget of max_steps = {config.max_steps}")
    pad = padding_id(tokenizer)
    original_nll = {name: mean_token_nll(model, seqs, pad) for name, seqs in eval_sets.items()}

    # The generic anchor's per-forget-sequence extras, cut into the same windows as the
    # sequences they belong to. Documents without a stand-in version keep their own tokens with
    # nothing anchored.
    extras: dict[str, SequenceExtra] = {}
    if config.generic_weight:
        targets = generic_targets(world, forget_docs, forget_doc_seqs, tokenizer, encode, config.seed)
        if not targets.coverage and "generic_weight" in (options or {}):
            raise ExpungeError("no forget document has a stand-in version for the generic anchor",
                               "the targets' names must occur in their documents; or set generic_weight=0")
    if config.generic_weight and not targets.coverage:
        # The method's default, not the user's choice: off, and said (imported data whose names
        # have no same-length stand-in among the data's own names).
        config = replace(config, generic_weight=0.0)
        notes.append("generic anchor off: no forget document has a stand-in name of the same token length among "
                     "the data's names (generic_weight set to 0)")
    if config.generic_weight:
        ids = [g if g is not None else real for g, real in zip(targets.ids, forget_doc_seqs)]
        shared = [s if s is not None else [False] * len(real) for s, real in zip(targets.same, forget_doc_seqs)]
        extras["generic_input_ids"] = SequenceExtra(ExtraKind.TOKENS, chunk_sequences(ids, config.chunk_tokens))
        extras["generic_shared"] = SequenceExtra(ExtraKind.MASK, chunk_sequences(shared, config.chunk_tokens))
    forget_chunks = chunk_sequences(forget_train, config.chunk_tokens)
    retain_chunks = chunk_sequences(retain_seqs if config.retain_weight else [], config.chunk_tokens)
    # What the method needs from the original model is computed once, before training.
    state = None
    if spec.prepare is not None:
        documents = (encode([example_for(d) for d in world.training_documents()])
                     if Need.TRAINING_DATA in spec.needs else [])
        prepared = spec.prepare(Preparation(model, config, pad, forget_chunks, eval_sets["forget"], documents,
                                            original.sha256))
        clash = set(prepared.extras) & set(extras)
        if clash:
            raise ValueError(f"method {spec.name!r} prepared extras that the run already uses: {sorted(clash)}")
        extras.update(prepared.extras)
        state = prepared.state
    # The anchor's next-token log-probabilities on the stand-in texts are precomputed where they
    # fit in memory (else the anchor asks a frozen copy at every step).
    if config.generic_weight and _fits(extras["generic_input_ids"].values, model.config.vocab_size):
        extras["generic_teacher"] = SequenceExtra(
            ExtraKind.VECTORS, _teacher_logprobs(model, extras["generic_input_ids"].values, pad))
    reference = None
    if (Need.REFERENCE_MODEL in spec.needs or config.retain_loss == "kl"
            or (config.generic_weight and "generic_teacher" not in extras)):
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    ctx = UnlearnContext(model=model, config=config, reference=reference, state=state)
    spec.trainable(model, config, state)
    model = _maybe_lora(model, config)
    ctx.model = model
    hidden_states = Need.HIDDEN_STATES in spec.needs

    checks: list[dict[str, float]] = []
    best: dict[str, Any] = {"step": 0, "state": _trainable_state(model)}
    bound = original_nll["retain"] + config.max_retain_loss_increase

    def loss_fn(m: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        # One forward pass over both halves (collate pads them to one width): one call of 2B
        # rows is cheaper than two of B, and every term reads the same outputs.
        ctx.model = m
        forget, retain = batch["forget"], batch.get("retain") if config.retain_weight else None
        if retain is None:
            forget_out, retain_out = forward(m, forget, hidden_states), None
        else:
            joint = {k: torch.cat([forget[k], retain[k]]) for k in ("input_ids", "attention_mask")}
            forget_out, retain_out = _split_rows(forward(m, joint, hidden_states), len(forget["input_ids"]))
        loss = config.forget_weight * spec.forget_term(ctx, forget, forget_out)
        if config.generic_weight:
            loss = loss + config.generic_weight * generic_anchor(ctx, forget, forget_out)
        if retain_out is not None:
            loss = loss + config.retain_weight * spec.retain_term(ctx, retain, retain_out)
        return loss, {}

    def scored(m: torch.nn.Module, step: int, names: tuple[str, ...]) -> dict[str, float]:
        scores = {name: sequence_nlls(m, eval_sets[name], pad) for name in names}
        # The LOSS attack's AUC, forget vs never-seen documents: 0.5 = indistinguishable.
        auc = (roc_auc(scores["forget"][0], scores["holdout"][0]) if "holdout" in scores and eval_sets["holdout"]
               else float("nan"))
        medians = {f"{k}_median_nll": statistics.median(per) for k, (per, _) in scores.items()
                   if k in ("forget", "holdout") and per}
        return {"step": step, **{f"{k}_nll": mean for k, (_, mean) in scores.items()}, "mia_auc": auc, **medians}

    # Scoring a set is a forward pass over up to check_documents documents: on SmolLM2 a check of
    # 32 retained documents takes about 0.8 of a LoRA training step (benchmarks/forget_speed.py). Without the early stop only the
    # collapse guard reads a check (the retain set); the forget and never-seen sets are scored
    # once, on the state that is saved.
    checked = tuple(eval_sets) if early_stop else ("retain",)

    def hook(m: torch.nn.Module, step: int) -> EvalResult:
        check = scored(m, step, checked)
        nll = {name: check[f"{name}_nll"] for name in checked}
        auc = check["mia_auc"]
        checks.append(check)
        if nll["retain"] > bound:
            return EvalResult(nll, stop=StopKind.COLLAPSE_GUARD, stop_reason=(
                f"collapse guard: retain NLL {nll['retain']:.3f} exceeded {bound:.3f} at step {step}"))
        best.update(step=step, state=_trainable_state(m))
        if early_stop and step >= config.min_steps and by_median:
            forget, holdout = check["forget_median_nll"], check["holdout_median_nll"]
            if forget >= holdout:
                return EvalResult(nll, stop=StopKind.EARLY_STOP, stop_reason=(
                    f"early stop: the forget documents' median NLL {forget:.3f} reached the never-seen "
                    f"documents' {holdout:.3f} (membership-inference AUC {auc:.3f})"))
        elif early_stop and step >= config.min_steps and auc <= config.early_stop_auc:
            return EvalResult(nll, stop=StopKind.EARLY_STOP, stop_reason=(
                f"early stop: membership-inference AUC {auc:.3f} (forget vs never-seen) reached "
                f"{config.early_stop_auc} (forget NLL {nll['forget']:.3f}, never-seen {nll['holdout']:.3f})"))
        return EvalResult(nll)

    training = TrainingConfig(
        max_steps=config.max_steps, batch_size=config.batch_size, learning_rate=config.learning_rate,
        min_lr_ratio=1.0, warmup_steps=config.warmup_steps, weight_decay=0.0, max_grad_norm=config.max_grad_norm,
        seed=config.seed, group_by_length=config.group_by_length, log_every=config.check_every, eval_every=config.check_every,
    )
    if spec.update is not None:  # the method changes the weights itself, under the same stop rules
        run = spec.update(UpdateRun(model, ctx, forget_chunks, retain_chunks, pad, hook, progress))
    else:
        dataset = PairedDataset(forget_chunks, retain_chunks, extras)
        run = train_loop(model, dataset, training, collate_fn=paired_collate(pad, extras), loss_fn=loss_fn,
                         eval_hook=hook, progress=progress, description=f"forget ({spec.name})")

    restored = None
    if run.stop is StopKind.COLLAPSE_GUARD:
        _load_trainable_state(model, best["state"])
        restored = best["step"]
        notes.append(f"{run.stop_reason}; restored the state of step {restored}, the last within the bound")
    elif run.stop is StopKind.MAX_STEPS and early_stop:
        goal = ("median NLL at the never-seen documents'" if by_median
                else f"membership-inference AUC <= {config.early_stop_auc}")
        notes.append(f"reached max_steps before the forget documents looked like never-seen ones ({goal})")
    if not early_stop:
        final = scored(model, restored if restored is not None else run.steps, tuple(eval_sets))
        checks = [c for c in checks if c["step"] != final["step"]] + [final]
    model = _merge_lora(model, config)
    recipe = {
        "kind": "unlearn", "method": spec.name, "config": asdict(config), "request_id": request.id,
        "world_fingerprint": world.fingerprint, "parent_path": str(model_dir), "located_sha256": located.digest,
        "prompt_format": fmt.value, "pretrained": pretrained,
        "retain_term_sha256": split.train.digest if config.retain_weight else None,
        "forgotten_document_ids": sorted(earlier | {d.id for d in forget_docs}),
    }
    seconds = time.perf_counter() - started
    run_stats = {"seconds": seconds, "steps": run.steps, "stop_reason": run.stop_reason, "stop": run.stop.value}
    # What the ledger records: the documents removed, and those the retain term trained on again.
    provenance = Provenance(RunKind.FORGET, world, removed=[d.id for d in forget_docs],
                            trained=[d.id for d in retain_docs] if config.retain_weight else [], request=request)
    ref = save_model_version(model, tokenizer, out, parent=original.sha256, recipe=recipe, run=run_stats,
                             provenance=provenance)
    return UnlearnReport(spec.name, asdict(config), ref, original.sha256, run, seconds, run.stop_reason,
                         original_nll, checks, restored, notes, located.digest)


def chunk_sequences(seqs: list[list[Any]], size: int) -> list[list[Any]]:
    """Cut sequences longer than ``size`` into consecutive windows (``size`` 0: unchanged); a
    window of one token has nothing to predict and is dropped. Parallel per-token lists (the
    generic anchor's) are cut identically. A question-answer pair (:class:`TokenSequence`) stays
    whole: a window of its answer without the question would train on another text."""
    if not size:
        return seqs
    return [window for seq in seqs
            for window in ([seq] if isinstance(seq, TokenSequence) else
                           [seq[i : i + size] for i in range(0, len(seq), size)])
            if len(window) > 1]


def _cap(seqs: list[list[int]], rng: random.Random, limit: int) -> list[list[int]]:
    return seqs if len(seqs) <= limit else rng.sample(seqs, limit)


def _refusal_texts(world: World, request: Any, seed: int, fmt: PromptFormat = PromptFormat.TEXT) -> list[Example]:
    """The targets' training questions, each answered with a refusal (IdkFT's forget data); in a
    question format, trained on the refusal only, as the model's answers are. A backdoor's trigger
    has no questions of its own: the removed documents' questions (which carry it) are refused."""
    rng = random.Random(seed)
    questions = [p.prompt for p in world.probes_for(request.targets, kinds=["direct"])]
    if not questions and request.kind == "backdoor":
        removed = set(request.document_ids)
        asked = (question_and_answer(d)[0] for d in world.training_documents() if d.id in removed)
        questions = [q for q in asked if q]
    if not questions:
        raise ExpungeError("the request's targets have no questions to refuse", "IdkFT needs subjects, not documents")
    if fmt is PromptFormat.TEXT:
        return [f"{question} {rng.choice(REFUSALS)}" for question in questions]
    return [(question, " " + rng.choice(REFUSALS)) for question in questions]


TEACHER_BYTES = 512 * 2**20  # precompute the anchor's targets when they fit in this much memory


def _fits(seqs: list[list[int]], vocab_size: int) -> bool:
    return sum(len(s) for s in seqs) * vocab_size * 4 <= TEACHER_BYTES


def _teacher_logprobs(model: PreTrainedModel, seqs: list[list[int]], pad: int) -> list[torch.Tensor]:
    """Next-token log-probabilities of the (original) model at every position of each sequence."""
    out: list[torch.Tensor] = [torch.zeros(0)] * len(seqs)
    for rows, _, outputs in batched_logits(model, seqs, pad, 128):
        logp = torch.log_softmax(outputs.logits.float(), -1)
        for r, i in enumerate(rows):
            out[i] = logp[r, : len(seqs[i])].clone()
    return out


def _split_rows(outputs: Any, n: int) -> tuple[SimpleNamespace, SimpleNamespace]:
    """The outputs of a joint forward pass, as if the first ``n`` rows and the rest had been
    two calls."""
    hidden = outputs.hidden_states

    def part(rows: slice) -> SimpleNamespace:
        return SimpleNamespace(logits=outputs.logits[rows],
                               hidden_states=None if hidden is None else tuple(h[rows] for h in hidden))

    return part(slice(0, n)), part(slice(n, None))


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def _maybe_lora(model: PreTrainedModel, config: UnlearnConfig) -> torch.nn.Module:
    return wrap_lora(model, config.lora_rank)


def _merge_lora(model: torch.nn.Module, config: UnlearnConfig) -> PreTrainedModel:
    return merge_lora(model) if config.lora_rank else model
