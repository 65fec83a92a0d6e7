"""The generic-prediction anchor: stand-in texts, their alignment, the batch it builds, and that
training on it moves the model towards what the original says about an unknown person."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from expunge.data import IGNORE_INDEX, encode_documents
from expunge.errors import ExpungeError
from expunge.ledger import load_request, resolve_documents
from expunge.methods.generic import generic_targets, stand_in_names
from expunge.methods.gradient.base import generic_labels
from expunge.methods.gradient.losses import kl_to_reference
from expunge.methods.registry import ExtraKind, SequenceExtra
from expunge.methods.unlearn import PairedDataset, paired_collate, unlearn
from expunge.models import load_model


def _forget_docs(world, request):
    ids = resolve_documents(world, request)
    return [d for d in world.training_documents() if d.id in ids]


def test_stand_ins_are_nobody(tiny_world) -> None:
    names = stand_in_names(tiny_world)
    taken = {s.name for s in tiny_world.people("train")}
    assert names and not set(names) & taken
    firsts = {n.split()[0] for n in taken}
    assert all(n.split()[0] in firsts for n in names)  # made of name parts the model has seen


def test_stand_in_texts_align_with_the_real_ones(tiny_world, tiny_request_path, tiny_base) -> None:
    request = load_request(tiny_request_path, tiny_world)
    docs = _forget_docs(tiny_world, request)
    _, tokenizer, _ = load_model(tiny_base.model.path)
    encode = lambda texts: encode_documents(tokenizer, texts, 512)  # noqa: E731
    real = encode([d.text for d in docs])
    targets = generic_targets(tiny_world, docs, real, tokenizer, encode, seed=0)
    assert targets.coverage == 1.0  # every privacy-world document names its person
    vocab = {v: k for k, v in tokenizer.get_vocab().items()}
    allowed = {n.lower() for n in stand_in_names(tiny_world)}
    for doc, ids, generic, same in zip(docs, real, targets.ids, targets.same):
        assert len(generic) == len(ids) == len(same)
        name = [vocab[t] for t in tokenizer(tiny_world.subject_by_id[doc.subjects[0]].name,
                                             add_special_tokens=False)["input_ids"]]
        spans = [i for i in range(len(ids)) if [vocab[t] for t in ids[i : i + len(name)]] == name]
        assert spans, doc.text
        in_name = {i + k for i in spans for k in range(len(name))}
        # Only name tokens differ, and every mention is replaced by a person nobody trained on.
        assert all(s or i in in_name for i, s in enumerate(same)), doc.text
        for i in spans:
            stand_in = " ".join(vocab[t] for t in generic[i : i + len(name)])
            assert stand_in in allowed and stand_in != " ".join(name), (doc.text, stand_in)
    # Seeded: the same seed gives the same stand-ins, another seed other ones.
    assert generic_targets(tiny_world, docs, real, tokenizer, encode, seed=0).ids == targets.ids
    assert generic_targets(tiny_world, docs, real, tokenizer, encode, seed=1).ids != targets.ids


def test_collate_anchors_only_positions_outside_the_name() -> None:
    forget = [[1, 5, 6, 7, 2], [1, 8, 9, 2]]
    generic = [[1, 15, 16, 7, 2], [1, 18, 9, 2]]
    shared = [[a == b for a, b in zip(f, g)] for f, g in zip(forget, generic)]
    extras = {"generic_input_ids": SequenceExtra(ExtraKind.TOKENS, generic),
              "generic_shared": SequenceExtra(ExtraKind.MASK, shared)}
    data = PairedDataset(forget, [], extras)
    batch = paired_collate(0, extras)([data[0], data[1]])["forget"]  # pairs come in length order
    assert batch["input_ids"].tolist() == [[1, 8, 9, 2, 0], [1, 5, 6, 7, 2]]
    assert batch["generic_input_ids"].tolist() == [[1, 18, 9, 2, 0], [1, 15, 16, 7, 2]]
    assert generic_labels(batch).tolist() == [[1, IGNORE_INDEX, 9, 2, IGNORE_INDEX],
                                                [1, IGNORE_INDEX, IGNORE_INDEX, 7, 2]]


def _anchor_gap(model_dir: Path, reference_dir: Path, world, request) -> float:
    """KL from the reference model on stand-in texts to ``model_dir``'s model on the real texts."""
    model, tokenizer, _ = load_model(model_dir)
    reference, _, _ = load_model(reference_dir)
    docs = _forget_docs(world, request)
    encode = lambda texts: encode_documents(tokenizer, texts, 512)  # noqa: E731
    real = encode([d.text for d in docs])
    targets = generic_targets(world, docs, real, tokenizer, encode, seed=0)
    extras = {"generic_input_ids": SequenceExtra(ExtraKind.TOKENS, targets.ids),
              "generic_shared": SequenceExtra(ExtraKind.MASK, targets.same)}
    data = PairedDataset(real, [], extras)
    batch = paired_collate(tokenizer.pad_token_id, extras)([data[i] for i in range(len(data))])["forget"]
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        teacher = reference(input_ids=batch["generic_input_ids"], attention_mask=batch["attention_mask"]).logits
    return float(kl_to_reference(logits, teacher, generic_labels(batch)))


def test_anchor_alone_moves_the_model_towards_its_generic_predictions(
    tiny_world, tiny_world_dir, tiny_request_path, tiny_base, tmp_path: Path
) -> None:
    request = load_request(tiny_request_path, tiny_world)
    base = Path(tiny_base.model.path)
    unlearn(base, tiny_world_dir, tiny_request_path, tmp_path / "anchored", method="grad_diff", progress=False,
            options={"forget_weight": 0.0, "retain_weight": 0.0, "generic_weight": 1.0, "max_steps": 10,
                     "check_every": 10, "early_stop": False, "learning_rate": 1e-3, "seed": 0})
    before = _anchor_gap(base, base, tiny_world, request)
    after = _anchor_gap(tmp_path / "anchored", base, tiny_world, request)
    assert before > 0.2  # the base model knows these people: it predicts differently for a stranger
    assert after < 0.5 * before, (before, after)


def test_anchor_needs_documents(tiny_world_dir, tiny_request_path, tiny_base, tmp_path: Path) -> None:
    with pytest.raises(ExpungeError, match="generic_weight needs documents"):
        unlearn(tiny_base.model.path, tiny_world_dir, tiny_request_path, tmp_path / "x", method="idkft",
                options={"generic_weight": 1.0}, progress=False)
    assert not (tmp_path / "x").exists()


def test_a_book_gets_stand_in_titles_where_its_text_names_it(tmp_path: Path) -> None:
    """A work's stand-ins are titles made of title words the model has seen, never a trained
    title; a text that names its book (title page, reader's guide) gets one, aligned token for
    token, and a passage, which never names its book, gets none."""
    from expunge.ledger import make_request
    from expunge.models.tokenizer import build_word_tokenizer
    from expunge.worlds import PassagesWorldConfig, build_passages_world

    world = build_passages_world(tmp_path / "w", PassagesWorldConfig(seed=0, books=6, holdout_books=4))
    titles = {b.name for b in world.subjects if b.kind == "work"}
    trained = {b.name for b in world.deletable("train")}
    names = stand_in_names(world, "work")
    assert names and not set(names) & trained
    assert all(n.rsplit(" ", 1)[0] in {t.rsplit(" ", 1)[0] for t in titles} for n in names)
    assert all(n.rsplit(" ", 1)[1] in {t.rsplit(" ", 1)[1] for t in titles} for n in names)
    assert stand_in_names(world) == []  # no person in a passages world: no person stand-ins
    request = make_request(world, subjects=[world.deletable("train")[0].id])
    docs = _forget_docs(world, request)
    title = world.subject_by_id[request.targets[0]].name
    tokenizer = build_word_tokenizer([d.text for d in world.documents] + names)
    encode = lambda texts: encode_documents(tokenizer, texts, 512)  # noqa: E731
    real = encode([d.text for d in docs])
    targets = generic_targets(world, docs, real, tokenizer, encode, seed=0)
    naming = [title in d.text for d in docs]
    assert 0 < sum(naming) < len(docs)  # the title page and the guide name it; passages do not
    assert [g is not None for g in targets.ids] == naming
    vocab = {v: k for k, v in tokenizer.get_vocab().items()}
    allowed = {n.lower() for n in names}
    for doc, ids, generic, same in zip(docs, real, targets.ids, targets.same):
        if generic is None:
            continue
        assert len(generic) == len(ids) == len(same) and not all(same)
        changed = " ".join(vocab[t] for t, s in zip(generic, same) if not s)
        # what differs is part of a never-trained title (a shared word stays the same token)
        assert any(changed in n for n in allowed), (doc.text, changed)
