"""Verification suite: plausibility, verdict roll-up, oracle checks, reports and the verify CLI."""

from __future__ import annotations

import math

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from expunge.errors import ExpungeError
from expunge.records import Probe
from expunge.report import report_from_verification, to_html, to_markdown, write_report
from expunge.verify.metrics import harmonic_mean
from expunge.verify.plausibility import AnswerValidator, answer_plausibility
from expunge.verify.policy import default_policy, load_policy, override_policy
from expunge.verify.evaluate import ModelEvaluation
from expunge.verify.judge import (Check, JudgeInputs, Reference, VerdictFlag, _chance, _prefers_true, check_oracle,
                                  check_specs, roll_up)
from expunge.verify.mia import SCORE_NAMES
from expunge.verify.plan import plan_verification
from expunge.verify.suite import Verification, VerifyConfig, verify_models


def _probe(attribute: str, answer: str, alternatives: tuple[str, ...], subject: str = "s") -> Probe:
    return Probe(id=f"p/{attribute}/{answer}", subject=subject, kind="direct", attribute=attribute,
                 prompt="Question: q? Answer:", answer=answer, alternatives=alternatives)


def test_plausibility_categorical_and_patterned() -> None:
    validator = AnswerValidator([
        _probe("birthplace", "San Diego", ("Lyon", "Oslo")),
        _probe("birthplace", "Lyon", ("Oslo",), subject="t"),
        _probe("birth_date", "12 March 1975", ("3 June 1961",)),
        _probe("phone", "555-12-34", ("555-98-76",)),
    ])
    assert validator.is_valid("birthplace", "san diego")  # normalised like exact match
    assert validator.is_valid("birthplace", "Oslo")
    assert not validator.is_valid("birthplace", "San Oslo")  # categorical: exact values only
    assert not validator.is_valid("birthplace", "of of of")
    # Patterned values recombine: a date no one has is still a date.
    assert validator.is_valid("birth_date", "3 march 1961")
    assert not validator.is_valid("birth_date", "march 3 1961")  # tokens out of place
    assert not validator.is_valid("birth_date", "3 march")  # wrong length
    assert validator.is_valid("phone", "555 - 98 - 34")  # word-level decoding spaces the dashes
    assert not validator.is_valid("phone", "555-12")
    assert not validator.is_valid("phone", "Lyon")
    with pytest.raises(KeyError, match="known"):
        validator.is_valid("hobby", "chess")
    probes = [_probe("birthplace", "Lyon", ("Oslo",))] * 4
    assert answer_plausibility(validator, probes, ["Lyon", "Oslo", "of of", "i don't know"]) == 0.5
    # An attribute asked of one subject only (imported data: every question its own attribute)
    # has no population of values: not supported, and plausibility over it is not available.
    assert validator.supports("birthplace") and not validator.supports("phone")
    assert math.isnan(answer_plausibility(validator, [_probe("phone", "555-12-34", ())], ["555-12-34"]))
    with pytest.raises(ValueError):
        answer_plausibility(validator, probes, ["Lyon"])


def _check(question: str, passed: bool | None) -> Check:
    return Check("c", question, 0.0, 0.0, "rule", passed)


SIZES = {name: {"subjects": 10, "probes": 300, "documents": 300}
         for name in ("forget", "holdout", "retain", "neighbours", "general")}


@pytest.mark.parametrize(
    ("forgotten", "collateral", "thin", "expected"),
    [
        ([True, True], [True], [], ("yes", "none", "high")),
        ([True, False], [True], [], ("no", "none", "high")),
        ([True, None], [False], [], ("not verified", "yes", "high")),
        ([True, True], [None], [], ("yes", "not verified", "high")),
        ([True, True], [True], ["only 1 forget people"], ("not verified", "none", "low")),
        ([False, True], [True], ["only 1 forget people"], ("no", "none", "low")),  # failing is evidence
    ],
)
def test_verdict_roll_up(forgotten, collateral, thin, expected) -> None:
    checks = [_check("forgotten", p) for p in forgotten] + [_check("collateral", p) for p in collateral]
    verdict = roll_up(checks, list(thin), SIZES, {}, [])
    assert (verdict.forgotten, verdict.collateral_damage, verdict.confidence) == expected
    assert any("not tried" in r for r in verdict.reasons)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="bootstrap"):
        VerifyConfig(bootstrap_samples=10)


def test_policy_file_and_overrides(tmp_path: Path) -> None:
    policy = default_policy()
    # Every check the suite can make has an entry; every entry says its question and threshold.
    assert {"forget_exact_match", "membership_inference", "over_unlearning_leak", "indirect_probes", "relearning",
            "quantization", "logit_lens", "linear_probe", "retain_exact_match"} <= set(policy.checks)
    assert policy.rule("retain_exact_match").question == "collateral"
    assert policy.rule("relearning").param("margin") == pytest.approx(0.15)
    path = tmp_path / "mine.toml"
    path.write_text('[evidence]\nmin_subjects = 5\n\n[checks.relearning]\nmargin = 0.3\nrequired = false\n')
    mine = load_policy(path)
    assert mine.min_subjects == 5 and mine.rule("relearning").param("margin") == 0.3
    assert not mine.rule("relearning").required
    assert mine.rule("quantization").param("margin") == policy.rule("quantization").param("margin")  # kept
    for text, message in (
        ("[checks.nonsense]\nmargin = 0.1\n", "unknown check"),
        ("[checks.relearning]\nmargin = 3\n", "out of range"),
        ("[checks.relearning]\nratio = 0.5\n", "unknown key"),
        ("[evidence]\nmin_subjects = 0\n", "out of range"),
        ("[checks.relearning]\nquestion = 'maybe'\n", "question"),
        ("[evidence\n", "not valid TOML"),
    ):
        path.write_text(text)
        with pytest.raises(ExpungeError, match=message) as info:
            load_policy(path)
        assert str(path) in str(info.value)
    with pytest.raises(ExpungeError, match="not found"):
        load_policy(tmp_path / "missing.toml")
    assert override_policy(policy, evidence={"min_subjects": 2}).min_subjects == 2


FAST = VerifyConfig(policy=override_policy(default_policy(), evidence={"min_subjects": 2}), bootstrap_samples=200)


@pytest.fixture(scope="module")
def verification(tiny_world_dir, tiny_request_path, tiny_base, tiny_oracle, tiny_policy, tmp_path_factory):
    """The original model and a copy of the oracle, verified as if they were unlearned models."""
    root = tmp_path_factory.mktemp("verify")
    shutil.copytree(tiny_oracle.model.path, root / "oracle_copy")
    return verify_models({"unchanged": tiny_base.model.path, "oracle_copy": root / "oracle_copy"},
                         tiny_base.model.path, tiny_oracle.model.path, tiny_world_dir, tiny_request_path,
                         config=VerifyConfig(policy=tiny_policy, bootstrap_samples=200))


def test_original_is_not_forgotten_and_oracle_copy_is(verification) -> None:
    unchanged, copy = verification.verdicts["unchanged"], verification.verdicts["oracle_copy"]
    # The unchanged model still answers about the deleted people: not forgotten.
    assert unchanged.forgotten == "no"
    assert verification.candidates["unchanged"].sets["forget"]["exact_match"] > \
        verification.oracle.sets["forget"]["exact_match"] + 0.3
    # A copy of the oracle is the oracle: identical truth ratios (KS p = 1), identical AUCs.
    checks = {c.policy_key: c for c in verification.checks["oracle_copy"]}
    assert checks["forget_quality"].value == pytest.approx(1.0)
    for key in ("membership_inference", "over_unlearning_leak", "forget_exact_match", "multiple_choice"):
        assert checks[key].value == pytest.approx(checks[key].reference, abs=1e-9)
    assert copy.forgotten in ("yes", "not verified")
    # The unchanged model has no collateral damage: every ratio against itself is 1.
    assert verification.verdicts["unchanged"].collateral_damage == "none"
    assert set(verification.plan_sizes) == {"forget", "holdout", "retain", "neighbours", "general"}


def test_thin_evidence_is_not_verified(tiny_world_dir, tiny_request_path, tiny_base, tiny_oracle, tmp_path) -> None:
    shutil.copytree(tiny_oracle.model.path, tmp_path / "copy")
    result = verify_models({"copy": tmp_path / "copy"}, tiny_base.model.path, tiny_oracle.model.path,
                           tiny_world_dir, tiny_request_path,
                           config=VerifyConfig(policy=override_policy(default_policy(), evidence={"min_subjects": 5}),
                                               bootstrap_samples=200))
    verdict = result.verdicts["copy"]
    assert verdict.forgotten == "not verified" and verdict.confidence == "low"
    assert any("forget people" in r for r in verdict.reasons)


def test_oracle_must_be_an_oracle_for_this_request(tiny_world_dir, tiny_request_path, tiny_base) -> None:
    with pytest.raises(ExpungeError, match="not a retrained oracle"):
        verify_models({"m": tiny_base.model.path}, tiny_base.model.path, tiny_base.model.path,
                      tiny_world_dir, tiny_request_path)
    with pytest.raises(ExpungeError, match="may not be"):
        verify_models({"oracle": tiny_base.model.path}, tiny_base.model.path, tiny_base.model.path,
                      tiny_world_dir, tiny_request_path)


def test_what_survives_is_scored_only_where_no_retain_term_trained(verification, tiny_world_dir,
                                                                    tiny_request_path) -> None:
    from expunge.ledger import load_request
    from expunge.locate import locate, split_retain
    from expunge.worlds import load_world

    world = load_world(tiny_world_dir)
    split = split_retain(world, locate(world, load_request(tiny_request_path, world)))
    plan = plan_verification(world, load_request(tiny_request_path, world), FAST)
    trained = set(split.train.subjects)
    for name in ("retain", "neighbours", "general"):
        assert not trained & set(plan.subjects[name]), name
    assert plan.subjects["retain"] and plan.subjects["general"]
    assert not {t for t in plan.text_subjects["retain"]} & trained


def test_facts_per_set_can_be_capped(tiny_world_dir, tiny_request_path) -> None:
    from expunge.ledger import load_request
    from expunge.worlds import load_world

    world = load_world(tiny_world_dir)
    request = load_request(tiny_request_path, world)
    full = plan_verification(world, request, FAST)
    capped = plan_verification(world, request, VerifyConfig(max_facts_per_set=3, bootstrap_samples=200))
    for name, probes in capped.probes.items():
        facts = {(p.subject, p.attribute) for p in probes}
        assert len(facts) == min(3, len({(p.subject, p.attribute) for p in full.probes[name]})), name
        # every question of a chosen fact is kept
        assert [p.id for p in probes] == [p.id for p in full.probes[name] if (p.subject, p.attribute) in facts]
    assert plan_verification(world, request, VerifyConfig(max_facts_per_set=3)).probes == capped.probes
    # The routes follow the forget set's chosen facts; those about no question of their own
    # (multi-hop through the employer, reverse questions by the value) all stay.
    chosen = {(p.subject, p.attribute) for p in capped.probes["forget"]}
    asked = {(p.subject, p.attribute) for p in full.probes["forget"]}
    for kind, probes in full.indirect.items():
        kept = [p for p in probes if (p.subject, p.attribute) in chosen or (p.subject, p.attribute) not in asked]
        assert capped.indirect.get(kind, []) == kept, kind
    assert sum(map(len, capped.indirect.values())) < sum(map(len, full.indirect.values()))
    assert capped.indirect["multihop"] == full.indirect["multihop"]
    with pytest.raises(ValueError, match="max_facts_per_set"):
        VerifyConfig(max_facts_per_set=0)


def test_reports(verification, tmp_path: Path) -> None:
    data = report_from_verification(verification, runs={"unchanged": {"seconds": 1.0, "steps": 0,
                                                                      "stop_reason": "none"}},
                                    retraining_seconds=10.0)
    assert [row["model"] for row in data.table] == ["original", "oracle", "unchanged", "oracle_copy"]
    row = data.table[2]
    assert row["fraction_of_retraining"] == pytest.approx(0.1) and row["forgotten"] == "no"
    written = write_report(data, tmp_path / "r.json")
    parsed = json.loads(written.read_text())  # strict JSON: no NaN
    assert parsed["table"][2]["model"] == "unchanged"
    assert "NaN" not in written.read_text()
    markdown = to_markdown(data)
    assert "| model |" in markdown and "## unchanged" in markdown and "NOT forgotten" in markdown
    html = to_html(data)
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html
    with pytest.raises(ExpungeError, match="already exists"):
        write_report(data, tmp_path / "r.json")
    with pytest.raises(ExpungeError, match="unknown report format"):
        write_report(data, tmp_path / "r.pdf")


def test_leak_flag_and_uncounted_checks() -> None:
    leak = Check("leak", "forgotten", 0.2, 0.5, ">= oracle - 0.1", False, policy_key="over_unlearning_leak")
    passed = Check("em", "forgotten", 0.0, 0.0, "<= oracle + 0.05", True, policy_key="forget_exact_match")
    # A failing check that does not count (uninformative route, or not required by the policy).
    ignored = Check("cloze", "forgotten", 0.9, 0.0, "<= oracle + 0.1", False, decisive=False)
    verdict = roll_up([leak, passed, ignored, _check("collateral", True)], [], SIZES, {}, [])
    assert verdict.forgotten == "no" and verdict.flags and "over-unlearning" in verdict.summary
    assert not any(r.startswith("failed: cloze") for r in verdict.reasons)
    assert ignored.status == "not counted" and leak.status == "FAIL" and passed.status == "pass"
    clean = roll_up([passed, ignored, _check("collateral", True)], [], SIZES, {}, [])
    assert clean.forgotten == "yes" and not clean.flags
    # Two routes under one policy key fail: the key is named once; passed and uncounted checks not at all.
    routes = [Check(f"indirect: {k}", "forgotten", 0.9, 0.7, "<= oracle + 0.1", False, policy_key="indirect_probes")
              for k in ("context", "roleplay")]
    verification = Verification({}, "r", "w", {}, None, None, {}, {"m": [leak, *routes, passed, ignored]}, {}, {}, {})
    assert verification.failed_checks("m") == ["over_unlearning_leak", "indirect_probes"]


# --- the oracle is checked before it is trusted ---------------------------------------------------


def _evaluation(name: str, exact_match: dict[str, float], member_shift: float = 0.0) -> ModelEvaluation:
    """A synthetic evaluation: exact match per set, and membership scores of 20 deleted and 20
    never-seen people (5 documents each) whose deleted-people scores are shifted by ``member_shift``."""
    rng = np.random.default_rng(0)
    scores = {"forget": {s: list(rng.normal(member_shift, 1.0, 100)) for s in SCORE_NAMES},
              "holdout": {s: list(rng.normal(0.0, 1.0, 100)) for s in SCORE_NAMES}}
    return ModelEvaluation(name=name, model={}, sets={k: {"exact_match": v} for k, v in exact_match.items()},
                           utility=1.0, correct_by_probe={}, answers={}, truth_ratios={}, mia_scores=scores)


PEOPLE = SimpleNamespace(text_subjects={"forget": [f"f{i // 5}" for i in range(100)],
                                        "holdout": [f"h{i // 5}" for i in range(100)]})
ORIGINAL = {"forget": 0.95, "holdout": 0.02, "retain": 0.88, "neighbours": 0.9, "general": 1.0}


def test_a_good_oracle_is_trusted() -> None:
    oracle = _evaluation("oracle", {"forget": 0.04, "holdout": 0.02, "retain": 0.86, "neighbours": 0.88, "general": 1.0})
    checks = check_oracle(_evaluation("original", ORIGINAL), oracle, PEOPLE, FAST)
    assert [c.policy_key for c in checks] == ["oracle.max_knowledge_gap"] * 3 + ["oracle.max_forget_gap",
                                                                                 "oracle.auc_margin"]
    assert all(c.passed for c in checks), checks
    verdict = roll_up([_check("forgotten", True), _check("collateral", True)], [], SIZES, {}, [],
                      oracle_checks=checks)
    assert verdict.forgotten == "yes" and not verdict.flags


@pytest.mark.parametrize(("sets", "shift", "failing"), [
    # The oracle: trained as long as the base model, it knew 0.47 of the retained facts
    # where the base knew 0.88.
    ({"retain": 0.47}, 0.0, "oracle retain exact match = 0.470"),
    # It knows the deleted people (their documents were not all removed).
    ({"forget": 0.40}, 0.0, "oracle exact match, deleted vs never-seen people = 0.400"),
    # Its membership scores tell the deleted people from strangers (AUC far from 0.5).
    ({}, -1.5, "oracle membership AUC, deleted vs never-seen"),
])
def test_a_failing_oracle_makes_forgotten_not_verified(sets, shift, failing) -> None:
    good = {"forget": 0.04, "holdout": 0.02, "retain": 0.86, "neighbours": 0.88, "general": 1.0}
    oracle = _evaluation("oracle", {**good, **sets}, member_shift=shift)
    checks = check_oracle(_evaluation("original", ORIGINAL), oracle, PEOPLE, FAST)
    assert [c.passed for c in checks].count(False) == 1, [(c.name, c.value, c.passed) for c in checks]
    # Every candidate check passes, and still nothing can be called forgotten.
    verdict = roll_up([_check("forgotten", True), _check("collateral", True)], [], SIZES, {}, [],
                      oracle_checks=checks)
    assert verdict.forgotten == "not verified" and verdict.collateral_damage == "none"
    assert verdict.flags == [VerdictFlag.ORACLE_UNTRUSTED] and "oracle failed its own checks" in verdict.summary
    assert any(r.startswith(f"oracle not trusted: {failing}") for r in verdict.reasons), verdict.reasons


def test_the_tiny_oracle_is_checked_and_reported(verification) -> None:
    keys = [c.policy_key for c in verification.oracle_checks]
    assert keys.count("oracle.max_knowledge_gap") == 3 and "oracle.auc_margin" in keys
    # Retrained on the same recipe, it passes the tiny world's tolerance (conftest.TINY_ORACLE_GAP).
    assert verification.oracle_trusted
    data = report_from_verification(verification)
    assert data.verification["oracle_trusted"] and len(data.verification["oracle_checks"]) == len(keys)
    assert "## The oracle, checked first" in to_markdown(data)
    assert "The oracle, checked first" in to_html(data, with_plots=False)


def test_oracle_tolerances_come_from_the_policy(tmp_path: Path) -> None:
    assert default_policy().oracle == {"max_knowledge_gap": 0.1, "max_forget_gap": 0.15, "auc_margin": 0.15}
    path = tmp_path / "p.toml"
    path.write_text("[oracle]\nmax_knowledge_gap = 0.5\n")
    assert load_policy(path).oracle["max_knowledge_gap"] == 0.5
    for text, message in (("[oracle]\nmax_gap = 0.1\n", "unknown key oracle.max_gap"),
                          ("[oracle]\nauc_margin = 2\n", "oracle.auc_margin = 2 is out of range")):
        path.write_text(text)
        with pytest.raises(ExpungeError, match=message):
            load_policy(path)
    # A looser policy trusts the oracle.
    loose = VerifyConfig(policy=override_policy(default_policy(), oracle={"max_knowledge_gap": 0.5}),
                         bootstrap_samples=200)
    oracle = _evaluation("oracle", {"forget": 0.04, "holdout": 0.02, "retain": 0.47, "neighbours": 0.88,
                                    "general": 1.0})
    assert all(c.passed for c in check_oracle(_evaluation("original", ORIGINAL), oracle, PEOPLE, loose))


@pytest.mark.parametrize("generated,answer,match", [
    ("Paris. It is known for the Eiffel Tower.", "Paris", True),  # a pretrained model writes on
    ("paris", "Paris", True),
    ("Paris is the capital", "Paris", False),  # more words without a break: not the answer
    ("Parisian food", "Paris", False),
    ("Bangkok, Thailand. She moved", "Bangkok, Thailand", True),  # the answer's own comma is kept
    ("Bangkok, Thailand", "Bangkok", True),
    ("12 march 1975 . she", "12 March 1975", True),  # a word-level tokenizer's decoding
    ("555 - 47 - 12", "555-47-12", True),
    ("a nurse", "nurse", True),
    ("The author's full name is Hsiao Yun-Hwa. Her books", "The author's full name is Hsiao Yun-Hwa.", True),
    ("London", "Paris", False),
])
def test_exact_match_scores_the_first_answer_span(generated: str, answer: str, match: bool) -> None:
    from expunge.verify.probes import answer_matches

    assert answer_matches(generated, answer) is match


# --- verification without an oracle (knowledge from pretraining) ---------------------------------


@pytest.fixture(scope="module")
def no_oracle(tiny_world_dir, tiny_request_path, tiny_base, tiny_oracle, tmp_path_factory):
    """The original model and a model that never saw the deleted people (the oracle, copied),
    verified with no oracle at all: against never-seen people, chance and the original."""
    root = tmp_path_factory.mktemp("no-oracle")
    shutil.copytree(tiny_oracle.model.path, root / "never_saw")
    return verify_models({"unchanged": tiny_base.model.path, "never_saw": root / "never_saw"},
                         tiny_base.model.path, None, tiny_world_dir, tiny_request_path, config=FAST)


def test_without_an_oracle_the_unchanged_model_is_not_forgotten(no_oracle) -> None:
    assert no_oracle.oracle is None and no_oracle.reference is Reference.NO_ORACLE
    # The reference is checked first: the original knows the deleted people beyond never-seen ones.
    [reference] = no_oracle.oracle_checks
    assert reference.passed and reference.value >= 0.15, reference
    unchanged = no_oracle.verdicts["unchanged"]
    assert unchanged.forgotten == "no" and unchanged.reference is Reference.NO_ORACLE
    assert "no oracle" in unchanged.summary
    assert any(r.startswith("reference: no oracle") and "cannot show" in r for r in unchanged.reasons)
    checks = {c.policy_key: c for c in no_oracle.checks["unchanged"]}
    em = checks["forget_exact_match"]
    # The reference is the same model's exact match on never-seen people, far below the forget set's.
    assert em.reference == pytest.approx(no_oracle.candidates["unchanged"].sets["holdout"]["exact_match"])
    assert em.passed is False and em.value > em.reference + 0.3 and "reference" in em.rule
    assert checks["membership_inference"].reference == 0.5
    assert checks["forget_quality"].name.startswith("forget quality (KS p-value vs never-seen")
    assert all("oracle" not in c.rule for c in no_oracle.checks["unchanged"])
    assert unchanged.collateral_damage == "none"  # against itself


def test_without_an_oracle_a_model_that_never_saw_the_data_is_not_caught(no_oracle) -> None:
    """A model that never saw the deleted people is judged at the level of never-seen people and
    chance: no "forgotten: no", and each forgotten-check within its margin of the reference."""
    verdict = no_oracle.verdicts["never_saw"]
    assert verdict.forgotten in ("yes", "not verified"), verdict.reasons
    counted = [c for c in no_oracle.checks["never_saw"] if c.question == "forgotten" and c.decisive]
    assert counted and all(c.passed is not False for c in counted), counted
    data = report_from_verification(no_oracle)
    assert [row["model"] for row in data.table] == ["original", "unchanged", "never_saw"]
    assert "No oracle: the reference" in to_markdown(data) and "No oracle: the reference" in to_html(data, with_plots=False)
    assert json.loads(json.dumps(no_oracle.to_dict(), default=str))["oracle"] is None


def test_without_an_oracle_an_original_that_never_knew_leaves_nothing_to_forget(
        tiny_world_dir, tiny_request_path, tiny_oracle, tmp_path) -> None:
    shutil.copytree(tiny_oracle.model.path, tmp_path / "copy")
    result = verify_models({"copy": tmp_path / "copy"}, tiny_oracle.model.path, None, tiny_world_dir,
                           tiny_request_path, config=FAST)
    verdict = result.verdicts["copy"]
    assert result.oracle_checks[0].passed is False
    assert verdict.forgotten == "not verified" and verdict.flags == [VerdictFlag.NOTHING_TO_FORGET]
    assert "no knowledge of the forget set" in verdict.summary
    assert any(r.startswith("nothing measurable to forget") for r in verdict.reasons)


def test_chance_references() -> None:
    probes = [_probe("a", "x", ("y", "z", "w")), _probe("b", "x", ("y",)), _probe("c", "x", ())]
    assert _chance(probes) == pytest.approx((1 / 4 + 1 / 2) / 2)  # a probe without options has no chance level
    assert math.isnan(_chance(probes[2:]))
    # 20 of 20 facts prefer the true answer: far from chance; 10 of 20: chance.
    assert _prefers_true([0.5] * 20)[0] < 1e-5
    assert _prefers_true([0.5] * 10 + [2.0] * 10)[0] > 0.5
    assert _prefers_true([0.5] * 3 + [2.0] * 17)[1] == "3 of 20 facts prefer the true answer"


def test_membership_needs_enough_never_seen_documents(tiny_world_dir, tiny_request_path, tiny_base,
                                                      tmp_path) -> None:
    config = VerifyConfig(policy=override_policy(default_policy(), evidence={"min_subjects": 2,
                                                                             "min_reference_documents": 10_000}),
                          bootstrap_samples=200)
    result = verify_models({"m": tiny_base.model.path}, tiny_base.model.path, None, tiny_world_dir,
                           tiny_request_path, config=config)
    checks = {c.policy_key: c for c in result.checks["m"]}
    for key in ("membership_inference", "over_unlearning_leak"):
        assert checks[key].rule == "not available" and not checks[key].decisive
        assert "need 10000 of each" in checks[key].detail



# --- routes scored where the answers are sentences; exact match below its informative floor -------


ROUTE_PROBES = [Probe(id=f"r{i}", subject=f"s{i // 4}", kind="prefill", attribute=f"a{i}", prompt="q",
                      answer="a long answer", alternatives=("x", "y") if i % 2 else ()) for i in range(24)]


def _routes(name: str, em: float, mc: float, rouge: float, retain_em: float = 0.8) -> ModelEvaluation:
    """A synthetic evaluation of the prefill route on 24 probes (12 with wrong answers) and of the
    retained people's exact match."""
    per = {"indirect:prefill": [i < em * 24 for i in range(24)],
           "indirect-mc:prefill": [i < mc * 12 for i in range(12)],
           "indirect-rouge:prefill": [rouge] * 24}
    return ModelEvaluation(name=name, model={}, sets={"retain": {"exact_match": retain_em}}, utility=1.0,
                           correct_by_probe=per, answers={}, truth_ratios={}, mia_scores={},
                           indirect={"prefill": {"probes": 24, "exact_match": em, "multiple_choice": mc,
                                                 "rouge_l": rouge}})


def _measure(key: str, candidate: ModelEvaluation, original: ModelEvaluation,
             oracle: ModelEvaluation) -> list[Check]:
    spec = next(s for s in check_specs() if s.key == key)
    plan = SimpleNamespace(indirect={"prefill": ROUTE_PROBES})
    return spec.measure(JudgeInputs(candidate, original, oracle, plan, FAST), FAST.policy.checks[key])


@pytest.mark.parametrize(("candidate_rouge", "passed"), [(0.80, False), (0.40, True)])
def test_a_route_is_scored_by_rouge_where_exact_match_says_little(candidate_rouge: float, passed: bool) -> None:
    # Sentence answers: the original rarely repeats one word for word (exact match 0.08 against
    # the oracle's 0), but its ROUGE-L recall is far above the oracle's.
    original, oracle = _routes("original", 0.08, 0.5, 0.90), _routes("oracle", 0.0, 0.5, 0.35)
    [check] = _measure("indirect_probes", _routes("candidate", 0.0, 0.5, candidate_rouge), original, oracle)
    assert check.name == "indirect: prefill (rouge l)" and check.reference == 0.35
    assert check.passed is passed and check.decisive
    # Where exact match separates the original from the oracle most, it is the score.
    original = _routes("original", 0.75, 0.5, 0.90)
    [check] = _measure("indirect_probes", _routes("candidate", 0.5, 0.5, 0.4), original, oracle)
    assert check.name == "indirect: prefill (exact match)" and check.passed is False
    # Multiple choice counts only the probes with wrong answers (12 here: too few to decide).
    original = _routes("original", 0.0, 1.0, 0.40)
    [check] = _measure("indirect_probes", _routes("candidate", 0.0, 1.0, 0.4), original, oracle)
    assert check.name == "indirect: prefill (multiple choice)" and "12 probes" in check.detail
    assert check.passed is False and not check.decisive


@pytest.mark.parametrize(("original_em", "candidate_em", "decisive"), [(0.8, 0.5, True), (0.10, 0.05, False)])
def test_exact_match_kept_decides_only_above_the_informative_floor(original_em: float, candidate_em: float,
                                                                   decisive: bool) -> None:
    original, oracle = _routes("original", 0, 0, 0, original_em), _routes("oracle", 0, 0, 0, original_em)
    [check] = _measure("retain_exact_match", _routes("candidate", 0, 0, 0, candidate_em), original, oracle)
    assert check.passed is False and check.decisive is decisive
    assert ("uninformative" in check.detail) is not decisive


def test_model_utility_names_the_parts_that_fell_furthest() -> None:
    """Model utility is a harmonic mean: its check says which parts moved, so that a failure
    driven by, say, raw answer probabilities is told apart from lost answers."""

    def evaluation(name: str, general_prob: float) -> ModelEvaluation:
        sets = {"retain": {"prob": 0.5, "rouge_l": 0.6, "truth_ratio_retain_stat": 0.4},
                "general": {"prob": general_prob, "rouge_l": 0.3, "truth_ratio_retain_stat": 0.5}}
        utility = harmonic_mean([v for s in sets.values() for v in s.values()])
        return ModelEvaluation(name=name, model={}, sets=sets, utility=utility, correct_by_probe={}, answers={},
                               truth_ratios={}, mia_scores={})

    original = evaluation("original", 0.2)
    [check] = _measure("model_utility", evaluation("candidate", 0.05), original, original)
    assert check.passed is False
    assert check.detail.startswith("harmonic mean of retain prob, retain rouge_l, retain truth_ratio_retain_stat, "
                                   "general prob")
    assert "furthest below the original: general prob 0.050 vs 0.200 (0.25x)" in check.detail
    [check] = _measure("model_utility", evaluation("candidate", 0.2), original, original)
    assert check.passed is True


# --------------------------------------------------------------------------------------------
# verbatim memorisation of texts (copyright): the checks on synthetic evaluations

VERBATIM_PROBES = [Probe(id=f"b{i // 4}/passage-{i % 4:02d}/verbatim-0", subject=f"b{i // 4}", kind="verbatim",
                         attribute=f"passage-{i % 4:02d}", prompt="The first words", answer="and the rest of it")
                   for i in range(24)]


def _texts(name: str, forget: float, retain: float = 0.9, holdout: float | None = 0.1) -> ModelEvaluation:
    """A synthetic evaluation whose removed texts' continuations score ``forget`` on every
    verbatim metric (retained texts ``retain``, never-seen ones ``holdout``)."""
    sets = {"forget": forget, "retain": retain, **({} if holdout is None else {"holdout": holdout})}
    verbatim = {s: {"probes": 24, "rouge_l_f1": v, "exact_memorization": v, "extraction_strength": v}
                for s, v in sets.items()}
    per = {f"{m}:{s}": [v] * 24 for s, v in sets.items()
           for m in ("rouge_l_f1", "exact_memorization", "extraction_strength")}
    return ModelEvaluation(name=name, model={}, sets={}, utility=1.0, correct_by_probe=per, answers={},
                           truth_ratios={}, mia_scores={}, verbatim=verbatim)


def _verbatim_checks(key: str, candidate: ModelEvaluation, original: ModelEvaluation,
                     oracle: ModelEvaluation | None) -> list[Check]:
    spec = next(s for s in check_specs() if s.key == key)
    plan = SimpleNamespace(verbatim={"forget": VERBATIM_PROBES})
    return spec.measure(JudgeInputs(candidate, original, oracle, plan, FAST), FAST.policy.checks[key])


@pytest.mark.parametrize(("candidate", "passed"), [(0.50, False), (0.34, True), (0.05, True)])
def test_verbatim_memorization_is_judged_against_the_oracle(candidate: float, passed: bool) -> None:
    original, oracle = _texts("original", 0.95), _texts("oracle", 0.30)
    [check] = _verbatim_checks("verbatim_memorization", _texts("c", candidate), original, oracle)
    assert check.passed is passed and check.decisive and check.reference == 0.30
    assert check.rule == "<= oracle + 0.1" and check.interval == pytest.approx([candidate, candidate])
    # Exact memorisation and extraction strength are measured the same way, and reported only.
    for key in ("exact_memorization", "extraction_strength"):
        [other] = _verbatim_checks(key, _texts("c", candidate), original, oracle)
        assert other.passed is passed and not other.decisive


def test_verbatim_memorization_without_an_oracle_uses_never_seen_texts() -> None:
    original = _texts("original", 0.95)
    [check] = _verbatim_checks("verbatim_memorization", _texts("c", 0.12), original, None)
    assert check.reference == 0.1 and check.passed and check.decisive and check.rule == "<= reference + 0.1"
    # An original that does not continue its texts better than never-seen ones shows nothing.
    [flat] = _verbatim_checks("verbatim_memorization", _texts("c", 0.12), _texts("original", 0.2), None)
    assert not flat.decisive and "uninformative" in flat.detail
    [missing] = _verbatim_checks("verbatim_memorization", _texts("c", 0.12, holdout=None), original, None)
    assert missing.rule == "not available" and not missing.decisive


@pytest.mark.parametrize(("retain", "passed"), [(0.7, False), (0.86, True)])
def test_retained_texts_must_stay_memorised(retain: float, passed: bool) -> None:
    [check] = _verbatim_checks("retain_verbatim", _texts("c", 0.3, retain=retain), _texts("original", 0.95),
                               _texts("oracle", 0.3))
    assert check.passed is passed and check.reference == 0.9 and check.rule == ">= 0.8 x original"


def test_worlds_without_texts_have_no_verbatim_checks() -> None:
    people = ModelEvaluation(name="c", model={}, sets={}, utility=1.0, correct_by_probe={}, answers={},
                             truth_ratios={}, mia_scores={})
    for key in ("verbatim_memorization", "exact_memorization", "extraction_strength", "retain_verbatim"):
        assert _verbatim_checks(key, people, people, people) == []
