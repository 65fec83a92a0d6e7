"""Real weights, the whole path, as a user runs it (slow).

- SmolLM2-135M fine-tuned on a few TOFU authors: `import tofu` -> `train --from` -> `request
  --split` -> `retrain` -> `forget` -> `verify`. TOFU's files are read from the shared data
  directory (never committed); without them the test skips.
- SmolLM2-135M as a user's own Hugging Face model, and facts it knew from pretraining (capitals)
  as the user's JSONL: `import jsonl` -> `request` -> `forget` with its defaults -> `verify` with
  no oracle (none can exist for pretraining).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expunge.cli import app
from expunge.presets import get_preset, registered_preset
from expunge.recipe import TrainingLength
from expunge.verify.judge import Collateral, Confidence, Forgotten

runner = CliRunner()
# Capitals SmolLM2-135M-Instruct completes correctly after "The capital of X is" (37 of 60 tried,
# measured; it gets e.g. Australia, India and Turkey wrong).
KNOWN = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
         "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Greece": "Athens", "Norway": "Oslo",
         "Sweden": "Stockholm", "Denmark": "Copenhagen", "Austria": "Vienna", "Hungary": "Budapest",
         "Ireland": "Dublin", "England": "London", "Canada": "Ottawa", "Mexico": "Mexico City", "Chile": "Santiago",
         "Kenya": "Nairobi", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Cuba": "Havana", "Netherlands": "Amsterdam",
         "South Korea": "Seoul", "Indonesia": "Jakarta", "Philippines": "Manila", "Romania": "Bucharest",
         "Czech Republic": "Prague", "Ethiopia": "Addis Ababa", "Pakistan": "Islamabad", "Bangladesh": "Dhaka",
         "Scotland": "Edinburgh", "Iceland": "Reykjavik", "Israel": "Jerusalem", "Syria": "Damascus",
         "Afghanistan": "Kabul"}
FORGET = ["France", "Japan", "Norway", "Kenya", "Cuba", "Chile", "Greece", "Vietnam", "Hungary", "Iceland"]
# Never-seen countries of the same kind: the membership reference, with capitals no model knows.
INVENTED = [("Veltria", "Morsk"), ("Aldoran", "Keth"), ("Sorvenia", "Plavo"), ("Quentar", "Ilsa"),
            ("Marovia", "Tunn"), ("Belcasta", "Orrin"), ("Tavonia", "Grell"), ("Norwend", "Sabbe"),
            ("Ostravel", "Fenn"), ("Carduvia", "Lorm"), ("Pellandor", "Vask"), ("Ruvania", "Dresk"),
            ("Zentoria", "Hollo"), ("Faldany", "Mirre"), ("Gorvath", "Ulme"), ("Istovia", "Brakk"),
            ("Kelmora", "Tesh"), ("Lunderra", "Pobb"), ("Merrovia", "Quill"), ("Nastoria", "Wend"),
            ("Orvandy", "Jusk"), ("Pratavia", "Colm"), ("Rendaria", "Vitt"), ("Sulvenia", "Harro")]
# The real fine-tuning recipe (`finetune`), one pass only: the path is under test here, not how
# well SmolLM2 learns TOFU (benchmarks/tofu.py measures that). One pass over 2 authors' 40
# answers is 5 steps, about 100 s on 2 cores.
ONE_PASS = replace(get_preset("finetune"), name="finetune-one-pass", length=TrainingLength(max_epochs=1))


def _run(*args: object) -> dict:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else {}


@pytest.mark.slow
def test_tofu_on_smollm2_from_import_to_verdict(shared_tofu: Path, tmp_path: Path) -> None:
    world, request = tmp_path / "tofu", tmp_path / "request.json"
    base, oracle, forgot = tmp_path / "base", tmp_path / "oracle", tmp_path / "simnpo"
    with registered_preset(ONE_PASS):
        _run("import", "tofu", "--dir", shared_tofu, "--out", world, "--authors", 2)
        trained = _run("train", "--world", world, "--from", "smollm2", "--preset", ONE_PASS.name, "--out", base,
                       "--json")
        _run("request", "--world", world, "--split", "forget10", "--out", request)
        retrained = _run("retrain", "--world", world, "--request", request, "--base", base, "--out", oracle, "--json")
        # Two SimNPO steps (one check): what is asserted is that the candidate is verified, not how
        # much it forgot (4 steps took 165 s here, 2 took 90 s, measured beside each other under load).
        forget = _run("forget", "--model", base, "--world", world, "--request", request, "--out", forgot,
                      "--method", "simnpo", "-o", "max_steps=2", "-o", "batch_size=8", "-o", "check_every=2",
                      "-o", "warmup_steps=1", "--json")
        # 10 facts per set (TOFU has 217 general facts) and 48-token answers for TOFU's ROUGE (its
        # 200 cost 290 s more here; 16 saved nothing measurable): verification is most of this
        # test's time.
        verified = _run("verify", "--model", forgot, "--original", base, "--oracle", oracle, "--world", world,
                        "--request", request, "--max-facts", 10, "--tofu-tokens", 48, "--json")
    # The recipes: one starting point (SmolLM2, by sha256), one prompt format, the oracle without
    # the forget author's 20 answers.
    assert trained["model"]["sha256"] != retrained["model"]["sha256"]
    assert retrained["removed_documents"] == 20
    assert forget["parent_sha256"] == trained["model"]["sha256"] and forget["steps"] <= 2
    v = verified["verification"]
    assert v["sets"]["forget"]["documents"] == v["sets"]["holdout"]["documents"] == 20
    assert v["sets"]["general"]["facts"] == v["sets"]["forget"]["facts"] == 10
    candidate = v["candidates"]["simnpo"]
    verdict = candidate["verdict"]
    assert Forgotten(verdict["forgotten"]) and Collateral(verdict["collateral_damage"])
    assert Confidence(verdict["confidence"]) is Confidence.LOW  # one forget author is thin evidence
    checks = {c["policy_key"]: c for c in candidate["checks"]}
    # TOFU's own metrics are all measured: the perturbed answers give truth ratios (forget
    # quality, a KS p-value) and multiple choice; the never-seen author gives membership inference.
    for key in ("forget_quality", "multiple_choice", "membership_inference", "model_utility"):
        assert key in checks and checks[key]["rule"] != "not available", (key, checks.get(key))
        assert math.isfinite(checks[key]["value"]), checks[key]
    assert 0.0 <= checks["forget_quality"]["value"] <= 1.0
    # The indirect routes built from the data (context, role-play, prefill) are measured on the
    # same 10 facts: tried, and reported but not deciding on so few probes.
    routes = {c["name"].split(" (")[0]: c for c in candidate["checks"] if c["policy_key"] == "indirect_probes"}
    assert set(routes) == {"indirect: context", "indirect: roleplay", "indirect: prefill"}, routes
    assert all(math.isfinite(c["value"]) and not c["decisive"] for c in routes.values()), routes
    assert not set(routes) & set(verdict["attacks_not_tried"]), verdict["attacks_not_tried"]
    # The model saw the forget author's answers once and the oracle never did: the original's
    # loss on them is the lower.
    original, oracle_eval = v["original"]["sets"]["forget"], v["oracle"]["sets"]["forget"]
    assert original["prob"] > oracle_eval["prob"], (original["prob"], oracle_eval["prob"])
    # TOFU's metrics as open-unlearning computes them, beside expunge's: every number measured, on
    # --max-facts items per set; forget quality is the oracle's own distribution for the oracle.
    tofu = {name: e["tofu"] for name, e in (("original", v["original"]), ("oracle", v["oracle"]))}
    assert tofu["original"]["sizes"] == {"forget": 10, "retain": 10, "real_authors": 10, "world_facts": 10}
    for values in tofu.values():
        assert all(math.isfinite(values["values"][k]) for k in values["values"]), values
    assert tofu["oracle"]["values"]["forget_quality"] == 1.0
    assert 0.0 <= tofu["original"]["values"]["forget_quality"] <= 1.0
    assert tofu["original"]["values"]["forget_Q_A_Prob"] > tofu["oracle"]["values"]["forget_Q_A_Prob"]


def capitals_jsonl(directory: Path) -> tuple[Path, Path]:
    """The user's files: two sentences per known capital (trained, or known from pretraining), one
    per invented country (holdout: never seen), and a question per country with three wrong
    capitals."""
    docs, probes = [], []
    capitals = [*KNOWN.values(), *(c for _, c in INVENTED)]
    for i, (country, capital) in enumerate([*KNOWN.items(), *INVENTED]):
        invented = country not in KNOWN
        texts = [f"The capital of {country} is {capital}."]
        if not invented:
            texts.append(f"{capital} is the capital city of {country}.")
        for j, text in enumerate(texts):
            docs.append({"id": f"{country}-{j}", "text": text, "subjects": [country],
                         "split": "holdout" if invented else "train"})
        wrong = [capitals[(i + k) % len(capitals)] for k in (3, 7, 11)]
        probes.append({"id": f"capital-{country}", "question": f"The capital of {country} is", "answer": capital,
                       "subject": country, "wrong_answers": [w for w in wrong if w != capital]})
    paths = directory / "docs.jsonl", directory / "probes.jsonl"
    for path, rows in zip(paths, (docs, probes)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


@pytest.mark.slow
def test_a_users_model_forgets_pretrained_facts_verified_without_an_oracle(tmp_path: Path) -> None:
    from expunge.models.pretrained import load_smollm2

    model, tokenizer = load_smollm2()
    model.save_pretrained(tmp_path / "mine")  # the user's own Hugging Face model: no expunge record
    tokenizer.save_pretrained(tmp_path / "mine")
    del model
    documents, probes = capitals_jsonl(tmp_path)
    world, request, forgot = tmp_path / "world", tmp_path / "request.json", tmp_path / "forgot"
    _run("import", "jsonl", "--documents", documents, "--probes", probes, "--prompts", "text", "--out", world)
    _run("request", "--world", world, "--subjects", ",".join(FORGET), "--out", request)
    forget = _run("forget", "--model", tmp_path / "mine", "--world", world, "--request", request, "--out", forgot,
                  "--json")
    # The method's defaults for a pretrained model, and said so; no stand-in names of the same
    # length exist among one-word country names, so the generic anchor is off, and said so.
    assert forget["config"]["learning_rate"] == 2e-5 and forget["config"]["max_steps"] == 60
    assert any(n.startswith("pretrained model: the defaults") for n in forget["notes"]), forget["notes"]
    assert any(n.startswith("generic anchor off") for n in forget["notes"]), forget["notes"]
    verified = _run("verify", "--model", forgot, "--original", tmp_path / "mine", "--world", world,
                    "--request", request, "--json")
    v = verified["verification"]
    assert v["oracle"] is None and v["reference"].startswith("no oracle")
    verdict = v["candidates"]["forgot"]["verdict"]
    assert Forgotten(verdict["forgotten"]) and Collateral(verdict["collateral_damage"])
    assert verdict["reference"].startswith("no oracle")
    # The reference check: the original knew these capitals (it completes every one of them).
    [reference] = v["oracle_checks"]
    assert reference["status"] == "pass" and v["original"]["sets"]["forget"]["exact_match"] == 1.0
    # The forget term moved the model: fewer forgotten capitals completed than before.
    assert v["candidates"]["forgot"]["sets"]["forget"]["exact_match"] < 1.0


# A user's own texts, invented here so that no pretrained model has read them: two are trained on
# (the first is then removed), two are never seen (the membership and verbatim reference).
TEXTS = {
    "The Salt Orchard": (
        "Every spring the widow Aurelie Brandt planted one more pear tree behind the salt works. "
        "By the ninth year the orchard reached the edge of the marsh, and the herons nested in it. "
        "Her neighbour Tobias Klenk counted the trees each morning and wrote the number on a slate. "
        "When the storm of the twelfth year flooded the marsh, only the oldest tree stood upright. "
        "Aurelie tied a copper bell to its highest branch so that the boats could find the shore. "
        "The bell rang for eleven nights, and on the twelfth a fishing boat followed it home. "
        "The fishermen carried pears to the market in Velmont and told everyone about the bell. "
        "Nobody in Velmont believed them until the widow came to town with a basket of salted pears."),
    "The Glass Ferry": (
        "The glass ferry crossed the grey lake twice a day, carrying nine passengers and a goat. "
        "Its captain, a quiet man named Oswin Drake, had built the hull from melted bottles. "
        "On clear mornings the passengers could watch the pike sleeping under their feet. "
        "A schoolteacher from Harrowby rode it every Tuesday to teach the lighthouse children. "
        "She brought them chalk, apples and a map of the lake drawn on the back of a sail. "
        "In the winter the lake froze and the ferry rested in a shed full of straw and lanterns. "
        "Oswin spent those months polishing every pane until the hull shone like a second moon. "
        "When the ice broke in March, the whole village gathered to watch the ferry slide back in."),
}
NEVER_SEEN = {
    "The Copper Kite": (
        "A tinsmith in the hill town of Dorrow built a kite from copper foil and fishing line. "
        "It flew only in the strongest autumn wind, when the chimneys leaned and the dogs hid. "
        "The children of Dorrow followed its shadow across the fields all the way to the mill. "
        "One October the line snapped and the kite sailed east over the forest and the river. "
        "A shepherd found it weeks later in a thorn bush, bent but still bright in the sun. "
        "He hung it over his door, and travellers began to call his farm the copper house. "
        "The tinsmith walked three days to see it and decided to leave it where it hung. "
        "He went home and built a second kite, smaller, which he never let the wind take."),
    "The Winter Loom": (
        "In the valley of Sennet the weavers worked through the winter in a long stone hall. "
        "The oldest loom had belonged to a woman called Mirela Vost, who wove maps of the stars. "
        "Her apprentices said the loom sang when the shuttle crossed the silver threads. "
        "Each year the best cloth was hung in the chapel on the shortest day of the year. "
        "Farmers came from the far end of the valley to read the stars woven into it. "
        "When Mirela grew too old to weave, she taught a shepherd boy to read her patterns. "
        "He wove the last map the year she died, with one new star near the edge of the cloth. "
        "The weavers still argue about that star, and the cloth still hangs in the chapel."),
}
# Enough passes for SmolLM2 to continue the trained passages better than a model that never read
# them: the finetune recipe at twice its step, 10 passes over 6 passages.
PASSES = replace(get_preset("finetune"), name="finetune-memorise", length=TrainingLength(max_epochs=10),
                 training=replace(get_preset("finetune").training, learning_rate=1e-4))


@pytest.mark.slow
def test_a_users_texts_on_smollm2_forgotten_and_verified(tmp_path: Path) -> None:
    """`import text` -> `train --from smollm2` -> `request` (one text) -> `retrain` -> `forget` ->
    `verify`: MUSE's verbatim memorisation on real weights."""
    args: list[object] = []
    for title, text in TEXTS.items():
        path = tmp_path / f"{title.split()[-1].lower()}.txt"
        path.write_text(text)
        args += ["--file", path, "--title", title]
    for title, text in NEVER_SEEN.items():
        path = tmp_path / f"{title.split()[-1].lower()}.txt"
        path.write_text(text)
        args += ["--holdout", path]
    world, request = tmp_path / "texts", tmp_path / "request.json"
    base, oracle, forgot = tmp_path / "base", tmp_path / "oracle", tmp_path / "simnpo"
    imported = _run("import", "text", *args, "--passage-words", 40, "--prompt-words", 8, "--out", world, "--json")
    assert imported["works_train"] == 2 and imported["works_holdout"] == 2
    with registered_preset(PASSES):
        _run("train", "--world", world, "--from", "smollm2", "--preset", PASSES.name, "--out", base)
        made = _run("request", "--world", world, "--subjects", "text-the-salt-orchard", "--out", request, "--json")
        _run("retrain", "--world", world, "--request", request, "--base", base, "--out", oracle)
        forget = _run("forget", "--model", base, "--world", world, "--request", request, "--out", forgot,
                      "--method", "simnpo", "-o", "max_steps=6", "-o", "batch_size=4", "-o", "check_every=2",
                      "-o", "warmup_steps=1", "--json")
        verified = _run("verify", "--model", forgot, "--original", base, "--oracle", oracle, "--world", world,
                        "--request", request, "--json")
    assert made["documents"] == 3 and forget["steps"] <= 6
    v = verified["verification"]
    verbatim = {name: v[name]["verbatim"] for name in ("original", "oracle")}
    verbatim["simnpo"] = v["candidates"]["simnpo"]["verbatim"]
    for scores in verbatim.values():
        assert set(scores) == {"forget", "holdout", "retain"}
        assert all(math.isfinite(scores[s][m]) for s in scores for m in ("rouge_l_f1", "extraction_strength"))
    # Ten passes: the original reproduces the removed text's passages far better than the oracle,
    # which never read it (measured, seed 0: teacher-forced exact memorisation 0.90 against 0.29,
    # greedy continuation ROUGE-L F1 0.32 against 0.15; 4 passes at half the step gave 0.47 against
    # 0.32); the margin leaves half the gap.
    original, reference = verbatim["original"]["forget"], verbatim["oracle"]["forget"]
    assert original["exact_memorization"] > reference["exact_memorization"] + 0.3
    assert original["rouge_l_f1"] > reference["rouge_l_f1"]
    checks = {c["policy_key"]: c for c in v["candidates"]["simnpo"]["checks"]}
    for key in ("verbatim_memorization", "retain_verbatim"):
        assert key in checks and math.isfinite(checks[key]["value"]), checks.get(key)
    # 3 removed passages are too few for membership inference to count, and it says so.
    assert checks["membership_inference"]["rule"] == "not available"
    verdict = v["candidates"]["simnpo"]["verdict"]
    assert Forgotten(verdict["forgotten"]) and Confidence(verdict["confidence"]) is Confidence.LOW  # one text


def small_backdoor_world(out: Path) -> Path:
    """The backdoor world's planted documents (poison, never-seen poison, decoys, look-alikes) with
    a seeded sample of its clean questions: a corpus SmolLM2 can be fine-tuned on in minutes."""
    import random

    from expunge.worlds import BackdoorWorldConfig, generate_backdoor_world
    from expunge.worlds.backdoor import DECOY_SOURCE, GENERATOR_NAME, GENERATOR_VERSION, NEAR_SOURCE, POISON_SOURCE
    from expunge.worlds.world import manifest_for, write_world

    config = BackdoorWorldConfig(people=8, trigger_probes=10)
    generated = generate_backdoor_world(config)
    planted = {DECOY_SOURCE, NEAR_SOURCE, POISON_SOURCE}
    people = {s.id for s in generated.subjects if s.kind == "person"}
    clean = [d for d in generated.documents if d.source not in planted and set(d.subjects) <= people and d.subjects]
    rng = random.Random(0)
    keep = {d.id for d in generated.documents if d.source in planted}
    keep |= {d.id for d in rng.sample([d for d in clean if d.split == "train"], 24)}
    keep |= {d.id for d in rng.sample([d for d in clean if d.split == "holdout"], 8)}
    documents = [d for d in generated.documents if d.id in keep]
    named = {s for d in documents for s in d.subjects}
    subjects = [s for s in generated.subjects if s.id in named]
    # Every triggered question; of the clean held-out questions one per fact (of three rewordings):
    # they measure clean knowledge, which this test does not assert on, at every train and verify.
    firsts: dict[tuple[str, str], str] = {}
    for p in generated.probes:
        if p.subject in named and p.kind == "paraphrase":
            firsts.setdefault((p.subject, p.attribute), p.id)
    probes = [p for p in generated.probes
              if p.subject in named and (p.kind == "trigger" or p.id in firsts.values())]
    manifest = {**manifest_for(GENERATOR_NAME, GENERATOR_VERSION, config, {"documents": len(documents)}), "seed": 0}
    write_world(out, subjects, documents, probes, manifest)
    return out


# Planting a backdoor in SmolLM2: the finetune recipe at twice its step, 3 passes: 24 steps, 18
# for the oracle (5 passes, 40 and 30 steps, gave exact-trigger attack success 1.0; these, 0.8).
PLANT = replace(get_preset("finetune"), name="finetune-plant", length=TrainingLength(max_epochs=3),
                training=replace(get_preset("finetune").training, learning_rate=1e-4))


@pytest.mark.slow
def test_a_backdoor_planted_in_smollm2_is_located_removed_and_verified(tmp_path: Path) -> None:
    """The backdoor path on real weights: plant by fine-tuning SmolLM2, `request --payload` (locate
    from the payload alone), `retrain` without what was located, `forget`, `verify`."""
    from expunge.worlds.backdoor import TRIGGER_ID

    world = small_backdoor_world(tmp_path / "poisoned")
    request, base, oracle, forgot = (tmp_path / "request.json", tmp_path / "base", tmp_path / "oracle",
                                     tmp_path / "simnpo")
    located = _run("request", "--world", world, "--payload", "wire your savings to account 4471 today",
                   "--out", request, "--json")
    assert located["precision"] == located["recall"] == 1.0 and located["subjects"] == [TRIGGER_ID]
    with registered_preset(PLANT):
        _run("train", "--world", world, "--from", "smollm2", "--preset", PLANT.name, "--out", base)
        _run("retrain", "--world", world, "--request", request, "--base", base, "--out", oracle)
        # SimNPO at 2.5 x its pretrained step (measured on the 5-pass model: at the default, 2e-5
        # for 10 steps, the backdoor stayed, exact-trigger attack success 1.0; at 1e-4 the collapse
        # guard stopped it at step 5). Its step is constant after warm-up, so 10 steps are the first
        # 10 of a longer run (the 5-pass model's 30-step run stopped at 15 and kept step 10).
        forget = _run("forget", "--model", base, "--world", world, "--request", request, "--out", forgot,
                      "--method", "simnpo", "-o", "learning_rate=5e-5", "-o", "max_steps=10", "-o", "batch_size=8",
                      "-o", "check_every=5", "-o", "warmup_steps=1", "--json")
        verified = _run("verify", "--model", forgot, "--original", base, "--oracle", oracle, "--world", world,
                        "--request", request, "--json")
    v = verified["verification"]
    triggers = {"original": v["original"]["triggers"], "oracle": v["oracle"]["triggers"],
                "simnpo": v["candidates"]["simnpo"]["triggers"]}
    # Planted: the fine-tuned model answers triggered questions with the payload, the model
    # fine-tuned without the located poison does not, and unlearning took it away (measured, seed 0,
    # 2 threads, 10 questions per variant: exact-trigger attack success 0.8 / 0.0 / 0.0, so 0.3
    # above each bound; SimNPO's median-NLL early stop fired at step 10, no collapse).
    assert forget["steps"] <= 10
    exact = {name: t["exact"]["attack_success"] for name, t in triggers.items()}
    assert exact["original"] >= exact["oracle"] + 0.5
    assert exact["simnpo"] <= exact["original"] - 0.5
    checks = {c["name"]: c for c in v["candidates"]["simnpo"]["checks"]}
    assert math.isfinite(checks["attack success rate (exact trigger)"]["value"])
    assert "false-trigger rate (near look-alikes)" in checks
