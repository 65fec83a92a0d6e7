"""The verifier's accuracy panel on the tiny world: four models with known right verdicts.

The full acceptance run (default world, three seeds) is ``benchmarks/verifier_panel.py``; this is
the same panel on the tiny world, with the evidence floors lowered to what it has: two forget
people and four never-seen ones (so a membership AUC's bootstrap interval is about 0.5 wide), and
the oracle's knowledge tolerance widened to what removing a quarter of its people costs
(``tiny_policy`` in conftest.py).
"""

from __future__ import annotations

import pytest

from expunge.panel import PANEL, confusion_table, run_panel
from expunge.verify.policy import override_policy
from expunge.verify.suite import VerifyConfig


@pytest.fixture(scope="module")
def panel(tiny_world_dir, tiny_request_path, tiny_base, tiny_oracle, tiny_policy, tmp_path_factory):
    config = VerifyConfig(policy=override_policy(tiny_policy, evidence={"max_auc_ci_width": 0.8}),
                          attacks=True,
                          bootstrap_samples=200)
    return run_panel(tiny_world_dir, tiny_request_path, tiny_base.model.path, tiny_oracle.model.path,
                     tmp_path_factory.mktemp("panel"), retrain_seed=1, config=config)


def test_panel_gives_the_right_verdicts(panel) -> None:
    assert set(panel.correct) == set(PANEL)
    assert all(panel.correct.values()), panel.rows()
    assert panel.score == "4/4"


def test_refusal_is_caught_by_a_route_the_refusal_does_not_cover(panel) -> None:
    checks = panel.verification.checks["refusal"]
    failed = {c.policy_key for c in checks if c.decisive and c.passed is False}
    # It refuses the questions it was trained on, so exact match alone would call it forgotten;
    # the knowledge shows through other routes.
    assert failed - {"forget_exact_match"}, [(c.name, c.value, c.reference) for c in checks]


def test_attacks_ran_and_are_reported(panel) -> None:
    verification = panel.verification
    for evaluation in (verification.original, verification.oracle, *verification.candidates.values()):
        assert set(evaluation.attacks) == {"relearning", "quantization", "logit_lens", "linear_probe"}
    verdict = verification.verdicts["unchanged"]
    assert any(r.startswith("attack: relearning") for r in verdict.attacks_tried)
    rows = confusion_table([panel])
    assert [r["model"] for r in rows] == list(PANEL) and all(r["runs"] == 1 for r in rows)


def test_report_has_the_attacks_section_and_recovery_curves(panel) -> None:
    from expunge.report import report_from_verification, to_html, to_markdown
    from expunge.report.data import attack_rows

    data = report_from_verification(panel.verification)
    rows = attack_rows(data)
    assert {r["attack"] for r in rows} >= {"relearning (40 steps)", "quantization 8-bit", "quantization 4-bit",
                                           "logit lens (best layer)", "linear probe"}
    for row in rows:
        # Recovery is a fraction of the original's accuracy under the same attack: 1 for itself.
        assert row["original recovery"] == pytest.approx(1.0)
        assert row["unchanged recovery"] == pytest.approx(1.0)
    html = to_html(data)
    assert html.count("data:image/png;base64,") == 4  # the relearning curves join the three plots
    assert "Attacks: accuracy recovered" in html and "Indirect probes" in html
    markdown = to_markdown(data)
    assert "Curves of the relearning attack" in markdown and "| cloze |" in markdown
