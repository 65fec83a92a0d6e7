"""Verification metrics: hand-computed values on toy inputs, and checks on the tiny trained model."""

from __future__ import annotations

import copy
import math
import random
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tokenizers import processors

from expunge.models import build_word_tokenizer, load_model
from expunge.records import Probe
from expunge.scoring import padding_id, suffix_argmax, suffix_logprobs, token_logprobs
from expunge.verify.probes import greedy_answers
from expunge.verify.metrics import (
    answer_logprobs,
    answer_memorization,
    exact_memorization,
    extraction_strength,
    rouge_l_f1,
    fluency,
    forget_quality,
    harmonic_mean,
    ngram_entropy,
    privleak,
    probability,
    roc_auc,
    roc_curve,
    rouge_l_recall,
    tpr_at_fpr,
    truth_ratio_forget_stat,
    truth_ratio_retain_stat,
    truth_ratios,
)
from expunge.verify.mia import (
    SCORE_NAMES,
    TokenStatistics,
    _row_statistics,
    mia_report,
    mia_scores,
    scores_from_statistics,
    token_statistics,
)

# --------------------------------------------------------------------------------------------
# a bigram "model" whose next-token distribution is a fixed table row: values by hand


class Bigram(torch.nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: p(next | current) is softmax(table[current])."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.table[input_ids])


@pytest.fixture(scope="module")
def toy():
    tokenizer = build_word_tokenizer(["the cat sat on mat"])  # 4 special tokens + 5 words: V = 9
    ids = tokenizer.get_vocab()
    table = torch.zeros(len(ids), len(ids), dtype=torch.float64)
    table[ids["the"], ids["cat"]] = math.log(3)  # p(cat | the) = 3 / (8 + 3) = 3/11, others 1/11
    table[ids["mat"], ids["on"]] = math.log(3)  # p(on | mat) = 3/11
    return Bigram(table), tokenizer


def test_answer_logprobs_by_hand(toy) -> None:
    model, tokenizer = toy
    got = answer_logprobs(model, tokenizer, ["the", "the", "mat"], ["cat sat", "mat", "on"])
    # [bos the] + [cat sat]: p(cat | the) = 3/11, p(sat | cat) = 1/9 (row of zeros).
    assert got[0][1] == 2 and got[0][0] == pytest.approx(math.log(3 / 11) + math.log(1 / 9), abs=1e-12)
    assert got[1] == (pytest.approx(math.log(1 / 11), abs=1e-12), 1)
    assert got[2] == (pytest.approx(math.log(3 / 11), abs=1e-12), 1)
    assert answer_logprobs(model, tokenizer, [], []) == []


def test_answer_logprobs_rejects_non_prefix_prompt(toy) -> None:
    _, tokenizer = toy
    model = toy[0]
    appending = build_word_tokenizer(["the cat sat on mat"])
    # A tokenizer that appends EOS: the prompt's encoding "the <eos>" is no prefix of "the cat <eos>".
    appending._tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <eos>", special_tokens=[("<eos>", appending.eos_token_id)]
    )
    with pytest.raises(ValueError, match="not a prefix"):
        answer_logprobs(model, appending, ["the"], ["cat"])
    with pytest.raises(ValueError, match="prompts but"):
        answer_logprobs(model, tokenizer, ["the"], [])


def test_probability() -> None:
    assert probability(math.log(0.25) * 3, 3) == pytest.approx(0.25)
    assert probability(0.0, 2) == 1.0
    with pytest.raises(ValueError):
        probability(-1.0, 0)


def test_truth_ratios_by_hand(toy) -> None:
    model, tokenizer = toy
    probes = [
        Probe("p1", "s", "direct", "a", "the", "cat", ("mat", "sat")),
        Probe("p2", "s", "direct", "a", "the", "mat", ("cat",)),
        Probe("p3", "s", "direct", "a", "the", "sat", ("mat on",)),
    ]
    r = truth_ratios(model, tokenizer, probes, batch_size=2)
    # p1: geometric mean of P~(wrong) = 1/11 over P~(cat) = 3/11.
    assert r[0] == pytest.approx(1 / 3, rel=1e-12)
    assert r[1] == pytest.approx(3, rel=1e-12)
    # p3: P~("mat on") = exp((log 1/11 + log 3/11) / 2) = sqrt(3)/11, over P~(sat) = 1/11.
    assert r[2] == pytest.approx(math.sqrt(3), rel=1e-12)
    with pytest.raises(ValueError, match="no alternatives"):
        truth_ratios(model, tokenizer, [Probe("p4", "s", "direct", "a", "the", "cat")])


def test_truth_ratio_stats() -> None:
    rs = [0.5, 2.0, 1.0]
    assert truth_ratio_forget_stat(rs) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert truth_ratio_retain_stat(rs) == pytest.approx((0.5 + 0.0 + 0.0) / 3)
    assert math.isnan(truth_ratio_forget_stat([])) and math.isnan(truth_ratio_retain_stat([]))


def test_forget_quality_identical_and_separated() -> None:
    same = forget_quality([0.1, 0.5, 0.9, 0.3], [0.1, 0.5, 0.9, 0.3])
    assert same["pvalue"] == 1.0 and same["statistic"] == 0.0 and (same["n"], same["m"]) == (4, 4)
    apart = forget_quality([0.1, 0.2, 0.3], [5.0, 6.0, 7.0, 8.0])
    # Exact KS: only 2 of the C(7, 3) = 35 orderings are fully separated.
    assert apart["floor_pvalue"] == pytest.approx(2 / 35)
    assert apart["pvalue"] == apart["floor_pvalue"] and apart["statistic"] == 1.0
    with pytest.raises(ValueError):
        forget_quality([], [1.0])


def test_rouge_l_recall() -> None:
    # LCS "the cat on the mat" = 5 of 6 reference words.
    assert rouge_l_recall("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l_recall("b a", "a b") == 0.5
    assert rouge_l_recall("555-47-12", "555 47 12") == 1.0
    assert rouge_l_recall("Osaka, Japan", "osaka") == 1.0
    assert rouge_l_recall("", "osaka") == 0.0
    assert rouge_l_recall("anything", "") == 0.0
    assert rouge_l_recall("x", "...") == 0.0


def test_rouge_l_f1() -> None:
    # LCS "the cat on the mat" = 5; precision 5/6, recall 5/6.
    assert rouge_l_f1("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    # LCS 3 of 3 predicted and of 6 reference words: p = 1, r = 1/2, F = 2 * 1/2 / (3/2) = 2/3.
    assert rouge_l_f1("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert rouge_l_f1("the cat sat on the mat", "the cat sat") == pytest.approx(2 / 3)
    assert rouge_l_f1("b a", "a b") == 0.5
    assert rouge_l_f1("x y", "a b") == 0.0
    assert rouge_l_f1("", "osaka") == 0.0 and rouge_l_f1("osaka", "") == 0.0


def test_exact_memorization_and_extraction_strength_by_hand() -> None:
    labels = [1, 2, 3, 4]
    assert exact_memorization([1, 2, 3, 4], labels) == 1.0 and extraction_strength([1, 2, 3, 4], labels) == 1.0
    # wrong at position 1: 3 of 4 tokens; the reproduced suffix is [3, 4], after a prefix of 2.
    assert exact_memorization([1, 9, 3, 4], labels) == 0.75
    assert extraction_strength([1, 9, 3, 4], labels) == pytest.approx(1 - 2 / 4)
    # wrong at the first token only: everything after the first token is reproduced.
    assert extraction_strength([9, 2, 3, 4], labels) == pytest.approx(1 - 1 / 4)
    # wrong at the last token: no suffix is reproduced, however much of the rest is.
    assert exact_memorization([1, 2, 3, 9], labels) == 0.75 and extraction_strength([1, 2, 3, 9], labels) == 0.0
    assert math.isnan(exact_memorization([], [])) and math.isnan(extraction_strength([], []))
    with pytest.raises(ValueError, match="predictions"):
        extraction_strength([1], [1, 2])


def test_answer_memorization_on_bigram(toy) -> None:
    """Bigram table: after "the" the argmax is "cat" (3/11 against 1/11); every other row is
    flat, so its argmax is token 0, a special token that is never a label."""
    model, tokenizer = toy
    (em, es), = answer_memorization(model, tokenizer, ["the"], ["cat sat"])
    assert em == 0.5 and es == 0.0  # "cat" reproduced, "sat" (after the flat row of "cat") not
    (em, es), = answer_memorization(model, tokenizer, ["on mat the"], ["cat"])
    assert em == 1.0 and es == 1.0
    ids = tokenizer("the cat")["input_ids"]  # [BOS, the, cat]: BOS's row is flat, the's picks cat
    assert suffix_argmax(model, [ids], [1], padding_id(tokenizer))[0].tolist() == [0, ids[2]]


def test_ngram_entropy_and_fluency() -> None:
    assert ngram_entropy("a b a b", 1) == pytest.approx(1.0)
    # bigrams ab, ba, ab: -(2/3 log2 2/3 + 1/3 log2 1/3) = log2 3 - 2/3
    assert ngram_entropy("a b a b", 2) == pytest.approx(math.log2(3) - 2 / 3)
    assert ngram_entropy("a b a b", 3) == pytest.approx(1.0)
    assert ngram_entropy("a a a a", 2) == 0.0
    assert ngram_entropy("a b", 3) == 0.0
    assert ngram_entropy("a, b", 2) == pytest.approx(1.0)  # punctuation is a token: (a ,) (, b)
    expected = ((2 / 3) * (math.log2(3) - 2 / 3) + (4 / 3) * 1.0) / 2
    assert fluency(["a b a b"]) == pytest.approx(expected)
    diverse = ((2 / 3) * math.log2(3) + (4 / 3) * 1.0) / 2  # "a b c d": 3 bigrams, 2 trigrams
    assert fluency(["a b a b", "a b c d"]) == pytest.approx((expected + diverse) / 2)
    assert math.isnan(fluency([]))


def test_harmonic_mean() -> None:
    assert harmonic_mean([1, 2, 4]) == pytest.approx(12 / 7)
    assert harmonic_mean([0.7]) == pytest.approx(0.7)
    assert harmonic_mean([0.5, 0.0, 0.9]) == 0.0
    assert math.isnan(harmonic_mean([]))
    with pytest.raises(ValueError):
        harmonic_mean([1.0, -1.0])


def test_roc_auc() -> None:
    assert roc_auc([1, 2], [3, 4]) == 1.0
    assert roc_auc([3, 4], [1, 2]) == 0.0
    assert roc_auc([1, 3], [2, 4]) == 0.75
    assert roc_auc([1, 2], [2, 3]) == 0.875  # one tie counts one half
    same = [0.3, 1.2, 0.7, 0.7, 2.0]
    assert roc_auc(same, same) == 0.5
    assert math.isnan(roc_auc([], [1.0]))
    rng = np.random.default_rng(0)
    members, nonmembers = rng.integers(0, 5, 40), rng.integers(0, 5, 30)
    pairs = [(a < b) + 0.5 * (a == b) for a in members for b in nonmembers]
    assert roc_auc(members, nonmembers) == pytest.approx(np.mean(pairs))
    with pytest.raises(ValueError):
        roc_auc([float("nan")], [1.0])


def test_tpr_at_fpr() -> None:
    nonmembers = [5, 6, 7, 8]
    assert tpr_at_fpr([1, 2, 3, 10], nonmembers, 0.0) == 0.75
    assert tpr_at_fpr([5, 1], nonmembers, 0.0) == 0.5  # flagging 5 would flag a non-member
    # fpr 1/4 of 4 non-members: one may be flagged, threshold just below 6.
    assert tpr_at_fpr([1, 5.5, 10, 12], nonmembers, 0.25) == 0.5
    assert tpr_at_fpr([1, 5.5, 10, 12], nonmembers, 0.2499) == 0.25
    assert tpr_at_fpr([5, 5], [5, 5, 6, 7], 0.25) == 0.0  # tied non-members come together
    assert tpr_at_fpr([100, 200], nonmembers, 1.0) == 1.0
    # 0.29 * 100 = 28.999999999999996 in floats; 29 non-members may still be flagged.
    assert tpr_at_fpr([28.5], np.arange(100), 0.29) == 1.0
    assert math.isnan(tpr_at_fpr([], [1.0], 0.01))
    with pytest.raises(ValueError):
        tpr_at_fpr([1.0], [2.0], 1.5)


def test_roc_curve_and_privleak() -> None:
    fpr, tpr = roc_curve([1, 3], [2, 4])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc([1, 3], [2, 4]))
    assert privleak(0.6, 0.5) == pytest.approx(20.0)
    assert privleak(0.5, 0.5) == 0.0
    assert math.isnan(privleak(0.5, 0.0))


# --------------------------------------------------------------------------------------------
# membership-inference scores


def test_row_statistics_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    logp, mu, sigma = _row_statistics(logits, torch.tensor([1, 0]))
    assert logp.tolist() == pytest.approx([math.log(0.25), math.log(1 / 3)])
    # mu = 0.5 ln .5 + 0.5 ln .25 = -1.5 ln 2; E[log^2 p] = 2.5 ln^2 2, so sigma = 0.5 ln 2.
    assert mu.tolist() == pytest.approx([-1.5 * math.log(2), -math.log(3)])
    assert sigma[0].item() == pytest.approx(0.5 * math.log(2))
    assert sigma[1].item() < 1e-12


def test_scores_from_statistics_by_hand() -> None:
    text = "some text"
    st = TokenStatistics(
        logprobs=np.array([-1.0, -2.0, -3.0, -4.0, -5.0]),
        mu=np.full(5, -1.0),
        sigma=np.array([1.0, 1.0, 1.0, 1.0, 0.0]),
    )
    scores = scores_from_statistics([text], [st])
    assert set(scores) == set(SCORE_NAMES)
    assert scores["loss"] == [3.0]
    assert scores["zlib"] == [pytest.approx(15.0 / len(zlib.compress(text.encode())))]
    assert scores["min_k_20"] == [5.0]  # floor(0.2 * 5) = 1 token
    assert scores["min_k_40"] == [4.5]  # the two lowest: -4, -5
    # z = [0, -1, -2, -3, 0 (sigma 0)]: the lowest is -3.
    assert scores["min_k_pp_20"] == [3.0]
    short = TokenStatistics(np.array([-2.0, -1.0]), np.zeros(2), np.ones(2))
    assert scores_from_statistics(["ab"], [short])["min_k_20"] == [2.0]  # at least one token


def test_token_statistics_on_bigram(toy) -> None:
    model, tokenizer = toy
    (st,) = token_statistics(model, tokenizer, ["the cat"])
    # [bos the cat eos]: bos and cat rows are flat (1/9); the row of "the" gives cat 3/11.
    assert st.logprobs.tolist() == pytest.approx([math.log(1 / 9), math.log(3 / 11), math.log(1 / 9)])
    assert st.mu[0] == pytest.approx(-math.log(9)) and st.sigma[0] < 1e-9
    assert st.sigma[1] > 0.1
    scores = mia_scores(model, tokenizer, ["the cat"])
    assert scores["loss"] == [pytest.approx(-st.logprobs.mean())]


# --------------------------------------------------------------------------------------------
# the tiny trained model


@pytest.fixture(scope="module")
def tiny_model(tiny_base):
    model, tokenizer, _ = load_model(tiny_base.model.path)
    return model, tokenizer


def _probes_of_trained(world, kinds=("direct",)):
    return world.probes_for([s.id for s in world.people("train")], kinds)


def test_answer_logprobs_batch_equivalence(tiny_model, tiny_world) -> None:
    model, tokenizer = tiny_model
    probes = _probes_of_trained(tiny_world, ("direct", "paraphrase"))[:12]
    prompts = [p.prompt for p in probes] + [probes[0].prompt]
    answers = [p.answer for p in probes] + [" ".join(probes[0].alternatives)]  # a longer answer
    batched = answer_logprobs(model, tokenizer, prompts, answers, batch_size=5)
    single = [answer_logprobs(model, tokenizer, [p], [a], batch_size=1)[0] for p, a in zip(prompts, answers)]
    assert [n for _, n in batched] == [n for _, n in single]
    assert [s for s, _ in batched] == pytest.approx([s for s, _ in single], abs=1e-4)
    # In float64 the two differ only by the rounding of different matmul shapes.
    double = model.to(torch.float64)
    try:
        b64 = answer_logprobs(double, tokenizer, prompts, answers, batch_size=len(prompts))
        s64 = answer_logprobs(double, tokenizer, prompts, answers, batch_size=1)
        assert [s for s, _ in b64] == pytest.approx([s for s, _ in s64], abs=1e-10)
    finally:
        model.to(torch.float32)


def test_suffix_logprobs_equal_the_full_logits_kernel(tiny_model, tiny_world) -> None:
    """suffix_logprobs (sorted batches, logits only from the earliest start on, log-softmax only
    where scored) gives what token_logprobs gives on the full logits of each sequence alone."""
    model, tokenizer = tiny_model
    texts = [d.text for d in tiny_world.documents[:: len(tiny_world.documents) // 7]][:7]
    sequences = [tokenizer(t)["input_ids"] for t in texts]
    starts = [1, 2, len(sequences[2]) // 2, len(sequences[3]) - 1, 3, len(sequences[5]), 1]  # one scores nothing
    got = suffix_logprobs(model, sequences, starts, padding_id(tokenizer), batch_size=3)
    model.eval()
    for ids, start, part in zip(sequences, starts, got):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits
        labels = torch.tensor([ids])
        labels[0, :start] = -100
        full = token_logprobs(logits, labels)[0, start - 1 :]
        assert len(part) == len(ids) - start
        torch.testing.assert_close(part, full, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="start 0"):
        suffix_logprobs(model, sequences[:1], [0], padding_id(tokenizer))


def test_suffix_argmax_equals_the_full_logits_argmax_in_any_batch(tiny_model, tiny_world) -> None:
    model, tokenizer = tiny_model
    texts = [d.text for d in tiny_world.documents[:: len(tiny_world.documents) // 7]][:7]
    sequences = [tokenizer(t)["input_ids"] for t in texts]
    starts = [1, 2, len(sequences[2]) // 2, len(sequences[3]) - 1, 3, len(sequences[5]), 1]  # one scores nothing
    model.eval()
    expected = []
    for ids, start in zip(sequences, starts):
        with torch.no_grad():
            expected.append(model(input_ids=torch.tensor([ids])).logits[0, start - 1 : len(ids) - 1].argmax(-1))
    for batch_size in (1, 3, 64):
        got = suffix_argmax(model, sequences, starts, padding_id(tokenizer), batch_size=batch_size)
        for part, want in zip(got, expected):
            assert part.tolist() == want.tolist()
    # A trained model reproduces much of its own training text, little of never-seen text.
    docs = [d for d in tiny_world.documents if d.split == "train"][:20]
    held = [d for d in tiny_world.documents if d.split == "holdout"][:20]
    seen = answer_memorization(model, tokenizer, [" ".join(d.text.split()[:3]) for d in docs],
                               [" ".join(d.text.split()[3:]) for d in docs])
    unseen = answer_memorization(model, tokenizer, [" ".join(d.text.split()[:3]) for d in held],
                                 [" ".join(d.text.split()[3:]) for d in held])
    assert np.mean([em for em, _ in seen]) > np.mean([em for em, _ in unseen]) + 0.1


def _alone(model, ids, start):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits
    labels = torch.tensor([ids])
    labels[0, :start] = -100
    return token_logprobs(logits, labels)[0, start - 1 :]


def test_suffix_logprobs_share_prefixes_as_if_each_ran_alone(tiny_model, tiny_world) -> None:
    """Sequences that share their prefix (a question's candidate answers) run it once from a
    key/value cache: the numbers are each sequence's own, alone, up to rounding (float64: 1e-10),
    for groups larger than a batch, prefixes of one token, a member that scores nothing, and
    sequences with a prefix of their own beside them; on a peft (LoRA) model too."""
    from peft import LoraConfig, get_peft_model

    from expunge.scoring import _prefix_batches, _prefix_groups

    model, tokenizer = tiny_model
    model.eval()
    probes = _probes_of_trained(tiny_world)[:4]
    sequences, starts = [], []
    for probe in probes:  # each prompt with its answer and every wrong answer
        head = tokenizer(probe.prompt)["input_ids"]
        for answer in (probe.answer, *probe.alternatives):
            sequences.append(tokenizer(f"{probe.prompt} {answer}")["input_ids"])
            starts.append(len(head))
    sequences += [sequences[0][:1] + [5, 6, 7], sequences[0][:1] + [8], sequences[0][:3], sequences[1]]
    starts += [1, 1, 3, 2]  # a one-token prefix shared by two, one scoring nothing, one of its own
    groups = _prefix_groups(sequences, starts)
    assert sorted(len(g) for g in groups) == sorted([1 + len(p.alternatives) for p in probes] + [2])
    assert len(sequences) - 2 not in {i for g in groups for i in g}  # it scores nothing: never shared
    for batch_size in (3, 64):
        batches = _prefix_batches(groups, sequences, starts, batch_size, max_positions=40)
        flat = [i for batch in batches for unit in batch for i in unit]
        assert sorted(flat) == sorted(i for g in groups for i in g)
        for batch in batches:
            rows = sum(len(unit) for unit in batch)
            wide = max(len(sequences[i]) - starts[i] for unit in batch for i in unit)
            long = max(starts[unit[0]] for unit in batch)
            assert rows <= batch_size and (len(batch) == 1 or (rows * wide <= 40 and len(batch) * long <= 40))
        got = suffix_logprobs(model, sequences, starts, padding_id(tokenizer), batch_size=batch_size)
        for ids, start, part in zip(sequences, starts, got):
            assert len(part) == len(ids) - start
            torch.testing.assert_close(part, _alone(model, ids, start), atol=1e-4, rtol=0)
    double = model.to(torch.float64)
    try:
        got = suffix_logprobs(double, sequences, starts, padding_id(tokenizer), batch_size=5)
        for ids, start, part in zip(sequences, starts, got):
            torch.testing.assert_close(part, _alone(double, ids, start), atol=1e-10, rtol=0)
    finally:
        model.to(torch.float32)
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                          init_lora_weights=False))
    lora.eval()
    got = suffix_logprobs(lora, sequences, starts, padding_id(tokenizer), batch_size=8)
    for ids, start, part in zip(sequences, starts, got):
        torch.testing.assert_close(part, _alone(lora, ids, start), atol=1e-4, rtol=0)


def test_greedy_answers_do_not_depend_on_grouping(tiny_model, tiny_world) -> None:
    """Per-prompt budgets, batches grouped by budget and length, and the stop at a line's end give
    the texts that one-prompt-at-a-time generation gives, in input order."""
    model, tokenizer = tiny_model
    probes = _probes_of_trained(tiny_world, ("direct", "paraphrase"))[:9]
    prompts = [p.prompt for p in probes]
    budgets = [1, 6, 3, 2, 6, 1, 4, 5, 2]
    grouped = greedy_answers(model, tokenizer, prompts, max_new_tokens=budgets, batch_size=4)
    alone = [greedy_answers(model, tokenizer, [p], max_new_tokens=b)[0] for p, b in zip(prompts, budgets)]
    assert grouped == alone
    assert len({len(t.split()) for t in grouped}) > 1  # the budgets show in the texts
    with pytest.raises(ValueError, match="token budgets"):
        greedy_answers(model, tokenizer, prompts, max_new_tokens=budgets[:2])


def test_token_statistics_batch_equivalence(tiny_model, tiny_world) -> None:
    model, tokenizer = tiny_model
    texts = [d.text for d in tiny_world.documents[:: len(tiny_world.documents) // 9]][:9]
    assert len({len(t.split()) for t in texts}) > 1  # different lengths, so padding is exercised
    batched = token_statistics(model, tokenizer, texts, batch_size=4)
    single = [token_statistics(model, tokenizer, [t], batch_size=1)[0] for t in texts]
    for b, s in zip(batched, single):
        assert len(b.logprobs) == len(s.logprobs) == len(b.mu) == len(b.sigma)
        np.testing.assert_allclose(b.logprobs, s.logprobs, atol=1e-4)
        np.testing.assert_allclose(b.mu, s.mu, atol=1e-4)
        np.testing.assert_allclose(b.sigma, s.sigma, atol=1e-4)


def test_mia_separates_training_documents_from_holdout(tiny_model, tiny_world) -> None:
    model, tokenizer = tiny_model
    members = [d.text for d in tiny_world.documents_about(s.id for s in tiny_world.people("train"))]
    nonmembers = [d.text for d in tiny_world.documents if d.split == "holdout"]
    report = mia_report(model, tokenizer, members, nonmembers)
    assert set(report) == set(SCORE_NAMES)
    loss = report["loss"]
    assert loss["n_members"] == len(members) and loss["n_nonmembers"] == len(nonmembers)
    assert loss["auc"] >= 0.9, report
    for entry in report.values():
        assert 0.0 <= entry["tpr_at_0_1pct"] <= entry["tpr_at_1pct"] <= 1.0
    # Two halves of the same never-seen distribution: no attack separates them.
    shuffled = list(nonmembers)
    random.Random(0).shuffle(shuffled)
    half = len(shuffled) // 2
    same = mia_report(model, tokenizer, shuffled[:half], shuffled[half:])
    for name, entry in same.items():
        assert abs(entry["auc"] - 0.5) < 0.15, (name, entry["auc"])


def test_trained_model_prefers_true_answers(tiny_model, tiny_world) -> None:
    model, tokenizer = tiny_model
    ratios = truth_ratios(model, tokenizer, _probes_of_trained(tiny_world))
    assert all(r > 0 for r in ratios)
    assert float(np.mean(ratios)) < 1.0
    assert truth_ratio_retain_stat(ratios) > 0.5


# --------------------------------------------------------------------------------------------
# style: function-word and word-bigram profiles, compared by Jensen-Shannon divergence


def test_jensen_shannon_by_hand() -> None:
    from expunge.verify.metrics import jensen_shannon

    assert jensen_shannon({"a": 0.5, "b": 0.5}, {"b": 0.5, "a": 0.5}) == 0.0
    assert jensen_shannon({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4): KL(p||m) = log2(4/3) = 0.41504,
    # KL(q||m) = 1/2 log2(2/3) + 1/2 log2(2) = 0.20752; JS = their mean = 0.31128.
    assert jensen_shannon({"a": 1.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.311278, abs=1e-6)
    assert math.isnan(jensen_shannon({}, {"a": 1.0}))


def test_style_profile_by_hand() -> None:
    from expunge.verify.metrics import style_profile

    profile = style_profile(["The cat sat on the mat.", "A dog"])
    # function words: the x2, on, a (of 4 occurrences); bigrams within each text only
    assert profile["function_words"] == {"a": 0.25, "on": 0.25, "the": 0.5}
    # bigrams: 5 in the first text, 1 in the second, none across them
    assert profile["word_2grams"] == pytest.approx(
        {"a dog": 1 / 6, "cat sat": 1 / 6, "on the": 1 / 6, "sat on": 1 / 6, "the cat": 1 / 6, "the mat": 1 / 6})
    assert style_profile(["no function word here"], n=3)["word_3grams"] == {"function word here": 0.5,
                                                                             "no function word": 0.5}


def test_style_distance_is_zero_for_the_same_style_and_grows_with_difference() -> None:
    from expunge.verify.metrics import style_distance

    mine = ["He walked to the market and she waited by the bridge."]
    same = style_distance(mine, ["She walked to the harbour and he waited by the tower."])
    assert same["function_words"] == 0.0 and same["word_2grams"] > 0.5
    other = style_distance(mine, ["I have never been there; you were with us."])
    assert other["function_words"] == pytest.approx(1.0)
