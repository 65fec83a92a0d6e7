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
    assert result.exit_code == 2 and "use one of: companies, companies-large, default, tiny" in _error_line(result)


def test_train_and_retrain_json(cli_world: Path, tmp_path: Path) -> None:
    result = run("train", "--world", cli_world, "--out", tmp_path / "base", "--preset", "tiny", "--json")
    assert result.exit_code == 0, result.output
    base = json.loads(result.stdout)
    assert base["completed"] and base["steps"] == 800 and base["model"]["sha256"]
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
