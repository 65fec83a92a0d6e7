"""Contract tests over every registered unlearning method, and the registry's errors."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from expunge.data import encode_documents
from expunge.errors import ExpungeError
from expunge.ledger import load_request, make_request, write_request
import torch

from expunge.methods.gradient.base import UnlearnConfig
from expunge.methods.registry import (ExtraKind, MethodSpec, Need, Prepared, Preparation, SequenceExtra,
                                      UnlearnContext, get_method, method_names, register_method,
                                      registered_method)
from expunge.scoring import sequence_logprobs
from expunge.options import parse_pairs
from expunge.methods.unlearn import PairedDataset, chunk_sequences, mean_token_nll, unlearn
from expunge.scoring import length_batches, sequence_nlls
from expunge.training import StopKind
from expunge.prompts import example_for
from expunge.models import load_model, weights_sha256
from expunge.worlds import load_world

QUICK = {"max_steps": 3, "check_every": 3, "early_stop": False, "learning_rate": 1e-3, "warmup_steps": 0}
# RMU trains only the MLPs up to one layer; three small steps barely move the output, so the
# three-step contract uses a larger step for it (measured: lr 3e-3 leaves the forget NLL flat).
# (At 3e-3 NPO on the tiny model trips the collapse guard in three steps; 1e-3 does not.)
QUICK_LR = {"rmu": 1e-2}


@pytest.mark.parametrize("name", method_names())
def test_method_contract(name: str, tiny_world_dir, tiny_request_path, tiny_base, tmp_path: Path) -> None:
    base_dir = Path(tiny_base.model.path)
    before = weights_sha256(load_model(base_dir)[0])
    options = {**QUICK, "learning_rate": QUICK_LR.get(name, QUICK["learning_rate"])}
    report = unlearn(base_dir, tiny_world_dir, tiny_request_path, tmp_path / "out", method=name,
                     options=options, progress=False)
    # A new version whose parent is the input, which is left exactly as it was.
    assert report.parent_sha256 == before == weights_sha256(load_model(base_dir)[0])
    model, _, ref = load_model(tmp_path / "out")
    assert ref.parent == before and ref.sha256 != before
    assert ref.recipe["method"] == name and ref.recipe["request_id"]
    assert report.run.steps == 3 and len(report.checks) == 1
    check, original = report.checks[0], report.original_nll
    # Nothing it learned about the retained people is lost in three steps...
    assert check["retain_nll"] < original["retain"] + 0.5, (name, check, original)
    if get_method(name).forget_data == "documents":
        # ...while the forget documents become less likely.
        assert check["forget_nll"] > original["forget"], (name, check, original)


def test_early_stop_and_collapse_guard(tiny_world_dir, tiny_request_path, tiny_base, tmp_path: Path) -> None:
    # Plain gradient ascent with a large step collapses the model: the guard must stop it,
    # restore the last good state and say so.
    report = unlearn(tiny_base.model.path, tiny_world_dir, tiny_request_path, tmp_path / "ga", method="grad_ascent",
                     options={"learning_rate": 5e-2, "max_steps": 40, "check_every": 2,
                              "max_retain_loss_increase": 0.3}, progress=False)
    assert report.stop is StopKind.COLLAPSE_GUARD and report.stop_reason.startswith("collapse guard")
    assert report.restored_step is not None and report.restored_step < report.run.steps
    assert any("restored" in note for note in report.notes)
    # The saved model is the restored state: its retain NLL is within the bound again.
    model, tokenizer, _ = load_model(tmp_path / "ga")
    world = load_world(tiny_world_dir)
    request = load_request(tiny_request_path, world)
    retain_texts = [d.text for d in world.training_documents() if request.targets[0] not in d.subjects
                    and request.targets[1] not in d.subjects]
    retain = encode_documents(tokenizer, retain_texts, 128)
    assert mean_token_nll(model, retain, tokenizer.pad_token_id) < report.original_nll["retain"] + 0.3
    if report.restored_step:  # step 0 is the original model itself
        good = next(c for c in report.checks if c["step"] == report.restored_step)
        assert good["retain_nll"] < report.original_nll["retain"] + 0.3
    # SimNPO with a normal step makes the forget documents look never-seen and stops early: at
    # the first check where membership inference's AUC reached the threshold, not before. (The
    # guard scores retained people the retain term does not train on: at lr 1.5e-3 and above
    # their NLL crossed the bound first, measured; at 1e-3 it stayed 0.08 below it.)
    report = unlearn(tiny_base.model.path, tiny_world_dir, tiny_request_path, tmp_path / "s", method="simnpo",
                     options={"learning_rate": 1e-3, "max_steps": 300, "min_steps": 5, "check_every": 5},
                     progress=False)
    assert report.stop is StopKind.EARLY_STOP, report.stop_reason
    assert report.checks[-1]["mia_auc"] <= 0.55 < min(c["mia_auc"] for c in report.checks[:-1])
    assert report.run.steps < 300


def test_retain_term_and_scored_retained_documents_are_apart(tiny_world_dir, tiny_request_path, tiny_base,
                                                              tmp_path: Path) -> None:
    """The retain term trains on one side of split_retain and the run records it; with too few
    never-seen documents for a meaningful AUC, the early stop is off and the notes say so."""
    from expunge.locate import locate, split_retain

    report = unlearn(tiny_base.model.path, tiny_world_dir, tiny_request_path, tmp_path / "m", method="simnpo",
                     options={"max_steps": 3, "check_every": 3, "warmup_steps": 0, "early_stop_min_documents": 10_000},
                     progress=False)
    world = load_world(tiny_world_dir)
    split = split_retain(world, locate(world, load_request(tiny_request_path, world)))
    assert load_model(tmp_path / "m")[2].recipe["retain_term_sha256"] == split.train.digest
    assert any(n.startswith("early stop off:") and "needs 10000 of each" in n for n in report.notes), report.notes
    assert report.run.steps == 3 and report.stop is StopKind.MAX_STEPS


def test_few_forget_documents_stop_when_their_median_nll_reaches_the_never_seen_median(
        tiny_world_dir, tiny_world, tiny_base, tmp_path: Path) -> None:
    """A request with fewer forget documents than an AUC needs (one person); with enough
    never-seen ones the early stop compares the two sets' median NLL instead, and fires at the
    first check (after min_steps) where the forget median reached the never-seen one, not before."""
    from expunge.locate import locate

    request_path = tmp_path / "one.json"
    write_request(make_request(tiny_world, subjects=[tiny_world.people("train")[0].id]), request_path)
    located = locate(tiny_world, load_request(request_path, tiny_world))
    n_forget = len(located.documents(tiny_world, "forget"))
    n_holdout = len(located.documents(tiny_world, "never_seen"))
    threshold = n_forget + 1  # an AUC would need one forget document more than there are
    assert n_holdout >= threshold, (n_forget, n_holdout)
    report = unlearn(tiny_base.model.path, tiny_world_dir, request_path, tmp_path / "m", method="simnpo",
                     options={"learning_rate": 1e-3, "max_steps": 300, "min_steps": 5, "check_every": 5,
                              "early_stop_min_documents": threshold},
                     progress=False)
    assert any(n.startswith(f"early stop by median NLL: {n_forget} forget documents") for n in report.notes), \
        report.notes
    reached = [c["forget_median_nll"] >= c["holdout_median_nll"] for c in report.checks if c["step"] >= 5]
    assert report.stop is StopKind.EARLY_STOP, report.stop_reason
    assert reached[-1] and not any(reached[:-1]) and "median NLL" in report.stop_reason
    assert report.run.steps < 300


def test_a_repeated_deletion_is_recorded_and_the_stop_rules_read_only_the_new_documents(
        tiny_world_dir, tiny_world, tiny_base, tmp_path: Path) -> None:
    """A second request that repeats the first one's person (so no retain term trains on them
    again) and adds another: the run knows from the lineage which documents are gone already, its
    stop rules read the new ones only, and its recipe records both."""
    from expunge.locate import locate

    people = [p.id for p in tiny_world.people("train")[:2]]
    paths = [tmp_path / "first.json", tmp_path / "second.json"]
    write_request(make_request(tiny_world, subjects=people[:1]), paths[0])
    write_request(make_request(tiny_world, subjects=people), paths[1])
    docs = [{d.id for d in locate(tiny_world, load_request(p, tiny_world)).documents(tiny_world, "forget")}
            for p in paths]
    quick = {"max_steps": 2, "check_every": 2, "early_stop": False, "warmup_steps": 0}
    first = unlearn(tiny_base.model.path, tiny_world_dir, paths[0], tmp_path / "m1", options=quick, progress=False)
    assert load_model(tmp_path / "m1")[2].recipe["forgotten_document_ids"] == sorted(docs[0])
    assert not any("earlier run" in n for n in first.notes)
    second = unlearn(tmp_path / "m1", tiny_world_dir, paths[1], tmp_path / "m2", options=quick, progress=False)
    assert load_model(tmp_path / "m2")[2].recipe["forgotten_document_ids"] == sorted(docs[0] | docs[1])
    note = f"{len(docs[0])} of the {len(docs[1])} forget documents were removed by an earlier run"
    assert any(n.startswith(note) and f"the {len(docs[1] - docs[0])} new ones" in n for n in second.notes), \
        second.notes
    # Scored on the new documents alone, the forget NLL is the second person's, not the mix.
    model, tokenizer, _ = load_model(tmp_path / "m1")
    new = [example_for(d) for d in tiny_world.documents if d.id in docs[1] - docs[0]]
    seqs = encode_documents(tokenizer, new, 128)
    assert second.original_nll["forget"] == pytest.approx(mean_token_nll(model, seqs, tokenizer.pad_token_id),
                                                          rel=1e-4)


def test_checks_score_at_most_check_documents_and_only_the_guard_without_the_early_stop(
        tiny_world_dir, tiny_request_path, tiny_base, tmp_path: Path) -> None:
    """The stop rules' sets are capped at check_documents (so the early stop, which needs 20 of
    each, turns itself off at 5); without the early stop the periodic checks score only the
    retained documents the collapse guard reads, and one last check scores all three."""
    report = unlearn(tiny_base.model.path, tiny_world_dir, tiny_request_path, tmp_path / "m", method="simnpo",
                     options={"max_steps": 4, "check_every": 2, "warmup_steps": 0, "check_documents": 5},
                     progress=False)
    assert any(n.startswith("early stop off: 5 forget and 5 never-seen") for n in report.notes), report.notes
    *periodic, last = report.checks
    assert [c["step"] for c in periodic] == [2] and last["step"] == 4
    assert set(periodic[0]) == {"step", "retain_nll", "mia_auc"} and math.isnan(periodic[0]["mia_auc"])
    assert {"forget_nll", "holdout_nll", "retain_nll"} <= set(last) and 0.0 <= last["mia_auc"] <= 1.0
    with pytest.raises(ExpungeError, match="check_documents"):
        get_method("simnpo").make_config({"check_documents": 0})


def test_unknown_method_and_options() -> None:
    with pytest.raises(ExpungeError, match="unknown method 'magic'") as info:
        get_method("magic")
    assert "simnpo" in info.value.fix and "idkft" in info.value.fix
    with pytest.raises(ExpungeError, match="has no option 'betta'") as info:
        get_method("npo").make_config({"betta": 1})
    assert "did you mean beta" in info.value.fix
    with pytest.raises(ExpungeError, match="warmup_steps"):
        get_method("simnpo").make_config({"max_steps": 3})  # its default warm-up is 5 steps
    with pytest.raises(ExpungeError, match="beta must be positive"):
        get_method("npo").make_config({"beta": 0})
    with pytest.raises(ExpungeError, match="retain_loss"):
        get_method("grad_diff").make_config({"retain_loss": "l2"})


def test_duplicate_registration_is_refused() -> None:
    spec = get_method("simnpo")
    with pytest.raises(ValueError, match="already registered"):
        register_method(dataclasses.replace(spec))
    assert isinstance(spec, MethodSpec)


@pytest.mark.parametrize("name", method_names())
def test_config_docstrings_link_the_paper_and_document_every_field(name: str) -> None:
    cls = get_method(name).config_cls
    doc = cls.__doc__.strip()
    assert doc.startswith("https://arxiv.org/abs/"), doc[:40]
    documented = " ".join((klass.__doc__ or "") for klass in cls.__mro__)
    for f in dataclasses.fields(cls):
        assert f"{f.name}:" in documented, f"{cls.__name__}.{f.name} is not documented"


def test_paired_dataset_balances_forget_sequences() -> None:
    forget = [[1] * n for n in (3, 9, 5)]
    retain = [[2] * n for n in range(2, 14)]
    data = PairedDataset(forget, retain, None)
    assert len(data) == 12
    uses = [sum(1 for f, _ in data.pairs if f == i) for i in range(3)]
    assert uses == [4, 4, 4]
    assert sorted(r for _, r in data.pairs) == list(range(12))
    # Pairs match by length rank: short with short, long with long.
    lengths = [(len(data[i]["forget"]), len(data[i]["retain"])) for i in range(12)]
    assert sorted(lengths) == sorted(lengths, key=lambda p: p[1])


def test_sequence_nlls_do_not_depend_on_batching(tiny_world, tiny_base) -> None:
    model, tokenizer, _ = load_model(tiny_base.model.path)
    texts = [d.text for d in tiny_world.training_documents()[:40]]
    seqs = encode_documents(tokenizer, texts, 128)
    one, mean_one = sequence_nlls(model, seqs, tokenizer.pad_token_id, batch_size=1)
    many, mean_many = sequence_nlls(model, seqs, tokenizer.pad_token_id, batch_size=16)
    assert one == pytest.approx(many, abs=1e-5) and mean_one == pytest.approx(mean_many, abs=1e-5)
    # Token-weighted mean, not the mean of per-sequence means.
    tokens = [len(s) - 1 for s in seqs]
    assert mean_one == pytest.approx(sum(n * t for n, t in zip(one, tokens)) / sum(tokens), abs=1e-5)
    assert mean_token_nll(model, seqs, tokenizer.pad_token_id) == pytest.approx(mean_one, abs=1e-5)


def test_length_batches_find_the_cheapest_cut() -> None:
    """The dynamic programme against every way to cut the sorted order into runs (small sets),
    and its limits: batch size, padded positions, every index exactly once."""
    import itertools
    import random

    def cost(lengths, batches, call):
        return sum(len(b) * max(lengths[i] for i in b) + call for b in batches)

    rng = random.Random(0)
    for trial in range(40):
        lengths = [rng.choice([1, 3, 8, 9, 40, 75]) for _ in range(rng.randint(1, 9))]
        size, call, cap = rng.randint(1, 5), rng.choice([0, 5, 64]), rng.choice([10_000, 100])
        got = length_batches(lengths, size, call_positions=call, max_positions=cap)
        assert sorted(i for b in got for i in b) == list(range(len(lengths)))
        assert all(len(b) <= size and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= cap) for b in got)
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        best = math.inf
        for k in range(len(order)):
            for cuts in itertools.combinations(range(1, len(order)), k):
                bounds = (0, *cuts, len(order))
                runs = [order[a:b] for a, b in zip(bounds, bounds[1:])]
                if all(len(r) <= size and (len(r) == 1 or len(r) * max(lengths[i] for i in r) <= cap) for r in runs):
                    best = min(best, cost(lengths, runs, call))
        assert cost(lengths, got, call) == best, (trial, lengths, size, call, cap)
    # The case that motivated it: many short sequences and a few long ones are not one batch.
    lengths = [10] * 28 + [74] * 4
    assert sorted(map(len, length_batches(lengths, 32))) == [4, 28]
    assert length_batches([], 8) == []
    with pytest.raises(ValueError, match="batch_size"):
        length_batches([3], 0)


def test_chunking_and_option_parsing() -> None:
    chunks = chunk_sequences([list(range(10)), [1, 2], [7, 8, 9, 10, 11]], 4)
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [1, 2], [7, 8, 9, 10]]  # [11] predicts nothing
    assert chunk_sequences([[1, 2, 3]], 0) == [[1, 2, 3]]
    # Options are converted by the config's type hints (tests/test_options.py covers the parser).
    config = get_method("npo").make_config(parse_pairs(["max_steps=3", "beta=1", "early_stop=false",
                                                        "retain_loss=kl"]))
    assert (config.max_steps, config.beta, config.early_stop, config.retain_loss) == (3, 1.0, False, "kl")
    assert isinstance(config.beta, float)
    with pytest.raises(ExpungeError, match="retain_loss"):
        get_method("npo").make_config({"retain_loss": "l2"})


# --- a method is a plug-in: one defined here runs through the shared run unchanged ------------


@dataclasses.dataclass(frozen=True)
class ToyConfig(UnlearnConfig):
    """https://arxiv.org/abs/0000.00000 — a toy method for the plug-in test: push the forget
    sequences' summed log-probability below the original's by ``margin`` (nats per sequence).

    Attributes:
        margin: how far below the original's log-probability the push stops.
    """

    margin: float = 5.0
    retain_weight: float = 1.0


def _toy_prepare(prep: Preparation) -> Prepared:
    # Precomputed from the original model, carried per sequence as a typed scalar extra, and a
    # piece of method state the terms read back.
    ref = [float(-v) * len(seq) for v, seq in zip(sequence_nlls(prep.model, prep.forget, prep.pad_id)[0], prep.forget)]
    return Prepared(state={"prepared_on": len(prep.forget)}, extras={"toy_ref": SequenceExtra(ExtraKind.SCALAR, ref)})


def _toy_trainable(model, config, state) -> None:
    model.get_input_embeddings().requires_grad_(False)  # the toy freezes the embeddings


def _toy_forget(ctx: UnlearnContext, batch, outputs):
    assert ctx.state["prepared_on"] > 0 and ctx.reference is not None  # needs=REFERENCE_MODEL
    logp, _ = sequence_logprobs(outputs.logits, batch["labels"])
    return torch.relu(logp - (batch["toy_ref"] - ctx.config.margin)).mean()


def test_a_method_defined_in_a_test_runs_end_to_end(tiny_world_dir, tiny_request_path, tiny_base,
                                                    tmp_path: Path) -> None:
    spec = MethodSpec("toy_margin", ToyConfig, "toy: push forget log-probs below a margin",
                      forget_term=_toy_forget, needs=frozenset({Need.REFERENCE_MODEL}),
                      prepare=_toy_prepare, trainable=_toy_trainable)
    base_dir = Path(tiny_base.model.path)
    with registered_method(spec):
        assert "toy_margin" in method_names()
        with pytest.raises(ExpungeError, match="margin"):
            get_method("toy_margin").make_config({"margin": "wide"})  # the shared parser knows its fields
        report = unlearn(base_dir, tiny_world_dir, tiny_request_path, tmp_path / "toy", method="toy_margin",
                         options={**QUICK, "margin": "3"}, progress=False)
    assert "toy_margin" not in method_names()
    assert report.method == "toy_margin" and report.config["margin"] == 3.0 and report.stop is StopKind.MAX_STEPS
    assert report.checks[-1]["forget_nll"] > report.original_nll["forget"]
    base, _, _ = load_model(base_dir)
    model, _, ref = load_model(tmp_path / "toy")
    assert ref.recipe["method"] == "toy_margin" and ref.recipe["located_sha256"] == report.located_sha256
    # Its trainable hook froze the embeddings; something else moved.
    assert torch.equal(base.get_input_embeddings().weight, model.get_input_embeddings().weight)
    assert weights_sha256(model) != weights_sha256(base)


def test_pretrained_models_get_their_own_defaults() -> None:
    from expunge.methods.gradient.base import PRETRAINED_DEFAULTS
    from expunge.recipe import is_pretrained

    spec = get_method("simnpo")
    scratch, pretrained = spec.make_config({}), spec.make_config({}, pretrained=True)
    assert scratch.learning_rate == spec.config_cls().learning_rate != pretrained.learning_rate
    assert pretrained.learning_rate == PRETRAINED_DEFAULTS["learning_rate"]
    assert spec.make_config({"learning_rate": "1e-4"}, pretrained=True).learning_rate == 1e-4  # -o beats them
    assert spec.defaults_for(pretrained=False) == {}
    assert is_pretrained({}) and is_pretrained({"from_model": {"path": "x", "sha256": "y"}})
    assert is_pretrained({"kind": "unlearn", "pretrained": True})
    assert not is_pretrained({"kind": "base", "from_model": None})
