"""Model-level attacks: each recovers planted knowledge from a model that still has it, and nothing
above the oracle's level from the oracle.

Three models of one tiny world (8 trained people, 2 of them in the request): ``base`` (knows
everyone), ``oracle`` (retrained without the 2) and ``hiding`` (base after the default refusal
fine-tune: the knowledge is hidden from questions, not removed). The tiny model is noisy and its
numbers move with the machine's arithmetic (package versions, thread count), so the assertions are
relations with margins measured over five worlds and trainings (seeds 0-4: world seed = training
seed, 8 people, no general facts, as in ``setup``; /tmp scripts, 1 and 2 torch threads); each
comment gives the measured range, and each assertion would fail if its attack stopped recovering
(or started inventing) knowledge.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from expunge.ledger import load_request, make_request, write_request
from expunge.methods.unlearn import unlearn
from expunge.models import load_model
from expunge.models.arch import arch_for
from expunge.pipeline import retrain_oracle, train_base
from expunge.records import Probe
from expunge.verify.attacks import (
    AttackConfig,
    lens_logits,
    linear_probe_attack,
    logit_lens,
    probe_accuracy,
    quantization_attack,
    quantize_round_trip,
    relearn_texts_from,
    relearning_attack,
    split_facts,
)
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world

KINDS = ("direct", "paraphrase")


def _mean(values) -> float:
    return sum(values) / len(values)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The world, its forget / retain probes and the three models (about 15 seconds).

    Its own world without general facts rather than the session's tiny world: the people are all
    the tiny model has to learn, so it knows them well (0.97 of the forget questions) and the
    attacks have something to find; the numbers in this file's comments were measured on it.
    """
    root = tmp_path_factory.mktemp("attacks")
    build_privacy_world(root / "world", PrivacyWorldConfig(seed=0, people=8, general_facts=False))
    world = load_world(root / "world")
    targets = [s.id for s in world.people("train")][:2]
    write_request(make_request(world, subjects=targets), root / "request.json")
    request = load_request(root / "request.json", world)
    train_base(root / "world", root / "base", preset="tiny", seed=0, progress=False)
    retrain_oracle(root / "world", root / "request.json", root / "oracle", base=root / "base", progress=False)
    # The hiding model: IdkFT (refusals to the targets' questions) for its default 60 steps. Over
    # seeds 0-4 it answered 0.00 of the forget questions on every seed (base 0.90-1.00, oracle
    # 0.00-0.03). 20 steps were used before and are too few to hide reliably: forget exact match
    # 0.00-0.13 on seeds 0, 1, 3, 4 but 0.43 on seed 2 (and a reported fresh clone started its
    # relearning curve at 0.17).
    unlearn(root / "base", root / "world", root / "request.json", root / "hiding", method="idkft",
            options={"max_steps": 60}, progress=False)
    retained = [s.id for s in world.people("train") if s.id not in request.targets]
    return SimpleNamespace(
        models={name: load_model(root / name)[:2] for name in ("base", "oracle", "hiding")},
        forget=world.probes_for(request.targets, kinds=KINDS),
        retain=world.probes_for(retained, kinds=KINDS),
    )


@pytest.fixture(scope="module")
def models(setup) -> dict:
    """name -> (model, tokenizer) for base, oracle and hiding."""
    return setup.models


@pytest.fixture(scope="module")
def probes(setup) -> dict[str, list[Probe]]:
    return {"forget": setup.forget, "retain": setup.retain}


# --------------------------------------------------------------------------------------------
# configuration and fact splitting


@pytest.mark.parametrize(("field", "value", "match"), [
    ("relearn_steps", (), "non-negative"),
    ("relearn_steps", (0, -5), "non-negative"),
    ("relearn_steps", (0, 10, 5), "strictly ascending"),
    ("relearn_steps", (0, 5, 5), "strictly ascending"),
    ("relearn_learning_rate", 0.0, "positive"),
    ("relearn_batch_size", 0, "at least 1"),
    ("batch_size", 0, "at least 1"),
    ("quantization_bits", (8, 1), "between 2 and 16"),
    ("quantization_bits", (), "between 2 and 16"),
    ("quantization_group_size", 0, "at least 1"),
    ("probe_C", -1.0, "positive"),
    ("probe_features", "logits", "answer, statement_end"),
])
def test_config_rejects_bad_values_and_says_how_to_fix(field: str, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AttackConfig(**{field: value})
    AttackConfig(relearn_steps=(3,))  # a curve need not start at 0


def test_split_facts_keeps_every_fact_on_one_side(probes) -> None:
    forget = probes["forget"]
    relearn, heldout = split_facts(forget, seed=0)
    facts = lambda ps: {(p.subject, p.attribute) for p in ps}  # noqa: E731
    assert not facts(relearn) & facts(heldout)
    assert sorted(p.id for p in relearn + heldout) == sorted(p.id for p in forget)
    for subject in {p.subject for p in forget}:  # half of each person's 6 attributes
        assert len({a for s, a in facts(relearn) if s == subject}) == 3
        assert len({a for s, a in facts(heldout) if s == subject}) == 3
    # Seeded, and independent of the order of the probes; another seed draws another split.
    again = split_facts(list(reversed(forget)), seed=0)[0]
    assert facts(again) == facts(relearn)
    assert any(facts(split_facts(forget, seed)[0]) != facts(relearn) for seed in (1, 2, 3))


def test_relearn_texts_use_the_trained_questions() -> None:
    def probe(kind: str, attribute: str, prompt: str) -> Probe:
        return Probe(id=f"{attribute}/{prompt}", subject="s", kind=kind, attribute=attribute,
                     prompt=prompt, answer="x")

    texts = relearn_texts_from([probe("direct", "a", "Q1"), probe("paraphrase", "a", "Q2"),
                                probe("direct", "a", "Q1"), probe("paraphrase", "b", "Q3")])
    # Fact a has a direct question (once, duplicates dropped); fact b has only a paraphrase.
    assert texts == ["Q1 x", "Q3 x"]


# --------------------------------------------------------------------------------------------
# quantization


def test_round_trip_matches_a_hand_computed_example() -> None:
    layer = torch.nn.Linear(5, 1, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.9, -3.0, 1.2, 0.1, 0.7]]))
        layer.bias.fill_(0.123)
    # 3 bits: levels -3..3; groups of 2 columns along the input: (0.9, -3.0) scale 1,
    # (1.2, 0.1) scale 0.4, and the short last group (0.7,) scale 0.7/3 keeps its value.
    out = quantize_round_trip(torch.nn.Sequential(layer), bits=3, group_size=2)
    assert torch.allclose(out[0].weight, torch.tensor([[1.0, -3.0, 1.2, 0.0, 0.7]]))
    assert out[0].bias.item() == pytest.approx(0.123)  # biases stay
    assert layer.weight[0, 0].item() == pytest.approx(0.9)  # the input is untouched


def test_round_trip_is_a_copy_keeps_ties_and_loses_less_with_more_bits(models) -> None:
    model, _ = models["base"]
    before = _state(model)
    model.train()
    errors = {}
    for bits in (2, 4, 8):
        quantized = quantize_round_trip(model, bits, group_size=32)
        assert quantized is not model
        arch = arch_for(quantized)
        lm_head = quantized.get_submodule(arch.lm_head).weight
        assert lm_head is quantized.get_input_embeddings().weight  # tied weights stay tied
        # Only matrices change; norms keep their exact values.
        q_state, o_state = quantized.state_dict(), model.state_dict()
        assert all(torch.equal(q_state[k], o_state[k]) for k in o_state if o_state[k].dim() < 2)
        errors[bits] = max((q_state[k] - o_state[k]).abs().max().item()
                           for k in o_state if o_state[k].dim() == 2)
    assert 0 < errors[8] < errors[4] < errors[2]
    assert model.training and _same_state(model, before)
    model.eval()


def test_quantization_keeps_what_the_model_knows_and_adds_nothing_to_the_oracle(models, probes) -> None:
    forget, config = probes["forget"], AttackConfig(quantization_bits=(8, 4))
    found = {}
    for name in ("base", "oracle", "hiding"):
        model, tokenizer = models[name]
        plain = _mean(probe_accuracy(model, tokenizer, forget))
        found[name] = (plain, quantization_attack(model, tokenizer, forget, config))
    print("quantization (plain, {bits: accuracy}):", found)
    # Measured over seeds 0-4: base 0.90-1.00, and 8 and 4 bits change nothing; oracle 0.00-0.03,
    # unchanged by rounding; hiding 0.00 -> {8: 0.00, 4: 0.00} (the 60-step refusal survives 4 bits).
    (base, base_q), (oracle, oracle_q) = found["base"], found["oracle"]
    assert abs(base_q[8] - base) <= 0.1 and base_q[8] >= oracle_q[8] + 0.5
    assert oracle_q[8] <= oracle + 0.1 and oracle_q[4] <= oracle + 0.1


# --------------------------------------------------------------------------------------------
# relearning


def _both_halves(model, tokenizer, forget: list[Probe], config: AttackConfig) -> tuple[list[float], list]:
    """The relearning curve over *every* forget fact: relearn one half of ``split_facts`` (seed 0)
    and probe the other, then the other way round; held-out accuracy over both (probe-weighted).
    One half is 6 facts, and which 6 decides a lot (on seed 3, split seed 1, one half peaked at
    0.13 and the other at 0.70); both halves together take that lottery out. Also returns the two
    RelearnCurves, the first being relearn half -> held-out half."""
    first, second = split_facts(forget, seed=0)
    halves = [(held, relearning_attack(model, tokenizer, relearn_texts_from(rel), held, config))
              for rel, held in ((first, second), (second, first))]
    total = sum(len(held) for held, _ in halves)
    combined = [sum(len(held) * curve.accuracy[i] for held, curve in halves) / total
                for i in range(len(config.relearn_steps))]
    return combined, [curve for _, curve in halves]


def test_relearning_brings_back_hidden_facts_but_teaches_the_oracle_nothing(models, probes) -> None:
    forget = probes["forget"]
    relearn, heldout = split_facts(forget, seed=0)
    texts = relearn_texts_from(relearn)
    assert len(texts) == 12  # 2 people x 3 facts x 2 direct questions
    config = AttackConfig(relearn_steps=(0, 5, 10, 20, 40), relearn_learning_rate=3e-4)
    hiding_model, tokenizer = models["hiding"]
    before = _state(hiding_model)
    hiding_model.train()
    curves = {}
    curves["hiding"], (one, _) = _both_halves(hiding_model, tokenizer, forget, config)  # one: texts -> heldout
    assert hiding_model.training and _same_state(hiding_model, before)  # attacked a copy
    hiding_model.eval()
    assert one.steps == [0, 5, 10, 20, 40] and one.seconds > 0
    assert one.accuracy[0] == pytest.approx(_mean(probe_accuracy(hiding_model, tokenizer, heldout)))

    curves.update({name: _both_halves(models[name][0], tokenizer, forget, config)[0] for name in ("oracle", "base")})
    print("relearning, both halves:", {name: [round(a, 2) for a in c] for name, c in curves.items()})
    hiding, oracle, base = curves["hiding"], curves["oracle"], curves["base"]
    # Measured over seeds 0-4 (both halves of split seed 0; split seed 1 in brackets):
    #   hiding  0.00 at step 0 on every seed; best step 0.35-0.58 [0.35-0.53], at step 10-40;
    #   oracle  0.00-0.03 at step 0, at most 0.05 later (rises 0.00-0.05);
    #   base    0.87-1.00, losing at most 0.07 over the 40 steps.
    # So the hider's best lead over the oracle was 0.35-0.58 over 10 (seed, split) pairs: 0.2 is
    # 0.15 below the smallest, and a model with nothing to recover (the oracle) scores 0.
    assert hiding[0] <= base[0] - 0.5  # hidden before the attack...
    lead = max(h - o for h, o in zip(hiding[1:], oracle[1:]))
    assert lead >= 0.2, (hiding, oracle)  # ...back after a few steps on *other* facts, beyond the oracle,
    assert max(hiding[1:]) >= hiding[0] + 0.2, hiding  # and recovered, not merely there to begin with;
    assert max(oracle) <= oracle[0] + 0.15, oracle  # the oracle learns none of them
    assert min(base) >= base[0] - 0.15, base  # and this rate does not wreck what is known


def test_relearning_needs_heldout_probes() -> None:
    with pytest.raises(ValueError, match="held-out probes"):
        relearning_attack(torch.nn.Linear(1, 1), None, ["x"], [], AttackConfig(relearn_steps=(0,)))


def test_relearning_at_step_zero_only_trains_nothing(models, probes) -> None:
    model, tokenizer = models["oracle"]
    heldout = split_facts(probes["forget"], seed=0)[1]
    curve = relearning_attack(model, tokenizer, [], heldout, AttackConfig(relearn_steps=(0,)))
    assert curve.steps == [0] and curve.accuracy == [_mean(probe_accuracy(model, tokenizer, heldout))]


# --------------------------------------------------------------------------------------------
# logit lens


def test_lens_last_layer_is_the_models_own_output(models, probes) -> None:
    model, tokenizer = models["base"]
    texts = [f"{p.prompt} {p.answer}" for p in probes["forget"][:8]]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
        n_layers = len(out.hidden_states) - 1
        assert torch.equal(lens_logits(model, out.hidden_states, n_layers), out.logits)
        # Earlier layers go through the final norm first (the last entry has it already).
        arch = arch_for(model)
        normed = model.get_submodule(arch.final_norm)(out.hidden_states[1])
        by_hand = model.get_submodule(arch.lm_head)(normed)
        assert torch.equal(lens_logits(model, out.hidden_states, 1), by_hand)
    with pytest.raises(ValueError, match="between 1 and"):
        lens_logits(model, out.hidden_states, 0)

    # The lens's last layer = teacher-forced argmax exact match of the model itself.
    forget = probes["forget"]
    lens = logit_lens(model, tokenizer, forget)
    own = []
    for p in forget:
        head = len(tokenizer(p.prompt)["input_ids"])
        ids = torch.tensor([tokenizer(f"{p.prompt} {p.answer}")["input_ids"]])
        with torch.no_grad():
            predicted = model(input_ids=ids).logits[0, head - 1 : -1].argmax(-1)
        own.append(bool(torch.equal(predicted, ids[0, head:])))
    assert lens.per_layer[-1] == pytest.approx(_mean(own))


def test_lens_reads_the_answer_from_base_not_from_the_oracle(models, probes) -> None:
    forget = probes["forget"]
    base, tokenizer = models["base"]
    base.train()
    results = {name: logit_lens(models[name][0], tokenizer, forget) for name in ("base", "oracle", "hiding")}
    assert base.training  # the mode is as it was
    base.eval()
    print("logit lens:", {name: r.per_layer for name, r in results.items()})
    # Measured over seeds 0-4: base [0.02-0.47, 0.90-1.00] (layer 2 best on every seed); oracle at
    # most 0.08 at any layer; hiding (60 steps) [0.00-0.17, 0.00].
    assert results["base"].best_layer == 2
    assert results["base"].best_accuracy >= results["oracle"].best_accuracy + 0.5
    assert results["oracle"].best_accuracy <= 0.2


def test_lens_batches_equal_one_at_a_time(models, probes) -> None:
    model, tokenizer = models["base"]
    forget = probes["forget"]
    together = logit_lens(model, tokenizer, forget, batch_size=128)
    alone = [logit_lens(model, tokenizer, [p], batch_size=1).per_layer for p in forget]
    assert together.per_layer == pytest.approx([_mean(col) for col in zip(*alone)])
    assert logit_lens(model, tokenizer, forget, batch_size=7) == together


# --------------------------------------------------------------------------------------------
# linear probe


def test_linear_probe_recovers_facts_from_hidden_states(models, probes) -> None:
    results = {name: linear_probe_attack(models[name][0], models[name][1], probes["retain"], probes["forget"])
               for name in ("base", "oracle", "hiding")}
    print("linear probe:", {n: (r.accuracy, r.layer, r.per_layer_cv) for n, r in results.items()})
    # Measured over seeds 0-4 (chance 0.20): base 0.85-1.00, oracle 0.00-0.23, hiding 0.37-0.58;
    # hiding minus oracle 0.18-0.53 (smallest on seed 1: 0.42 vs 0.23). The margins below are about
    # half of the smallest measured gaps: above the oracle by 0.1 (measured >= 0.18) and above
    # chance by 0.1 (measured >= 0.17). (The 20-step hiding model gave 0.18-0.77: on seed 4 the
    # probe found nothing, one reason the fixture now uses the default 60 steps.)
    base, oracle, hiding = results["base"], results["oracle"], results["hiding"]
    assert base.chance == pytest.approx(0.2) and base.n_train == 180 and base.n_test == 60
    assert base.accuracy >= base.chance + 0.3 and base.accuracy >= oracle.accuracy + 0.3
    assert oracle.accuracy <= oracle.chance + 0.1  # the oracle's prior favours the wrong values
    # Hidden from questions, not from the probe: well above the oracle and above chance.
    assert hiding.accuracy >= oracle.accuracy + 0.1 and hiding.accuracy >= hiding.chance + 0.1
    assert len(base.per_layer_cv) == 2 and base.per_layer_cv[base.layer - 1] == max(base.per_layer_cv)


def test_statement_end_probe_finds_no_truth_direction_in_the_tiny_model(models, probes) -> None:
    # Keeps the module docstring honest: on this small model the last token of the statement says
    # which candidate it is, not whether it is true (measured: base 0.18, oracle 0.17; chance 0.20).
    config = AttackConfig(probe_features="statement_end")
    for name in ("base", "oracle"):
        result = linear_probe_attack(*models[name], probes["retain"], probes["forget"], config)
        assert result.accuracy <= result.chance + 0.1, (name, result)


def test_linear_probe_needs_alternatives_and_two_subjects(models, probes) -> None:
    model, tokenizer = models["base"]
    bare = Probe(id="x", subject="s", kind="direct", attribute="a", prompt="Question: q? Answer:", answer="x")
    with pytest.raises(ValueError, match="no alternatives"):
        linear_probe_attack(model, tokenizer, probes["retain"], [bare])
    one_person = [p for p in probes["retain"] if p.subject == probes["retain"][0].subject]
    with pytest.raises(ValueError, match="at least two subjects"):
        linear_probe_attack(model, tokenizer, one_person, probes["forget"])
