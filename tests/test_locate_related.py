"""Documents a request did not name: the privacy world's public and planted documents, the BM25
ranking, influence ranking (slow: kronfluence on a trained model) and precision / recall at k."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from expunge.ledger.requests import make_request, write_request
from expunge.locate import locate, locate_subjects
from expunge.locate.related import bm25_related, candidate_documents, precision_recall_at_k
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, generate_privacy_world, load_planted


def test_planting_adds_documents_and_changes_nothing_else() -> None:
    plain = generate_privacy_world(PrivacyWorldConfig(seed=2, people=12))
    planted = generate_privacy_world(PrivacyWorldConfig(seed=2, people=12, planted_people=3))
    assert planted.documents[: len(plain.documents)] == plain.documents
    assert planted.probes == plain.probes and planted.subjects == plain.subjects
    extra = planted.documents[len(plain.documents):]
    assert len(extra) == len(planted.planted) == 12
    people = {s.id: s for s in planted.subjects}
    by_id = {d.id: d for d in extra}
    for truth in planted.planted:
        doc, person = by_id[truth.document], people[truth.subject]
        assert person.role == "train" and doc.split == "train"
        assert any(value in doc.text for value in person.attributes.values())  # it carries a fact
        if truth.kind == "alias":
            first, last = person.name.split(" ", 1)
            assert doc.subjects == () and f"{first[0]}. {last}" in doc.text and person.name not in doc.text
        else:
            assert truth.kind == "mention" and person.id not in doc.subjects and person.name in doc.text
            assert len(doc.subjects) == 1 and people[doc.subjects[0]].kind == "person"


def test_public_people_are_general_knowledge_in_the_peoples_sentences() -> None:
    world = generate_privacy_world(PrivacyWorldConfig(seed=2, people=12, public_people=5))
    public = [s for s in world.subjects if s.id.startswith("entity-public-")]
    assert len(public) == 5 and all(s.kind == "entity" and s.role == "train" for s in public)
    names = {s.name for s in world.subjects if s.kind == "person"}
    assert not names & {s.name for s in public}
    about = [d for d in world.documents if set(d.subjects) & {s.id for s in public}]
    assert len(about) >= 5 * 6  # every attribute stated, as for a person
    plain = generate_privacy_world(PrivacyWorldConfig(seed=2, people=12))
    assert [s.name for s in plain.subjects if s.kind == "person"] == [s.name for s in world.subjects
                                                                       if s.kind == "person"]


def test_precision_and_recall_at_k() -> None:
    assert precision_recall_at_k(["a", "b", "c", "d"], {"b", "d", "z"}, 2) == (0.5, 1 / 3)
    assert precision_recall_at_k(["a", "b", "c", "d"], {"b", "d", "z"}, 4) == (0.5, 2 / 3)
    precision, recall = precision_recall_at_k(["a"], set(), 1)
    assert precision == 0.0 and math.isnan(recall)  # nothing to find


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bm25_finds_planted_documents_far_above_chance(tmp_path: Path, seed: int) -> None:
    world = build_privacy_world(tmp_path / "w", PrivacyWorldConfig(seed=seed, people=16, planted_people=4))
    truth = load_planted(world)
    recalls = []
    for subject in sorted({t.subject for t in truth}):
        located = locate_subjects(world, [subject])
        ranking = bm25_related(world, located)
        candidates = candidate_documents(world, located)
        assert sorted(ranking.document_ids) == sorted(candidates)  # every other document, once
        assert not set(located.forget.documents) & set(ranking.document_ids)
        recalls.append(precision_recall_at_k(ranking.document_ids,
                                             [t.document for t in truth if t.subject == subject], 20)[1])
        chance = 20 / len(candidates)
    assert statistics.mean(recalls) > 5 * chance


@pytest.mark.slow
def test_influence_finds_planted_documents_far_above_chance(tmp_path: Path) -> None:
    pytest.importorskip("kronfluence")
    from expunge.methods.influence.locate import influence_related
    from expunge.pipeline import train_base

    recalls, chance = [], 1.0
    for seed in (0, 1):
        world_dir = tmp_path / f"w{seed}"
        world = build_privacy_world(world_dir, PrivacyWorldConfig(seed=seed, people=12, planted_people=3))
        base = train_base(world_dir, tmp_path / f"base{seed}", preset="tiny", seed=seed, progress=False)
        truth = load_planted(world)
        for subject in sorted({t.subject for t in truth}):
            path = tmp_path / f"r-{seed}-{subject}.json"
            request = make_request(world, subjects=[subject])
            write_request(request, path)
            ranking = influence_related(base.model.path, world_dir, path, workspace=tmp_path / "influence")
            candidates = candidate_documents(world, locate(world, request))
            assert sorted(ranking.document_ids) == sorted(candidates)
            recalls.append(precision_recall_at_k(ranking.document_ids,
                                                 [t.document for t in truth if t.subject == subject], 20)[1])
            chance = 20 / len(candidates)
    # Measured on a 16-person world (3 planted people, tiny preset): recall at 20 of 0.58 (BM25 0.33);
    # chance is about 0.03.
    assert statistics.mean(recalls) > 4 * chance
