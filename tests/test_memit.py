"""MEMIT: one edit agrees in direction with ROME; a batch reverts exactly; a batch of target
optimisations equals one at a time; an edit lands on a tiny trained companies world."""

from __future__ import annotations

import pytest
import torch

from expunge.methods.editing.common import optimise_targets, revert, rewrite_batch
from expunge.methods.editing.memit import MEMITConfig, apply_memit, default_memit_layers
from expunge.methods.editing.rome import ROMEConfig, apply_rome
from expunge.methods.editing.stats import second_moment
from expunge.models.io import load_model
from expunge.records import FactEdit


@pytest.fixture(scope="module")
def tiny(tiny_base, tiny_world):
    model, tokenizer, _ = load_model(tiny_base.model.path)
    people = tiny_world.people("train")
    edits = [FactEdit(f"e{i}", p.id, p.name, "birthplace", "{} was born in", p.attributes["birthplace"],
                      "Porto" if p.attributes["birthplace"] != "Porto" else "Lyon") for i, p in enumerate(people[:3])]
    texts = [d.text for d in tiny_world.training_documents()]
    moments = {layer: second_moment(model, tokenizer, texts, layer) for layer in (0, 1)}
    return model, tokenizer, edits, moments


def test_one_memit_edit_agrees_in_direction_with_rome(tiny) -> None:
    model, tokenizer, edits, moments = tiny
    # The same value step: no decay and an inactive clamp (ROME scales those by the MLP output's
    # norm, MEMIT by the residual's), so both optimise the same delta.
    value = dict(steps=15, context_prefixes=("", "Question:"), weight_decay=0.0, clamp_norm_factor=1e6)
    rome = apply_rome(model, tokenizer, edits[0], moments[0], ROMEConfig(layer=0, **value))
    revert(model, rome)
    memit = apply_memit(model, tokenizer, edits[:1], moments, MEMITConfig(layers=(0,), covariance_weight=15000.0,
                                                                          **value))
    revert(model, memit)
    a, b = rome.deltas[0].flatten().double(), memit.deltas[0].flatten().double()
    # Same value step; by Sherman-Morrison MEMIT's right vector (lambda C + K K^T)^-1 k is C^-1 k
    # up to a low-rank correction that vanishes as lambda grows: the updates are parallel.
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99
    assert not torch.allclose(a, b)  # MEMIT's step is smaller: lambda C weighs against the new key


def test_memit_batch_changes_only_its_layers_and_reverts_exactly(tiny) -> None:
    model, tokenizer, edits, moments = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = apply_memit(model, tokenizer, edits, moments, MEMITConfig(layers=(0, 1), token="prompt_last", steps=5))
    changed = sorted(k for k, v in model.state_dict().items() if not torch.equal(v, before[k]))
    assert changed == ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    assert result.modules == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    revert(model, result)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_failure_mid_batch_leaves_the_model_as_it_was(tiny) -> None:
    model, tokenizer, edits, moments = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Layer 0 is updated, then layer 1's statistics do not fit: the half-done batch must be undone.
    broken = lambda layer: moments[0] if layer == 0 else torch.eye(3)  # noqa: E731
    with pytest.raises(Exception, match="do not fit layer 1"):
        apply_memit(model, tokenizer, edits, broken, MEMITConfig(layers=(0, 1), token="prompt_last", steps=3))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_target_optimisation_batched_equals_one_at_a_time(tiny) -> None:
    model, tokenizer, edits, _ = tiny
    options = dict(steps=8, learning_rate=0.5, kl_weight=0.1, weight_decay=0.5, clamp_norm_factor=4.0)
    for token in ("subject_last", "prompt_last"):
        together, _ = optimise_targets(model, rewrite_batch(tokenizer, edits, ("", "Question:"), token), 0, **options)
        alone = torch.cat([optimise_targets(model, rewrite_batch(tokenizer, [e], ("", "Question:"), token), 0,
                                            **options)[0] for e in edits])
        assert together.shape == alone.shape
        assert torch.allclose(together, alone, atol=1e-4, rtol=1e-3), token


def test_target_optimisation_on_the_prefix_cache_equals_the_whole_texts(tiny) -> None:
    """Each step runs only the positions from a row's first slot on, over the cached keys and
    values of the rest, and hands back the stored outputs of the layers up to the edited one: the
    same deltas as running every rewrite text whole through every layer."""
    model, tokenizer, edits, _ = tiny
    options = dict(steps=6, learning_rate=0.5, kl_weight=0.1, weight_decay=0.5, clamp_norm_factor=4.0)
    # Layer 1 freezes every layer of the tiny model. (At subject_last its last layer is no place
    # for a delta: no later layer carries it from the subject to the target.)
    for token, layer in (("subject_last", 0), ("prompt_last", 0), ("prompt_last", 1)):
        batch = rewrite_batch(tokenizer, edits, ("", "Question:", "The city of"), token)
        cached, cached_losses = optimise_targets(model, batch, layer, **options)
        whole, whole_losses = optimise_targets(model, batch, layer, prefix_cache=False, **options)
        assert cached.abs().max() > 0
        assert torch.allclose(cached, whole, atol=1e-4, rtol=1e-3), (token, layer)
        assert cached_losses == pytest.approx(whole_losses, rel=1e-3, abs=1e-5)
    # The layers run as themselves again afterwards.
    assert all("forward" not in vars(m) for m in model.modules())


def test_an_edit_that_reached_the_stop_loss_keeps_its_delta_in_a_batch(tiny) -> None:
    """stop_loss ends an edit's optimisation once its NLL is below it; in a batch the other edits
    go on, and each edit's delta is what it would be alone."""
    model, tokenizer, edits, _ = tiny
    options = dict(steps=12, learning_rate=0.5, kl_weight=0.1, weight_decay=0.5, clamp_norm_factor=4.0)
    full, losses = optimise_targets(model, rewrite_batch(tokenizer, edits, ("",), "prompt_last"), 0, **options)
    stop = sorted(losses)[len(losses) // 2]  # a level the batch's mean reaches part-way
    together, stopped = optimise_targets(model, rewrite_batch(tokenizer, edits, ("",), "prompt_last"), 0,
                                         stop_loss=stop, **options)
    alone = [optimise_targets(model, rewrite_batch(tokenizer, [e], ("",), "prompt_last"), 0, stop_loss=stop,
                              **options) for e in edits]
    assert torch.allclose(together, torch.cat([d for d, _ in alone]), atol=1e-4, rtol=1e-3)
    assert len(stopped) < len(losses)  # the batch stopped early, when every edit was done
    assert min(len(ls) for _, ls in alone) < options["steps"]
    assert not torch.allclose(together, full)  # stopping changed the deltas


def test_config_and_input_errors(tiny) -> None:
    model, tokenizer, edits, moments = tiny
    with pytest.raises(ValueError, match="unknown lookup token"):
        MEMITConfig(token="middle")
    with pytest.raises(ValueError, match="ascending"):
        MEMITConfig(layers=(1, 0))
    with pytest.raises(Exception, match="no edits"):
        apply_memit(model, tokenizer, [], moments)
    with pytest.raises(Exception, match="same fact"):
        apply_memit(model, tokenizer, [edits[0], edits[0]], moments)
    with pytest.raises(Exception, match="must not be the model's last"):
        apply_memit(model, tokenizer, edits[:1], moments, MEMITConfig(layers=(0, 1)))
    with pytest.raises(Exception, match="do not all exist"):
        apply_memit(model, tokenizer, edits[:1], moments, MEMITConfig(layers=(5,)))
    assert default_memit_layers(model) == (0,)  # 2 layers: a third of the way up is layer 0


@pytest.mark.slow
def test_memit_on_smollm2_edits_several_capitals_in_one_batch(smollm2) -> None:
    """Real weights, MEMIT as published (subject's last token, two layers): three capitals change in
    one batch, each on its prompt and a paraphrase; the batch reverts exactly (about two minutes).
    Other capitals: of those the unedited model gets right, all but three keep their answer (see
    the comment at the assertion; layers 4-5, and also 3-6; lambda 50000 keeps more but loses an
    edit)."""
    model, tokenizer, corpus, top1 = smollm2

    edits = [FactEdit("e1", "france", "France", "capital", "The capital of {} is", "Paris", "Rome"),
             FactEdit("e2", "japan", "Japan", "capital", "The capital of {} is", "Tokyo", "Cairo"),
             FactEdit("e3", "spain", "Spain", "capital", "The capital of {} is", "Madrid", "Berlin")]
    others = {"Germany": "Berlin", "Italy": "Rome", "Egypt": "Cairo", "Russia": "Moscow", "Canada": "Ottawa",
              "Greece": "Athens", "Poland": "Warsaw", "Portugal": "Lisbon", "Norway": "Oslo", "Austria": "Vienna"}
    neighbours = {c: top1(f"The capital of {c} is") for c in others}
    known = [c for c, capital in others.items() if len(neighbours[c]) >= 3 and capital.startswith(neighbours[c])]
    assert len(known) >= 6, neighbours  # the model knows its capitals (measured 8: not Egypt, Poland)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = (4, 5)
    moments = {layer: second_moment(model, tokenizer, corpus, layer) for layer in layers}
    result = apply_memit(model, tokenizer, edits, moments,
                         MEMITConfig(layers=layers, steps=25, covariance_weight=15000.0,
                                     context_prefixes=("", "Hello.", "The news:", "I think that")))
    for edit in edits:
        assert top1(f"The capital of {edit.subject_name} is") == edit.target_new
        assert top1(f"The capital city of {edit.subject_name} is") == edit.target_new
    # Only the capitals the unedited model gets right count: its wrong answers ("the" for Egypt and
    # Poland) are weak predictions that any change flips, and this batch even "fixed" Poland (the ->
    # Warsaw). Measured (pinned packages, 2 threads): 7 of the 8 known kept, Canada lost (Ottawa ->
    # "New"; "The capital city of Canada is" still Ottawa); on 22 countries 15 of 16 known kept.
    # (Earlier, counting every answer: 7 of 10.) The test asks for all but three, two below the
    # measurement — one run on fixed weights and a seeded corpus moves with package versions and
    # thread counts — while a batch that wrecked the layers would keep few or none.
    after = {c: top1(f"The capital of {c} is") for c in neighbours}
    kept = sum(after[c] == neighbours[c] for c in known)
    assert kept >= len(known) - 3, (kept, known, neighbours, after)
    revert(model, result)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_keys_and_residual_in_one_pass_equal_the_two_passes(tiny) -> None:
    """MEMIT reads a layer's keys and the last layer's residual from one forward pass: the same
    tensors as reading each alone."""
    from expunge.methods.editing.common import keys_and_residual, keys_at, residual_at

    model, tokenizer, edits, _ = tiny
    batch = rewrite_batch(tokenizer, edits, ("", "Question:"), "prompt_last")
    for layer, z_layer in ((0, 1), (1, 1), (0, 0)):
        keys, residual = keys_and_residual(model, batch, layer, "mlp.down_proj", z_layer)
        assert torch.equal(keys, keys_at(model, batch, layer, "mlp.down_proj"))
        assert torch.equal(residual, residual_at(model, batch, z_layer))
