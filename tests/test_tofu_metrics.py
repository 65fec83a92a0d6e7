"""TOFU's metrics as open-unlearning defines them: each formula against a hand computation, the
item sets of an imported (miniature) TOFU world, and the whole evaluation on a tiny model:
consistent with its own parts, and the same in batches of 1 and of many."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from scipy import stats

from expunge.verify.metrics import rouge_l_recall
from expunge.verify.tofu import (
    UTILITY_PARTS,
    answer_avg_losses,
    closer_to_1_better,
    evaluate_tofu,
    is_tofu,
    model_utility,
    normalised_probability,
    rouge_l_recall_stemmed,
    tofu_forget_quality,
    tofu_sets,
    true_better,
    truth_ratio,
)
from expunge.worlds.importers import import_tofu
from mini_tofu import write_mini_tofu


def test_the_formulas_against_hand_computed_values() -> None:
    e = math.exp
    assert normalised_probability(1.0, [2.0, 3.0]) == pytest.approx(e(-1) / (e(-1) + e(-2) + e(-3)), rel=1e-9)
    assert truth_ratio(1.0, [2.0, 3.0]) == pytest.approx(e(-1.5), rel=1e-9)  # exp(-mean(2, 3)) / exp(-1)
    assert truth_ratio(0.5, [0.5]) == pytest.approx(1.0, rel=1e-9)
    assert closer_to_1_better([0.5, 2.0, 1.0]) == pytest.approx((0.5 + 0.5 + 1.0) / 3, rel=1e-9)
    assert true_better([0.5, 2.0, 1.0]) == pytest.approx((0.5 + 0 + 0) / 3, rel=1e-9)
    assert math.isnan(closer_to_1_better([])) and math.isnan(true_better([]))
    with pytest.raises(ValueError, match="wrong answer"):
        truth_ratio(1.0, [])


def test_rouge_is_stemmed_recall_against_the_answer() -> None:
    # reference words (stemmed): the cat were run fast; prediction: a cat run fast -> LCS 3 of 5
    assert rouge_l_recall_stemmed("a cat runs fast", "The cats were running fast") == pytest.approx(0.6)
    assert rouge_l_recall("a cat runs fast", "The cats were running fast") == pytest.approx(0.2)  # unstemmed: fast
    assert rouge_l_recall_stemmed("", "anything at all") == 0.0
    assert rouge_l_recall_stemmed("Paris, France.", "Paris") == 1.0  # recall: extra words cost nothing


def test_model_utility_and_forget_quality() -> None:
    values = {name: 0.5 for name in UTILITY_PARTS} | {"wf_Truth_Ratio": 0.25}
    assert model_utility(values) == pytest.approx(9 / (8 / 0.5 + 1 / 0.25))  # 0.45
    assert model_utility(values | {"ra_Q_A_ROUGE": 0.0}) == 0.0
    assert math.isnan(model_utility({k: v for k, v in values.items() if k != "retain_Q_A_Prob"}))
    same = [0.2, 0.5, 0.9, 1.3, 2.0]
    assert tofu_forget_quality(same, same) == pytest.approx(1.0)
    apart = tofu_forget_quality([0.1, 0.2, 0.3, 0.4, 0.5], [1.1, 1.2, 1.3, 1.4, 1.5])
    assert apart == pytest.approx(2 / math.comb(10, 5))  # the exact two-sided KS p-value, n = m = 5
    assert apart == pytest.approx(stats.ks_2samp([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).pvalue)
    assert math.isnan(tofu_forget_quality([], same))


@pytest.fixture(scope="module")
def tofu_world(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("minitofu")
    return import_tofu(write_mini_tofu(base / "files"), base / "world", authors=20)


@pytest.fixture(scope="module")
def tiny(tofu_world):
    from transformers import LlamaConfig, LlamaForCausalLM

    from expunge.models.tokenizer import build_word_tokenizer

    texts = [t for p in tofu_world.probes for t in (p.prompt, p.answer, p.paraphrased_answer, *p.alternatives)]
    tokenizer = build_word_tokenizer(texts)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval(), tokenizer


def test_the_item_sets_of_an_imported_tofu_world(tofu_world) -> None:
    assert is_tofu(tofu_world)
    forget = tofu_world.splits["forget10"]
    sets = tofu_sets(tofu_world, forget)
    # 20 authors kept: the first 18 and TOFU's last 2 (forget10); retain_perturbed covers authors
    # 0-19 of full.json, so the world holds 18 of them; each author has 20 QA pairs.
    assert sets.sizes() == {"forget": 40, "retain": 360, "real_authors": 10, "world_facts": 10}
    assert {p.subject for p in sets.forget} == set(forget)
    assert all(len(p.alternatives) == 5 and p.paraphrased_answer for p in sets.forget + sets.retain)
    assert all(p.kind == "direct" for p in sets.forget + sets.retain + sets.real_authors)
    smaller = tofu_sets(tofu_world, forget[:1])
    assert smaller.sizes()["forget"] == 20 and smaller.sizes()["retain"] == 360  # a forget author is no retain one


def test_answer_loss_covers_the_answer_and_eos_after_the_prompt(tiny) -> None:
    model, tokenizer = tiny
    prompt, answer = "What is fact 1 about Ana Marsh?", "Ana Marsh has fact number 1 and 0."
    ids = tokenizer(prompt)["input_ids"] + tokenizer(answer, add_special_tokens=False)["input_ids"] + \
        [tokenizer.eos_token_id]
    start = len(tokenizer(prompt)["input_ids"])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    by_hand = -sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids))) / (len(ids) - start)
    (got,) = answer_avg_losses(model, tokenizer, [prompt], [answer])
    assert got == pytest.approx(by_hand, rel=1e-5)


def test_the_evaluation_agrees_with_its_parts_and_with_batch_size_one(tofu_world, tiny) -> None:
    model, tokenizer = tiny
    sets = tofu_sets(tofu_world, tofu_world.splits["forget01"])
    small = type(sets)(sets.forget, sets.retain[:12], sets.real_authors, sets.world_facts)
    many = evaluate_tofu(model, tokenizer, small, max_new_tokens=6, batch_size=16)
    one = evaluate_tofu(model, tokenizer, small, max_new_tokens=6, batch_size=1)
    assert set(many.values) == {*UTILITY_PARTS, "forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio",
                                "model_utility"}
    for name, value in many.values.items():
        assert one.values[name] == pytest.approx(value, rel=1e-4, abs=1e-7), name
    assert many.generations == one.generations
    # Prob is the mean of exp(-avg loss); ra's is normalised over its options, so it lies below 1
    # and above the raw probability.
    losses = answer_avg_losses(model, tokenizer, [p.prompt for p in small.retain], [p.answer for p in small.retain])
    assert many.values["retain_Q_A_Prob"] == pytest.approx(sum(math.exp(-x) for x in losses) / len(losses), rel=1e-6)
    ra = small.real_authors
    raw = answer_avg_losses(model, tokenizer, [p.prompt for p in ra], [p.answer for p in ra])
    assert sum(math.exp(-x) for x in raw) / len(raw) < many.values["ra_Q_A_Prob_normalised"] < 1.0
    assert many.values["model_utility"] == pytest.approx(stats.hmean([many.values[k] for k in UTILITY_PARTS]))
    assert len(many.forget_truth_ratios) == len(small.forget) == 20
    # against itself, forget quality is 1; against a model that prefers the truth far more, low
    quality = many.with_forget_quality(one).values["forget_quality"]
    assert quality == pytest.approx(1.0)
    sharper = type(many)(many.values, [r / 50 for r in many.forget_truth_ratios], many.sizes)
    assert many.with_forget_quality(sharper).values["forget_quality"] < 1e-6
