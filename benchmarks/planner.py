"""The route planner's estimates against measured runs, on three request types.

For each request the planner is asked first (its choice, its estimate per route); then every
route that meets the bar is run and measured, with a pass/fail from its own check:

1. **privacy on a sharded model, bar exact**: the sharded retrain (`retrain --base SHARDED`) and
   the full sharded retrain from the start; both exact by construction (they must be bit-identical).
2. **privacy on a monolithic model, bar verified**: gradient unlearning (``--method``) followed by
   verification without an oracle (it passes when "forgotten" is yes), and the full retrain
   (exact). Three people, the fewest the verdict takes as evidence.
3. **an update on a companies world, bar verified**: the edit (MEMIT with the tests' options for
   the tiny model, one fact; it passes when the edited
   model states the new fact on its own prompt) and nothing else that meets the bar.

The table gives, per request and route: the estimate, the measured seconds, pass/fail, and
whether the planner's choice is the measured cheapest route that passed.

    python benchmarks/planner.py [--workspace DIR] [--people 16] [--seed 0] [--method simnpo] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from expunge.ledger.requests import make_request, write_request
from expunge.methods.editing.run import edit_model
from expunge.methods.unlearn import unlearn
from expunge.pipeline import retrain_oracle, train_base
from expunge.planner import Bar, Route, plan_request
from expunge.records import FactEdit, read_jsonl, write_jsonl
from expunge.sharding import ShardingConfig, delete_from_shards, train_sharded
from expunge.verify.suite import verify_models
from expunge.worlds import (
    CompaniesWorldConfig,
    PrivacyWorldConfig,
    build_companies_world,
    build_privacy_world,
)


# MEMIT as the tests edit the tiny companies model (tests/test_editing.py: PROMPT_LAST).
EDIT_OPTIONS = {"token": "prompt_last", "layers": "0,1", "covariance_weight": "1.0", "steps": "60",
                "context_prefixes": "|The company."}


def timed(run: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    result = run()
    return result, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/expunge-planner-bench"))
    parser.add_argument("--people", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="simnpo")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    ws = args.workspace
    if ws.exists():
        sys.exit(f"{ws} exists: pass a new --workspace")
    world_dir = ws / "world"
    world = build_privacy_world(world_dir, PrivacyWorldConfig(seed=args.seed, people=args.people,
                                                              public_people=args.people // 2))
    people = [s.id for s in world.deletable("train")]
    cases: list[dict[str, Any]] = []

    # 1. privacy on a sharded model, bar exact
    sharded = train_sharded(world_dir, ws / "sharded", sharding=ShardingConfig(shards=4), preset="tiny",
                            seed=args.seed, progress=False)
    one = ws / "one.json"
    write_request(make_request(world, subjects=people[:1]), one)
    plan = plan_request(one, world_dir, sharded.model.path, bar=Bar.EXACT)
    deleted, t_sharded = timed(lambda: delete_from_shards(sharded.model.path, world_dir, one, ws / "deleted",
                                                          progress=False))
    scratch, t_full = timed(lambda: train_sharded(world_dir, ws / "scratch", sharding=ShardingConfig(shards=4),
                                                  preset="tiny", seed=args.seed, request_path=one, progress=False))
    exact = deleted.model.sha256 == scratch.model.sha256
    cases.append(case("privacy, sharded model, bar exact", plan,
                      {Route.SHARDED_RETRAIN: (t_sharded, exact), Route.FULL_RETRAIN: (t_full, exact)}))

    # 2. privacy on a monolithic model, bar verified
    base = train_base(world_dir, ws / "base", preset="tiny", seed=args.seed, progress=False)
    three = ws / "three.json"
    write_request(make_request(world, subjects=people[1:4]), three)
    plan = plan_request(three, world_dir, base.model.path, bar=Bar.VERIFIED, method=args.method)
    _, t_forget = timed(lambda: unlearn(base.model.path, world_dir, three, ws / "forgot", method=args.method,
                                        progress=False))
    verification, t_verify = timed(lambda: verify_models({"forgot": ws / "forgot"}, base.model.path, None,
                                                         world_dir, three))
    forgotten = str(verification.verdicts["forgot"].forgotten.value) == "yes"
    _, t_retrain = timed(lambda: retrain_oracle(world_dir, three, ws / "oracle", base=base.model.path,
                                                progress=False))
    cases.append(case("privacy, monolithic model, bar verified", plan,
                      {Route.GRADIENT: (t_forget + t_verify, forgotten), Route.FULL_RETRAIN: (t_retrain, True)},
                      notes={"gradient": f"unlearning {t_forget:.1f} s + verification {t_verify:.1f} s; verdict "
                                         f"forgotten: {verification.verdicts['forgot'].forgotten.value}"}))

    # 3. an update on a companies world, bar verified
    companies = ws / "companies"
    build_companies_world(companies, CompaniesWorldConfig(seed=args.seed, companies=16, employees_per_company=1,
                                                          edits=6, reading_documents=60))
    model = train_base(companies, ws / "companies-base", preset="tiny", seed=args.seed, progress=False)
    edit = read_jsonl(companies / "edits.jsonl", FactEdit)[0]
    edits = ws / "edit.jsonl"
    write_jsonl(edits, [edit])
    plan = plan_request(edits, companies, model.model.path, bar=Bar.VERIFIED)
    _, t_edit = timed(lambda: edit_model(model.model.path, edits, ws / "edited", corpus=companies, method="memit",
                                         options=EDIT_OPTIONS, progress=False))
    from expunge.models.io import load_model
    from expunge.scoring import answer_logprobs

    edited, tokenizer, _ = load_model(ws / "edited")
    prompt = edit.prompt.format(edit.subject_name)
    (new, n_new), (old, n_old) = answer_logprobs(edited, tokenizer, [prompt, prompt], [edit.target_new, edit.target_old])
    took = new / n_new > old / n_old  # mean log-probability per token, as verification's Prob
    cases.append(case("update, companies model, bar verified", plan, {Route.EDIT: (t_edit, took)},
                      notes={"edit": f"P(new) > P(old) on the edit prompt: {took}"}))

    print("\n| request | route | estimate s | measured s | passed | chosen |")
    print("|---|---|---|---|---|---|")
    for c in cases:
        for r in c["routes"]:
            print(f"| {c['name']} | {r['route']} | {r['estimate']:.1f} | {r['measured']:.1f} | "
                  f"{'yes' if r['passed'] else 'no'} | {'<-' if r['route'] == c['chosen'] else ''} |")
    print()
    for c in cases:
        print(f"{c['name']}: planner chose {c['chosen']}; measured cheapest that passed: {c['cheapest_passing']}; "
              f"match: {c['match']}" + "".join(f"; {k}: {v}" for k, v in c["notes"].items()))
    if args.json:
        args.json.write_text(json.dumps(cases, indent=2))


def case(name: str, plan: Any, measured: dict[Route, tuple[float, bool]], notes: dict[str, str] | None = None
         ) -> dict[str, Any]:
    routes = [{"route": route.value, "estimate": plan.estimate(route).seconds or float("nan"), "measured": seconds,
               "passed": passed} for route, (seconds, passed) in measured.items()]
    passing = [r for r in routes if r["passed"]]
    cheapest = min(passing, key=lambda r: r["measured"])["route"] if passing else None
    chosen = None if plan.chosen is None else plan.chosen.value
    return {"name": name, "chosen": chosen, "cheapest_passing": cheapest, "match": chosen == cheapest,
            "routes": routes, "explanation": plan.explanation, "notes": notes or {}}


if __name__ == "__main__":
    main()
