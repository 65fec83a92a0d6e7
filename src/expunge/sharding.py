"""Sharded training with exact deletion: SISA (Bourtoule et al. 2021, https://arxiv.org/abs/1912.03817)
with one LoRA adapter per shard on a shared frozen base (as in S3T, https://arxiv.org/abs/2406.16257).

Read top to bottom:

1. **Assign.** The world's deletable subjects are grouped (subjects named together in a document
   form one group, so that a document never spans two shards) and the groups are dealt to K shards
   in the order of a seeded hash, each to the shard with the fewest documents so far. The
   assignment depends only on the world and the seed, never on what has been deleted, and the
   sharded model records it (and the ledger, per subject).
2. **Base.** The frozen base sees only what no request can name: the training documents about no
   deletable subject (general facts; a privacy world's public people, ``--public``), on top of a
   fresh model or a pretrained one (``--from``). The recipe lists what it saw; a request that
   touches those documents is refused, because sharded deletion cannot remove them.
3. **Shards.** Each shard trains a LoRA adapter on its documents, from the base, with a seed of
   its own (so a shard's training depends on nothing but the base, its documents and its seed):
   the preset's passes over the shard's data, at the adapter learning rate. Training the shards
   costs about what training one model on everything costs; each shard alone about 1/K of it.
4. **Delete.** A deletion retrains only the shards that hold a requested document, from the base,
   on what remains, with the same seed; every other shard and the base are copied as they are.
   The result is exact by construction: bit-identical to training the sharded model from the
   start without the data (``tests/test_sharding.py`` checks it), at the cost of the touched shards.

Interrupted runs resume: finished pieces (base, adapters) and the running shard's checkpoints
live in ``.<out>.checkpoints/`` beside the output, tagged with the recipe's hash.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError
from expunge.fsutil import atomic_directory, ensure_new_output
from expunge.integrity import SHARDED_RECORD, files_sha256
from expunge.ledger.recording import Provenance, record_version, recording
from expunge.ledger.requests import documents_digest, load_request
from expunge.ledger.store import RunKind
from expunge.locate import Located, locate
from expunge.models.sharded import (
    BASE_DIR,
    Combine,
    adapter_sha256,
    is_sharded,
    load_adapter_state,
    read_sharded_record,
    shard_dir_name,
    sharded_identity,
)
from expunge.presets import Preset, get_preset
from expunge.recipe import Start
from expunge.records import Document, write_json_atomic
from expunge.worlds import World, load_world

__all__ = [
    "ShardRun",
    "ShardedReport",
    "ShardingConfig",
    "assign_shards",
    "base_documents",
    "delete_from_shards",
    "shard_seed",
    "train_sharded",
]


@dataclass(frozen=True)
class ShardingConfig:
    """How a sharded model is built (SISA, https://arxiv.org/abs/1912.03817; adapter shards as
    in S3T, https://arxiv.org/abs/2406.16257).

    Attributes:
        shards: K, the number of disjoint shards (one LoRA adapter each); 1 is one adapter on the
            frozen base (still exact: a deletion retrains it alone, not the base).
        lora_rank: rank of each shard's adapters (on attention and MLP projections, alpha = 2 x
            rank). Measured on the default privacy world: rank 16 at 1e-2 answered a shard's own
            people's held-out questions 0.88, against 0.85 at the full-training rate 3e-3.
        learning_rate: peak learning rate of the adapters (they start at zero and need a larger
            step than full training).
        combine: how the shards answer together (:class:`expunge.models.sharded.Combine`);
            recorded as the model's default, and any other can be chosen when loading.
    """

    shards: int = 4
    lora_rank: int = 16
    learning_rate: float = 1e-2
    combine: Combine = Combine.ENSEMBLE

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= 256:
            raise ExpungeError(f"--shards {self.shards} is out of range", "use between 1 and 256 shards")
        if self.lora_rank < 1:
            raise ExpungeError(f"--lora-rank {self.lora_rank} is too small for shards", "use a rank such as 16")
        if not self.learning_rate > 0:
            raise ExpungeError(f"the adapters' learning rate {self.learning_rate} is not positive",
                               "use a learning rate such as 1e-2")

    def to_dict(self) -> dict[str, Any]:
        return {"shards": self.shards, "lora_rank": self.lora_rank, "learning_rate": self.learning_rate,
                "combine": Combine(self.combine).value}


@dataclass
class ShardRun:
    """One shard of a sharded training or deletion: what it holds and what it cost."""

    index: int
    subjects: list[str]
    documents: int
    documents_sha256: str
    seed: int
    adapter_sha256: str | None
    trained: bool  # trained in this run (False: copied from the source model, or empty)
    seconds: float = 0.0
    steps: int = 0
    tokens: int = 0  # tokens trained on (the cost, whatever else the machine was doing)
    final_loss: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "subjects": self.subjects, "documents": self.documents,
                "documents_sha256": self.documents_sha256, "seed": self.seed, "adapter_sha256": self.adapter_sha256,
                "trained": self.trained, "seconds": round(self.seconds, 3), "steps": self.steps,
                "tokens": self.tokens, "final_loss": self.final_loss}


@dataclass
class ShardedReport:
    """The outcome of a sharded training or a sharded deletion."""

    kind: str  # "sharded" (a training) or "sharded-deletion"
    model: Any  # ModelRef of the new sharded model
    shards: list[ShardRun]
    base_seconds: float
    seconds: float
    request_id: str | None = None
    removed_documents: int = 0
    touched: list[int] = field(default_factory=list)
    base_documents: int = 0
    notes: list[str] = field(default_factory=list)
    base_tokens: int = 0

    @property
    def training_tokens(self) -> int:
        """Tokens trained on in this run (base and shards): the cost, independent of the machine's load."""
        return self.base_tokens + sum(s.tokens for s in self.shards if s.trained)

    @property
    def training_seconds(self) -> float:
        """Seconds spent training in this run (base and shards; copying and loading excluded)."""
        return self.base_seconds + sum(s.seconds for s in self.shards if s.trained)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": {"path": self.model.path, "sha256": self.model.sha256},
                "request_id": self.request_id, "removed_documents": self.removed_documents,
                "touched_shards": self.touched, "base_documents": self.base_documents,
                "seconds": round(self.seconds, 2), "training_seconds": round(self.training_seconds, 2),
                "training_tokens": self.training_tokens,
                "base_seconds": round(self.base_seconds, 2), "shards": [s.to_dict() for s in self.shards],
                "notes": self.notes}


def shard_seed(seed: int, index: int) -> int:
    """A shard's own seed: its training depends on nothing but the base, its documents and this."""
    return int(hashlib.sha256(f"expunge-shard:{seed}:{index}".encode()).hexdigest()[:8], 16)


def base_documents(world: World) -> list[Document]:
    """The training documents no request can name (about no deletable subject): the base's data."""
    deletable = {s.id for s in world.deletable()}
    return [d for d in world.training_documents() if not deletable.intersection(d.subjects)]


def assign_shards(world: World, shards: int, seed: int) -> dict[str, int]:
    """Subject id -> shard, for every deletable subject of the training corpus.

    Subjects named together in a document are one group (a document never spans two shards);
    groups are taken in the order of a seeded hash and each goes to the shard holding the fewest
    documents so far, so shards are balanced by documents and the result depends only on the
    world and the seed."""
    deletable = {s.id for s in world.deletable()}
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    counts: dict[str, int] = {}
    for doc in world.training_documents():
        named = sorted(deletable.intersection(doc.subjects))
        for other in named[1:]:
            parent[find(other)] = find(named[0])
        for subject in named:
            counts[subject] = counts.get(subject, 0) + 1
    groups: dict[str, list[str]] = {}
    for subject in sorted(counts):
        groups.setdefault(find(subject), []).append(subject)

    def rank(members: list[str]) -> str:
        return hashlib.sha256(f"{seed}:{members[0]}".encode()).hexdigest()

    load = [0] * shards
    assignment: dict[str, int] = {}
    for members in sorted(groups.values(), key=rank):
        target = min(range(shards), key=lambda k: (load[k], k))
        load[target] += sum(counts[m] for m in members)
        assignment.update({m: target for m in members})
    return assignment


def _shard_of(doc: Document, assignment: dict[str, int]) -> int | None:
    named = [assignment[s] for s in doc.subjects if s in assignment]
    return named[0] if named else None


def train_sharded(
    world_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sharding: ShardingConfig = ShardingConfig(),
    preset: str | None = None,
    seed: int = 0,
    from_model: str | os.PathLike[str] | None = None,
    request_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> ShardedReport:
    """Train a sharded model on a world's training corpus (``request_path``: without that request's
    documents, from the start: the sharded oracle a deletion is checked against)."""
    out = ensure_new_output(out)
    world = load_world(world_dir)
    start = Start(None if from_model is None else str(from_model))
    chosen = get_preset(preset or ("default" if from_model is None else "finetune"))
    start.check(chosen)
    request, excluded, located = None, set(), None
    if request_path is not None:
        request = load_request(request_path, world)
        located = locate(world, request)
        excluded = set(located.forget.documents)
    plan = _Plan(world, chosen, seed, sharding, start, assign_shards(world, sharding.shards, seed), set(), excluded,
                 request, located, source=None)
    return plan.run(out, progress)


def delete_from_shards(
    model_dir: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    from_model: str | os.PathLike[str] | None = None,
    located: Located | None = None,
    progress: bool = True,
) -> ShardedReport:
    """Delete a request's documents from a sharded model exactly: retrain only the shards that
    hold them, from the base, with their recorded seeds; copy the rest."""
    out = ensure_new_output(out)
    model_dir = Path(model_dir)
    if not is_sharded(model_dir):
        raise ExpungeError(f"{model_dir} is not a sharded model (no {SHARDED_RECORD})",
                           "train one with `expunge train --shards K`, or retrain without --base")
    from expunge.integrity import check_model_files

    record = read_sharded_record(model_dir)
    check_model_files(model_dir, record)
    recipe = record.get("recipe", {})
    world = load_world(world_dir)
    if recipe.get("world_fingerprint") != world.fingerprint:
        raise ExpungeError(f"sharded model {model_dir} was not trained on this world", "pass the matching --world")
    request = load_request(request_path, world)
    if located is None:
        located = locate(world, request)
    else:
        located.check_for(world, request)
    chosen = get_preset(recipe["preset"]["name"])
    if recipe["preset"] != chosen.to_dict():
        raise ExpungeError(f"the preset {chosen.name!r} changed since {model_dir} was trained",
                           "retrain the sharded model with this version of expunge")
    origin = recipe.get("from_model")
    start = Start(None if origin is None else str(from_model or origin["path"]),
                  None if origin is None else origin["sha256"])
    sharding = ShardingConfig(**{**recipe["sharding"], "combine": Combine(recipe["sharding"]["combine"])})
    assignment = {subject: shard["index"] for shard in record["shards"] for subject in shard["subjects"]}
    prior = set(recipe.get("excluded_documents", []))
    new = set(located.forget.documents) - prior
    if not new:
        raise ExpungeError(f"every document of request {request.id} is already gone from {model_dir}",
                           "nothing to retrain: this model was trained without them")
    plan = _Plan(world, chosen, int(recipe["seed"]), sharding, start, assignment, prior, new, request, located,
                 source=(model_dir, record))
    return plan.run(out, progress)


@dataclass
class _Plan:
    """One sharded run: which documents each shard trains on, and what is copied from a source."""

    world: World
    preset: Preset
    seed: int
    sharding: ShardingConfig
    start: Start
    assignment: dict[str, int]
    prior_excluded: set[str]
    excluded: set[str]  # removed by this run
    request: Any
    located: Located | None
    source: tuple[Path, dict[str, Any]] | None

    def __post_init__(self) -> None:
        self.base_docs = base_documents(self.world)
        base_ids = {d.id for d in self.base_docs}
        training = self.world.training_documents()
        touching = sorted(self.excluded & base_ids)
        if touching:
            raise ExpungeError(
                f"the request names {len(touching)} document(s) the frozen base was trained on ({touching[0]}, about "
                "no deletable subject): sharded deletion retrains adapters, never the base",
                "retrain the whole model without them (`expunge retrain` without --base), or build the sharded "
                "model again with `expunge train --shards` on a corpus without them")
        deletable = {x.id for x in self.world.deletable()}
        unassigned = sorted({s for d in training for s in d.subjects if s in deletable and s not in self.assignment})
        if unassigned:
            raise ExpungeError(f"subject {unassigned[0]} has no shard in this sharded model",
                               "use the world the sharded model was trained on")
        removed = self.prior_excluded | self.excluded
        self.documents: list[list[Document]] = [[] for _ in range(self.sharding.shards)]
        touched: set[int] = set()
        for doc in training:
            k = _shard_of(doc, self.assignment)
            if k is not None and doc.id not in removed:
                self.documents[k].append(doc)
            if k is not None and doc.id in self.excluded:
                touched.add(k)
        self.touched = list(range(self.sharding.shards)) if self.source is None else sorted(touched)

    def recipe(self) -> dict[str, Any]:
        removed = sorted(self.prior_excluded | self.excluded)
        return {
            "kind": "sharded",
            "world_fingerprint": self.world.fingerprint,
            "preset": self.preset.to_dict(),
            "seed": self.seed,
            "sharding": self.sharding.to_dict(),
            "excluded_documents": removed,
            "excluded_sha256": documents_digest(set(removed)),
            "request_id": None if self.request is None else self.request.id,
            "located_sha256": None if self.located is None else self.located.digest,
            "base_data": {"documents": len(self.base_docs),
                          "documents_sha256": documents_digest({d.id for d in self.base_docs}),
                          "what": "the training documents about no deletable subject (general knowledge)"
                                  + ("" if self.start.model_dir is None else
                                     ", on top of the pretrained model's own data")},
            "from_model": None if self.start.model_dir is None else {"path": self.start.model_dir,
                                                                    "sha256": self.start.sha256},
        }

    def run(self, out: Path, progress: bool) -> ShardedReport:
        from expunge.pipeline import _claim_checkpoint_dir, _train_on

        began = time.perf_counter()
        recipe = self.recipe()
        checkpoints = out.parent / f".{out.name}.checkpoints"
        _claim_checkpoint_dir(checkpoints, recipe)
        base_seconds, base_tokens = 0.0, 0
        if self.source is not None:
            base_dir = self.source[0] / BASE_DIR
            base_sha = self.source[1]["base"]["sha256"]
        else:
            base_dir = checkpoints / BASE_DIR
            if not base_dir.is_dir() and not self.base_docs:
                self._pretrained_as_base(base_dir)
            elif not base_dir.is_dir():
                # The base is not a version of its own in the ledger: the sharded model records it.
                base_ids = {d.id for d in self.base_docs}
                everything_deletable = {d.id for d in self.world.training_documents()} - base_ids
                with recording(None):
                    report = _train_on(self.world, everything_deletable, base_dir, self.preset, self.seed,
                                       "sharded-base", None, progress, None, start=self.start)
                base_seconds, base_tokens = report.run.seconds, report.run.tokens
            from expunge.models.io import read_model_record

            base_sha = read_model_record(base_dir)["sha256"]
        runs = [self._shard(k, base_dir, checkpoints, progress) for k in range(self.sharding.shards)]
        shas = [r.adapter_sha256 for r in runs]
        identity = sharded_identity(base_sha, shas)
        parent = None if self.source is None else self.source[1]["sha256"]
        record = {
            "format": 1, "sha256": identity,
            "sha256_covers": "the base's weights sha256 and each shard's adapter sha256 in shard order "
                             "(expunge.models.sharded.sharded_identity); each file's own sha256 is under 'files'",
            "parent": parent, "combine": Combine(self.sharding.combine).value, "recipe": recipe,
            "base": {"sha256": base_sha, "documents": len(self.base_docs), "seconds": self._base_seconds(base_seconds)},
            # Each shard's training time (a copied shard keeps its source's): what the route
            # planner estimates a deletion from.
            "shards": [{"index": r.index, "subjects": r.subjects, "documents": r.documents,
                        "documents_sha256": r.documents_sha256, "seed": r.seed, "adapter_sha256": r.adapter_sha256,
                        "seconds": round(self._shard_seconds(r), 3)}
                       for r in runs],
        }
        trained = [d.id for docs in self.documents for d in docs] + [d.id for d in self.base_docs]
        shard_rows = {s: (r.index, r.adapter_sha256) for r in runs for s in r.subjects}
        provenance = Provenance(RunKind.RETRAIN if self.request is not None else RunKind.TRAIN, self.world,
                                trained=trained, removed=sorted(self.excluded) if self.source is not None else (),
                                request=self.request, shards=shard_rows)
        with atomic_directory(out) as tmp:
            shutil.copytree(base_dir, tmp / BASE_DIR)
            for run in runs:
                if run.adapter_sha256 is None:
                    continue
                where = (checkpoints if run.trained else self.source[0]) / shard_dir_name(run.index)  # type: ignore[index]
                shutil.copytree(where, tmp / shard_dir_name(run.index))
            record["files"] = files_sha256(tmp)
            write_json_atomic(tmp / SHARDED_RECORD, record)
            record_version(provenance, sha256=identity, path=str(out.resolve()), parent=parent, recipe=recipe)
        shutil.rmtree(checkpoints, ignore_errors=True)
        from expunge.records import ModelRef

        kind = "sharded" if self.source is None else "sharded-deletion"
        notes = [(f"retrained shard(s) {self.touched} of {self.sharding.shards}; the others and the base are copied "
                  "unchanged")] if self.source is not None else []
        return ShardedReport(kind, ModelRef(str(out), identity, parent, recipe), runs, base_seconds,
                             time.perf_counter() - began, None if self.request is None else self.request.id,
                             len(self.excluded), self.touched, len(self.base_docs), notes, base_tokens)

    def _base_seconds(self, trained: float) -> float:
        return round(trained if self.source is None else float(self.source[1]["base"].get("seconds", 0.0)), 3)

    def _shard_seconds(self, run: ShardRun) -> float:
        if run.trained or self.source is None:
            return run.seconds
        return float(self.source[1]["shards"][run.index].get("seconds", 0.0))

    def _pretrained_as_base(self, base_dir: Path) -> None:
        """No document is free of deletable subjects: the pretrained start is the base as it is."""
        if self.start.model_dir is None:
            raise ExpungeError(
                "this world has no training documents about no deletable subject, so a fresh base would learn nothing",
                "start from a pretrained model (--from), or generate the world with general facts or --public N")
        from expunge.models.io import save_model_version
        from expunge.pipeline import _load_start
        from expunge.prompts import choose_format

        model, tokenizer, sha = _load_start(self.start)
        fmt = choose_format(self.world, tokenizer, self.start.prompt_format)
        save_model_version(model, tokenizer, base_dir, parent=sha,
                           recipe={"kind": "sharded-base", **self.start.to_recipe(sha, fmt)})

    def _shard(self, k: int, base_dir: Path, checkpoints: Path, progress: bool) -> ShardRun:
        docs = self.documents[k]
        subjects = sorted(s for s, shard in self.assignment.items() if shard == k)
        seed = shard_seed(self.seed, k)
        digest = documents_digest({d.id for d in docs})
        if k not in self.touched:
            recorded = self.source[1]["shards"][k]  # type: ignore[index]
            return ShardRun(k, subjects, len(docs), digest, seed, recorded["adapter_sha256"], trained=False)
        if not docs:
            return ShardRun(k, subjects, 0, digest, seed, None, trained=True)
        done = checkpoints / shard_dir_name(k)
        if done.is_dir():  # finished before an interruption
            state = load_adapter_state(done)
            return ShardRun(k, subjects, len(docs), digest, seed, adapter_sha256(state), trained=True)
        return self._train_shard(k, subjects, docs, digest, seed, base_dir, checkpoints, progress)

    def _train_shard(self, k: int, subjects: list[str], docs: list[Document], digest: str, seed: int,
                     base_dir: Path, checkpoints: Path, progress: bool) -> ShardRun:
        from accelerate.utils import set_seed

        from expunge.data import SequenceDataset, encode_documents, padding_id
        from expunge.models.io import load_model
        from expunge.models.lora import wrap_lora
        from expunge.prompts import example_for, world_as_seen
        from expunge.recipe import PromptFormat
        from expunge.training import StopKind, train_loop

        model, tokenizer, _ = load_model(base_dir)
        fmt = PromptFormat(read_sharded_fmt(base_dir))
        seen = world_as_seen(self.world, fmt, tokenizer)
        kept = {d.id for d in docs}
        examples = [example_for(d) for d in seen.training_documents() if d.id in kept]
        dataset = SequenceDataset(encode_documents(tokenizer, examples, self.preset.max_length))
        steps_per_epoch = max(1, math.ceil(len(dataset) / self.preset.training.batch_size))
        max_steps = min(self.preset.training.max_steps, math.ceil(self.preset.length.max_epochs * steps_per_epoch))
        config = replace(self.preset.training, seed=seed, max_steps=max_steps, eval_every=0,
                         learning_rate=self.sharding.learning_rate,
                         warmup_steps=min(self.preset.training.warmup_steps, max(0, max_steps - 1)))
        set_seed(seed)  # the adapters' initial values come from the shard's own seed
        model.train()
        model = wrap_lora(model, self.sharding.lora_rank)
        run = train_loop(model, dataset, config, pad_id=padding_id(tokenizer),
                         checkpoint_dir=checkpoints / f"{shard_dir_name(k)}.steps", progress=progress,
                         description=f"shard {k + 1}/{self.sharding.shards}")
        if run.stop is StopKind.INTERRUPTED:  # pragma: no cover - train_loop stops so only when asked
            raise ExpungeError("shard training was interrupted", "run the same command again to resume")
        tmp = checkpoints / f".{shard_dir_name(k)}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        os.rename(tmp, checkpoints / shard_dir_name(k))
        shutil.rmtree(checkpoints / f"{shard_dir_name(k)}.steps", ignore_errors=True)
        # The adapter's identity is hashed from what was written, as an interrupted run reads it back.
        saved = load_adapter_state(checkpoints / shard_dir_name(k))
        return ShardRun(k, subjects, len(docs), digest, seed, adapter_sha256(saved), trained=True,
                        seconds=run.seconds, steps=run.steps, tokens=run.tokens, final_loss=run.final_loss)


def read_sharded_fmt(base_dir: Path) -> str:
    """The prompt format the base was trained in (its recipe's ``prompt_format``)."""
    from expunge.models.io import read_model_record

    return str(read_model_record(base_dir).get("recipe", {}).get("prompt_format", "text"))
