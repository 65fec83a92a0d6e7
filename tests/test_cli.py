"""The CLI through CliRunner: outputs, --json, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expunge.cli import app

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "world"
    result = run("world", "privacy", "--out", out, "--people", "8", "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["people_train"] == 8 and data["fingerprint"]
    return out


def test_world_writes_files(cli_world: Path) -> None:
    assert {p.name for p in cli_world.iterdir()} == {"manifest.json", "subjects.jsonl", "documents.jsonl", "probes.jsonl"}


def test_world_refuses_existing_output(cli_world: Path) -> None:
    result = run("world", "privacy", "--out", cli_world, "--people", "8")
    assert result.exit_code == 2
    assert "already exists" in _error_line(result) and "fix:" in _error_line(result)


def test_world_bad_option(tmp_path: Path) -> None:
    result = run("world", "privacy", "--out", tmp_path / "w", "--people", "2")
    assert result.exit_code == 2 and "people must be at least 8" in _error_line(result)
    assert not (tmp_path / "w").exists()


def test_request_variants(cli_world: Path, tmp_path: Path) -> None:
    result = run("request", "--world", cli_world, "--subjects", "person-0001,person-0002", "--out", tmp_path / "r.json", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["subjects"] == ["person-0001", "person-0002"] and data["documents"] > 0
    result = run("request", "--world", cli_world, "--random-fraction", "0.25", "--out", tmp_path / "r2.json")
    assert result.exit_code == 0 and "2 subjects" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--subjects", "person-9999"), "unknown subject id 'person-9999'"),
        ((), "removes nothing"),
        (("--random-fraction", "1.5"), "not between 0 and 1"),
    ],
)
def test_request_errors(cli_world: Path, tmp_path: Path, args, message: str) -> None:
    result = run("request", "--world", cli_world, "--out", tmp_path / "r.json", *args)
    assert result.exit_code == 2
    assert message in _error_line(result)
    assert not (tmp_path / "r.json").exists()


def test_missing_world_and_malformed_jsonl(cli_world: Path, tmp_path: Path) -> None:
    result = run("train", "--world", tmp_path / "nowhere", "--out", tmp_path / "m", "--preset", "tiny")
    assert result.exit_code == 2 and "world directory" in _error_line(result)
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in cli_world.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    lines = (broken / "probes.jsonl").read_text().splitlines()
    lines[4] = lines[4][:-3]
    (broken / "probes.jsonl").write_text("\n".join(lines) + "\n")
    result = run("train", "--world", broken, "--out", tmp_path / "m", "--preset", "tiny")
    assert result.exit_code == 2
    assert re.search(r"probes\.jsonl:5: malformed JSON", _error_line(result))
    assert not (tmp_path / "m").exists()


def test_unknown_preset(cli_world: Path, tmp_path: Path) -> None:
    result = run("train", "--world", cli_world, "--out", tmp_path / "m", "--preset", "huge")
    assert result.exit_code == 2 and "use one of: companies, companies-large, default, finetune, passages, tiny" in _error_line(result)


def test_train_and_retrain_json(cli_world: Path, tmp_path: Path) -> None:
    result = run("train", "--world", cli_world, "--out", tmp_path / "base", "--preset", "tiny", "--json")
    assert result.exit_code == 0, result.output
    base = json.loads(result.stdout)
    assert base["completed"] and base["steps"] == 800 and base["model"]["sha256"]
    # The tiny recipe trains to its 800-step budget and says whether the model converged.
    assert isinstance(base["converged"], bool) and base["convergence"]["steps_per_epoch"] > 0
    assert set(base["knowledge"]) == {"retain", "holdout", "general"}
    assert (tmp_path / "base" / "expunge_model.json").is_file()

    result = run("train", "--world", cli_world, "--out", tmp_path / "base", "--preset", "tiny")
    assert result.exit_code == 2 and "already exists" in _error_line(result)

    assert run("request", "--world", cli_world, "--subjects", "person-0003", "--out", tmp_path / "r.json").exit_code == 0
    result = run("retrain", "--world", cli_world, "--request", tmp_path / "r.json", "--out", tmp_path / "oracle",
                 "--base", tmp_path / "base", "--json")
    assert result.exit_code == 0, result.output
    oracle = json.loads(result.stdout)
    assert oracle["kind"] == "oracle" and oracle["removed_documents"] > 0
    assert oracle["knowledge"]["forget"]["subjects"] == 1
    assert oracle["model"]["sha256"] != base["model"]["sha256"]


def test_forget_and_verify(tiny_world_dir, tiny_request_path, tiny_base, tiny_oracle, tmp_path: Path) -> None:
    result = run("forget", "--model", tiny_base.model.path, "--world", tiny_world_dir, "--request", tiny_request_path,
                 "--out", tmp_path / "simnpo", "--method", "simnpo", "-o", "max_steps=20", "--json")
    assert result.exit_code == 0, result.output
    forget = json.loads(result.stdout)
    assert forget["method"] == "simnpo" and forget["parent_sha256"] == tiny_base.model.sha256
    result = run("verify", "--model", tmp_path / "simnpo", "--original", tiny_base.model.path, "--oracle",
                 tiny_oracle.model.path, "--world", tiny_world_dir, "--request", tiny_request_path,
                 "--report", tmp_path / "r.html", "--report", tmp_path / "r.md", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [row["model"] for row in data["table"]] == ["original", "oracle", "simnpo"]
    verdict = data["verification"]["candidates"]["simnpo"]["verdict"]
    # Two forget people are below the default evidence floor of three: honestly not verified.
    assert verdict["forgotten"] in ("no", "not verified") and verdict["confidence"] == "low"
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert "## simnpo" in (tmp_path / "r.md").read_text()
    # The human output names the verdict; a wrong oracle is one clear error line.
    human = run("verify", "--model", tmp_path / "simnpo", "--original", tiny_base.model.path, "--oracle",
                tiny_oracle.model.path, "--world", tiny_world_dir, "--request", tiny_request_path)
    assert human.exit_code == 0 and "simnpo" in human.stdout and "confidence" in human.stdout
    wrong = run("verify", "--model", tmp_path / "simnpo", "--original", tiny_base.model.path, "--oracle",
                tiny_base.model.path, "--world", tiny_world_dir, "--request", tiny_request_path)
    assert wrong.exit_code == 2 and "not a retrained oracle" in _error_line(wrong)
    # The whole battery, under a user's policy that lowers the evidence floor to two people.
    policy = tmp_path / "policy.toml"
    policy.write_text("[evidence]\nmin_subjects = 2\n")
    result = run("verify", "--model", tmp_path / "simnpo", "--original", tiny_base.model.path, "--oracle",
                 tiny_oracle.model.path, "--world", tiny_world_dir, "--request", tiny_request_path, "--attacks",
                 "--policy", policy, "--report", tmp_path / "a.md", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    candidate = data["verification"]["candidates"]["simnpo"]
    assert set(candidate["attacks"]) == {"relearning", "quantization", "logit_lens", "linear_probe"}
    assert data["verification"]["config"]["policy"]["evidence"]["min_subjects"] == 2
    keys = {c["policy_key"] for c in candidate["checks"]}
    assert {"relearning", "quantization", "logit_lens", "linear_probe", "indirect_probes"} <= keys
    assert all(c["status"] in ("pass", "FAIL", "undecided", "not counted") for c in candidate["checks"])
    assert "## Attacks" in (tmp_path / "a.md").read_text()
    bad = run("verify", "--model", tmp_path / "simnpo", "--original", tiny_base.model.path, "--oracle",
              tiny_oracle.model.path, "--world", tiny_world_dir, "--request", tiny_request_path,
              "--policy", tmp_path / "missing.toml")
    assert bad.exit_code == 2 and "policy file" in _error_line(bad)
    # Without --oracle: the references are never-seen data, chance and the original, and the
    # verdict says so; the attacks, which need an oracle, are reported as not available.
    result = run("verify", "--model", tmp_path / "simnpo", "--original", tiny_base.model.path, "--world",
                 tiny_world_dir, "--request", tiny_request_path, "--attacks", "--policy", policy, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verification"]["oracle"] is None and data["verification"]["reference"].startswith("no oracle")
    assert [row["model"] for row in data["table"]] == ["original", "simnpo"]
    candidate = data["verification"]["candidates"]["simnpo"]
    assert candidate["verdict"]["reference"].startswith("no oracle")
    attacks = [c for c in candidate["checks"] if c["policy_key"] in ("relearning", "quantization")]
    assert attacks and all(c["status"] == "not counted" and "needs a retrained oracle" in c["detail"]
                           for c in attacks)
    assert "no oracle" in result.stderr


def test_policy_command(tmp_path: Path) -> None:
    result = run("policy", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"].endswith("policy.toml") and data["checks"]["relearning"]["question"] == "forgotten"
    bad = tmp_path / "bad.toml"
    bad.write_text("[checks.relearning]\nmargin = 2\n")
    result = run("policy", str(bad))
    assert result.exit_code == 2 and "checks.relearning.margin" in _error_line(result)


def test_demo_json_schema(tmp_path: Path) -> None:
    args = ("demo", "--workspace", tmp_path / "ws", "--preset", "tiny", "--people", "8", "--fraction", "0.25", "--json")
    result = run(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"world", "request", "base", "oracle", "method", "baseline", "runs", "table", "verdicts",
                         "targets", "reports", "seconds"}
    assert not data["base"]["cached"] and data["base"]["seconds"] > 0
    assert [row["model"] for row in data["table"]] == ["original", "oracle", "simnpo", "idkft"]
    assert set(data["verdicts"]) == {"simnpo", "idkft"}
    assert set(data["targets"]) == {"forget_em_within_oracle", "retain_em_ratio", "mia_auc_within_oracle",
                                    "plausibility_within_oracle", "fraction_of_retraining", "baseline_not_forgotten"}
    assert all(isinstance(t["passed"], bool) for t in data["targets"].values())
    for path in data["reports"].values():
        assert Path(path).is_file()
    # The README documents the schema: every key the demo prints, at the top and in a row.
    readme = README.read_text()
    schema = readme[readme.index("### `expunge demo --json` schema"):]
    for key in [*data, *data["table"][0], *data["targets"]]:
        assert f'"{key}"' in schema, f"demo --json key {key!r} is not in the README schema"
    again = json.loads(run(*args).stdout)
    assert again["base"]["cached"] and again["oracle"]["cached"]
    assert again["base"]["model"]["sha256"] == data["base"]["model"]["sha256"]
    # A second run writes new model versions and reports; it never touches the first run's.
    assert again["reports"]["json"] != data["reports"]["json"]
    assert Path(data["reports"]["json"]).is_file()
    # Both verifications went to the ledger; the demo ends with a certificate exactly when the
    # method was judged forgotten, and one that verifies with the ledger's key.
    from expunge.ledger import Ledger, resolve_url
    from expunge.ledger.certificate import check_certificate

    certificate = data["certificate"]
    ledger = Ledger.open(resolve_url(certificate["ledger"]), create=False)
    state = {r["request_id"]: r["state"] for r in ledger.requests()}[data["request"]["id"]]
    if data["verdicts"]["simnpo"]["forgotten"] == "yes":
        assert certificate["issued"] and Path(certificate["html"]).is_file()
        signed = json.loads(Path(certificate["json"]).read_text())
        assert check_certificate(signed, ledger.key.public)
        assert signed["models"]["output_sha256"] == data["runs"]["simnpo"]["model"]["sha256"]
    else:
        assert not certificate["issued"] and data["verdicts"]["simnpo"]["forgotten"] in certificate["why"]
    assert state == ("certified" if again["certificate"]["issued"] else "failed")  # the latest run's
    assert ledger.verify().ok


def test_demo_copyright_scenario(tmp_path: Path) -> None:
    """`demo --scenario copyright`: the passages world, a request for some of its books, and the
    copyright targets (MUSE's criteria against the oracle), each measured and judged."""
    from expunge.demo import COPYRIGHT_TARGETS

    args = ("demo", "--scenario", "copyright", "--workspace", tmp_path / "ws", "--preset", "tiny", "--size", "8",
            "--fraction", "0.25", "--json")
    result = run(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["scenario"] == "copyright" and "/passages-v" in data["world"]["path"]
    assert data["world"]["books_train"] == 8 and len(data["request"]["subjects"]) == 2
    assert all(s.startswith("book-") for s in data["request"]["subjects"])
    assert set(data["targets"]) == {*COPYRIGHT_TARGETS, "baseline_not_forgotten"}
    assert data["runs"]["simnpo"]["options"] == {"retain_loss": "kl", "generic_weight": 0.0}
    assert data["runs"]["idkft"]["options"] == {}
    assert all(isinstance(t["passed"], bool) for t in data["targets"].values())
    # The original memorised the removed books; the oracle never read them: the verbatim target
    # of an unchanged model would be far off, so the measured gap is the method's own.
    report = json.loads(Path(data["reports"]["json"]).read_text())
    verbatim = report["verbatim"]
    assert verbatim["original"]["forget"]["rouge_l_f1"] > verbatim["oracle"]["forget"]["rouge_l_f1"] + 0.3
    gap = data["targets"]["verbatim_within_oracle"]["value"]
    assert gap == pytest.approx(verbatim["simnpo"]["forget"]["rouge_l_f1"] - verbatim["oracle"]["forget"]["rouge_l_f1"])
    # The kept ratios carry the oracle's own ratio: how far from 1 a model that is right by
    # construction sits on this world (the target's noise floor).
    kept = data["targets"]["kept_verbatim_ratio"]
    assert kept["oracle"] == pytest.approx(verbatim["oracle"]["retain"]["rouge_l_f1"]
                                           / verbatim["original"]["retain"]["rouge_l_f1"])
    assert "oracle" not in data["targets"]["fraction_of_retraining"]
    assert "the oracle's" in run(*args[:-1]).output
    bad = run("demo", "--scenario", "poetry", "--workspace", tmp_path / "ws2")
    assert bad.exit_code == 2 and "unknown scenario 'poetry'" in _error_line(bad) and "copyright" in _error_line(bad)


def test_every_command_is_documented() -> None:
    readme = README.read_text()
    import typer.main

    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            names += [f"{name} {sub}" for sub in command.commands]
        else:
            names.append(name)
    for name in names:
        assert f"expunge {name}" in readme, f"`expunge {name}` is not documented in README.md"


def test_every_public_name_is_documented() -> None:
    import expunge

    api = (README.parent / "docs" / "api.md").read_text()
    missing = [name for name in expunge.__all__ if not re.search(rf"`{name}[`(]", api)]
    assert not missing, f"undocumented in docs/api.md: {missing}"
    for name in expunge.__all__:
        assert getattr(expunge, name) is not None


# --------------------------------------------------------------------------------------------
# terminal output that fits 80 columns


def _demo_rows() -> list[dict]:
    """Rows like the demo's ``table`` (README numbers), with the widest values each column can
    take: a p-value in exponent form, a negative PrivLeak, "not verified" verdicts."""
    from expunge.report import TABLE_COLUMNS

    values = {
        "original": dict(forget_em=0.953, retain_em=0.950, neighbours_em=0.976, general_em=0.919,
                         forget_quality=1.2e-9, mia_auc=1.0, privleak=90.476, model_utility=0.892,
                         plausibility=0.993),
        "oracle": dict(forget_em=0.027, retain_em=0.991, neighbours_em=0.997, general_em=0.983, forget_quality=1.0,
                       mia_auc=0.525, privleak=0.0, model_utility=0.950, plausibility=0.967, seconds=76.9,
                       fraction_of_retraining=1.0),
        "simnpo": dict(forget_em=0.013, retain_em=0.867, neighbours_em=0.870, general_em=0.872, forget_quality=0.41,
                       mia_auc=0.515, privleak=-1.905, model_utility=0.817, plausibility=0.917, seconds=7.2,
                       fraction_of_retraining=0.093, forgotten="yes", collateral_damage="yes", confidence="high"),
        "idkft": dict(forget_em=0.010, retain_em=0.821, neighbours_em=0.741, general_em=0.884, forget_quality=2.3e-5,
                      mia_auc=0.993, privleak=89.143, model_utility=0.785, plausibility=0.040, seconds=7.6,
                      fraction_of_retraining=0.099, forgotten="not verified", collateral_damage="not verified",
                      confidence="low"),
    }
    return [{key: (name if key == "model" else v.get(key)) for key, _, _ in TABLE_COLUMNS} for name, v in values.items()]


def _assert_fits(text: str, width: int = 80) -> None:
    assert text.strip(), "nothing was printed"
    assert "…" not in text, f"a cell was cut off:\n{text}"
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, f"{len(too_wide)} lines wider than {width} columns:\n" + "\n".join(too_wide)


@pytest.fixture
def console80(monkeypatch: pytest.MonkeyPatch):
    """The CLI's console replaced by an 80-column recording one (what a default terminal shows)."""
    import io

    from rich.console import Console

    import expunge.cli as cli

    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    monkeypatch.setattr(cli, "console", console)
    return console


def test_summaries_fit_80_columns_and_hide_no_value(console80) -> None:
    import expunge.cli as cli
    from expunge.report import format_value

    rows = _demo_rows()
    verdicts = {
        "simnpo": {"summary": "forgotten: yes; collateral damage: yes", "confidence": "high",
                   "reasons": ["neighbours exact match 0.870 < 0.9 x the original's 0.976 [0.93, 1.00]"]},
        "idkft": {"summary": "forgotten: not verified", "confidence": "low",
                  "reasons": ["membership inference AUC 0.993 > oracle 0.525 + 0.15"]},
    }
    knowledge = {group: {"subjects": 90, "direct_exact_match": 0.953, "paraphrase_exact_match": 0.933,
                         "chance": 0.065, "at_chance": group == "holdout"} for group in ("forget", "retain", "holdout")}
    knowledge["general"] = {"subjects": 40, "direct_exact_match": 0.919, "paraphrase_exact_match": 0.9,
                            "chance": None, "at_chance": None}
    model = {"path": "expunge-workspace/models/base-default-seed0", "sha256": "0123456789abcdef" * 4}
    demo = {
        "base": {"model": model, "cached": True, "seconds": 78.7},
        "oracle": {"model": model, "cached": False, "seconds": 76.9},
        "runs": {"simnpo": {"seconds": 7.2, "steps": 120, "stop_reason": "early stop: MIA AUC 0.53 <= 0.55"},
                 "idkft": {"seconds": 7.6, "steps": 60, "stop_reason": "max_steps"}},
        "table": rows, "verdicts": verdicts, "method": "simnpo", "scenario": "privacy",
        "targets": {"forget_em_within_oracle": {"value": 0.013, "target": "<= oracle + 0.05", "passed": True},
                    "baseline_not_forgotten": {"value": True, "target": "idkft not forgotten", "passed": True}},
        "reports": {kind: f"expunge-workspace/runs/20260101-000000-simnpo/report.{kind}" for kind in ("html", "md")},
        "seconds": 49.0,
    }
    cli._print_demo(demo)  # the summary table and the verdicts, as `expunge demo` prints them
    cli._print_training({"completed": True, "kind": "oracle", "model": model, "seconds": 76.9, "steps": 1200,
                         "tokens_per_second": 14289.0, "final_loss": 0.1234, "removed_documents": 120,
                         "knowledge": knowledge, "notes": []})
    text = console80.export_text()
    _assert_fits(text)
    # Every model and every value of the summary is on screen, whole.
    for row in rows:
        assert row["model"] in text
        for key in cli.SUMMARY_KEYS:
            assert format_value(row[key]) in text, (row["model"], key)
    assert model["sha256"] in text and "not verified" in text and "[0.93, 1.00]" in text


def test_summary_of_many_models_splits_into_tables_that_fit(console80) -> None:
    import expunge.cli as cli

    rows = _demo_rows()
    rows += [dict(row, model=f"{row['model']}-lora8-lr7e-4-max200") for row in rows[2:]]
    rows.append(dict(rows[2], model="m" * 120))  # wider than the terminal: folded, never cut
    console80.print(cli._summary_table(rows))
    text = console80.export_text()
    _assert_fits(text)
    for row in rows[:-1]:
        assert row["model"] in text
    assert text.count("m" * 40) >= 2  # the long name is there in pieces


def test_methods_listing_fits_80_columns(console80) -> None:
    result = run("methods")
    assert result.exit_code == 0, result.output
    text = console80.export_text()
    _assert_fits(text)
    data = json.loads(run("methods", "--json").stdout)
    for method in data["methods"]:
        assert method["name"] in text and method["paper"] in text  # the link is whole, on its own line


def test_demo_from_a_pretrained_model(tmp_path: Path, tiny_base) -> None:
    """`demo --from`: the base model is the given model fine-tuned on the world (preset finetune),
    the oracle the same recipe from the same weights; a recipe that builds a fresh model is
    refused before any work."""
    from expunge.models.io import read_model_record

    start = tiny_base.model.path  # any Hugging Face model directory whose tokenizer covers the world
    args = ("demo", "--workspace", tmp_path / "ws", "--from", start, "--people", "8", "--fraction", "0.25", "--json")
    result = run(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    base, oracle = (read_model_record(data[k]["model"]["path"])["recipe"] for k in ("base", "oracle"))
    assert base["from_model"]["path"] == str(start) and oracle["from_model"] == base["from_model"]
    assert base["preset"]["name"] == "finetune" and "finetune-from-" in data["base"]["model"]["path"]
    assert [row["model"] for row in data["table"]] == ["original", "oracle", "simnpo", "idkft"]
    bad = run("demo", "--workspace", tmp_path / "ws2", "--from", start, "--preset", "tiny")
    assert bad.exit_code == 2 and "--preset finetune" in _error_line(bad) and not (tmp_path / "ws2").exists()


def test_forget_checks_options_against_the_defaults_the_run_will_use(tiny_base, tiny_world_dir: Path,
                                                                      tiny_request_path: Path, tmp_path: Path) -> None:
    """A plain Hugging Face directory (no expunge record) is a pretrained model: its options are
    checked, before anything loads, against the pretrained defaults (warm-up 2 steps), not the
    built-in worlds' (5)."""
    import shutil

    from expunge.methods.registry import get_method

    plain = tmp_path / "plain"
    shutil.copytree(tiny_base.model.path, plain)
    (plain / "expunge_model.json").unlink()
    warmup = get_method("simnpo").defaults_for(pretrained=True)["warmup_steps"]
    assert warmup != get_method("simnpo").make_config({}).warmup_steps
    for model, steps in ((plain, warmup), (tiny_base.model.path, get_method("simnpo").make_config({}).warmup_steps)):
        result = run("forget", "--model", model, "--world", tiny_world_dir, "--request", tiny_request_path,
                     "--out", tmp_path / "out", "-o", f"max_steps={steps}")
        # (the plain directory also gets its one-line warning that nothing vouches for its weights)
        error = result.stderr.strip().splitlines()[-1]
        assert result.exit_code == 2 and error.startswith("error:") and f"warmup_steps ({steps}) must be" in error, \
            result.output
        assert not (tmp_path / "out").exists()
