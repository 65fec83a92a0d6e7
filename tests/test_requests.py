"""Deletion requests: resolution through provenance, and every way a request can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expunge.errors import ExpungeError
from expunge.ledger import load_request, make_request, resolve_documents, write_request
from expunge.locate import locate, split_retain
from expunge.worlds import PrivacyWorldConfig, build_privacy_world


def test_subjects_resolve_to_their_documents(tiny_world) -> None:
    person = tiny_world.people("train")[0]
    request = make_request(tiny_world, subjects=[person.id])
    expected = {d.id for d in tiny_world.training_documents() if person.id in d.subjects}
    assert set(request.document_ids) == expected
    assert expected and resolve_documents(tiny_world, request) == expected
    for doc in tiny_world.documents:
        if doc.id in expected:
            assert person.name in doc.text


def test_random_fraction_is_seeded(tiny_world) -> None:
    a = make_request(tiny_world, random_fraction=0.25, seed=1, received_at="t")
    b = make_request(tiny_world, random_fraction=0.25, seed=1, received_at="t")
    c = make_request(tiny_world, random_fraction=0.25, seed=2, received_at="t")
    assert a == b and len(a.targets) == 2
    assert a.targets != c.targets or a.id != c.id


def test_unknown_subject(tiny_world) -> None:
    with pytest.raises(ExpungeError, match="unknown subject id 'person-9999'") as info:
        make_request(tiny_world, subjects=["person-9999"])
    assert "person-0000" in info.value.fix


def test_holdout_subject_removes_nothing(tiny_world) -> None:
    holdout = tiny_world.people("holdout")[0]
    with pytest.raises(ExpungeError, match="never-seen"):
        make_request(tiny_world, subjects=[holdout.id])


def test_empty_request(tiny_world) -> None:
    with pytest.raises(ExpungeError, match="removes nothing"):
        make_request(tiny_world)


def test_document_ids(tiny_world) -> None:
    doc = tiny_world.training_documents()[3]
    assert make_request(tiny_world, documents=[doc.id]).document_ids == (doc.id,)
    with pytest.raises(ExpungeError, match="not a training document"):
        make_request(tiny_world, documents=["doc-999999"])


def test_file_round_trip_and_world_mismatch(tiny_world, tmp_path: Path) -> None:
    request = make_request(tiny_world, subjects=[tiny_world.people("train")[1].id])
    write_request(request, tmp_path / "r.json")
    assert load_request(tmp_path / "r.json", tiny_world) == request
    with pytest.raises(ExpungeError, match="already exists"):
        write_request(request, tmp_path / "r.json")
    other = build_privacy_world(tmp_path / "other", PrivacyWorldConfig(seed=9, people=8))
    with pytest.raises(ExpungeError, match="different world"):
        load_request(tmp_path / "r.json", other)


def test_malformed_request_file(tiny_world, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"kind": "privacy",\n "targets": [}')
    with pytest.raises(ExpungeError, match=r"r.json:2: malformed JSON"):
        load_request(path, tiny_world)
    path.write_text(json.dumps({"id": "r", "kind": "privacy", "targets": [], "document_ids": [],
                                "world_fingerprint": tiny_world.fingerprint}))
    with pytest.raises(ExpungeError, match="removes nothing"):
        load_request(path, tiny_world)


def _edited(path: Path, **changes) -> Path:
    data = json.loads(path.read_text())
    data.update(changes)
    out = path.with_name("edited-" + path.name)
    out.write_text(json.dumps(data))
    return out


def test_a_hand_edited_request_is_refused_naming_both_sides(tiny_world, tmp_path: Path) -> None:
    people = [s.id for s in tiny_world.people("train")]
    request = make_request(tiny_world, subjects=[people[0]])
    write_request(request, tmp_path / "r.json")
    # The targets changed but not the document ids: expunge would unlearn person 0 under person 1's name.
    edited = _edited(tmp_path / "r.json", targets=[people[1]])
    with pytest.raises(ExpungeError, match="disagrees with the world's provenance") as info:
        load_request(edited, tiny_world)
    message = str(info.value)
    assert f"targets {people[1]} resolve to" in message  # what the world says...
    assert f"about {people[0]}" in message  # ...and what the file holds instead
    assert "never edit a request file by hand" in info.value.fix
    # A document dropped from document_ids (the oracle would keep it).
    dropped = _edited(tmp_path / "r.json", document_ids=list(request.document_ids[1:]))
    with pytest.raises(ExpungeError, match=rf"not in document_ids: {request.document_ids[0]}"):
        load_request(dropped, tiny_world)
    # A document about someone else slipped in.
    other = next(d.id for d in tiny_world.training_documents() if people[0] not in d.subjects)
    added = _edited(tmp_path / "r.json", document_ids=sorted([*request.document_ids, other]))
    with pytest.raises(ExpungeError, match=rf"about no target and not named: {other}"):
        load_request(added, tiny_world)
    # Targets and documents edited consistently, but not the id.
    swapped = make_request(tiny_world, subjects=[people[1]])
    forged = _edited(tmp_path / "r.json", targets=list(swapped.targets), document_ids=list(swapped.document_ids))
    with pytest.raises(ExpungeError, match=f"request id '{request.id}' does not match its content"):
        load_request(forged, tiny_world)


def test_named_documents_round_trip(tiny_world, tmp_path: Path) -> None:
    person = tiny_world.people("train")[0].id
    doc = next(d.id for d in tiny_world.training_documents() if person not in d.subjects)
    request = make_request(tiny_world, subjects=[person], documents=[doc])
    assert request.named_documents == (doc,) and doc in request.document_ids
    write_request(request, tmp_path / "r.json")
    assert load_request(tmp_path / "r.json", tiny_world) == request


def test_the_retained_documents_split_into_retain_term_and_scored(tiny_world) -> None:
    request = make_request(tiny_world, subjects=[tiny_world.people("train")[0].id])
    located = locate(tiny_world, request)
    split = split_retain(tiny_world, located)
    train, kept = set(split.train.documents), set(split.kept.documents)
    # Disjoint, and together exactly what stays.
    assert train and kept and not train & kept
    assert train | kept == set(located.retain.documents)
    # By subject: no subject has documents on both sides; people and general entities on both.
    by_id = {d.id: d for d in tiny_world.documents}
    train_subjects = {s for i in train for s in by_id[i].subjects}
    kept_subjects = {s for i in kept for s in by_id[i].subjects}
    assert not train_subjects & kept_subjects and set(split.train.subjects) == train_subjects
    assert abs(len(train_subjects) - len(kept_subjects)) <= 1
    kinds = {tiny_world.subject_by_id[s].kind for s in train_subjects}
    assert kinds == {tiny_world.subject_by_id[s].kind for s in kept_subjects} == {"person", "entity"}
    # Deterministic for the request, different for another request.
    assert split_retain(tiny_world, locate(tiny_world, request)) == split
    other = make_request(tiny_world, subjects=[tiny_world.people("train")[1].id])
    assert set(split_retain(tiny_world, locate(tiny_world, other)).train.subjects) != train_subjects
    with pytest.raises(ValueError, match="strictly between"):
        split_retain(tiny_world, located, share=1.0)
