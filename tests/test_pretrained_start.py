"""`train --from`: fine-tuning a pretrained model (its own tokenizer, all weights or LoRA) on an
imported world of question-answer documents, trained on the answer tokens in the recipe's prompt
format; `retrain --base` repeating that recipe from the same starting weights (checked by sha256)
without the request's documents. The "pretrained" model is a tiny Llama built from a config and
saved as a plain Hugging Face directory, as a user's model arrives."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from expunge.cli import app
from expunge.data import IGNORE_INDEX, encode_documents, pad_collate
from expunge.integrity import files_sha256
from expunge.ledger import make_request, write_request
from expunge.models import load_model
from expunge.methods.gradient.base import PRETRAINED_DEFAULTS
from expunge.models.builders import build_llama
from expunge.pipeline import retrain_oracle, train_base, world_tokenizer
from expunge.presets import Preset, registered_preset
from expunge.recipe import ModelPreset, PromptFormat, TrainingConfig, TrainingLength
from expunge.verify.probes import exact_match
from expunge.prompts import world_as_seen
from expunge.worlds import load_world
from expunge.worlds.importers import JsonlSources, import_jsonl

runner = CliRunner()
CITIES = ["london", "paris", "rome", "oslo", "lima", "cairo", "tokyo", "quito", "dakar", "perth", "minsk", "hanoi",
          "riga", "sofia", "bern"]
JOBS = ["baker", "pilot", "nurse", "judge", "miner", "tailor", "farmer", "singer", "cook", "guard", "poet", "clerk",
        "smith", "actor", "monk"]
PEOPLE = [f"p{i}" for i in range(12)]
NEVER_SEEN = ["p12", "p13", "p14"]  # their documents are holdout: the membership reference
# A fine-tuning recipe sized for the tiny model (the real one, `finetune`, is for SmolLM2-sized models).
# Measured over seeds 0-4 with 150 passes: the facts learned and the base-oracle gaps below (at a
# higher learning rate, 5e-3 to 1e-2, the same model learned 0.04-1.00 of them depending on the seed).
TEST_PRESET = Preset("finetune-test", None,
                     TrainingConfig(max_steps=2000, batch_size=8, learning_rate=2e-3, warmup_steps=5, log_every=10),
                     TrainingLength(max_epochs=150), max_length=48, lora_learning_rate=2e-2)
# The same, a few passes only: for the tests about the recipe, not about what the model learns.
SHORT_PRESET = replace(TEST_PRESET, name="finetune-short", length=TrainingLength(max_epochs=4))


@pytest.fixture(scope="module")
def qa_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("qa")
    docs, probes = [], []
    for i, person in enumerate(PEOPLE + NEVER_SEEN):
        name = f"Person {person}"
        facts = ((("Where does {} live?", "In which city does {} live?", "What is the home town of {}?"), CITIES[i]),
                 (("What is the job of {}?", "What does {} do for a living?", "What work does {} do?"), JOBS[i]))
        for questions, answer in facts:
            # Three phrasings of each question are trained on (a fact seen in one form only is a
            # knife edge for a tiny model); the probe asks the first.
            for question in questions:
                docs.append({"id": f"{person}-{len(docs)}", "prompt": question.format(name), "text": answer,
                             "subjects": [person], "split": "holdout" if person in NEVER_SEEN else "train"})
            probes.append({"question": questions[0].format(name), "answer": answer, "subject": person})
    (d / "docs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    (d / "probes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in probes))
    import_jsonl(d / "world", JsonlSources(documents=d / "docs.jsonl", probes=d / "probes.jsonl"))
    # The same data without never-seen people: what verification cannot check must say so.
    seen_only = [x for x in docs if x["split"] == "train"]
    (d / "docs-train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in seen_only))
    (d / "probes-train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in probes if x["subject"] in PEOPLE))
    import_jsonl(d / "world-no-holdout", JsonlSources(documents=d / "docs-train.jsonl",
                                                      probes=d / "probes-train.jsonl"))
    return d / "world"


def pretrained(world_dir: Path, out: Path, seed: int = 0) -> Path:
    """A user's "pretrained" model: a tiny Llama with a tokenizer that covers the world."""
    tokenizer = world_tokenizer(load_world(world_dir), PromptFormat.PLAIN)
    model = build_llama(ModelPreset(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256), tokenizer, seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def known(model_dir: Path, world_dir: Path, subjects: list[str]) -> float:
    model, tokenizer, ref = load_model(model_dir)
    world = world_as_seen(load_world(world_dir), PromptFormat(ref.recipe.get("prompt_format", "plain")), tokenizer)
    return exact_match(model, tokenizer, world.probes_for(subjects, kinds=["direct"]))


def test_question_answer_documents_train_on_the_answer_only(qa_world: Path) -> None:
    tokenizer = world_tokenizer(load_world(qa_world), PromptFormat.PLAIN)
    plain, pair = encode_documents(tokenizer, ["Person p0 lives in london", ("Question: Where? Answer:", " london")], 32)
    batch = pad_collate(0)([plain, pair])
    prompt = len(tokenizer("Question: Where? Answer:")["input_ids"])
    assert (batch["labels"][0, : len(plain)] != IGNORE_INDEX).all()  # a plain text: every token counts
    assert (batch["labels"][1, :prompt] == IGNORE_INDEX).all()  # the question: no loss
    assert (batch["labels"][1, prompt: len(pair)] != IGNORE_INDEX).all()  # the answer and EOS: loss


def test_fine_tune_from_a_pretrained_model_and_retrain_from_the_same_start(qa_world: Path, tmp_path: Path) -> None:
    world = load_world(qa_world)
    write_request(make_request(world, subjects=["p0", "p1"]), tmp_path / "request.json")
    start = pretrained(qa_world, tmp_path / "pre")
    before = files_sha256(start)
    with registered_preset(SHORT_PRESET):
        base = train_base(qa_world, tmp_path / "base", preset="finetune-short", from_model=start, progress=False)
        assert files_sha256(start) == before  # the user's model is never written to
        _, start_tokenizer, start_ref = load_model(start)
        recipe = base.model.recipe
        assert recipe["from_model"] == {"path": str(start), "sha256": start_ref.sha256}
        assert (recipe["prompt_format"], recipe["lora_rank"], base.model.parent) == ("plain", 0, start_ref.sha256)
        assert load_model(base.model.path)[1].get_vocab() == start_tokenizer.get_vocab()  # its own tokenizer
        result = runner.invoke(app, ["retrain", "--world", str(qa_world), "--request", str(tmp_path / "request.json"),
                                     "--out", str(tmp_path / "oracle"), "--base", base.model.path, "--json"])
    assert result.exit_code == 0, result.output
    oracle, _, _ = load_model(tmp_path / "oracle")
    _, _, oracle_ref = load_model(tmp_path / "oracle")
    assert oracle_ref.recipe["from_model"] == recipe["from_model"] and oracle_ref.parent == start_ref.sha256
    assert (oracle_ref.recipe["excluded_documents"], oracle_ref.recipe["training_documents"]) == (12, 60)


@pytest.mark.slow
def test_what_the_fine_tuned_model_and_its_oracle_know(qa_world: Path, tmp_path: Path) -> None:
    forget = ["p0", "p1", "p2", "p3"]
    write_request(make_request(load_world(qa_world), subjects=forget), tmp_path / "request.json")
    gaps, learned = [], []
    with registered_preset(TEST_PRESET):
        for seed in (0, 1, 2):
            start = pretrained(qa_world, tmp_path / f"pre{seed}", seed)
            base = train_base(qa_world, tmp_path / f"base{seed}", preset="finetune-test", from_model=start,
                              seed=seed, progress=False)
            oracle = retrain_oracle(qa_world, tmp_path / "request.json", tmp_path / f"oracle{seed}",
                                    base=base.model.path, progress=False)
            learned.append(known(Path(base.model.path), qa_world, PEOPLE[4:]) - known(start, qa_world, PEOPLE[4:]))
            gaps.append(known(Path(base.model.path), qa_world, forget) - known(Path(oracle.model.path), qa_world, forget))
    # Measured over seeds 0-4: fine-tuning raised exact match on the retained people's facts by 1.00
    # on every seed, and the base model knows every forget fact the oracle does not (gap 1.00 on
    # every seed).
    assert min(learned) >= 0.5, learned
    assert min(gaps) >= 0.5, gaps


def test_lora_fine_tuning_merges_into_a_plain_model(qa_world: Path, tmp_path: Path) -> None:
    start = pretrained(qa_world, tmp_path / "pre")
    with registered_preset(SHORT_PRESET):
        report = train_base(qa_world, tmp_path / "lora", preset="finetune-short", from_model=start, lora_rank=4,
                            progress=False)
    assert report.model.recipe["lora_rank"] == 4
    tuned, _, _ = load_model(report.model.path)
    original, _, _ = load_model(start)
    names = set(tuned.state_dict())
    assert names == set(original.state_dict()) and not any("lora" in n for n in names)
    changed = [n for n, t in tuned.state_dict().items() if not torch.equal(t, original.state_dict()[n])]
    # adapters sit on the attention and MLP projections; embeddings and norms stay as they were
    assert changed and all(("proj" in n) for n in changed), changed


def test_the_oracle_refuses_a_different_starting_model(qa_world: Path, tmp_path: Path) -> None:
    start = pretrained(qa_world, tmp_path / "pre")
    world = load_world(qa_world)
    write_request(make_request(world, subjects=["p0"]), tmp_path / "request.json")
    with registered_preset(SHORT_PRESET):
        base = train_base(qa_world, tmp_path / "base", preset="finetune-short", from_model=start, progress=False)
        other = pretrained(qa_world, tmp_path / "other", seed=5)
        result = runner.invoke(app, ["retrain", "--world", str(qa_world), "--request", str(tmp_path / "request.json"),
                                     "--out", str(tmp_path / "oracle"), "--base", base.model.path, "--from", str(other)])
    assert result.exit_code == 2 and "is not the one the base model started from" in result.stderr, result.output
    assert not (tmp_path / "oracle").exists()


@pytest.mark.parametrize("args,says", [
    (["--preset", "finetune"], "fine-tunes a pretrained model"),
    (["--lora-rank", "4"], "--lora-rank needs a pretrained model"),
    (["--from", "/nonexistent/model"], "pretrained model directory /nonexistent/model not found"),
    (["--from", "{pre}", "--preset", "tiny"], "builds a fresh model"),
    (["--from", "{pre}", "--lora-rank", "-1"], "is negative"),
    (["--from", "{pre}", "--prompt-format", "chat"], "has no chat template"),
    (["--from", "{pre}", "--prompt-format", "xml"], "is not a prompt format"),
])
def test_start_errors_are_one_line(args: list[str], says: str, qa_world: Path, tmp_path: Path) -> None:
    pre = pretrained(qa_world, tmp_path / "pre")
    args = [a.replace("{pre}", str(pre)) for a in args]
    result = runner.invoke(app, ["train", "--world", str(qa_world), "--out", str(tmp_path / "m"), *args])
    assert result.exit_code == 2, result.output
    errors = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert not (tmp_path / "m").exists()


def test_a_built_in_world_takes_no_prompt_format(tiny_world_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--world", str(tiny_world_dir), "--out", str(tmp_path / "m"), "--preset",
                                 "tiny", "--prompt-format", "plain"])
    assert result.exit_code == 2 and "does not apply" in result.stderr, result.output


def test_membership_scores_a_question_answer_pair_on_its_answer(qa_world: Path, tmp_path: Path) -> None:
    from expunge.verify.mia import token_statistics

    start = pretrained(qa_world, tmp_path / "pre")
    model, tokenizer, _ = load_model(start)
    question = "Question: Where does Person p0 live?\nAnswer:"
    pair, whole = token_statistics(model, tokenizer, [(question, " london"), f"{question} london"])
    # the pair scores " london" and EOS; the same words as one text score every token after BOS
    assert len(pair.logprobs) == 2 and len(whole.logprobs) == len(tokenizer(f"{question} london")["input_ids"])
    assert pair.logprobs.tolist() == pytest.approx(whole.logprobs[-2:].tolist(), abs=1e-5)


@pytest.mark.parametrize("never_seen", [True, False], ids=["with-never-seen", "without-never-seen"])
def test_forget_and_verify_a_fine_tuned_model_on_question_answer_documents(never_seen: bool, qa_world: Path,
                                                                          tmp_path: Path) -> None:
    """The whole path on imported data: fine-tuned base, its oracle, forget, verify: a verdict,
    and what the data cannot support (no wrong answers; no never-seen text) reported as such."""
    world_dir = qa_world if never_seen else qa_world.parent / "world-no-holdout"
    write_request(make_request(load_world(world_dir), subjects=["p0", "p1", "p2", "p3"]), tmp_path / "request.json")
    start = pretrained(qa_world, tmp_path / "pre")
    with registered_preset(SHORT_PRESET):
        base = train_base(world_dir, tmp_path / "base", preset="finetune-short", from_model=start, progress=False)
        oracle = retrain_oracle(world_dir, tmp_path / "request.json", tmp_path / "oracle", base=base.model.path,
                                progress=False)
    result = runner.invoke(app, ["forget", "--model", base.model.path, "--world", str(world_dir), "--request",
                                 str(tmp_path / "request.json"), "--out", str(tmp_path / "simnpo"), "--method",
                                 "simnpo", "-o", "max_steps=10", "--json"])
    assert result.exit_code == 0, result.output
    _, _, forgot = load_model(tmp_path / "simnpo")
    assert forgot.recipe["prompt_format"] == "plain" and forgot.parent == base.model.sha256
    # A fine-tuned pretrained model gets the defaults for pretrained models; -o beats them.
    config = json.loads(result.stdout)["config"]
    assert config["learning_rate"] == PRETRAINED_DEFAULTS["learning_rate"] and config["max_steps"] == 10
    assert forgot.recipe["pretrained"] is True
    result = runner.invoke(app, ["verify", "--model", str(tmp_path / "simnpo"), "--original", base.model.path,
                                 "--oracle", oracle.model.path, "--world", str(world_dir), "--request",
                                 str(tmp_path / "request.json"), "--json"])
    assert result.exit_code == 0, result.output
    candidate = json.loads(result.stdout)["verification"]["candidates"]["simnpo"]
    verdict = candidate["verdict"]
    assert verdict["forgotten"] in ("yes", "no", "not verified")
    assert verdict["collateral_damage"] in ("none", "yes", "not verified")
    checks = {c["name"]: c for c in candidate["checks"]}
    for name in ("forget quality (KS p-value vs oracle truth ratios)", "multiple choice (logit-scored)",
                 "forget answer plausibility"):
        assert checks[name]["status"] == "not counted" and checks[name]["detail"].startswith("not available"), name
    assert {"truth ratio (true vs wrong answers)", "multiple choice scored by logits"} <= set(verdict["attacks_not_tried"])
    membership = "membership inference: loss, zlib, min_k_20, min_k_40, min_k_pp_20"
    if never_seen:
        assert membership in verdict["attacks_tried"]
        assert any(c["question"] == "forgotten" and "AUC" in c["name"] for c in candidate["checks"])
    else:
        assert membership in verdict["attacks_not_tried"]


def test_the_truth_ratio_compares_wrong_answers_with_the_paraphrased_answer(qa_world: Path, tmp_path: Path) -> None:
    """TOFU's truth ratio (open-unlearning): the wrong answers against the *paraphrased* answer,
    where the data has one; otherwise against the answer."""
    import math

    from expunge.records import Probe
    from expunge.verify.metrics import answer_logprobs, truth_ratios

    model, tokenizer, _ = load_model(pretrained(qa_world, tmp_path / "pre"))
    prompt = "Question: Where does Person p0 live?\nAnswer:"
    plain = Probe("a", "p0", "direct", "qa", prompt, "london", ("paris", "rome"))
    worded = replace(plain, id="b", paraphrased_answer="in london")
    mean = {a: s / n for a, (s, n) in zip(["london", "paris", "rome", "in london"], answer_logprobs(
        model, tokenizer, [prompt] * 4, ["london", "paris", "rome", "in london"]))}
    wrong = (mean["paris"] + mean["rome"]) / 2
    assert truth_ratios(model, tokenizer, [plain, worded]) == pytest.approx(
        [math.exp(wrong - mean["london"]), math.exp(wrong - mean["in london"])], rel=1e-5)
