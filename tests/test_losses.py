"""Each unlearning loss against values computed by hand on toy tensors."""

from __future__ import annotations

import math

import pytest
import torch

from expunge.methods.gradient import losses


def _toy():
    # One sequence of 3 tokens over a vocabulary of 2; labels[0] is never scored (causal shift).
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[0, 0, 1]])
    # Scored: p(label 0 | pos 0) = 1/2, p(label 1 | pos 1) = 1/4.
    return logits, labels


def test_sequence_logprobs_and_nll() -> None:
    logits, labels = _toy()
    logp, counts = losses.sequence_logprobs(logits, labels)
    assert counts.tolist() == [2]
    assert logp.item() == pytest.approx(math.log(0.5) + math.log(0.25))
    assert losses.nll(logits, labels).item() == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)
    assert losses.gradient_ascent(logits, labels).item() == pytest.approx((math.log(0.5) + math.log(0.25)) / 2)


def test_ignored_labels_are_not_scored() -> None:
    logits, labels = _toy()
    labels = torch.tensor([[0, -100, 1]])
    logp, counts = losses.sequence_logprobs(logits, labels)
    assert counts.tolist() == [1] and logp.item() == pytest.approx(math.log(0.25))


def test_npo_by_hand() -> None:
    logp, ref = torch.tensor([-2.0, -1.0]), torch.tensor([-1.0, -1.0])
    beta = 0.5
    expected = -(2 / beta) * sum(math.log(1 / (1 + math.exp(beta * (a - b))))
                                 for a, b in ((-2.0, -1.0), (-1.0, -1.0))) / 2
    assert losses.npo(logp, ref, beta).item() == pytest.approx(expected)
    # At the reference the loss is (2/beta) log 2; moving away from it lowers the loss.
    assert losses.npo(ref, ref, beta).item() == pytest.approx(2 / beta * math.log(2))
    assert losses.npo(ref - 5, ref, beta).item() < losses.npo(ref, ref, beta).item()


def test_simnpo_by_hand() -> None:
    logp, counts = torch.tensor([-4.0]), torch.tensor([2])
    beta, gamma = 2.0, 1.0
    expected = -(2 / beta) * math.log(1 / (1 + math.exp(-(-beta * (-2.0) - gamma))))
    assert losses.simnpo(logp, counts, beta, gamma).item() == pytest.approx(expected)


def test_kl_is_zero_for_identical_and_positive_otherwise() -> None:
    logits, labels = _toy()
    assert losses.kl_to_reference(logits, logits, labels).item() == pytest.approx(0.0, abs=1e-7)
    other = logits.clone()
    other[0, 0] = torch.tensor([2.0, 0.0])
    p = torch.softmax(torch.tensor([0.0, 0.0]), -1)
    q = torch.softmax(torch.tensor([2.0, 0.0]), -1)
    kl_first = float((q * (q.log() - p.log())).sum())  # KL(ref || theta), ref = other
    assert losses.kl_to_reference(logits, other, labels).item() == pytest.approx(kl_first / 2)


def test_rmu_terms_by_hand() -> None:
    hidden = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 0]])
    control = torch.tensor([1.0, 1.0])
    assert losses.rmu_forget(hidden, control, mask).item() == pytest.approx((0 + 4) / 2)
    assert losses.rmu_retain(hidden, hidden + 2, mask).item() == pytest.approx(4.0)
