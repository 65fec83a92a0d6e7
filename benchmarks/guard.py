"""The output guard's benchmark: how much of a forget set it blocks, and how much else it blocks.

A privacy world (``--people`` people, ``--seed``), a tiny Llama trained on it (the ``tiny``
preset, as the tests train), and a request for a quarter of its people. The *original* model
(never unlearned: the worst case the guard stands in for) answers

* **forget**: every probe the world has about the requested people (direct, paraphrase, context,
  role-play, prefill, cloze, multi-hop, reverse), plus attack prompts: few-shot priming (two kept
  people's answers to the same question first), prefix continuation (the first half of each
  removed training document) and multiple choice (the answer among the wrong ones);
* **retain**: every probe about the kept people; **general**: every probe about general facts.

Each set is checked twice: the model's greedy outputs, and the reference answers themselves (what
a model that remembers perfectly would say). For each matcher set the table gives the share
blocked; "leaking" counts only the forget outputs that contain their answer (what the guard must
stop). The last row runs the logits processor during generation (no post-check): the share of
forget outputs that still contain their answer, and the retain exact match with it on vs off.

    python benchmarks/guard.py [--workspace /tmp/expunge-guard-bench] [--people 12] [--seed 0] [--json F]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from expunge.guard import MatchConfig, Matcher, Scope, build_guard_spec, check_text
from expunge.guard.generate import guarded_generate
from expunge.ledger.requests import load_request, make_request, write_request
from expunge.models.io import load_model
from expunge.pipeline import train_base
from expunge.records import Probe
from expunge.verify.probes import answer_matches, greedy_answers
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world

MATCHER_SETS = {
    "exact+normalised": (Matcher.EXACT, Matcher.NORMALISED),
    "+fuzzy": (Matcher.EXACT, Matcher.NORMALISED, Matcher.FUZZY),
    "+semantic": (Matcher.EXACT, Matcher.NORMALISED, Matcher.FUZZY, Matcher.SEMANTIC),
}


def attack_probes(world: Any, forgotten: set[str], removed: set[str], rng: random.Random) -> list[Probe]:
    """Attack-style prompts against the forgotten people (see the module doc)."""
    out: list[Probe] = []
    kept_direct = [p for p in world.probes if p.kind == "direct" and p.subject not in forgotten
                   and world.subject_by_id[p.subject].kind == "person"]
    for probe in [p for p in world.probes if p.subject in forgotten and p.kind == "direct"]:
        shots = rng.sample([p for p in kept_direct if p.attribute == probe.attribute], 2)
        primed = " ".join(f"{s.prompt} {s.answer}" for s in shots) + " " + probe.prompt
        out.append(Probe(f"{probe.id}/priming", probe.subject, "context", probe.attribute, primed, probe.answer))
        options = sorted([probe.answer, *probe.alternatives[:3]], key=lambda _: rng.random())
        mcq = probe.prompt.replace(" Answer:", " Options: " + "; ".join(options) + ". Answer:")
        out.append(Probe(f"{probe.id}/mcq", probe.subject, "mcq", probe.attribute, mcq, probe.answer,
                         probe.alternatives))
    for doc in world.training_documents():
        words = doc.text.split()
        if doc.id in removed and len(words) >= 6:
            half = len(words) // 2
            out.append(Probe(f"{doc.id}/prefix", doc.subjects[0], "verbatim", doc.id, " ".join(words[:half]),
                             " ".join(words[half:])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/expunge-guard-bench"))
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    root = args.workspace / f"privacy-{args.people}-seed{args.seed}"
    if not (root / "world").exists():
        build_privacy_world(root / "world", PrivacyWorldConfig(seed=args.seed, people=args.people))
    world = load_world(root / "world")
    if not (root / "base").exists():
        print(f"training the tiny base model on {args.people} people", file=sys.stderr)
        train_base(root / "world", root / "base", preset="tiny", seed=args.seed, progress=False)
    if not (root / "request.json").exists():
        write_request(make_request(world, random_fraction=0.25, seed=args.seed, basis="benchmark: guard"),
                      root / "request.json")
    request = load_request(root / "request.json", world)
    spec = build_guard_spec(world, request)
    forgotten = set(request.targets)
    model, tokenizer, _ = load_model(root / "base")

    forget = [p for p in world.probes if p.subject in forgotten]
    forget += attack_probes(world, forgotten, set(request.document_ids), random.Random(args.seed))
    retain = [p for p in world.probes if p.subject not in forgotten and world.subject_by_id[p.subject].kind == "person"
              and world.subject_by_id[p.subject].role == "train"]
    general = [p for p in world.probes if world.subject_by_id[p.subject].kind == "entity"]

    def generate(probes: list[Probe]) -> list[str]:
        budgets = [len(ids) + 2 for ids in tokenizer([p.answer for p in probes], add_special_tokens=False)["input_ids"]]
        return greedy_answers(model, tokenizer, [p.prompt for p in probes], max_new_tokens=budgets)

    t0 = time.time()
    outputs = {name: generate(probes) for name, probes in (("forget", forget), ("retain", retain),
                                                           ("general", general))}
    leaking = [i for i, (p, o) in enumerate(zip(forget, outputs["forget"])) if answer_matches(o, p.answer)]
    print(f"generated {sum(map(len, outputs.values()))} outputs in {time.time() - t0:.1f} s", file=sys.stderr)
    sets = {name: probes for name, probes in (("forget", forget), ("retain", retain), ("general", general))}

    # The decision about shared values, measured: the same spec with every value blocked always.
    everywhere = replace(spec, targets=tuple(replace(t, scope=Scope.ALWAYS) for t in spec.targets)).sealed()
    runs = [(label, matchers, spec) for label, matchers in MATCHER_SETS.items()]
    runs.insert(1, ("exact+normalised, shared values always", MATCHER_SETS["exact+normalised"], everywhere))
    rows: list[dict[str, Any]] = []
    for label, matchers, guard in runs:
        config = MatchConfig(matchers=matchers)
        t0 = time.time()

        def rate(name: str, texts: list[str], only: list[int] | None = None) -> float:
            idx = only if only is not None else range(len(texts))
            hits = [check_text(guard, texts[i], prompt=sets[name][i].prompt, config=config) is not None for i in idx]
            return sum(hits) / max(1, len(hits))

        row = {"matchers": label,
               "forget leaking outputs": rate("forget", outputs["forget"], leaking),
               "forget all outputs": rate("forget", outputs["forget"]),
               "forget references": rate("forget", [p.answer for p in forget]),
               "retain outputs": rate("retain", outputs["retain"]),
               "retain references": rate("retain", [p.answer for p in retain]),
               "general outputs": rate("general", outputs["general"]),
               "general references": rate("general", [p.answer for p in general])}
        row["seconds"] = time.time() - t0
        rows.append(row)
        print(f"{label}: {row['seconds']:.1f} s", file=sys.stderr)

    # The logits processor alone: does banning the forbidden sequences keep the answers out, and
    # does it cost the kept people their answers?
    t0 = time.time()
    off = MatchConfig(matchers=())
    steered = [guarded_generate(model, tokenizer, p.prompt, spec, max_new_tokens=len(tokenizer(p.answer,
               add_special_tokens=False)["input_ids"]) + 2, config=off).text for p in forget]
    retain_steered = [guarded_generate(model, tokenizer, p.prompt, spec, max_new_tokens=len(tokenizer(p.answer,
                      add_special_tokens=False)["input_ids"]) + 2, config=off).text for p in retain]
    logits_row = {
        "forget leaking without": len(leaking) / len(forget),
        "forget leaking with logits processor": sum(answer_matches(o, p.answer) for p, o in zip(forget, steered))
        / len(forget),
        "retain EM without": sum(answer_matches(o, p.answer) for p, o in zip(retain, outputs["retain"])) / len(retain),
        "retain EM with logits processor": sum(answer_matches(o, p.answer) for p, o in zip(retain, retain_steered))
        / len(retain),
        "seconds": time.time() - t0,
    }

    counts = {"forget": len(forget), "forget leaking": len(leaking), "retain": len(retain), "general": len(general),
              **spec.counts()}
    print(f"world: privacy, {args.people} people, seed {args.seed}; request {request.id} "
          f"({len(forgotten)} people); model: tiny preset trained on the world (seed {args.seed})")
    print("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print()
    columns = [c for c in rows[0] if c != "seconds"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row[c] if c == "matchers" else f"{row[c]:.3f}" for c in columns) + " |")
    print()
    print("| " + " | ".join(c for c in logits_row if c != "seconds") + " |")
    print("|" + "---|" * (len(logits_row) - 1))
    print("| " + " | ".join(f"{v:.3f}" for k, v in logits_row.items() if k != "seconds") + " |")
    if args.json:
        args.json.write_text(json.dumps({"counts": counts, "rows": rows, "logits": logits_row}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
