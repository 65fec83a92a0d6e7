"""The attacks' algorithms: how much knowledge about a set of probes can still be recovered from a model.

Unlearning that only *hides* knowledge (the output says "I don't know", but the weights still hold
the fact) passes every direct question and fails the attacks below. Each attack is a pure function
of (model, tokenizer, probes): it never changes the model it is given (attacks that change weights
work on a deep copy) and leaves the model's train/eval mode as it found it. Run every attack on the
retrained oracle too: the oracle never saw the facts, so its score is the level an attack reaches
by guessing and by what the rest of the data implies. Recovery is only recovery above that level.

Probes are ``"Question: ...? Answer:"`` prompts whose answer continues after one space; the answer
tokens of a probe are ``tokenizer(prompt + " " + answer)[len(tokenizer(prompt)):]``, the convention
of :func:`expunge.verify.metrics.answer_logprobs`. Accuracies are greedy exact match
(:func:`expunge.verify.probes.answer_probes`).

The attacks:

- **Relearning** (:func:`relearning_attack`). Fine-tune a copy on *some* of the forgotten facts
  for a few steps and ask about the *others*. Facts are independent random attributes, so a model
  that truly never knew them (the oracle) cannot learn the held-out half from the relearned half;
  a model that merely suppressed them gets them back, because a few steps of ordinary training
  undo the suppression (a refusal circuit, a small weight change) for the whole subject at once
  (Lynch et al. 2024, "Eight methods to evaluate robust unlearning in LLMs"; Deeb & Roger 2024).
- **Quantization** (:func:`quantization_attack`). Store the weights in 8 or 4 bits and load them
  again. Unlearning updates are often smaller than a quantization step, so rounding erases them
  and the original knowledge returns (Zhang et al. 2024, "Catastrophic failure of LLM unlearning
  via quantization", arXiv 2410.16454). Users quantize models routinely, so this is not exotic.
- **Logit lens** (:func:`logit_lens`). Decode every layer's hidden state through the final norm and
  the unembedding (nostalgebraist 2020; Belrose et al. 2023). A method that only edits the last
  layers can leave the answer readable in the middle of the network.
- **Linear probe** (:func:`linear_probe_attack`). Hidden states separate true from false statements
  (Azaria & Mitchell 2023; Marks & Tegmark 2023). A logistic probe trained on people the model
  still knows ("is this candidate the true answer?") is applied to the forgotten people's
  questions: if it picks their true answers above chance, the fact is still encoded even when the
  output is suppressed. Two feature sets (``AttackConfig.probe_features``):

  * ``"answer"`` (default): at every position that predicts a token of the candidate, the layer's
    hidden state (through the final norm, as in the logit lens) times the unembedding row of that
    token, elementwise, averaged over the candidate's tokens. Summed with unit weights this is the
    lens's mean logit of the candidate; the probe learns which dimensions to trust. Every causal
    LM carries its knowledge here, because it must compute the answer to predict it.
  * ``"statement_end"``: the hidden state at the last token of the statement, as in the papers.
    Truth directions there emerge in large models trained on text that comments on truth. In a
    small model of a synthetic world nothing after an answer depends on whether it was true, so
    that state mostly says *which* candidate it is, and a probe trained on the retained people
    learns "values true for them", which are often the forgotten people's wrong alternatives
    (measured on the tests' tiny model: no better than chance, 0.18 for the original model that
    answers 0.97 of the questions, 0.17 for the oracle, chance 0.20).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.data import SequenceDataset, encode_documents, pad_collate
from expunge.scoring import eval_mode, max_length, padding_id
from expunge.models.arch import arch_for
from expunge.records import Probe
from expunge.training import EvalResult, TrainingConfig, train_loop
from expunge.verify.metrics import encode_answers
from expunge.verify.probes import answer_probes

__all__ = [
    "AttackConfig",
    "RelearnCurve",
    "LensResult",
    "ProbeResult",
    "probe_accuracy",
    "split_facts",
    "relearn_texts_from",
    "relearning_attack",
    "quantize_round_trip",
    "quantization_attack",
    "lens_logits",
    "logit_lens",
    "linear_probe_attack",
]

PROBE_FEATURES = ("answer", "statement_end")


@dataclass(frozen=True)
class AttackConfig:
    """Settings of the model-level attacks.

    Attributes:
        relearn_steps: optimizer steps after which the relearning attack measures held-out accuracy,
            strictly ascending; 0 means "before any update" (the starting point of the curve).
        relearn_learning_rate: AdamW learning rate of the relearning fine-tune (constant). Too
            large a rate overwrites knowledge instead of reviving it: on the tests' tiny model,
            40 steps at 1e-3 took the original model from 0.97 to 0.83 on the held-out half, at
            3e-4 it kept 0.93. Pretrained billion-parameter models need far smaller rates.
        relearn_batch_size: texts per relearning step.
        quantization_bits: weight widths to try in the quantization attack (2..16 bits each).
        quantization_group_size: columns of a weight matrix that share one quantization scale.
        probe_C: inverse L2 regularisation strength of the logistic probe (sklearn's ``C``).
        probe_features: what the linear probe reads, ``"answer"`` (the hidden states that predict
            the candidate's tokens, projected on their unembedding rows) or ``"statement_end"``
            (the hidden state at the last token); see the module docstring.
        seed: seeds the relearning run (batch order, random number generators).
        batch_size: sequences per forward pass when measuring (generation, hidden states).
    """

    relearn_steps: tuple[int, ...] = (0, 5, 10, 20, 40)
    relearn_learning_rate: float = 3e-4
    relearn_batch_size: int = 16
    quantization_bits: tuple[int, ...] = (8, 4)
    quantization_group_size: int = 32
    probe_C: float = 1.0
    probe_features: str = "answer"
    seed: int = 0
    batch_size: int = 128

    def __post_init__(self) -> None:
        steps, bits = tuple(self.relearn_steps), tuple(self.quantization_bits)
        example = "e.g. (0, 5, 10, 20, 40)"
        if not steps or any(not isinstance(s, int) or s < 0 for s in steps):
            raise ValueError(f"relearn_steps must be non-negative integers, {example}; got {steps}")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"relearn_steps must be strictly ascending, {example}; got {steps}")
        if not self.relearn_learning_rate > 0:
            raise ValueError(f"relearn_learning_rate must be positive (e.g. 1e-3); "
                             f"got {self.relearn_learning_rate}")
        if self.relearn_batch_size < 1 or self.batch_size < 1:
            raise ValueError("relearn_batch_size and batch_size must be at least 1")
        if not bits or any(not isinstance(b, int) or not 2 <= b <= 16 for b in bits):
            raise ValueError(f"quantization_bits must be integers between 2 and 16, e.g. (8, 4); got {bits}")
        if self.quantization_group_size < 1:
            raise ValueError(f"quantization_group_size must be at least 1 (e.g. 32); "
                             f"got {self.quantization_group_size}")
        if not self.probe_C > 0:
            raise ValueError(f"probe_C must be positive (smaller = stronger regularisation, e.g. 1.0); "
                             f"got {self.probe_C}")
        if self.probe_features not in PROBE_FEATURES:
            raise ValueError(f"probe_features must be one of {', '.join(PROBE_FEATURES)}; "
                             f"got {self.probe_features!r}")


# --------------------------------------------------------------------------------------------
# shared helpers


def probe_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe], batch_size: int = 128
) -> list[bool]:
    """Greedy exact match of every probe (see :func:`expunge.verify.probes.answer_probes`)."""
    return [a.correct for a in answer_probes(model, tokenizer, probes, batch_size)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _forward(model: PreTrainedModel, rows: list[list[int]], pad_id: int) -> tuple[Any, torch.Tensor]:
    """One right-padded forward pass with every layer's hidden states; also the padded ids.
    (Right padding keeps every real token at the position it has alone, so batches change nothing.)"""
    device = next(model.parameters()).device
    enc = pad_collate(pad_id)(rows)
    out = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                output_hidden_states=True)
    return out, enc["input_ids"].to(device)


def _answer_positions(
    rows: Sequence[Sequence[int]], head_lens: Sequence[int], input_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The positions that predict answer tokens in a right-padded batch, flattened: (row, t) for
    t in head-1 .. len-2, and the token each predicts (the one at t+1)."""
    spans = [(r, range(h - 1, len(ids) - 1)) for r, (ids, h) in enumerate(zip(rows, head_lens))]
    row_idx = torch.tensor([r for r, span in spans for _ in span], device=input_ids.device)
    pos_idx = torch.tensor([t for _, span in spans for t in span], device=input_ids.device)
    return row_idx, pos_idx, input_ids[row_idx, pos_idx + 1]


# --------------------------------------------------------------------------------------------
# relearning


@dataclass
class RelearnCurve:
    """Held-out accuracy during the relearning fine-tune.

    Attributes:
        steps: the measured optimizer steps (``AttackConfig.relearn_steps``).
        accuracy: greedy exact match on the held-out probes after each of those steps.
        seconds: wall time of the whole attack, measurements included.
    """

    steps: list[int]
    accuracy: list[float]
    seconds: float


def split_facts(probes: Sequence[Probe], seed: int) -> tuple[list[Probe], list[Probe]]:
    """Split probes by fact, a (subject, attribute) pair, into (relearn half, held-out half).

    Per subject, a seeded random floor(n/2) of its n attributes go to the relearn half and the
    rest to the held-out half; every probe of a fact goes to the same side, so no fact is in both
    (relearning a fact and then "recovering" it would prove nothing). The draw for a subject
    depends only on (seed, subject id, its attributes), not on the order of the probes.
    """
    attributes: dict[str, set[str]] = {}
    for probe in probes:
        attributes.setdefault(probe.subject, set()).add(probe.attribute)
    relearn: set[tuple[str, str]] = set()
    for subject, attrs in attributes.items():
        rng = random.Random(f"{seed}:{subject}")  # str seeds are hashed deterministically
        chosen = rng.sample(sorted(attrs), len(attrs) // 2)
        relearn.update((subject, a) for a in chosen)
    first = [p for p in probes if (p.subject, p.attribute) in relearn]
    second = [p for p in probes if (p.subject, p.attribute) not in relearn]
    return first, second


def relearn_texts_from(probes: Sequence[Probe]) -> list[str]:
    """Training texts ``"{prompt} {answer}"`` for the facts of ``probes``.

    Per fact, the direct-kind probes (the questions that were in the training data) if it has any,
    else all its probes; duplicates removed, order kept.
    """
    by_fact: dict[tuple[str, str], list[Probe]] = {}
    for probe in probes:
        by_fact.setdefault((probe.subject, probe.attribute), []).append(probe)
    texts: list[str] = []
    for fact_probes in by_fact.values():
        direct = [p for p in fact_probes if p.kind == "direct"] or fact_probes
        texts += [f"{p.prompt} {p.answer}" for p in direct]
    return list(dict.fromkeys(texts))


def relearning_attack(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    relearn_texts: Sequence[str],
    heldout_probes: Sequence[Probe],
    config: AttackConfig = AttackConfig(),
) -> RelearnCurve:
    """Fine-tune a copy of ``model`` on ``relearn_texts`` and measure held-out accuracy on the way.

    Causal LM loss on the whole texts, AdamW at a constant ``relearn_learning_rate`` (constant so
    that the accuracy at step 5 does not depend on how many later checkpoints were asked for),
    through the project's one training loop. Accuracy is measured before any update (step 0) and
    after every step in ``config.relearn_steps``.
    """
    if not heldout_probes:
        raise ValueError("relearning needs held-out probes to measure; split_facts gives both halves")
    started = time.perf_counter()
    wanted = list(config.relearn_steps)
    attacked = copy.deepcopy(model)  # never train the caller's model
    curve: dict[int, float] = {}

    def measure(m: torch.nn.Module) -> float:
        return _mean(probe_accuracy(m, tokenizer, heldout_probes, config.batch_size))

    if 0 in wanted:
        curve[0] = measure(attacked)
    last = wanted[-1]
    if last > 0:
        if not relearn_texts:
            raise ValueError("relearning needs texts to train on (relearn_texts_from(relearn half))")
        dataset = SequenceDataset(encode_documents(tokenizer, relearn_texts, max_length(model)))
        # The hook runs every g steps, g = gcd of the checkpoints, so it lands on each of them.
        every = math.gcd(*[s for s in wanted if s > 0])

        def hook(m: torch.nn.Module, step: int) -> EvalResult:
            if step not in wanted:
                return EvalResult({})
            curve[step] = measure(m)
            return EvalResult({"accuracy": curve[step]})

        training = TrainingConfig(
            max_steps=last, batch_size=config.relearn_batch_size, learning_rate=config.relearn_learning_rate,
            min_lr_ratio=1.0, warmup_steps=0, weight_decay=0.0, seed=config.seed, group_by_length=False,
            log_every=every, eval_every=every,
        )
        train_loop(attacked, dataset, training, pad_id=padding_id(tokenizer), eval_hook=hook,
                   progress=False, description="relearning attack")
    del attacked
    seconds = time.perf_counter() - started
    return RelearnCurve(steps=wanted, accuracy=[curve[s] for s in wanted], seconds=seconds)


# --------------------------------------------------------------------------------------------
# quantization


def _round_trip(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Symmetric round-to-nearest quantization of a (rows, columns) matrix with one absmax scale
    per row and group of ``group_size`` columns, de-quantized back to the matrix's dtype."""
    rows, cols = weight.shape
    levels = 2 ** (bits - 1) - 1  # symmetric: -levels .. levels (one code unused, as in most int kernels)
    w = weight.detach().to(torch.float32)  # half-precision arithmetic would add its own rounding
    pad = (-cols) % group_size  # a short last group is padded with zeros, which change no absmax
    groups = torch.nn.functional.pad(w, (0, pad)).reshape(rows, -1, group_size)
    scale = groups.abs().amax(dim=-1, keepdim=True) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group stays zero
    quantized = (groups / scale).round().clamp(-levels, levels) * scale
    return quantized.reshape(rows, -1)[:, :cols].to(weight.dtype)


@torch.no_grad()
def quantize_round_trip(model: PreTrainedModel, bits: int, group_size: int = 32) -> PreTrainedModel:
    """A deep copy of ``model`` whose weight matrices went through ``bits``-bit storage and back.

    Every nn.Linear and nn.Embedding weight (and GPT-2's Conv1D, whose (in, out) weight is
    transposed first) is replaced by its symmetric round-to-nearest integer quantization with an
    absmax scale per group of ``group_size`` input columns, levels -(2^(b-1)-1) .. 2^(b-1)-1, then
    de-quantized to the original dtype. Biases and norms are kept: they are few and usually stay
    in high precision. Tied weights are quantized once and stay tied in the copy.
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be between 2 and 16 (e.g. 8 or 4); got {bits}")
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1 (e.g. 32); got {group_size}")
    from transformers.pytorch_utils import Conv1D

    quantized = copy.deepcopy(model)  # deepcopy keeps shared parameters shared, so ties survive
    done: set[int] = set()
    for module in quantized.modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Embedding, Conv1D)):
            continue
        weight = module.weight
        if id(weight) in done or weight.dim() != 2:
            continue
        done.add(id(weight))
        if isinstance(module, Conv1D):  # stored (in, out): the input dimension is the first
            weight.copy_(_round_trip(weight.t(), bits, group_size).t())
        else:  # nn.Linear (out, in); nn.Embedding (tokens, features): groups run along a row
            weight.copy_(_round_trip(weight, bits, group_size))
    return quantized


def quantization_attack(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    probes: Sequence[Probe],
    config: AttackConfig = AttackConfig(),
) -> dict[int, float]:
    """Greedy exact match on ``probes`` after each round trip in ``config.quantization_bits``."""
    out: dict[int, float] = {}
    for bits in config.quantization_bits:
        quantized = quantize_round_trip(model, bits, config.quantization_group_size)
        out[bits] = _mean(probe_accuracy(quantized, tokenizer, probes, config.batch_size))
        del quantized  # one copy at a time
    return out


# --------------------------------------------------------------------------------------------
# logit lens


@dataclass
class LensResult:
    """What the logit lens recovers.

    Attributes:
        per_layer: share of probes whose whole answer is the argmax at every answer position when
            decoding decoder layer l (index l-1, l = 1..L; the last entry is the model's output).
        best_layer: the layer (1..L) with the highest share (the earliest on ties).
        best_accuracy: that share.
    """

    per_layer: list[float]
    best_layer: int
    best_accuracy: float


def lens_logits(model: PreTrainedModel, hidden_states: Sequence[torch.Tensor], layer: int) -> torch.Tensor:
    """Logits read from decoder layer ``layer`` (1..L) of ``output_hidden_states`` through the final
    norm and the unembedding.

    ``hidden_states[0]`` is the embedding output and ``hidden_states[l]`` the output of layer l,
    except that Hugging Face applies the final norm to the last entry already: it is only unembedded
    (normalising twice would change it), so layer L gives exactly the model's logits.
    """
    n_layers = len(hidden_states) - 1
    if not 1 <= layer <= n_layers:
        raise ValueError(f"layer must be between 1 and {n_layers}; got {layer}")
    return _decode(model, hidden_states[layer], normed=layer == n_layers)


def _lens_input(model: PreTrainedModel, hidden: torch.Tensor, normed: bool) -> torch.Tensor:
    """``hidden`` as the unembedding expects it: through the final norm unless it is normed already."""
    return hidden if normed else model.get_submodule(arch_for(model).final_norm)(hidden)


def _decode(model: PreTrainedModel, hidden: torch.Tensor, normed: bool) -> torch.Tensor:
    return model.get_submodule(arch_for(model).lm_head)(_lens_input(model, hidden, normed))


@torch.no_grad()
def logit_lens(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe], batch_size: int = 128
) -> LensResult:
    """Teacher-forced logit lens: at each layer, the share of probes whose every answer token is
    the argmax at the position that predicts it (given the prompt and the true earlier tokens).

    One forward pass of prompt + " " + answer per probe, right-padded batches (a batched call
    equals a one-at-a-time loop up to floating-point rounding).
    """
    if not probes:
        raise ValueError("the logit lens needs at least one probe")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    fulls, head_lens = encode_answers(tokenizer, [p.prompt for p in probes], [p.answer for p in probes])
    recovered: list[torch.Tensor] = []  # per batch: (layers, batch) booleans
    with eval_mode(model):
        for start in range(0, len(fulls), batch_size):
            rows = fulls[start : start + batch_size]
            out, input_ids = _forward(model, rows, padding_id(tokenizer))
            heads = head_lens[start : start + batch_size]
            row_idx, pos_idx, labels = _answer_positions(rows, heads, input_ids)
            n_layers = len(out.hidden_states) - 1
            per_layer = []
            for layer in range(1, n_layers + 1):
                # Norm and unembedding act per position: decode only the positions that matter.
                hidden = out.hidden_states[layer][row_idx, pos_idx]
                misses = _decode(model, hidden, normed=layer == n_layers).argmax(-1) != labels
                # A probe is recovered when none of its answer positions misses.
                per_layer.append(torch.bincount(row_idx, weights=misses.float(), minlength=len(rows)) == 0)
            recovered.append(torch.stack(per_layer).cpu())
    shares = torch.cat(recovered, dim=1).float().mean(dim=1).tolist()
    best = max(range(len(shares)), key=lambda i: (shares[i], -i))
    return LensResult(per_layer=shares, best_layer=best + 1, best_accuracy=shares[best])


# --------------------------------------------------------------------------------------------
# linear probe


@dataclass
class ProbeResult:
    """What a linear probe on hidden states recovers.

    Attributes:
        accuracy: share of test probes whose true answer gets the highest probe score among its
            candidates (the true answer and the alternatives); a tie at the top counts as a
            random pick among the tied candidates.
        chance: the expected accuracy of a random pick, mean of 1 / (1 + number of alternatives).
        layer: the layer (1..L) the probe used, chosen by cross-validation on the training probes.
        per_layer_cv: grouped cross-validated accuracy (same pick-the-best rule) of each layer
            (index l-1 for layer l).
        n_train / n_test: probes used to train / to test.
    """

    accuracy: float
    chance: float
    layer: int
    per_layer_cv: list[float]
    n_train: int
    n_test: int


@torch.no_grad()
def _candidate_features(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe], batch_size: int,
    features: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per probe and candidate (true answer first, then the alternatives), one feature vector per
    decoder layer from a teacher-forced pass over ``prompt + " " + candidate`` (see ProbeResult).

    Returns features (pairs, layers, hidden) in float64, labels (1 for the true answer) and the
    index of the probe each pair belongs to.
    """
    prompts, answers, labels, owners = [], [], [], []
    for index, probe in enumerate(probes):
        for candidate in (probe.answer, *probe.alternatives):
            prompts.append(probe.prompt)
            answers.append(candidate)
            labels.append(1.0 if candidate == probe.answer else 0.0)
            owners.append(index)
    fulls, head_lens = encode_answers(tokenizer, prompts, answers)
    unembedding = model.get_submodule(arch_for(model).lm_head).weight  # (vocab, hidden)
    chunks: list[np.ndarray] = []
    with eval_mode(model):
        for start in range(0, len(fulls), batch_size):
            rows = fulls[start : start + batch_size]
            out, input_ids = _forward(model, rows, padding_id(tokenizer))
            n_layers = len(out.hidden_states) - 1
            if features == "statement_end":
                last = torch.tensor([len(ids) - 1 for ids in rows], device=input_ids.device)
                arange = torch.arange(len(rows), device=input_ids.device)
                layers = [out.hidden_states[layer][arange, last].float() for layer in range(1, n_layers + 1)]
            else:
                heads = head_lens[start : start + batch_size]
                row_idx, pos_idx, targets = _answer_positions(rows, heads, input_ids)
                counts = torch.bincount(row_idx, minlength=len(rows)).float()
                directions = unembedding[targets].float()
                layers = []
                for layer in range(1, n_layers + 1):
                    hidden = _lens_input(model, out.hidden_states[layer][row_idx, pos_idx], layer == n_layers)
                    # Each dimension's contribution to the candidate token's logit, averaged over
                    # the candidate's tokens: summed with weight 1 it is the lens's mean logit.
                    contributions = hidden.float() * directions
                    summed = torch.zeros(len(rows), hidden.shape[-1], device=hidden.device)
                    layers.append(summed.index_add_(0, row_idx, contributions) / counts[:, None])
            chunks.append(torch.stack(layers, dim=1).cpu().double().numpy())
    return np.concatenate(chunks), np.asarray(labels), np.asarray(owners)


def _fit_logistic(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised L2 logistic regression, sklearn's objective without sklearn:
    minimise 0.5 |w|^2 + C * sum_i log(1 + exp(-s_i (x_i w + b))), s_i = +-1, intercept unpenalised.
    Returns (mean, std, [w, b]) so that score(x) = ((x - mean) / std) @ w + b."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature carries nothing; keep it finite
    z = (x - mean) / std
    signs = 2.0 * y - 1.0

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        margins = signs * (z @ w + b)
        loss = 0.5 * w @ w + c * np.logaddexp(0.0, -margins).sum()
        slope = -c * signs * np.exp(-np.logaddexp(0.0, margins))  # d loss / d (z w + b), stably
        return float(loss), np.concatenate([w + z.T @ slope, [slope.sum()]])

    result = minimize(objective, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000})
    return mean, std, result.x


def _score(probe: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    mean, std, params = probe
    return ((x - mean) / std) @ params[:-1] + params[-1]


def _picks_true(scores: np.ndarray, labels: np.ndarray, owners: np.ndarray,
                probes: Sequence[int]) -> list[float]:
    """For each probe index, the chance that a pick among its top-scoring candidates is the true
    answer: 1 or 0 without ties. (argmax alone would hand every tie to the true answer, which
    comes first, and a constant probe would look perfect.)"""
    out = []
    for index in probes:
        mine = np.flatnonzero(owners == index)
        top = scores[mine] == scores[mine].max()
        out.append(float(labels[mine][top].sum() / top.sum()))
    return out


def linear_probe_attack(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_probes: Sequence[Probe],
    test_probes: Sequence[Probe],
    config: AttackConfig = AttackConfig(),
) -> ProbeResult:
    """Train "is this candidate the true answer?" on ``train_probes``' hidden states, then answer
    ``test_probes`` by picking the candidate the probe scores highest.

    Features: per candidate (the true answer and every alternative), a vector read from one decoder
    layer of a teacher-forced pass over ``prompt + " " + candidate`` (``config.probe_features``,
    see the module docstring). The probe is an L2-regularised logistic regression on standardised
    features (sklearn's objective, fitted with scipy's L-BFGS). The layer is the one with the best
    cross-validated accuracy on the training probes, with folds grouped by subject (up to 5), so
    that, as at test time, the probe is judged on people it was not fitted on. The caller passes
    people the model should still know as ``train_probes`` and the forgotten people as
    ``test_probes``; on the oracle the test accuracy should be near ``chance``.

    Raises:
        ValueError: a probe has no alternatives (there is nothing to choose between), either set is
            empty, or the training probes cover fewer than two subjects (no grouped validation).
    """
    for probe in (*train_probes, *test_probes):
        if not probe.alternatives:
            raise ValueError(f"probe {probe.id} has no alternatives; the linear probe picks among the true "
                             "answer and its alternatives, so pass probes with alternatives")
    if not train_probes or not test_probes:
        raise ValueError("the linear probe needs training probes (retained people) and test probes "
                         "(forgotten ones)")
    subjects = sorted({p.subject for p in train_probes})
    if len(subjects) < 2:
        raise ValueError("the linear probe's training probes must cover at least two subjects "
                         "(cross-validation holds out whole subjects)")
    x_train, y_train, own_train = _candidate_features(model, tokenizer, train_probes, config.batch_size,
                                                       config.probe_features)
    x_test, y_test, own_test = _candidate_features(model, tokenizer, test_probes, config.batch_size,
                                                    config.probe_features)

    # Grouped folds: subject i goes to fold i mod k, so no person is in a fold's training and test part.
    k = min(5, len(subjects))
    fold_of_subject = {s: i % k for i, s in enumerate(subjects)}
    probe_fold = np.array([fold_of_subject[p.subject] for p in train_probes])
    pair_fold = probe_fold[own_train]
    per_layer_cv: list[float] = []
    for layer in range(x_train.shape[1]):
        correct = 0.0
        for fold in range(k):
            fit = pair_fold != fold
            fitted = _fit_logistic(x_train[fit, layer], y_train[fit], config.probe_C)
            held = np.flatnonzero(probe_fold == fold)
            correct += sum(_picks_true(_score(fitted, x_train[:, layer]), y_train, own_train, held))
        per_layer_cv.append(correct / len(train_probes))
    best = max(range(len(per_layer_cv)), key=lambda i: (per_layer_cv[i], -i))
    fitted = _fit_logistic(x_train[:, best], y_train, config.probe_C)
    picks = _picks_true(_score(fitted, x_test[:, best]), y_test, own_test, range(len(test_probes)))
    chance = float(np.mean([1.0 / (1 + len(p.alternatives)) for p in test_probes]))
    return ProbeResult(accuracy=_mean(picks), chance=chance, layer=best + 1, per_layer_cv=per_layer_cv,
                       n_train=len(train_probes), n_test=len(test_probes))
