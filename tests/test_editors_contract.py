"""The contract every registered editor keeps, on two architectures (Llama: nn.Linear; GPT-2:
Conv1D, stored transposed): an edit changes weights, exactly the parameters its EditResult names,
one revert gives the state dict back bit for bit, and a failure leaves the model as it came. Plus a
toy editor defined here, registered and run through ``edit_model`` end to end without a change to
shared code: a new editor is a plug-in."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from expunge.errors import ExpungeError
from expunge.methods.editing.common import EditContext, EditResult, revert
from expunge.methods.editing.registry import (
    EditorSpec,
    editor_names,
    get_editor,
    register_editor,
    unregister_editor,
)
from expunge.methods.editing.run import edit_model, revert_model_version
from expunge.methods.editing.stats import projection_weight, second_moment
from expunge.models.arch import arch_for
from expunge.models.io import load_model, read_model_record, save_model_version
from expunge.models.tokenizer import build_word_tokenizer
from expunge.records import FactEdit, write_jsonl

CORPUS = ["the ceo of acme corp is ann lee .", "the ceo of zeta inc is bob ray .", "bob ray is the ceo",
          "ann lee leads acme corp", "zeta inc is a company",
          "the company . question : in the year the city of"]  # the words of ROME's context prefixes
EDITS = [FactEdit("e1", "acme", "acme corp", "ceo", "the ceo of {} is", "ann lee", "bob ray"),
         FactEdit("e2", "zeta", "zeta inc", "ceo", "the ceo of {} is", "bob ray", "ann lee")]
ARCHITECTURES = ("llama", "gpt2")


def tiny_model(arch: str, vocab: int) -> PreTrainedModel:
    torch.manual_seed(0)
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=2,
                                            max_position_embeddings=64))
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=4, n_head=2, n_positions=64))


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(CORPUS)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model(request, tokenizer) -> PreTrainedModel:
    return tiny_model(request.param, len(tokenizer)).eval()


def fast_config(name: str) -> Any:
    """The editor's defaults, with few optimisation steps where it has them (tests stay fast)."""
    spec = get_editor(name)
    fields = spec.config_cls.__dataclass_fields__
    return spec.make_config({"steps": "3"} if "steps" in fields else {})


def snapshot(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_contract(name: str, model: PreTrainedModel, tokenizer, edits: Sequence[FactEdit]) -> EditResult:
    spec = get_editor(name)
    config = fast_config(name)
    asked: list[int] = []

    def moments(layer: int) -> torch.Tensor:
        asked.append(layer)
        return second_moment(model, tokenizer, CORPUS, layer)

    before = snapshot(model)
    result = spec.edit(model, tokenizer, edits, config, EditContext(moments))
    after = model.state_dict()
    changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
    # (1) the edit did something
    assert changed, f"{name} changed no weight"
    # (2) exactly what the result reports: its modules' weights, one per reported layer
    assert changed == {f"{m}.weight" for m in result.modules}, (changed, result.modules)
    layout = arch_for(model)
    assert result.modules == [f"{layout.layers}.{layer}.{layout.mlp_out}" for layer in result.layers]
    assert sorted(result.original_weights) == sorted(result.layers) == sorted(result.deltas)
    assert result.edits == list(edits)
    for layer in result.layers:  # the deltas are the change, in (out, in) layout
        now = projection_weight(model, layer)
        assert torch.allclose(result.original_weights[layer] + result.deltas[layer], now, atol=1e-5)
    # the statistics hook names the layers the editor asked for
    if spec.stats_layers is not None:
        assert set(asked) <= set(spec.layers_needing_stats(model, config))
    # (3) one revert gives every tensor back, bit for bit
    revert(model, result)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    return result


@pytest.mark.parametrize("name", editor_names())
def test_editor_contract_one_edit(name: str, model, tokenizer) -> None:
    check_contract(name, model, tokenizer, EDITS[:1])


@pytest.mark.parametrize("name", editor_names())
def test_editor_contract_two_edits(name: str, model, tokenizer) -> None:
    result = check_contract(name, model, tokenizer, EDITS)
    assert [e.id for e in result.edits] == ["e1", "e2"]


@pytest.mark.parametrize("name", editor_names())
def test_a_failing_editor_leaves_the_model_as_it_came(name: str, model, tokenizer) -> None:
    spec = get_editor(name)
    if spec.stats_layers is None:
        pytest.skip(f"{name} reads no statistics")
    before = snapshot(model)
    with pytest.raises(ExpungeError):  # statistics of the wrong size
        spec.edit(model, tokenizer, EDITS, fast_config(name), EditContext(lambda _layer: torch.eye(3)))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_an_editor_refuses_another_editors_config(model, tokenizer) -> None:
    with pytest.raises(TypeError, match="takes a ROMEConfig"):
        get_editor("rome").edit(model, tokenizer, EDITS, get_editor("memit").make_config(),
                                EditContext(torch.eye))


def test_registry_errors() -> None:
    assert {"rome", "memit"} <= set(editor_names())
    with pytest.raises(ExpungeError, match=r"unknown editing method 'mend'.*memit.*rome"):
        get_editor("mend")
    with pytest.raises(ValueError, match=r"'rome' is already registered; known: .*memit.*rome"):
        register_editor(get_editor("rome"))
    with pytest.raises(ExpungeError, match="unknown editing method"):
        unregister_editor("mend")


# --- a plug-in editor, defined here only ------------------------------------------------------------


@dataclass(frozen=True)
class ToyConfig:
    """No paper: a test plug-in that adds ``scale`` x u v^T (fixed vectors) to one layer's MLP
    output projection, whatever the edits say.

    Attributes:
        layer: the decoder layer edited.
        scale: size of the rank-one change.
    """

    layer: int = 0
    scale: float = 0.01

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError("scale must be positive (e.g. 0.01)")


def toy_delta(weight: torch.Tensor, scale: float) -> torch.Tensor:
    out_dim, in_dim = weight.shape
    return scale * torch.outer(torch.linspace(-1, 1, out_dim), torch.linspace(1, 2, in_dim)).to(weight.dtype)


def apply_toy(model: PreTrainedModel, tokenizer, edits: Sequence[FactEdit], config: ToyConfig,
              context: EditContext) -> EditResult:
    context.progress(f"toy: {len(edits)} edits at layer {config.layer}")
    weight = projection_weight(model, config.layer)
    original = weight.detach().clone()
    delta = toy_delta(weight, config.scale)
    with torch.no_grad():
        weight.add_(delta)
    layout = arch_for(model)
    module = f"{layout.layers}.{config.layer}.{layout.mlp_out}"
    return EditResult(list(edits), "toy", [config.layer], [module], {config.layer: original},
                      {config.layer: delta})


@pytest.fixture
def toy_editor() -> Iterator[EditorSpec]:
    spec = register_editor(EditorSpec("toy", ToyConfig, "adds a fixed rank-one matrix (tests)", apply_toy))
    yield spec
    unregister_editor("toy")
    assert "toy" not in editor_names()


def test_the_toy_editor_keeps_the_contract(toy_editor, model, tokenizer) -> None:
    check_contract("toy", model, tokenizer, EDITS)


def test_a_plug_in_editor_runs_through_edit_model(toy_editor, tokenizer, tmp_path: Path) -> None:
    base = tiny_model("llama", len(tokenizer))
    parent = save_model_version(base, tokenizer, tmp_path / "base", parent=None, recipe={"kind": "test"})
    write_jsonl(tmp_path / "edits.jsonl", EDITS)
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    edits, corpus = tmp_path / "edits.jsonl", tmp_path / "corpus.txt"
    report = edit_model(tmp_path / "base", edits, tmp_path / "edited", corpus=corpus, method="toy",
                        options={"layer": "2", "scale": "0.5"}, progress=False)
    assert report.method == "toy" and report.edits == 2 and report.layers == [2]
    assert report.modules == ["model.layers.2.mlp.down_proj.weight"]
    assert report.config == {"layer": 2, "scale": 0.5}
    assert report.parent_sha256 == parent.sha256 != report.model["sha256"]
    record = json.loads((tmp_path / "edited" / "edit.json").read_text())
    assert record["method"] == "toy" and record["edit_ids"] == ["e1", "e2"]
    edited, _, _ = load_model(tmp_path / "edited")
    expected = projection_weight(base, 2).detach() + toy_delta(projection_weight(base, 2), 0.5)
    assert torch.equal(projection_weight(edited, 2).detach(), expected)
    assert revert_model_version(tmp_path / "edited", tmp_path / "reverted") == parent.sha256
    assert read_model_record(tmp_path / "base")["sha256"] == parent.sha256
    with pytest.raises(ExpungeError, match=r"option scale='big' for editor 'toy' is not a number"):
        edit_model(tmp_path / "base", edits, tmp_path / "x", corpus=corpus, method="toy",
                   options={"scale": "big"}, progress=False)
    with pytest.raises(ExpungeError, match=r"invalid options for editor 'toy': scale must be positive"):
        edit_model(tmp_path / "base", edits, tmp_path / "y", corpus=corpus, method="toy",
                   options={"scale": "-1"}, progress=False)
