"""Verification metrics, each implemented to one exact, stated definition.

Model-based metrics (answer log-probabilities, truth ratios) run teacher-forced forward passes;
everything else is a pure function of numbers or strings, so it can be checked by hand.

Conventions shared by the model-based functions: the logits at position t predict the token at
t+1 (the causal shift of :func:`expunge.methods.gradient.losses.sequence_logprobs`); batches are
right-padded, so every real token keeps the position it has when encoded alone and a batched call
equals a one-at-a-time loop up to floating-point rounding. Log-probabilities are computed in at
least float32 (float64 models stay float64).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.scoring import (answer_logprobs, encode_answers, padding_id, suffix_argmax, suffix_logprobs,
                             token_logprobs)
from expunge.records import Probe

__all__ = [
    "answer_logprobs",
    "answer_memorization",
    "encode_answers",
    "probability",
    "truth_ratios",
    "candidate_logprobs",
    "truth_ratio_from_logprobs",
    "multiple_choice_correct",
    "truth_ratio_forget_stat",
    "truth_ratio_retain_stat",
    "forget_quality",
    "rouge_l_recall",
    "rouge_l_f1",
    "exact_memorization",
    "extraction_strength",
    "ngram_entropy",
    "fluency",
    "FUNCTION_WORDS",
    "style_profile",
    "jensen_shannon",
    "style_distance",
    "harmonic_mean",
    "roc_auc",
    "tpr_at_fpr",
    "roc_curve",
    "privleak",
    "token_logprobs",
]


# --------------------------------------------------------------------------------------------
# teacher-forced log-probabilities


@torch.no_grad()
def answer_memorization(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 64,
) -> list[tuple[float, float]]:
    """Teacher-forced ``(exact memorisation, extraction strength)`` of each answer after its
    prompt (a passage's continuation after its first words, as MUSE scores verbatim memory):
    :func:`exact_memorization` and :func:`extraction_strength` of the argmax at every answer
    token, with the answer's tokens separated from the prompt's as :func:`answer_logprobs`
    does (same checks, same errors)."""
    if len(prompts) != len(answers):
        raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
    if not prompts:
        return []
    fulls, head_lens = encode_answers(tokenizer, prompts, answers)
    predicted = suffix_argmax(model, fulls, head_lens, padding_id(tokenizer), batch_size)
    out = []
    for full, head, pred in zip(fulls, head_lens, predicted):
        labels = full[head:]
        out.append((exact_memorization(pred.tolist(), labels), extraction_strength(pred.tolist(), labels)))
    return out


def probability(sum_logp: float, n: int) -> float:
    """Prob(a|q) = exp(sum_logp / n) = exp(-mean token NLL of the answer). Raises if n < 1."""
    if n < 1:
        raise ValueError("an answer needs at least one token to have a probability")
    return math.exp(sum_logp / n)


# --------------------------------------------------------------------------------------------
# truth ratio and forget quality


def candidate_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    probes: Sequence[Probe],
    batch_size: int = 64,
) -> list[list[float]]:
    """Per probe, the mean token log-prob (log P~) of the true answer and then of each
    ``probe.alternatives``, given the probe's prompt (one flat batch; see :func:`answer_logprobs`).

    Raises:
        ValueError: a probe has no alternatives (no truth ratio, no multiple choice).
    """
    for probe in probes:
        if not probe.alternatives:
            raise ValueError(f"probe {probe.id} has no alternatives, so it has no truth ratio")
    prompts: list[str] = []
    answers: list[str] = []
    for probe in probes:
        for candidate in (probe.answer, *probe.alternatives):
            prompts.append(probe.prompt)
            answers.append(candidate)
    scored = answer_logprobs(model, tokenizer, prompts, answers, batch_size=batch_size)
    out: list[list[float]] = []
    at = 0
    for probe in probes:
        out.append([s / n for s, n in scored[at : at + 1 + len(probe.alternatives)]])
        at += 1 + len(probe.alternatives)
    return out


def truth_ratio_from_logprobs(mean_logps: Sequence[float]) -> float:
    """R = exp(mean of the wrong answers' log P~ - log P~(true)); the true answer comes first."""
    true_logp, wrong_logps = mean_logps[0], mean_logps[1:]
    return math.exp(sum(wrong_logps) / len(wrong_logps) - true_logp)


def multiple_choice_correct(mean_logps: Sequence[float]) -> bool:
    """Multiple choice scored by logits: the true answer (first) has the strictly highest log P~
    among all candidates (a tie is not a correct choice)."""
    return all(mean_logps[0] > other for other in mean_logps[1:])


def paraphrased_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    probes: Sequence[Probe],
    batch_size: int = 64,
) -> dict[str, float]:
    """log P~ (mean token log-prob) of each probe's ``paraphrased_answer`` given its prompt, for
    the probes that have one (id -> value)."""
    worded = [p for p in probes if p.paraphrased_answer]
    scored = answer_logprobs(model, tokenizer, [p.prompt for p in worded], [p.paraphrased_answer for p in worded],
                             batch_size=batch_size)
    return {p.id: total / max(n, 1) for p, (total, n) in zip(worded, scored)}


def ratios_from(probes: Sequence[Probe], logps: Sequence[Sequence[float]], paraphrased: dict[str, float]) -> list[float]:
    """Truth ratios from :func:`candidate_logprobs` output, the reference being the paraphrased
    answer where a probe has one (``paraphrased``), else the answer."""
    return [truth_ratio_from_logprobs([paraphrased.get(p.id, lp[0]), *lp[1:]]) for p, lp in zip(probes, logps)]


def truth_ratios(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    probes: Sequence[Probe],
    batch_size: int = 64,
) -> list[float]:
    """Truth ratio of each probe: R = exp(mean_i log P~(wrong_i) - log P~(reference)).

    P~(a) = exp(mean token log-prob of ``a`` given the probe's prompt) (length-normalised, see
    :func:`answer_logprobs`); the wrong answers are ``probe.alternatives``; the reference is the
    probe's ``paraphrased_answer`` where it has one (TOFU, as open-unlearning computes it: the
    answer itself may be memorised verbatim), else its ``answer``. So R is the geometric mean of
    P~(wrong_i) over P~(reference): R < 1 means the model prefers the true answer.

    Raises:
        ValueError: a probe has no alternatives (its truth ratio is undefined).
    """
    logps = candidate_logprobs(model, tokenizer, probes, batch_size)
    return ratios_from(probes, logps, paraphrased_logprobs(model, tokenizer, probes, batch_size))


def truth_ratio_forget_stat(ratios: Sequence[float]) -> float:
    """mean(min(R, 1/R)): 1 when the model cannot tell true from wrong (nan for no ratios)."""
    if len(ratios) == 0:
        return float("nan")
    r = np.asarray(ratios, dtype=float)
    return float(np.mean(np.minimum(r, 1.0 / r)))


def truth_ratio_retain_stat(ratios: Sequence[float]) -> float:
    """mean(max(0, 1 - R)): near 1 when the model strongly prefers true answers (nan for none)."""
    if len(ratios) == 0:
        return float("nan")
    r = np.asarray(ratios, dtype=float)
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


def forget_quality(unlearned: Sequence[float], oracle: Sequence[float]) -> dict[str, Any]:
    """Two-sample Kolmogorov-Smirnov test of the unlearned model's truth ratios against the oracle's.

    Returns ``pvalue`` and ``statistic`` of ``scipy.stats.ks_2samp(unlearned, oracle)`` (default
    method), the sample sizes ``n`` and ``m``, and ``floor_pvalue``: the p-value of the same test on
    two completely separated samples of sizes n and m, the smallest p-value these sizes can reach.
    A p-value at the floor means "as different as n and m can show", not "infinitely different".

    Raises:
        ValueError: either sample is empty.
    """
    n, m = len(unlearned), len(oracle)
    if n == 0 or m == 0:
        raise ValueError(f"forget quality needs two non-empty samples (got {n} and {m})")
    result = stats.ks_2samp(np.asarray(unlearned, dtype=float), np.asarray(oracle, dtype=float))
    floor = stats.ks_2samp(np.arange(n, dtype=float), np.arange(n, n + m, dtype=float))
    return {
        "pvalue": float(result.pvalue),
        "statistic": float(result.statistic),
        "n": n,
        "m": m,
        "floor_pvalue": float(floor.pvalue),
    }


# --------------------------------------------------------------------------------------------
# text metrics

_PUNCTUATION = re.compile(r"[^\w\s]")
# Words and single punctuation marks: an approximation of nltk.word_tokenize (used by ROME's
# n-gram entropy) without the nltk dependency.
_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


def _rouge_words(text: str) -> list[str]:
    return _PUNCTUATION.sub(" ", text.lower()).split()


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two word lists (the classic O(len(a) * len(b))
    dynamic programme, one row at a time)."""
    previous = [0] * (len(b) + 1)
    for word in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_recall(prediction: str, reference: str) -> float:
    """ROUGE-L recall: LCS(prediction words, reference words) / number of reference words.

    Words: the text lower-cased, every character that is neither a word character nor whitespace
    replaced by a space, then split on whitespace (no stemming, no stop words). A reference with
    no words gives 0.0 (there is nothing to recall; the alternative, 0/0, would poison averages).
    """
    pred, ref = _rouge_words(prediction), _rouge_words(reference)
    if not ref:
        return 0.0
    return _lcs_length(pred, ref) / len(ref)


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1, as MUSE scores verbatim and knowledge memorisation (``rougeL`` f-measure of
    rouge_score, no stemming): with l = LCS(prediction words, reference words), precision
    p = l / len(prediction), recall r = l / len(reference), and 2 p r / (p + r); 0.0 when either
    text has no words or they share none. Words as in :func:`rouge_l_recall`."""
    pred, ref = _rouge_words(prediction), _rouge_words(reference)
    if not pred or not ref:
        return 0.0
    common = _lcs_length(pred, ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_memorization(predicted: Sequence[int], labels: Sequence[int]) -> float:
    """Share of a text's tokens that the model's teacher-forced argmax reproduces: mean over t of
    [argmax p(. | x_<t) == x_t] (Tirumala et al. 2022; MUSE and open-unlearning's
    ``exact_memorization``). ``predicted[t]`` is the argmax at the position that predicts
    ``labels[t]``. nan for an empty text."""
    if len(predicted) != len(labels):
        raise ValueError(f"got {len(predicted)} predictions for {len(labels)} labels")
    if not labels:
        return float("nan")
    return sum(int(p) == int(l) for p, l in zip(predicted, labels)) / len(labels)


def extraction_strength(predicted: Sequence[int], labels: Sequence[int]) -> float:
    """1 - k*/n, k* the length of the shortest prefix of the text after which the teacher-forced
    argmax reproduces every remaining token (Carlini et al. 2021's extractability, as a fraction;
    open-unlearning's ``extraction_strength``): 1.0 when the argmax reproduces the whole text,
    0.0 when it does not even reproduce the last token. (open-unlearning's loop stops at k = n - 1
    and so gives 1/n there; here k* = n, since no suffix is reproduced.) nan for an empty text."""
    if len(predicted) != len(labels):
        raise ValueError(f"got {len(predicted)} predictions for {len(labels)} labels")
    n = len(labels)
    if n == 0:
        return float("nan")
    k = n  # walk back from the end while the argmax matches: the matched suffix starts at k
    while k > 0 and int(predicted[k - 1]) == int(labels[k - 1]):
        k -= 1
    return 1.0 - k / n


def ngram_entropy(text: str, n: int) -> float:
    """Entropy in bits, -sum_g f(g) log2 f(g), of the relative frequencies f of the text's n-grams.

    Tokens are words and single punctuation marks (``\\w+|[^\\w\\s]``, case kept), approximating
    nltk.word_tokenize as used by ROME. A text with fewer than n tokens has no n-grams: 0.0.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    tokens = _WORD_OR_MARK.findall(text)
    counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    if not counts:
        return 0.0
    freqs = np.array(list(counts.values()), dtype=float)
    freqs /= freqs.sum()
    return float(-(freqs * np.log2(freqs)).sum())


def fluency(texts: Sequence[str]) -> float:
    """ROME's generation entropy: mean over texts of mean(2/3 * H2, 4/3 * H3) (nan for no texts).

    H_n is :func:`ngram_entropy` in bits; this is ROME's ``n_gram_entropy`` with ns=[2, 3],
    weights=[2/3, 4/3] and arithmetic aggregation. Low values mean repetitive text.
    """
    if len(texts) == 0:
        return float("nan")
    per_text = [(2 / 3 * ngram_entropy(t, 2) + 4 / 3 * ngram_entropy(t, 3)) / 2 for t in texts]
    return float(np.mean(per_text))


# English function words: closed-class words (articles, pronouns, prepositions, conjunctions,
# auxiliaries) whose rates are the classic stylometric signature of a writer (Mosteller & Wallace
# 1963; Burrows' Delta, 2002): they carry style, not content, so a model that forgot a book's
# content can still write like it.
FUNCTION_WORDS: tuple[str, ...] = (
    "a", "an", "the", "and", "but", "or", "nor", "so", "yet", "if", "then", "than", "as", "because", "while",
    "when", "where", "who", "which", "that", "this", "these", "those", "there", "here", "of", "in", "on", "at",
    "by", "for", "with", "from", "to", "into", "over", "under", "about", "across", "before", "after", "until",
    "through", "beside", "i", "you", "he", "she", "it", "we", "they", "me", "him", "her", "us", "them", "his",
    "its", "our", "their", "my", "your", "is", "was", "were", "are", "be", "been", "had", "has", "have", "did",
    "do", "does", "not", "no", "nothing", "anyone", "someone", "somewhere", "more", "still", "often", "never",
)
_FUNCTION_SET = frozenset(FUNCTION_WORDS)


def style_profile(texts: Sequence[str], n: int = 2) -> dict[str, dict[str, float]]:
    """Relative frequencies of the texts' function words (of all function-word occurrences) and of
    their word n-grams (lowercased words, punctuation dropped; n-grams do not cross texts)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    words = [_rouge_words(t) for t in texts]
    function = Counter(w for ws in words for w in ws if w in _FUNCTION_SET)
    grams = Counter(" ".join(ws[i : i + n]) for ws in words for i in range(len(ws) - n + 1))

    def relative(counts: Counter) -> dict[str, float]:
        total = sum(counts.values())
        return {k: v / total for k, v in sorted(counts.items())} if total else {}

    return {"function_words": relative(function), f"word_{n}grams": relative(grams)}


def jensen_shannon(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen-Shannon divergence in bits between two distributions over keys (0: the same, 1:
    disjoint); nan when either is empty."""
    if not p or not q:
        return float("nan")
    keys = sorted(set(p) | set(q))
    a = np.array([p.get(k, 0.0) for k in keys])
    b = np.array([q.get(k, 0.0) for k in keys])
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float((x[mask] * np.log2(x[mask] / m[mask])).sum())

    return (kl(a) + kl(b)) / 2


def style_distance(texts: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """How far the style of ``texts`` is from that of ``reference``: the Jensen-Shannon divergence
    of their function-word profiles and of their word-bigram profiles (:func:`style_profile`)."""
    mine, theirs = style_profile(texts), style_profile(reference)
    return {key: jensen_shannon(mine[key], theirs[key]) for key in mine}


def harmonic_mean(values: Sequence[float]) -> float:
    """n / sum(1 / v): 0.0 if any value is 0, nan for no values; negative values raise ValueError."""
    if len(values) == 0:
        return float("nan")
    v = np.asarray(values, dtype=float)
    if np.any(v < 0):
        raise ValueError("the harmonic mean is defined here for non-negative values only")
    if np.any(v == 0):
        return 0.0
    return float(len(v) / np.sum(1.0 / v))


# --------------------------------------------------------------------------------------------
# membership-inference statistics (lower score = more likely a member)


def _scores(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    members = np.asarray(member_scores, dtype=float)
    nonmembers = np.asarray(nonmember_scores, dtype=float)
    if np.isnan(members).any() or np.isnan(nonmembers).any():
        raise ValueError("membership scores contain nan")
    return members, nonmembers


def roc_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """AUC = P(member score < nonmember score) + 0.5 P(tie), over all member/non-member pairs.

    Lower score = more likely a member, so 1.0 means every member scores below every non-member,
    0.5 means no separation. nan if either set is empty. Computed from ranks (Mann-Whitney U).
    """
    members, nonmembers = _scores(member_scores, nonmember_scores)
    n, m = len(members), len(nonmembers)
    if n == 0 or m == 0:
        return float("nan")
    # U of the non-members = #pairs with nonmember > member + 0.5 #ties (average ranks handle ties).
    ranks = stats.rankdata(np.concatenate([members, nonmembers]))
    u_nonmembers = ranks[n:].sum() - m * (m + 1) / 2
    return float(u_nonmembers / (n * m))


def tpr_at_fpr(member_scores: Sequence[float], nonmember_scores: Sequence[float], fpr: float) -> float:
    """Fraction of members flagged by the most permissive threshold that flags at most ``fpr`` of
    the non-members (a score <= threshold is flagged).

    With the non-member scores sorted ascending s_1 <= ... <= s_m and k = floor(fpr * m) the number
    of non-members that may be flagged, the best threshold lies just below s_{k+1}, so the result is
    the fraction of members scoring strictly below s_{k+1} (all members when k >= m). With k = 0 a
    member must score below every non-member. nan if either set is empty.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must lie in [0, 1]; got {fpr}")
    members, nonmembers = _scores(member_scores, nonmember_scores)
    n, m = len(members), len(nonmembers)
    if n == 0 or m == 0:
        return float("nan")
    # The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from losing a whole non-member.
    k = math.floor(fpr * m + 1e-9)
    if k >= m:
        return 1.0
    cutoff = np.sort(nonmembers)[k]
    return float(np.mean(members < cutoff))


def roc_curve(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr), ascending, for plots: one point per distinct score t (flagging
    scores <= t) after a leading (0, 0). Members are the positives."""
    members, nonmembers = _scores(member_scores, nonmember_scores)
    if len(members) == 0 or len(nonmembers) == 0:
        raise ValueError("a ROC curve needs members and non-members")
    thresholds = np.unique(np.concatenate([members, nonmembers]))
    fpr = np.searchsorted(np.sort(nonmembers), thresholds, side="right") / len(nonmembers)
    tpr = np.searchsorted(np.sort(members), thresholds, side="right") / len(members)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def privleak(auc_unlearned: float, auc_oracle: float) -> float:
    """PrivLeak = (AUC_unlearned - AUC_oracle) / AUC_oracle * 100 (MUSE). nan if AUC_oracle is 0.

    Near 0 is ideal. With this module's convention (AUC = how much more member-like the forget set
    looks than never-seen data), positive values mean the forget set is still remembered and
    negative ones that it now looks less familiar than never-seen data (over-unlearning).
    """
    if auc_oracle == 0:
        return float("nan")
    return (auc_unlearned - auc_oracle) / auc_oracle * 100.0
