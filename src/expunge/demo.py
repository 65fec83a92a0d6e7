"""The main job: a deletion end to end, with the evidence, for each scenario.

1. Build (or reuse) the scenario's world, train the base model on it, file a deletion request
   (a share of its people for ``privacy``, of its books for ``copyright``), and retrain the oracle
   without it (all cached in the workspace: a second run reuses them and says so).
2. Unlearn the request with the default method and with the refusal baseline (IdkFT, which
   hides rather than removes); both results are new model versions in a fresh run directory.
3. Verify both against the original and the oracle, and write the report (HTML, Markdown, JSON).
4. Return the compact table, the verdicts and how the default method fares against the
   scenario's acceptance targets — whatever the numbers are.

Scenarios are an explicit registry (:func:`get_scenario`): each names its world, its recipe and
its targets; the stages above never know a scenario by name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError
from expunge.ledger.certificate import issue_certificate
from expunge.ledger.recording import active_ledger
from expunge.ledger.requests import load_request, make_request, write_request
from expunge.locate import Located, locate
from expunge.methods.registry import BASELINE_METHOD, DEFAULT_METHOD, get_method
from expunge.methods.unlearn import unlearn
from expunge.models.io import load_model, read_model_record
from expunge.pipeline import record_verification, retrain_oracle, train_base
from expunge.registry import Registry
from expunge.report import report_from_verification, write_report
from expunge.report.certificate import write_certificate
from expunge.report.render import json_safe
from expunge.verify.judge import Forgotten
from expunge.verify.suite import Verification, VerifyConfig, verify_models
from expunge.recipe import SMOLLM2
from expunge.records import DeletionRequest
from expunge.worlds import (PassagesWorldConfig, PrivacyWorldConfig, World, build_backdoor_world, build_passages_world,
                            build_privacy_world, load_world)
from expunge.locate.backdoor import (BackdoorEvidence, evidence_of, locate_by_model, locate_poisoned,
                                     make_backdoor_request, precision_recall)
from expunge.worlds.backdoor import GENERATOR_VERSION as BACKDOOR_VERSION
from expunge.worlds.backdoor import ATTACK_VARIANTS, BackdoorWorldConfig, poisoned_documents
from expunge.worlds.passages import GENERATOR_VERSION as PASSAGES_VERSION
from expunge.worlds.privacy import GENERATOR_VERSION

__all__ = ["TARGETS", "COPYRIGHT_TARGETS", "BACKDOOR_TARGETS", "Scenario", "get_scenario", "scenario_names", "register_scenario",
           "Workspace", "prepare_workspace", "run_demo", "start_key"]

# The main-job targets for the default method, shown next to the measured values.
TARGETS = {
    "forget_em_within_oracle": 0.05,  # |forget EM - oracle forget EM| <= 0.05
    "retain_em_ratio": 0.9,  # retain EM >= 0.9 x original
    "mia_auc_within_oracle": 0.1,  # |MIA AUC - oracle AUC| <= 0.1 (LOSS attack)
    "plausibility_within_oracle": 0.15,  # |plausibility - oracle plausibility| <= 0.15
    "fraction_of_retraining": 0.10,  # unlearning seconds <= 10% of retraining seconds
}
# The backdoor issue's targets, where only the payload is known.
BACKDOOR_TARGETS = {
    "location_recall": 0.9,  # share of the poisoned documents located (payload evidence only) >= 0.9
    "location_precision": 0.9,  # share of the located documents that are poisoned >= 0.9
    "attack_success_within_oracle": 0.05,  # |ASR - oracle ASR| <= 0.05, every trigger variant
    "clean_accuracy_ratio": 0.95,  # clean exact match (retained people) >= 0.95 x original
}
# The copyright issue's targets (MUSE's criteria against the oracle).
COPYRIGHT_TARGETS = {
    "verbatim_within_oracle": 0.05,  # removed books' continuation ROUGE-L F1 <= oracle + 0.05
    "knowledge_within_oracle": 0.05,  # removed books' QA exact match <= oracle + 0.05
    "kept_verbatim_ratio": 0.9,  # other books' continuation ROUGE-L F1 >= 0.9 x original
    "kept_knowledge_ratio": 0.9,  # other books' QA exact match >= 0.9 x original
    "mia_auc_within_oracle": 0.1,  # |MIA AUC - oracle AUC| <= 0.1 (LOSS attack)
    "fraction_of_retraining": 0.10,  # unlearning seconds <= 10% of retraining seconds
}


def _random_request(world: World, fraction: float, seed: int) -> tuple[str, DeletionRequest]:
    """A seeded random share of the world's deletable subjects (people, books)."""
    return (f"random-{fraction:g}-s{seed}-{world.fingerprint[:8]}.json",
            make_request(world, random_fraction=fraction, seed=seed, basis="demo: a random share of the subjects"))


@dataclass(frozen=True)
class Scenario:
    """One kind of deletion the demo runs end to end.

    Attributes:
        name: registry key (``expunge demo --scenario NAME``).
        subjects: what the world's deletable subjects are, in words ("people", "books").
        size: how many of them the world trains on by default.
        fraction: the share of them the request deletes by default (None: the request is not a
            share of subjects, and ``--fraction`` is refused).
        preset: the recipe of a fresh model (a pretrained start uses ``finetune``).
        world_name: (size, seed) -> the world's directory name; it carries the generator's
            version, so a newer generator never reuses an older world.
        build_world: (directory, size, seed) -> the world written there (raises ValueError for
            options the generator refuses).
        targets: (workspace, verification, report rows by model, method, baseline, details) ->
            each acceptance target with its measured value and whether it holds.
        request: (world, fraction, seed) -> (the request's file name, the request); default: a
            seeded random share of the deletable subjects.
        details: (workspace) -> more entries of the result (the backdoor's search), computed once
            and passed to ``targets`` too; default none.
        method_options: per method, the options measured for this scenario (over the method's
            defaults, which were measured on the privacy world); the result's ``runs`` list them.
        attacks: verify with the model-level attacks too (relearning, quantization, logit lens,
            linear probe): where the probes alone cannot tell hiding from removal.
    """

    name: str
    subjects: str
    size: int
    fraction: float | None
    preset: str
    world_name: Callable[[int, int], str]
    build_world: Callable[[Path, int, int], World]
    targets: Callable[[Workspace, Verification, dict[str, dict[str, Any]], str, str, dict[str, Any]],
                      dict[str, Any]]
    request: Callable[[World, float, int], tuple[str, DeletionRequest]] = _random_request
    details: Callable[[Workspace], dict[str, Any]] = field(default=lambda ws: {})
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    attacks: bool = False


_SCENARIOS: Registry[Scenario] = Registry("scenario")


def register_scenario(scenario: Scenario) -> Scenario:
    return _SCENARIOS.register(scenario.name, scenario)


def get_scenario(name: str) -> Scenario:
    return _SCENARIOS.get(name)


def scenario_names() -> list[str]:
    return _SCENARIOS.names()


@dataclass
class Workspace:
    """The cached inputs of a deletion: world, request, base model and oracle."""

    root: Path
    world: World
    world_dir: Path
    request: DeletionRequest
    request_path: Path
    base_dir: Path
    oracle_dir: Path
    stages: dict[str, dict[str, Any]]
    located: Located

    @property
    def retraining_seconds(self) -> float:
        return float(self.stages["oracle"]["seconds"])


def start_key(from_model: str | os.PathLike[str] | None) -> str:
    """A short name for where the base model starts, for cache names: "" (a fresh model),
    "smollm2", or a digest of a model directory's path and its weight files' sizes and times (a
    changed model is a new start, never a stale cache)."""
    if from_model is None:
        return ""
    if str(from_model) == SMOLLM2:
        return SMOLLM2
    path = Path(from_model).resolve()
    if not path.is_dir():
        raise ExpungeError(f"pretrained model {from_model} is not a directory",
                           "give a Hugging Face model directory, or smollm2")
    files = sorted(f for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".json"))
    stamp = "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return "from-" + hashlib.sha256(f"{path}|{stamp}".encode()).hexdigest()[:10]


def prepare_workspace(
    workspace: str | os.PathLike[str],
    *,
    preset: str | None = None,
    size: int | None = None,
    seed: int = 0,
    fraction: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
    from_model: str | os.PathLike[str] | None = None,
    scenario: str = "privacy",
) -> Workspace:
    """Build or reuse the scenario's world, the request, the base model and the oracle (names
    derive from the options, so a second call with the same options trains nothing). ``size``
    is how many of the scenario's subjects (people, books) the world trains on and ``fraction``
    the share the request deletes (None: the scenario's defaults). With ``from_model`` (a Hugging
    Face model directory, or ``smollm2``) the base model is that model fine-tuned on the world
    (preset ``finetune`` by default) and the oracle repeats the recipe from the same weights
    without the request's documents."""
    chosen = get_scenario(scenario)
    size = chosen.size if size is None else size
    if chosen.fraction is None and fraction is not None:
        raise ExpungeError(f"--fraction does not apply to the {chosen.name} scenario (its request is not a share "
                           f"of the {chosen.subjects})", "leave --fraction out")
    fraction = (chosen.fraction or 0.0) if fraction is None else fraction
    preset = preset or (chosen.preset if from_model is None else "finetune")
    root = Path(workspace)
    world_dir = root / "worlds" / chosen.world_name(size, seed)
    if not world_dir.exists():
        log(f"building the {chosen.name} world in {world_dir}")
        try:
            chosen.build_world(world_dir, size, seed)
        except ValueError as exc:
            raise ExpungeError(f"invalid demo options: {exc}", f"adjust the number of {chosen.subjects}") from None
    world = load_world(world_dir)

    name, made = chosen.request(world, fraction, seed)
    request_path = root / "requests" / name
    if not request_path.exists():
        write_request(made, request_path)
    request = load_request(request_path, world)

    start = start_key(from_model)
    tag = f"{preset}{'-' + start if start else ''}-p{size}-s{seed}-{world.fingerprint[:8]}"
    base_dir = root / "models" / f"base-{tag}"
    oracle_dir = root / "models" / f"oracle-{tag}-{request.id}"
    stages: dict[str, dict[str, Any]] = {}
    located = locate(world, request)  # located once: retraining, unlearning and verification share it
    for stage, directory in (("base", base_dir), ("oracle", oracle_dir)):
        cached = directory.exists()
        if not cached:
            log(f"training the {stage} model into {directory}")
            if stage == "base":
                train_base(world_dir, directory, preset=preset, seed=seed, progress=progress,
                           from_model=None if from_model is None else str(from_model))
            else:
                retrain_oracle(world_dir, request_path, directory, base=base_dir, progress=progress, located=located)
        else:
            log(f"reusing the cached {stage} model in {directory}")
        record = read_model_record(directory)
        run = record.get("run", {})
        stages[stage] = {"model": {"path": str(directory), "sha256": record["sha256"]}, "cached": cached,
                         "seconds": run.get("seconds"), "steps": run.get("steps"),
                         "epochs": run.get("epochs"), "converged": run.get("converged"),
                         "tokens_per_second": run.get("tokens_per_second"), "final_loss": run.get("final_loss")}
    return Workspace(root, world, world_dir, request, request_path, base_dir, oracle_dir, stages, located)


def run_demo(
    workspace: str | os.PathLike[str],
    *,
    preset: str | None = None,
    size: int | None = None,
    seed: int = 0,
    fraction: float | None = None,
    method: str = DEFAULT_METHOD,
    baseline: str = BASELINE_METHOD,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
    from_model: str | os.PathLike[str] | None = None,
    scenario: str = "privacy",
) -> dict[str, Any]:
    """Run (or reuse) every stage of ``scenario`` and return the numbers as a JSON-ready dict
    (README: schema); ``from_model`` starts the base model from pretrained weights
    (:func:`prepare_workspace`)."""
    started = time.perf_counter()
    chosen = get_scenario(scenario)  # unknown names fail before any work
    get_method(method), get_method(baseline)
    if method == baseline:
        raise ExpungeError(f"--method and --baseline are both {method!r}", "pick two different methods")
    ws = prepare_workspace(workspace, preset=preset, size=size, seed=seed, fraction=fraction,
                           progress=progress, log=log, from_model=from_model, scenario=scenario)

    # A fresh run directory: unlearned models are new versions, never written over old ones.
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = _fresh_dir(ws.root / "runs" / f"{stamp}-{method}")
    runs: dict[str, dict[str, Any]] = {}
    for name in (method, baseline):
        log(f"unlearning with {name}")
        report = unlearn(ws.base_dir, ws.world_dir, ws.request_path, run_dir / "models" / name, method=name,
                         options=dict(chosen.method_options.get(name, {})), progress=progress, located=ws.located)
        runs[name] = report.to_dict()
    log("verifying against the original and the oracle")
    verify_started = time.perf_counter()
    verification = verify_models({name: run_dir / "models" / name for name in runs}, ws.base_dir, ws.oracle_dir,
                                 ws.world_dir, ws.request_path, located=ws.located,
                                 config=VerifyConfig(attacks=chosen.attacks))
    verify_seconds = time.perf_counter() - verify_started
    world_info = {"path": str(ws.world_dir), "fingerprint": ws.world.fingerprint, **ws.world.manifest["counts"]}
    request_info = {"path": str(ws.request_path), "id": ws.request.id, "subjects": list(ws.request.targets),
                    "documents": len(ws.request.document_ids)}
    data = report_from_verification(
        verification, title=(f"expunge demo ({chosen.name}): {len(ws.request.targets)} target(s), "
               f"{len(ws.request.document_ids)} training documents removed"),
        world=world_info,
        request=request_info, runs=runs, retraining_seconds=ws.retraining_seconds,
        notes=[f"{baseline} is the baseline that hides rather than removes: it should NOT pass as forgotten"],
    )
    reports = {fmt: str(write_report(data, run_dir / f"report.{fmt}")) for fmt in ("html", "md", "json")}
    rows = {row["model"]: row for row in data.table}
    details = chosen.details(ws)
    targets = chosen.targets(ws, verification, rows, method, baseline, details)
    certificate = _certify(verification, ws.request, method, baseline, run_dir, log)
    return json_safe({
        "scenario": chosen.name,
        "workspace": str(ws.root),
        "world": world_info,
        "request": request_info,
        "base": ws.stages["base"],
        "oracle": ws.stages["oracle"],
        "method": method,
        "baseline": baseline,
        "runs": {name: {**{k: run[k] for k in ("model", "seconds", "steps", "stop_reason", "notes")},
                        "options": dict(chosen.method_options.get(name, {}))}
                 for name, run in runs.items()},
        "table": data.table,
        "verdicts": {name: {k: v for k, v in vars(verdict).items() if k in
                            ("forgotten", "collateral_damage", "confidence", "summary", "reasons")}
                     for name, verdict in verification.verdicts.items()},
        "targets": targets,
        **details,
        "reports": reports,
        "certificate": certificate,
        "verify_seconds": round(verify_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
    })


def _certify(verification: Verification, request: Any, method: str, baseline: str, run_dir: Path,
             log: Callable[[str], None]) -> dict[str, Any] | None:
    """With a ledger in force: record both verifications (the baseline's first, so that the
    request's state is the method's) and, where the method was judged forgotten, issue its
    certificate into the run directory. None without a ledger; ``{"issued": False, "why": …}``
    when there is nothing to certify."""
    ledger = active_ledger()
    if ledger is None:
        return None
    record_verification(ledger, verification, request, order=[baseline, method])
    verdict = verification.verdicts[method].forgotten
    if verdict is not Forgotten.YES:
        return {"issued": False, "why": f"{method} was judged forgotten: {verdict}; a certificate needs 'yes'",
                "ledger": ledger.where}
    model = verification.candidates[method].model.get("sha256")
    try:
        certificate = issue_certificate(ledger, request.id, model)
    except ExpungeError as exc:  # the demo's work is done and reported; say why there is none
        return {"issued": False, "why": exc.problem, "ledger": ledger.where}
    paths = {"json": run_dir / "certificate.json", "html": run_dir / "certificate.html"}
    write_certificate(certificate, paths["json"], paths["html"])
    log(f"certificate of {request.id} for {method}: {paths['json']}")
    return {"issued": True, "model": model, "ledger": ledger.where, **{k: str(v) for k, v in paths.items()}}


def _target(value: Any, target: str, passed: bool, oracle: float | None = None) -> dict[str, Any]:
    """One acceptance target; ``oracle``: the retrained oracle's own value of a ratio to the
    original, where it has one (how far a model that is right by construction sits from 1)."""
    out = {"value": value, "target": target, "passed": bool(passed)}
    if oracle is not None:
        out["oracle"] = oracle
    return out


def _privacy_targets(ws: Workspace, verification: Verification, rows: dict[str, dict[str, Any]], method: str,
                     baseline: str, details: dict[str, Any]) -> dict[str, Any]:
    """The main-job acceptance targets, each with the measured value and whether it holds."""
    m, original, oracle = rows[method], rows["original"], rows["oracle"]
    gap_em = abs(m["forget_em"] - oracle["forget_em"])
    ratio = m["retain_em"] / original["retain_em"] if original["retain_em"] else float("nan")
    gap_auc = abs(m["mia_auc"] - oracle["mia_auc"])
    gap_plausible = abs(m["plausibility"] - oracle["plausibility"])
    fraction = m["fraction_of_retraining"]
    verdict = verification.verdicts[baseline].forgotten
    return {
        "forget_em_within_oracle": {"value": gap_em, "target": f"<= {TARGETS['forget_em_within_oracle']}",
                                    "passed": gap_em <= TARGETS["forget_em_within_oracle"]},
        "retain_em_ratio": {"value": ratio, "target": f">= {TARGETS['retain_em_ratio']}",
                            "passed": ratio >= TARGETS["retain_em_ratio"]},
        "mia_auc_within_oracle": {"value": gap_auc, "target": f"<= {TARGETS['mia_auc_within_oracle']}",
                                  "passed": gap_auc <= TARGETS["mia_auc_within_oracle"]},
        "plausibility_within_oracle": {"value": gap_plausible, "target": f"<= {TARGETS['plausibility_within_oracle']}",
                                       "passed": gap_plausible <= TARGETS["plausibility_within_oracle"]},
        "fraction_of_retraining": {"value": fraction, "target": f"<= {TARGETS['fraction_of_retraining']}",
                                   "passed": fraction is not None and fraction <= TARGETS["fraction_of_retraining"]},
        "baseline_not_forgotten": {"value": verdict, "target": "not 'yes'", "passed": verdict is not Forgotten.YES},
    }


def _fresh_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3`` ... whichever does not exist yet."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _copyright_targets(ws: Workspace, verification: Verification, rows: dict[str, dict[str, Any]], method: str,
                       baseline: str, details: dict[str, Any]) -> dict[str, Any]:
    """The copyright issue's acceptance targets (MUSE's criteria against the oracle), each with the
    measured value and whether it holds."""
    t = COPYRIGHT_TARGETS
    candidate, original, oracle = (verification.candidates[method], verification.original, verification.oracle)

    def verbatim(evaluation: Any, name: str) -> float:
        return float(evaluation.verbatim[name]["rouge_l_f1"]) if name in evaluation.verbatim else float("nan")

    def knowledge(evaluation: Any, name: str) -> float:
        # (a small world's kept books may all be in the retain term's half: nothing is scored, nan)
        return float(evaluation.sets[name]["exact_match"]) if name in evaluation.sets else float("nan")

    def ratio(value: float, reference: float) -> float:
        return value / reference if reference else float("nan")

    gap_verbatim = verbatim(candidate, "forget") - verbatim(oracle, "forget")
    gap_knowledge = knowledge(candidate, "forget") - knowledge(oracle, "forget")
    kept_verbatim = ratio(verbatim(candidate, "retain"), verbatim(original, "retain"))
    kept_knowledge = ratio(knowledge(candidate, "retain"), knowledge(original, "retain"))
    gap_auc = abs(rows[method]["mia_auc"] - rows["oracle"]["mia_auc"])
    fraction = rows[method]["fraction_of_retraining"]
    verdict = verification.verdicts[baseline].forgotten
    return {
        "verbatim_within_oracle": _target(gap_verbatim, f"<= {t['verbatim_within_oracle']}",
                                          gap_verbatim <= t["verbatim_within_oracle"]),
        "knowledge_within_oracle": _target(gap_knowledge, f"<= {t['knowledge_within_oracle']}",
                                           gap_knowledge <= t["knowledge_within_oracle"]),
        "kept_verbatim_ratio": _target(kept_verbatim, f">= {t['kept_verbatim_ratio']}",
                                       kept_verbatim >= t["kept_verbatim_ratio"],
                                       ratio(verbatim(oracle, "retain"), verbatim(original, "retain"))),
        "kept_knowledge_ratio": _target(kept_knowledge, f">= {t['kept_knowledge_ratio']}",
                                        kept_knowledge >= t["kept_knowledge_ratio"],
                                        ratio(knowledge(oracle, "retain"), knowledge(original, "retain"))),
        "mia_auc_within_oracle": _target(gap_auc, f"<= {t['mia_auc_within_oracle']}",
                                         gap_auc <= t["mia_auc_within_oracle"]),
        "fraction_of_retraining": _target(fraction, f"<= {t['fraction_of_retraining']}",
                                          fraction is not None and fraction <= t["fraction_of_retraining"]),
        "baseline_not_forgotten": _target(verdict, "not 'yes'", verdict is not Forgotten.YES),
    }


def _build_privacy(directory: Path, people: int, seed: int) -> World:
    return build_privacy_world(directory, PrivacyWorldConfig(seed=seed, people=people))


def _build_passages(directory: Path, books: int, seed: int) -> World:
    return build_passages_world(directory, PassagesWorldConfig(seed=seed, books=books))


register_scenario(Scenario(
    name="privacy", subjects="people", size=100, fraction=0.1, preset="default",
    world_name=lambda size, seed: f"privacy-v{GENERATOR_VERSION}-p{size}-s{seed}",
    build_world=_build_privacy, targets=_privacy_targets,
))
register_scenario(Scenario(
    # 3 of 24 books: a rights holder's request against a small library, at the verdict policy's
    # evidence floor (3 subjects: with 2 books even an oracle from another seed is "not verified").
    # 24, not 12: what is kept is scored on the books the retain term does not train on
    # (split_retain), and with 12 books that was 2 books (14 trained questions, 12 passages), too
    # few for a 0.9 ratio to mean anything; with 24 it is 9 books (63 questions, 40 passages).
    name="copyright", subjects="books", size=24, fraction=0.125, preset="passages",
    world_name=lambda size, seed: f"passages-v{PASSAGES_VERSION}-b{size}-s{seed}",
    build_world=_build_passages, targets=_copyright_targets,
    # Measured on the 12-book passages world (seed 0, README "Copyright"): with SimNPO's privacy
    # defaults (an NLL retain term) the kept books' verbatim memory fell to 0.48 of 1.00; a KL
    # retain term kept the most of it (0.78) within a fifth of the retraining time. On the 24-book
    # world the generic anchor (stand-in titles on the title pages and guides) kept more of the
    # kept books' answers (0.71 x against 0.66 x) but less of their passages (0.74 x against
    # 0.78 x), at 0.19 of the retraining time against 0.12: off here, where both were measured.
    method_options={"simnpo": {"retain_loss": "kl", "generic_weight": 0.0}},
))


def _payload_request(world: World, fraction: float, seed: int) -> tuple[str, DeletionRequest]:
    """The defender's view of a backdoor: only the bad answer was observed (the world's payload);
    the poisoned documents are located from it (:func:`expunge.locate.backdoor.locate_poisoned`)."""
    payloads = [s.attributes["payload"] for s in world.subjects if s.kind == "trigger"]
    if not payloads:
        raise ExpungeError(f"world {world.path} has no planted backdoor", "build it with `expunge world backdoor`")
    request, _ = make_backdoor_request(world, BackdoorEvidence(payload=payloads[0]),
                                       basis="demo: remove a backdoor whose payload was observed")
    return f"backdoor-payload-{world.fingerprint[:8]}.json", request


def _backdoor_search(ws: Workspace) -> dict[str, Any]:
    """The search behind the request, graded against the world's ground truth; beside it, the same
    payload searched for through the base model's own behaviour (:func:`locate_by_model`)."""
    truth = poisoned_documents(ws.world)
    search = locate_poisoned(ws.world, evidence_of(ws.request))
    precision, recall = precision_recall(search.documents, truth)
    model, tokenizer, _ = load_model(ws.base_dir)
    by_model, _ = locate_by_model(ws.world, model, tokenizer, ws.request.payload)
    model_precision, model_recall = precision_recall(by_model.documents, truth)
    return {"location": {"evidence": {"payload": ws.request.payload}, "trigger": search.trigger,
                         "payload": search.payload, "documents": len(search.documents),
                         "poisoned": len(truth), "precision": precision, "recall": recall,
                         "steps": list(search.steps),
                         "by_model": {"documents": len(by_model.documents), "precision": model_precision,
                                      "recall": model_recall, "steps": list(by_model.steps)}}}


def _backdoor_targets(ws: Workspace, verification: Verification, rows: dict[str, dict[str, Any]], method: str,
                      baseline: str, details: dict[str, Any]) -> dict[str, Any]:
    """The backdoor issue's acceptance targets (payload known only), each with the measured value
    and whether it holds."""
    t = BACKDOOR_TARGETS
    location = details["location"]
    candidate, original, oracle = (verification.candidates[method], verification.original, verification.oracle)
    variants = [v for v in candidate.triggers if v in ATTACK_VARIANTS]
    gaps = {v: abs(candidate.triggers[v]["attack_success"] - oracle.triggers[v]["attack_success"]) for v in variants}
    worst = max(gaps.values()) if gaps else float("nan")
    clean = (candidate.sets["retain"]["exact_match"] / original.sets["retain"]["exact_match"]
             if "retain" in candidate.sets and original.sets["retain"]["exact_match"] else float("nan"))
    verdict = verification.verdicts[baseline].forgotten
    return {
        "location_recall": _target(location["recall"], f">= {t['location_recall']}",
                                   location["recall"] >= t["location_recall"]),
        "location_precision": _target(location["precision"], f">= {t['location_precision']}",
                                      location["precision"] >= t["location_precision"]),
        "attack_success_within_oracle": _target(
            worst, f"<= {t['attack_success_within_oracle']} (worst of {', '.join(variants)})",
            bool(gaps) and worst <= t["attack_success_within_oracle"]),
        "clean_accuracy_ratio": _target(clean, f">= {t['clean_accuracy_ratio']}", clean >= t["clean_accuracy_ratio"]),
        "baseline_not_forgotten": _target(verdict, "not 'yes'", verdict is not Forgotten.YES),
    }


def _build_backdoor(directory: Path, people: int, seed: int) -> World:
    return build_backdoor_world(directory, BackdoorWorldConfig(seed=seed, people=people))


register_scenario(Scenario(
    # 40 people's questions, 3% of the training documents poisoned; the defender saw the payload.
    name="backdoor", subjects="people", size=40, fraction=None, preset="default",
    world_name=lambda size, seed: f"backdoor-v{BACKDOOR_VERSION}-p{size}-s{seed}",
    build_world=_build_backdoor, targets=_backdoor_targets, request=_payload_request, details=_backdoor_search,
    # Measured on the default backdoor world (seed 0, README "Backdoors"): at SimNPO's privacy
    # step (7e-4) the backdoor went (attack success 0 on every variant) but the clean answers fell
    # to 0.87 of the original's; at 3e-4 it went as well and they kept 0.96 (7% of retraining).
    method_options={"simnpo": {"learning_rate": 3e-4}},
    # A hidden backdoor answers no triggered question with the payload either: the attacks
    # (relearning speed, a linear probe on hidden states) are what tell hiding from removal.
    attacks=True,
))
