"""The route planner behind `expunge plan`: for one request, every way expunge could honour it,
what each would cost on this model and how strong its removal would be, and the cheapest that
meets the bar.

Routes (:class:`Route`) and their strength (:class:`Strength`):

- ``sharded-retrain`` (exact): a sharded model retrains the shards holding the documents;
- ``full-retrain`` (exact): the whole model again, without the documents;
- ``gradient`` (approximate, verified): an unlearning method, then verification; it meets a
  ``verified`` bar only if verification passes, so its expected cost includes, with the chance of
  failing, the exact route that would follow;
- ``edit`` (approximate, verified; an update request's facts, one edit each);
- ``retrieval-delete`` (exact): the facts are held in a retrieval store, not in the weights;
- ``guard`` (suppressed, not removed): an output guard, the fallback.

Costs are estimated from what this model's own records measured (its training run's seconds per
document and tokens per second; a sharded model's seconds per shard), never from constants about
some other machine; each estimate says what it was computed from. ``benchmarks/planner.py``
checks the estimates against measured runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from expunge.choices import TextEnum
from expunge.errors import ExpungeError

__all__ = ["PRIOR_PASS_RATE", "Bar", "Plan", "Route", "RouteEstimate", "Strength", "plan_request"]

# Without history, the chance that an approximate route passes verification is not known: the
# planner says so and weighs it as even.
PRIOR_PASS_RATE = 0.5
# Copying a sharded model's unchanged files, hashing and recording: measured on the default world
# (benchmarks/sharded.py) as well under a second; counted as one.
SHARDED_OVERHEAD_SECONDS = 1.0
# Tokens per step of an unlearning method's update relative to a training step: a forget batch and
# a retain batch (two batches), plus, for methods with a reference model, its forward pass (a third
# of a training step's forward + backward).
REFERENCE_FORWARD_SHARE = 1 / 3


class Route(TextEnum):
    """A way to honour a request (see the module doc)."""

    SHARDED_RETRAIN = "sharded-retrain"
    FULL_RETRAIN = "full-retrain"
    GRADIENT = "gradient"
    EDIT = "edit"
    RETRIEVAL_DELETE = "retrieval-delete"
    GUARD = "guard"


class Strength(TextEnum):
    """How strong a route's removal is, weakest first."""

    SUPPRESSED = "suppressed"  # the model still knows; its outputs are filtered
    VERIFIED = "verified"  # approximate: as strong as its verification shows
    EXACT = "exact"  # the data is gone by construction


class Bar(TextEnum):
    """The least strength a request's policy accepts."""

    SUPPRESSED = "suppressed"
    VERIFIED = "verified"
    EXACT = "exact"


_RANK = {Strength.SUPPRESSED: 0, Strength.VERIFIED: 1, Strength.EXACT: 2}
_BAR_RANK = {Bar.SUPPRESSED: 0, Bar.VERIFIED: 1, Bar.EXACT: 2}


@dataclass
class RouteEstimate:
    """One route for one request: whether it applies, its strength, its estimated cost."""

    route: Route
    applicable: bool
    strength: Strength
    seconds: float | None = None  # estimated cost of the route itself
    basis: str = ""  # what the estimate was computed from, or why the route does not apply
    meets_bar: bool = False
    conditional: bool = False  # meets the bar only if verification passes
    pass_rate: float | None = None  # for a conditional route: the chance it is taken as
    expected_seconds: float | None = None  # with a conditional route's fallback weighed in
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["route"], data["strength"] = self.route.value, self.strength.value
        return data


@dataclass
class Plan:
    """Every route for a request, and the one chosen (None: none meets the bar)."""

    request: str
    kind: str
    bar: Bar
    routes: list[RouteEstimate]
    chosen: Route | None
    explanation: list[str] = field(default_factory=list)

    def estimate(self, route: Route) -> RouteEstimate:
        return next(r for r in self.routes if r.route is route)

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "kind": self.kind, "bar": self.bar.value,
                "chosen": None if self.chosen is None else self.chosen.value,
                "routes": [r.to_dict() for r in self.routes], "explanation": self.explanation}


def _load_target(request_path: Path, world: Any) -> tuple[str, str, Any, list[Any]]:
    """(id, kind, DeletionRequest or None, fact edits) from a request file or an edits file."""
    from expunge.ledger.requests import load_request
    from expunge.records import FactEdit, read_jsonl

    if request_path.suffix == ".jsonl":
        edits = read_jsonl(request_path, FactEdit)
        if not edits:
            raise ExpungeError(f"{request_path}: no fact edits in it", "pass a request file or a non-empty edits file")
        return f"{len(edits)} edit(s) from {request_path.name}", "update", None, edits
    request = load_request(request_path, world)
    return request.id, request.kind, request, []


def plan_request(
    request_path: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    *,
    bar: Bar | str = Bar.VERIFIED,
    method: str = "simnpo",
    store: str | os.PathLike[str] | None = None,
    pass_rate: float | None = None,
) -> Plan:
    """Plan a request (a deletion request file, or a JSONL file of fact edits for an update) on
    ``model_dir`` trained on ``world_dir``. ``store``: a retrieval fact store that holds facts
    (`FactStore.save`). ``pass_rate``: the chance the approximate routes pass verification (from
    experience; default :data:`PRIOR_PASS_RATE`, said in the plan)."""
    from expunge.integrity import check_model_dir
    from expunge.worlds import load_world

    try:
        bar = Bar(bar)
    except ValueError:
        raise ExpungeError(f"--bar {bar!r} is not a bar", f"use one of: {', '.join(b.value for b in Bar)}") from None
    if pass_rate is not None and not 0 <= pass_rate <= 1:
        raise ExpungeError(f"--pass-rate {pass_rate} is not a probability", "use a number between 0 and 1")
    world = load_world(world_dir)
    model_dir = Path(model_dir)
    record = check_model_dir(model_dir, files=False)
    request_id, kind, request, edits = _load_target(Path(request_path), world)
    # The training documents that carry what must go (for an update: every document about the
    # edited subjects, which hold the old fact).
    documents = (set(request.document_ids) if request is not None
                 else {d.id for d in world.documents_about({e.subject for e in edits})})
    facts = _Facts(world, record, model_dir, documents)
    rate = PRIOR_PASS_RATE if pass_rate is None else pass_rate
    rate_says = "no verification history given: assumed" if pass_rate is None else "given"
    routes = [
        facts.sharded(request, request_path),
        facts.full(request, request_path),
        facts.gradient(request, request_path, method, rate, rate_says),
        facts.edit(edits, request_path, rate, rate_says),
        facts.retrieval(request, edits, store),
        RouteEstimate(Route.GUARD, True, Strength.SUPPRESSED, 1.0,
                      "builds a guard file from the world and the request (seconds); the model keeps what it knows",
                      command=f"expunge guard build --world {world_dir} --request {request_path} --out GUARD.json"),
    ]
    return _choose(request_id, kind, bar, routes)


def _choose(request_id: str, kind: str, bar: Bar, routes: list[RouteEstimate]) -> Plan:
    for r in routes:
        r.meets_bar = r.applicable and _RANK[r.strength] >= _BAR_RANK[bar]
    firm = [r for r in routes if r.meets_bar and not r.conditional and r.seconds is not None]
    fallback = min(firm, key=lambda r: r.seconds) if firm else None  # type: ignore[arg-type, return-value]
    for r in routes:
        if not r.meets_bar or r.seconds is None:
            continue
        r.expected_seconds = r.seconds
        if r.conditional:
            # A failed verification leaves the firm route still to do.
            failing = 1 - (r.pass_rate or 0.0)
            extra = fallback.seconds if fallback is not None else math.inf  # nothing firm to fall back on
            r.expected_seconds = r.seconds + (failing * extra if failing else 0.0)  # type: ignore[operator]
    candidates = [r for r in routes if r.meets_bar and r.expected_seconds is not None]
    chosen = min(candidates, key=lambda r: (r.expected_seconds, -_RANK[r.strength])) if candidates else None
    explanation = [f"bar: {bar.value} (routes at least that strong: "
                   + ", ".join(r.route.value for r in routes if r.meets_bar) + ")"]
    for r in routes:
        if not r.applicable:
            explanation.append(f"{r.route.value}: does not apply: {r.basis}")
        elif not r.meets_bar:
            explanation.append(f"{r.route.value}: {r.strength.value}, below the bar")
        else:
            if not r.conditional:
                cost = f"~{r.seconds:.1f} s"
            elif r.expected_seconds is not None and math.isinf(r.expected_seconds):
                cost = f"~{r.seconds:.1f} s (no exact route to fall back on if verification fails)"
            else:
                cost = f"~{r.seconds:.1f} s (expected {r.expected_seconds:.1f} s with a pass rate of {r.pass_rate:.2f})"
            explanation.append(f"{r.route.value}: {r.strength.value}, {cost}: {r.basis}")
    if chosen is None:
        explanation.append("no route meets the bar: lower it (--bar), or make the model support one "
                           "(`expunge train --shards K`)")
    else:
        explanation.append(f"chosen: {chosen.route.value}, the cheapest route that meets the bar")
    return Plan(request_id, kind, bar, routes, None if chosen is None else chosen.route, explanation)


class _Facts:
    """What the model's own records say about its costs."""

    def __init__(self, world: Any, record: dict[str, Any], model_dir: Path, documents: set[str]) -> None:
        self.world, self.record, self.model_dir, self.documents = world, record, model_dir, documents
        self.sharded_model = "shards" in record
        self.recipe = record.get("recipe", {})
        self.run = record.get("run", {})

    def _trained_documents(self) -> int:
        if self.sharded_model:
            return sum(s["documents"] for s in self.record["shards"]) + self.record["base"]["documents"]
        return int(self.recipe.get("training_documents") or 0)

    def _on_this_world(self) -> bool:
        return self.recipe.get("world_fingerprint") == self.world.fingerprint

    def sharded(self, request: Any, path: Any) -> RouteEstimate:
        route = RouteEstimate(Route.SHARDED_RETRAIN, False, Strength.EXACT,
                              command=f"expunge retrain --world WORLD --request {path} --base {self.model_dir} --out NEW")
        if request is None:
            route.basis = "an update changes a fact; no shard holds the new one"
            return route
        if not self.sharded_model:
            route.basis = "the model is not sharded (`expunge train --shards K` makes one)"
            return route
        if not self._on_this_world():
            route.basis = "the sharded model was not trained on this world"
            return route
        from expunge.sharding import base_documents

        in_base = self.documents & {d.id for d in base_documents(self.world)}
        if in_base:
            route.basis = f"{len(in_base)} of the documents are in the frozen base, which no shard retrain reaches"
            return route
        excluded = set(self.recipe.get("excluded_documents", []))
        if self.documents and self.documents <= excluded:
            route.applicable, route.seconds = True, 0.0
            route.basis = "already removed: this model was trained without every one of the documents"
            return route
        holders = {s: shard for shard in self.record["shards"] for s in shard["subjects"]}
        about = {d.id: d for d in self.world.training_documents()}
        touched = sorted({holders[s]["index"] for doc in self.documents if doc in about
                          for s in about[doc].subjects if s in holders})
        seconds, parts = SHARDED_OVERHEAD_SECONDS, []
        for index in touched:
            shard = self.record["shards"][index]
            # A shard trains for the same passes over fewer documents: time in proportion.
            left = sum(1 for doc in about.values() if doc.id not in excluded | self.documents
                       and any(holders.get(s) is shard for s in doc.subjects))
            share = left / shard["documents"] if shard["documents"] else 0.0
            seconds += float(shard.get("seconds", 0.0)) * share
            parts.append(f"shard {index}: {shard.get('seconds', 0.0):.1f} s for {shard['documents']} documents, "
                         f"{left} left")
        route.applicable, route.seconds = True, seconds
        route.basis = (f"retrains {len(touched)} of {len(self.record['shards'])} shards ({'; '.join(parts)}) "
                       f"+ {SHARDED_OVERHEAD_SECONDS:.0f} s copying")
        return route

    def full(self, request: Any, path: Any) -> RouteEstimate:
        route = RouteEstimate(Route.FULL_RETRAIN, False, Strength.EXACT)
        if request is None:
            route.basis = "an update's new fact is in no corpus to retrain on"
            return route
        if not self._on_this_world():
            route.basis = "the model has no expunge training recipe on this world to repeat"
            return route
        trained = self._trained_documents()
        if self.sharded_model:
            seconds = float(self.record["base"].get("seconds", 0.0)) + sum(float(s.get("seconds", 0.0))
                                                                           for s in self.record["shards"])
            shards = len(self.record["shards"])
            route.command = f"expunge retrain --world WORLD --request {path} --shards {shards} --out NEW"
            what = f"the sharded model's base and {shards} shards took {seconds:.1f} s for {trained} documents"
        else:
            seconds = float(self.run.get("seconds", 0.0))
            route.command = f"expunge retrain --world WORLD --request {path} --base {self.model_dir} --out NEW"
            what = f"the model's training run took {seconds:.1f} s for {trained} documents"
        if not seconds or not trained:
            route.basis = "the model's record has no training time to estimate from"
            return route
        left = max(0, trained - len(self.documents))
        route.applicable, route.seconds = True, seconds * left / trained
        route.basis = f"{what}; {left} remain (time in proportion to documents, the same passes)"
        return route

    def _throughput(self, route: RouteEstimate) -> float:
        """The model's recorded training tokens per second (0, and the route says so, without one)."""
        tps = float(self.run.get("tokens_per_second") or 0.0)
        if not tps:
            route.basis = "the model's record has no training throughput to estimate from"
        return tps

    def gradient(self, request: Any, path: Any, method: str, rate: float, says: str) -> RouteEstimate:
        from expunge.methods.registry import get_method

        spec = get_method(method)
        route = RouteEstimate(Route.GRADIENT, False, Strength.VERIFIED, conditional=True, pass_rate=rate,
                              command=f"expunge forget --model {self.model_dir} --world WORLD --request {path} "
                                      f"--method {method} --out NEW && expunge verify …")
        if request is None:
            route.basis = "an update needs its new fact written, which unlearning does not do (edit instead)"
            return route
        if self.sharded_model:
            route.basis = "a sharded ensemble is not one set of weights to unlearn from (retrain its shards)"
            return route
        tps = self._throughput(route)
        if not tps:
            return route
        config = spec.config_cls()
        docs = [d for d in self.world.training_documents() if d.id in self.documents]
        mean_tokens = sum(len(d.text.split()) for d in docs) / max(1, len(docs)) + 2  # words ~ tokens here
        steps = int(config.max_steps)
        from expunge.methods.registry import Need

        factor = 2.0 + (REFERENCE_FORWARD_SHARE if Need.REFERENCE_MODEL in spec.needs else 0.0)
        tokens = steps * int(config.batch_size) * mean_tokens * factor
        route.applicable, route.seconds = True, tokens / tps
        route.basis = (f"{method}: at most {steps} steps of {config.batch_size} forget + {config.batch_size} retain "
                       f"sequences (~{mean_tokens:.0f} tokens each) at the model's training speed, {tps:,.0f} tokens/s"
                       f"; verification after it; pass rate {rate:.2f} ({says})")
        return route

    def edit(self, edits: list[Any], path: Any, rate: float, says: str) -> RouteEstimate:
        route = RouteEstimate(Route.EDIT, False, Strength.VERIFIED, conditional=True, pass_rate=rate,
                              command=f"expunge edit --model {self.model_dir} --edits {path} --out NEW")
        if not edits:
            route.basis = "editing rewrites facts; a deletion request names no replacement"
            return route
        tps = self._throughput(route)
        if not tps:
            return route
        # ROME's value step: about 25 optimisation steps over the fact's prompts (its own and the
        # context prefixes, ~10 of ~16 tokens) per edit; the statistics are cached per model.
        tokens = len(edits) * 25 * 10 * 16 * 3
        route.applicable, route.seconds = True, tokens / tps
        route.basis = (f"{len(edits)} edit(s), each ~25 value-optimisation steps over ~10 prompts, at "
                       f"{tps:,.0f} tokens/s; pass rate {rate:.2f} ({says})")
        return route

    def retrieval(self, request: Any, edits: list[Any], store: Any) -> RouteEstimate:
        route = RouteEstimate(Route.RETRIEVAL_DELETE, False, Strength.EXACT)
        if store is None:
            route.basis = "no retrieval store given (--store)"
            return route
        from expunge.retrieval import FactStore

        held = FactStore.load(store)
        subjects = {e.subject for e in edits} if edits else set(request.targets)
        stored = {f.subject for f in held}
        missing = sorted(subjects - stored)
        if missing:
            route.basis = f"the store holds no fact about {missing[0]}"
            return route
        if self.documents:
            route.basis = (f"the model itself trained on {len(self.documents)} document(s) about the request's "
                           "subjects; changing the store would leave what it learned from them")
            return route
        route.applicable, route.seconds = True, 0.1
        route.basis = f"the facts live in the store ({len(held)} facts): deleted or updated there, exactly"
        route.command = f"(FactStore.load({str(store)!r}): delete / update, then save)"
        return route

