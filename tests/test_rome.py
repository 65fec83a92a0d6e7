"""ROME: exact revert, the rank-one update's defining property, module paths, and (slow) a real edit
on SmolLM2-135M that holds on paraphrases and leaves other capitals alone."""

from __future__ import annotations

import pytest
import torch

from expunge.methods.editing.rome import ROMEConfig, apply_rome, revert, subject_last_index
from expunge.methods.editing.stats import projection_weight, second_moment
from expunge.models.io import load_model
from expunge.records import FactEdit


@pytest.fixture(scope="module")
def tiny(tiny_base, tiny_world):
    model, tokenizer, _ = load_model(tiny_base.model.path)
    person = tiny_world.people("train")[0]
    edit = FactEdit("e", person.id, person.name, "birthplace", "{} was born in", person.attributes["birthplace"],
                    "Porto" if person.attributes["birthplace"] != "Porto" else "Lyon")
    texts = [d.text for d in tiny_world.training_documents()]
    return model, tokenizer, edit, texts


def test_edit_is_rank_one_maps_the_key_to_the_new_value_and_reverts_exactly(tiny, tmp_path) -> None:
    model, tokenizer, edit, texts = tiny
    layer = 0
    moment = second_moment(model, tokenizer, texts, layer, cache_dir=tmp_path)
    cached = second_moment(model, tokenizer, texts, layer, cache_dir=tmp_path)
    assert torch.equal(moment, cached) and len(list(tmp_path.iterdir())) == 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = apply_rome(model, tokenizer, edit, moment, ROMEConfig(layer=layer, steps=10))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["model.layers.0.mlp.down_proj.weight"]  # one matrix, from the arch table
    singular = torch.linalg.svdvals(result.deltas[layer].double())
    assert singular[1] <= 1e-5 * singular[0]  # rank one
    assert result.target_loss[-1] < result.target_loss[0]  # the value optimisation made progress
    revert(model, result)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # exact identity


def test_statistics_of_several_layers_in_one_pass_that_stops_at_the_highest(tiny, tmp_path) -> None:
    """One pass over the corpus gives every layer's E[k k^T], equal to a hand computation over the
    whole forward pass; the pass stops after the highest layer asked for (a layer above it never
    runs), and cached moments are keyed by the weights' hash the caller passes."""
    from expunge.methods.editing.stats import second_moments
    from expunge.models.arch import decoder_layers, layer_module

    model, tokenizer, _, texts = tiny
    texts = texts[:40]
    grabbed: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    hooks = [layer_module(model, layer, "mlp.down_proj").register_forward_pre_hook(
        lambda _m, inputs, layer=layer: grabbed[layer].append(inputs[0][0].double())) for layer in (0, 1)]
    try:
        with torch.no_grad():
            for text in texts:  # one text at a time: no padding to mask
                ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
                model(input_ids=torch.tensor([ids]))
    finally:
        for hook in hooks:
            hook.remove()
    expected = {layer: torch.cat(k).T @ torch.cat(k) / torch.cat(k).shape[0] for layer, k in grabbed.items()}
    ran: list[int] = []
    probe = decoder_layers(model)[1].register_forward_pre_hook(lambda _m, _i: ran.append(1))
    try:
        only_first = second_moments(model, tokenizer, texts, [0], batch_size=7)
    finally:
        probe.remove()
    assert ran == []  # layer 1 never ran: the pass stopped at layer 0's projection
    assert torch.allclose(only_first[0], expected[0], rtol=1e-4, atol=1e-6)
    both = second_moments(model, tokenizer, texts, [1, 0], batch_size=7, cache_dir=tmp_path, model_sha256="ab" * 32)
    for layer in (0, 1):
        assert torch.allclose(both[layer], expected[layer], rtol=1e-4, atol=1e-6)
    assert sorted(p.name.split("-")[1] for p in tmp_path.iterdir()) == ["abababababababab"] * 2
    again = second_moments(model, tokenizer, texts, [0, 1], cache_dir=tmp_path, model_sha256="ab" * 32)
    assert all(torch.equal(again[layer], both[layer]) for layer in (0, 1))


def test_subject_lookup_and_bad_input(tiny) -> None:
    model, tokenizer, edit, texts = tiny
    text = edit.prompt.format(edit.subject_name)
    index = subject_last_index(tokenizer, text, edit.subject_name)
    assert tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])[index] == edit.subject_name.split()[-1].lower()
    with pytest.raises(Exception, match="does not occur"):
        subject_last_index(tokenizer, "nobody here", edit.subject_name)
    with pytest.raises(Exception, match="do not fit"):
        apply_rome(model, tokenizer, edit, torch.eye(3), ROMEConfig(layer=0))
    with pytest.raises(ValueError, match="steps"):
        ROMEConfig(steps=0)


def test_gpt2_conv1d_weights_are_edited_through_the_transpose() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from expunge.models.tokenizer import build_word_tokenizer

    tokenizer = build_word_tokenizer(["the ceo of acme corp is ann lee . bob ray"])
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=32))
    weight = projection_weight(model, 0)
    assert weight.shape == (32, 128)  # (out, in) although Conv1D stores (in, out)
    edit = FactEdit("e", "acme", "acme corp", "ceo", "the ceo of {} is", "ann lee", "bob ray")
    moment = second_moment(model, tokenizer, ["the ceo of acme corp is ann lee", "bob ray is the ceo"], 0)
    before = model.transformer.h[0].mlp.c_proj.weight.clone()
    result = apply_rome(model, tokenizer, edit, moment, ROMEConfig(layer=0, steps=3))
    assert not torch.equal(model.transformer.h[0].mlp.c_proj.weight, before)
    assert result.modules == ["transformer.h.0.mlp.c_proj"]
    revert(model, result)
    assert torch.equal(model.transformer.h[0].mlp.c_proj.weight, before)


@pytest.mark.slow
def test_rome_on_smollm2_edits_a_capital_and_keeps_the_others(smollm2) -> None:
    """Real weights: "The capital of France is" -> Rome, on the prompt and two paraphrases, while
    the other capitals the unedited model knows keep their answer, all but two (minutes on 2 cores)."""
    model, tokenizer, corpus, top1 = smollm2

    capitals = {"Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo", "Egypt": "Cairo",
                "Russia": "Moscow", "Canada": "Ottawa", "Greece": "Athens", "Poland": "Warsaw", "Portugal": "Lisbon"}
    neighbours = {c: top1(f"The capital of {c} is") for c in capitals}
    assert top1("The capital of France is") == "Paris"
    layer = 5
    edit = FactEdit("e", "france", "France", "capital", "The capital of {} is", "Paris", "Rome")
    result = apply_rome(model, tokenizer, edit, second_moment(model, tokenizer, corpus, layer),
                        ROMEConfig(layer=layer, context_prefixes=("", "Hello.", "The news:", "I think that"), steps=25))
    assert top1("The capital of France is") == "Rome"
    assert top1("The capital city of France is") == "Rome"
    assert top1("France's capital is the city of") == "Rome"
    # Only the capitals the unedited model gets right count: its wrong answers ("the" for Egypt and
    # Poland) are weak predictions that flip for any small change, and a flip there is no damage.
    # Measured (pinned packages, 2 threads; also on 24 countries): the unedited model knew 8 of these
    # 10 and 18 of 24, and the edited model kept every one of them (earlier runs: 9 of 10 kept,
    # counting the wrong ones). The test asks for all but two — one run on fixed weights moves with
    # package versions and thread counts — while an edit that rewrote the relation would keep
    # few (every answer "Rome"): 1 of 8.
    known = [c for c, capital in capitals.items() if len(neighbours[c]) >= 3 and capital.startswith(neighbours[c])]
    assert len(known) >= 6, neighbours  # the model knows its capitals (measured 8)
    after = {c: top1(f"The capital of {c} is") for c in known}
    kept = sum(after[c] == neighbours[c] for c in known)
    assert kept >= len(known) - 2, (kept, known, after)
    revert(model, result)
    assert top1("The capital of France is") == "Paris"


def test_values_found_together_hit_each_edit_alone_value_exactly(tiny, tiny_world) -> None:
    """values_batch: the edits' values are found in one batch on the unedited model, and the
    rank-one updates applied in order each aim at their own value, v* = W0 k + delta, where delta
    is what the edit finds alone: after both updates the second edit's bare-prompt key maps to
    exactly what editing it alone gives. values_batch=1 stays published ROME (the first edit of
    either run is the same update)."""
    from expunge.methods.editing.common import EditContext, keys_at, rewrite_batch, slot_positions_of_prompt_rows
    from expunge.methods.editing.rome import apply_rome_sequence

    model, tokenizer, first, texts = tiny
    person = tiny_world.people("train")[1]
    second = FactEdit("e2", person.id, person.name, "birthplace", "{} was born in", person.attributes["birthplace"],
                      "Lyon" if person.attributes["birthplace"] != "Lyon" else "Porto")
    moment = second_moment(model, tokenizer, texts, 0)
    context = EditContext(lambda _layer: moment)
    config = dict(layer=0, steps=8)
    alone = apply_rome(model, tokenizer, second, moment, ROMEConfig(**config))
    revert(model, alone)
    batch = rewrite_batch(tokenizer, [second], ROMEConfig().context_prefixes, "subject_last")
    key = keys_at(model, batch, 0, "mlp.down_proj")[slot_positions_of_prompt_rows(batch)[0]]
    together = apply_rome_sequence(model, tokenizer, [first, second], ROMEConfig(**config, values_batch=2), context)
    revert(model, together)
    one_by_one = apply_rome_sequence(model, tokenizer, [first, second], ROMEConfig(**config), context)
    revert(model, one_by_one)
    aimed, reached = alone.deltas[0].double() @ key, together.deltas[0].double() @ key
    assert torch.allclose(reached, aimed, rtol=1e-3, atol=1e-4 * aimed.norm().item())
    assert not torch.equal(together.deltas[0], one_by_one.deltas[0])  # the second value differs: it saw edit 1
    with pytest.raises(ValueError, match="values_batch"):
        ROMEConfig(values_batch=0)


def test_value_batches_never_hold_one_subject_twice() -> None:
    """An edit of a subject already in the batch starts the next one (it must see the first:
    both write at the subject's key); otherwise batches fill up to their size, in order."""
    from expunge.methods.editing.rome import value_batches

    def edit(i: int, subject: str) -> FactEdit:
        return FactEdit(f"e{i}", subject, subject.title(), "r", "{} is", "a", "b")

    edits = [edit(0, "x"), edit(1, "y"), edit(2, "x"), edit(3, "z"), edit(4, "w"), edit(5, "v")]
    ids = lambda batches: [[e.id for e in b] for b in batches]  # noqa: E731
    assert ids(value_batches(edits, 16)) == [["e0", "e1"], ["e2", "e3", "e4", "e5"]]
    assert ids(value_batches(edits, 3)) == [["e0", "e1"], ["e2", "e3", "e4"], ["e5"]]
    assert ids(value_batches(edits, 1)) == [[e.id] for e in edits]  # published ROME
