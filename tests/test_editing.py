"""Editing on a tiny trained companies world: an edit changes the target prediction and nothing
it should not; the evaluation's scores move for the right reasons; `expunge edit` writes a new
version with an exact revert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expunge.cli import app
from expunge.methods.editing.common import revert
from expunge.methods.editing.memit import MEMITConfig, apply_memit
from expunge.methods.editing.registry import get_editor
from expunge.methods.editing.run import edit_model, revert_model_version
from expunge.methods.editing.stats import second_moment
from expunge.models.io import load_model, read_model_record
from expunge.records import FactEdit, Probe, read_jsonl
from expunge.verify.editing import edit_probe_sets, evaluate_edits
from expunge.worlds import load_world

runner = CliRunner()
PROMPT_LAST = dict(token="prompt_last", layers=(0, 1), covariance_weight=1.0, steps=60,
                   context_prefixes=("", "The company."))


@pytest.fixture(scope="module")
def setup(tiny_companies):
    world_dir, model_dir = tiny_companies
    world = load_world(world_dir)
    edits = read_jsonl(world_dir / "edits.jsonl", FactEdit)
    sets = edit_probe_sets(edits[:1], read_jsonl(world_dir / "edit_probes.jsonl", Probe), world.probes,
                           documents=world.training_documents())
    return world_dir, model_dir, world, edits, sets


def test_an_edit_changes_the_target_prediction_and_reverts(setup) -> None:
    world_dir, model_dir, world, edits, sets = setup
    model, tokenizer, _ = load_model(model_dir)
    texts = [d.text for d in world.training_documents()]
    base = evaluate_edits(model, tokenizer, sets, name="base")
    assert base.metrics["efficacy"] == 0.0 and base.metrics["neighbourhood"] == 1.0  # its own reference
    assert base.metrics["old_fact_probability"] > base.metrics["new_fact_probability"]
    assert base.metrics["generation_new"] == 0.0  # the new CEO is a name the model never saw in that role
    assert 0 < base.metrics["text_nll"] < 10 and len(sets.control_texts) > 50
    result = apply_memit(model, tokenizer, edits[:1], lambda layer: second_moment(model, tokenizer, texts, layer),
                         MEMITConfig(**PROMPT_LAST))
    after = evaluate_edits(model, tokenizer, sets, name="memit", reference=base)
    assert after.metrics["efficacy"] == 1.0  # the new CEO wins on every requested form
    assert after.metrics["old_fact_probability"] < base.metrics["old_fact_probability"] / 2
    assert after.metrics["new_fact_probability"] > base.metrics["new_fact_probability"]
    assert 0.0 <= after.metrics["neighbourhood"] <= 1.0 and after.sizes["neighbourhood"] > 0
    revert(model, result)
    again = evaluate_edits(model, tokenizer, sets, name="reverted", reference=base)
    assert again.metrics == base.metrics  # exact identity: every score back where it was


def test_probe_sets_group_what_an_update_must_and_must_not_change(setup) -> None:
    _, _, world, edits, sets = setup
    edit = edits[0]
    assert {p.answer for p in sets.requested} == {edit.target_new}
    assert len(sets.requested) == 1 + len(edit.more_prompts)  # the request's own forms
    assert all(p.alternatives[0] == edit.target_old for p in sets.requested + sets.paraphrase)
    assert {p.subject for p in sets.neighbourhood}.isdisjoint({edit.subject})
    assert {p.attribute for p in sets.neighbourhood} == {"ceo"}
    assert {p.subject for p in sets.other_relations} == {edit.subject}
    assert not any(edit.subject_name in text for text in sets.control_texts)  # control text is about others
    assert "ceo" not in {p.attribute for p in sets.other_relations}
    held_out = {p.prompt for p in sets.paraphrase}
    assert not held_out & {f.format(edit.subject_name) for f in (edit.prompt, *edit.more_prompts)}


def test_edit_model_writes_a_new_version_and_reverts_to_the_parent(setup, tmp_path: Path) -> None:
    world_dir, model_dir, world, edits, _ = setup
    parent_sha = read_model_record(model_dir)["sha256"]
    readers = [s.name for s in world.subjects if s.id.startswith("reading-")][:5]
    options = {k: (",".join(map(str, v)) if k == "layers" else "|".join(v) if isinstance(v, tuple) else v)
               for k, v in PROMPT_LAST.items()}
    report = edit_model(model_dir, world_dir / "edits.jsonl", tmp_path / "edited", corpus=world_dir, method="memit",
                        options=options, preserve_subjects=readers, progress=False)
    assert report.parent_sha256 == parent_sha and report.model["sha256"] != parent_sha
    assert report.edits == 6 and report.layers == [0, 1]
    record = json.loads((tmp_path / "edited" / "edit.json").read_text())
    assert record["edit_ids"] == [e.id for e in edits] and record["parent_sha256"] == parent_sha
    assert read_model_record(model_dir)["sha256"] == parent_sha  # the input is never touched
    assert revert_model_version(tmp_path / "edited", tmp_path / "reverted") == parent_sha
    with pytest.raises(Exception, match="already exists"):
        edit_model(model_dir, world_dir / "edits.jsonl", tmp_path / "edited", corpus=world_dir, progress=False)


def test_rome_through_edit_model_one_edit_at_a_time(setup, tmp_path: Path) -> None:
    world_dir, model_dir, _, edits, _ = setup
    lines = (world_dir / "edits.jsonl").read_text().splitlines()[:2]
    (tmp_path / "two.jsonl").write_text("\n".join(lines) + "\n")
    report = edit_model(model_dir, tmp_path / "two.jsonl", tmp_path / "rome", corpus=world_dir, method="rome",
                        options={"steps": 5, "layer": 0}, progress=False)
    assert report.edits == 2 and report.layers == [0]
    assert revert_model_version(tmp_path / "rome", tmp_path / "back") == report.parent_sha256


def test_option_and_input_errors(setup, tmp_path: Path) -> None:
    world_dir, model_dir, _, _, _ = setup
    with pytest.raises(Exception, match="unknown editing method 'mend'.*memit, rome"):
        get_editor("mend")
    memit = get_editor("memit")
    with pytest.raises(Exception, match="editor 'memit' has no option 'lr'.*learning_rate"):
        memit.make_config({"lr": 1})
    with pytest.raises(Exception, match="steps='many' for editor 'memit' is not an integer"):
        memit.make_config({"steps": "many"})
    with pytest.raises(Exception, match="token='middle' for editor 'memit' is not one of: subject_last, "):
        memit.make_config({"token": "middle"})
    assert memit.make_config({"layers": "1,2", "token": "prompt_last"}).layers == (1, 2)
    assert get_editor("rome").make_config({"layer": "none", "steps": "3"}).layer is None
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(Exception, match="holds no edits"):
        edit_model(model_dir, tmp_path / "empty.jsonl", tmp_path / "x", corpus=world_dir, progress=False)
    (tmp_path / "bad.jsonl").write_text('{"id": "e"}\n')
    with pytest.raises(Exception, match="bad.jsonl"):
        edit_model(model_dir, tmp_path / "bad.jsonl", tmp_path / "y", corpus=world_dir, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_edit_json_and_errors(setup, tmp_path: Path) -> None:
    world_dir, model_dir, _, _, _ = setup
    result = runner.invoke(app, ["edit", "--model", str(model_dir), "--edits", str(world_dir / "edits.jsonl"),
                                 "--out", str(tmp_path / "cli"), "--corpus", str(world_dir), "--method", "memit",
                                 "-o", "token=prompt_last", "-o", "layers=0,1", "-o", "steps=5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the JSON alone on stdout; progress went to stderr
    assert data["method"] == "memit" and data["edits"] == 6 and Path(data["model"]["path"]).is_dir()
    assert data["seconds_per_edit"] > 0 and data["layers"] == [0, 1]
    assert "[expunge edit] loading" in result.stderr and "statistics" in result.stderr
    assert set(data["timings"]) == {"load", "statistics", "evaluate", "edit", "save"}
    assert data["notes"] == []  # a model expunge trained from scratch keeps the toy defaults
    back = runner.invoke(app, ["revert", "--model", data["model"]["path"], "--out", str(tmp_path / "back"), "--json"])
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)["model"]["sha256"] == data["parent_sha256"]
    restored, parent = read_model_record(tmp_path / "back"), read_model_record(model_dir)
    assert restored["recipe"] == {**parent["recipe"], "reverted_from": data["model"]["path"]}
    assert restored["parent"] == parent["parent"]  # the parent's lineage, not the edit's
    again = runner.invoke(app, ["revert", "--model", data["model"]["path"], "--out", str(tmp_path / "back")])
    assert again.exit_code != 0 and "already exists" in again.output and "Traceback" not in again.output
    plain = runner.invoke(app, ["revert", "--model", str(model_dir), "--out", str(tmp_path / "plain")])
    assert plain.exit_code != 0 and "revert.safetensors" in plain.output and not (tmp_path / "plain").exists()
    bad = runner.invoke(app, ["edit", "--model", str(model_dir), "--edits", str(world_dir / "edits.jsonl"),
                              "--out", str(tmp_path / "bad"), "--corpus", str(world_dir), "--method", "mend"])
    assert bad.exit_code != 0 and "unknown editing method" in bad.output and "Traceback" not in bad.output


def test_edit_report_has_before_and_after_rows(setup, tmp_path: Path) -> None:
    world_dir, model_dir, _, _, _ = setup
    # edit_model returns the before/after rows; `expunge edit --report` renders them.
    result = runner.invoke(app, ["edit", "--model", str(model_dir), "--edits", str(world_dir / "edits.jsonl"),
                                 "--out", str(tmp_path / "m"), "--corpus", str(world_dir),
                                 "-o", "token=prompt_last", "-o", "layers=0,1", "-o", "covariance_weight=1",
                                 "-o", "steps=40",
                                 "--report", str(tmp_path / "updates.md"), "--json"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)["evaluation"]
    assert [row["setup"] for row in evaluation] == ["unedited", "memit"]
    before, after = evaluation
    assert before["efficacy"] == 0.0 and after["efficacy"] > 0.5  # measured, not assumed
    text = (tmp_path / "updates.md").read_text()
    assert "| unedited | 0 |" in text and "| memit | 6 |" in text and "efficacy" in text
    assert "Probes per set:" in text
    with pytest.raises(Exception, match="edit_probes.jsonl"):
        edit_model(model_dir, world_dir / "edits.jsonl", tmp_path / "n", corpus=world_dir / "documents.jsonl",
                   evaluate=True, progress=False)
    bad = runner.invoke(app, ["edit", "--model", str(model_dir), "--edits", str(world_dir / "edits.jsonl"),
                              "--out", str(tmp_path / "o"), "--corpus", str(world_dir), "--report",
                              str(tmp_path / "r.pdf")])
    assert bad.exit_code == 2 and "unknown report format '.pdf'" in bad.output  # refused before any edit
    assert not (tmp_path / "o").exists()


def test_editing_to_a_neutral_target_forgets_one_fact(setup) -> None:
    """"Forget this one fact": an update whose target is a refusal. The old CEO's probability on the
    request's forms falls, the refusal's rises, and another company's CEO is left where it was."""
    from dataclasses import replace

    from expunge.verify.metrics import answer_logprobs

    world_dir, model_dir, world, edits, _ = setup
    model, tokenizer, _ = load_model(model_dir)
    forget = replace(edits[0], id="forget", target_new="I don't know")
    other = edits[1]
    prompts = [f.format(forget.subject_name) for f in (forget.prompt, *forget.more_prompts)]
    other_prompt = other.prompt.format(other.subject_name)

    def mean_logp(prompt_list: list[str], answer: str) -> float:
        scored = answer_logprobs(model, tokenizer, prompt_list, [answer] * len(prompt_list))
        return sum(s / n for s, n in scored) / len(scored)

    before = (mean_logp(prompts, forget.target_old), mean_logp(prompts, forget.target_new),
              mean_logp([other_prompt], other.target_old))
    texts = [d.text for d in world.training_documents()]
    result = apply_memit(model, tokenizer, [forget], lambda layer: second_moment(model, tokenizer, texts, layer),
                         MEMITConfig(**PROMPT_LAST))
    after = (mean_logp(prompts, forget.target_old), mean_logp(prompts, forget.target_new),
             mean_logp([other_prompt], other.target_old))
    revert(model, result)
    # Measured (log-prob per token, old CEO / refusal / other CEO, before -> after): on the machine
    # that wrote this test -0.07 -> -2.76, -14.5 -> -2.57, -0.03 -> -0.09; with the pinned packages
    # of constraints.txt -0.07 -> -2.27, -14.6 -> -2.60. Whether the refusal overtakes the old fact
    # is a knife edge (0.2-0.3 nats either way), so the test asserts what held with wide margins
    # in both: the old fact loses over 1 nat per token, the refusal gains over 10, the other
    # company's CEO moves by under 0.5.
    assert after[0] < before[0] - 1.0  # the old fact is much less likely
    assert after[1] > before[1] + 10.0  # the refusal, unthinkable before, is now as likely as a fact
    assert abs(after[2] - before[2]) < 0.5  # another company's CEO barely moves


def test_compare_updates_runs_registered_editors_by_name(setup) -> None:
    from expunge.methods.editing.compare import EditorRun, compare_updates
    from expunge.methods.editing.rome import ROMEConfig
    from expunge.models.io import weights_sha256

    world_dir, model_dir, world, edits, _ = setup
    model, tokenizer, _ = load_model(model_dir)
    sha = weights_sha256(model)
    runs = (EditorRun("memit (world-tuned)", "memit", MEMITConfig(**{**PROMPT_LAST, "steps": 5}), preserve=True),
            EditorRun("memit (last layer)", "memit", MEMITConfig(layers=(1,)), optional=True),  # cannot work
            EditorRun("rome ({n} edits)", "rome", ROMEConfig(layer=0, steps=3), limit=2))
    comparison = compare_updates(model, tokenizer, edits[:3], read_jsonl(world_dir / "edit_probes.jsonl", Probe),
                                 world.probes, [d.text for d in world.training_documents()][:50],
                                 documents=world.training_documents(), editors=runs)
    assert [row["setup"] for row in comparison.rows] == ["unedited", "memit (world-tuned)", "rome (2 edits)"]
    assert [row["edits"] for row in comparison.rows] == [0, 3, 2]
    assert comparison.notes[0].startswith("memit (last layer) not run:") and "must not be the model's last" \
        in comparison.notes[0]
    assert comparison.notes[1] == "rome ran on the first 2 edits only (its row scores those)"
    assert weights_sha256(model) == sha  # every edit reverted


@pytest.mark.filterwarnings("ignore::expunge.integrity.UnverifiedModelWarning")  # a plain HF dir, on purpose
def test_a_pretrained_model_gets_the_family_defaults_and_a_loaded_model_is_reused(setup, tmp_path: Path) -> None:
    """A Hugging Face directory with no expunge recipe counts as pretrained: the edit starts from the
    family's layers, the neutral prefixes and the published budget, says so in its notes, and
    lets options beat them. A model passed in already loaded is edited, saved and given back
    bit-identical."""
    from expunge.models.io import weights_sha256
    from expunge.methods.editing.common import NEUTRAL_PREFIXES
    from expunge.methods.editing.registry import PRETRAINED_EDIT_DEFAULTS
    from expunge.models.arch import arch_for, decoder_layers

    world_dir, model_dir, _, _, _ = setup
    model, tokenizer, _ = load_model(model_dir)
    plain = tmp_path / "hf"
    model.save_pretrained(plain), tokenizer.save_pretrained(plain)  # a user's own model: no expunge record
    rome = get_editor("rome")
    family_layer, family_layers = arch_for(model).edit_layers.scaled(len(decoder_layers(model)))
    assert rome.defaults_for(model) == {**PRETRAINED_EDIT_DEFAULTS, "layer": family_layer, "values_batch": 16}
    assert get_editor("memit").defaults_for(model)["layers"] == family_layers
    assert rome.make_config({"steps": "3"}, model=model).steps == 3  # an option beats a default
    lines = (world_dir / "edits.jsonl").read_text().splitlines()[:1]
    (tmp_path / "one.jsonl").write_text(lines[0] + "\n")
    report = edit_model(plain, tmp_path / "one.jsonl", tmp_path / "edited", corpus=world_dir, method="rome",
                        options={"steps": "3"}, progress=False)
    assert report.config["layer"] == family_layer and report.config["steps"] == 3
    assert tuple(report.config["context_prefixes"]) == NEUTRAL_PREFIXES
    assert len(report.notes) == 1 and "pretrained model" in report.notes[0] and "steps=" not in report.notes[0]
    assert json.loads((tmp_path / "edited" / "edit.json").read_text())["pretrained"] is True

    loaded = load_model(plain)
    before = weights_sha256(loaded[0])
    again = edit_model(plain, tmp_path / "one.jsonl", tmp_path / "again", corpus=world_dir, method="rome",
                       options={"steps": "3"}, progress=False, loaded=loaded)
    assert again.timings["load"] < 0.01 and again.model["sha256"] == report.model["sha256"]  # same edit
    assert weights_sha256(loaded[0]) == before  # the caller's model is reverted exactly
