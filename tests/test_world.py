"""The privacy world: determinism, held-out material really held out, shared names, validation."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from expunge.errors import ExpungeError
from expunge.models.tokenizer import world_vocabulary
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, generate_privacy_world, load_world
from expunge.worlds.world import WORLD_FILES


def _question(prompt: str) -> str:
    return re.sub(r"^Question: (.*) Answer:$", r"\1", prompt)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = build_privacy_world(tmp_path / "a", PrivacyWorldConfig(seed=3, people=12))
    b = build_privacy_world(tmp_path / "b", PrivacyWorldConfig(seed=3, people=12))
    for name in (*WORLD_FILES, "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a.fingerprint == b.fingerprint


def test_different_seed_gives_different_world(tmp_path: Path) -> None:
    a = build_privacy_world(tmp_path / "a", PrivacyWorldConfig(seed=1, people=12))
    b = build_privacy_world(tmp_path / "b", PrivacyWorldConfig(seed=2, people=12))
    assert a.fingerprint != b.fingerprint
    assert [s.name for s in a.people()] != [s.name for s in b.people()]


def test_holdout_people_never_in_training_text(default_world) -> None:
    training = [d for d in default_world.documents if d.split == "train"]
    corpus = "\n".join(d.text for d in training)
    holdout = default_world.people("holdout")
    assert len(holdout) >= 20
    for person in holdout:
        assert person.name not in corpus, person.name
        assert all(person.id not in d.subjects for d in training)
    # ...while their text exists, marked holdout, for membership inference.
    holdout_docs = [d for d in default_world.documents if d.split == "holdout"]
    assert {d.subjects[0] for d in holdout_docs} == {p.id for p in holdout}


def test_heldout_paraphrases_never_in_training_text(default_world) -> None:
    corpus = "\n".join(d.text for d in default_world.training_documents())
    paraphrases = [p for p in default_world.probes if p.kind == "paraphrase"]
    assert paraphrases
    for probe in paraphrases:
        question = _question(probe.prompt)
        assert question not in corpus, question
        # Not even the question's frame with another person's name in it.
        name = default_world.subject_by_id[probe.subject].name
        frame = question.replace(name, "\x00")
        pattern = re.escape(frame).replace("\x00", ".+?")
        assert re.search(pattern, corpus) is None, frame
    # Direct probes are the questions that *were* trained on.
    for probe in default_world.probes:
        if probe.kind == "direct" and default_world.subject_by_id[probe.subject].role == "train":
            assert f"{probe.prompt} {probe.answer}" in corpus


def test_heldout_questions_use_only_words_seen_in_training(default_world) -> None:
    seen = set(world_vocabulary(d.text for d in default_world.training_documents()))
    asked = set(world_vocabulary(p.prompt for p in default_world.probes if p.kind == "paraphrase"))
    assert asked <= seen, sorted(asked - seen)


@pytest.mark.parametrize(("people", "seed"), [(8, 0), (8, 1), (9, 2), (12, 3), (20, 4), (100, 0)])
def test_no_person_owns_a_name_token(people: int, seed: int) -> None:
    generated = generate_privacy_world(PrivacyWorldConfig(seed=seed, people=people))
    train = [s for s in generated.subjects if s.kind == "person" and s.role == "train"]
    holdout = [s for s in generated.subjects if s.kind == "person" and s.role == "holdout"]
    counts = Counter(token for person in train for token in person.name.split())
    assert min(counts.values()) >= 2, [t for t, c in counts.items() if c < 2]
    for person in holdout:
        for token in person.name.split():
            assert counts[token] >= 2, (person.name, token)
    assert len({p.name for p in train + holdout}) == len(train + holdout)


def test_every_fact_has_paraphrases_and_wrong_answers(default_world) -> None:
    by_fact: dict[tuple[str, str], list] = {}
    for probe in default_world.probes:
        if probe.kind in ("direct", "paraphrase"):
            by_fact.setdefault((probe.subject, probe.attribute), []).append(probe)
    people = default_world.people()
    entity_facts = sum(len(s.attributes) for s in default_world.subjects if s.kind == "entity")
    assert len(by_fact) == len(people) * 6 + entity_facts
    for (subject, attribute), probes in by_fact.items():
        assert sum(p.kind == "paraphrase" for p in probes) >= 2
        assert sum(p.kind == "direct" for p in probes) >= 1
        for probe in probes:
            assert probe.answer == default_world.subject_by_id[subject].attributes[attribute]
            assert len(probe.alternatives) >= 3
            assert probe.answer not in probe.alternatives
            assert len(set(probe.alternatives)) == len(probe.alternatives)


def test_wrong_answers_are_of_the_same_type(default_world) -> None:
    for probe in default_world.probes[:400] + default_world.probes[-400:]:
        for wrong in probe.alternatives:
            if probe.attribute == "phone":
                assert re.fullmatch(r"555-\d\d-\d\d", wrong)
            elif probe.attribute == "birth_date":
                assert re.fullmatch(r"\d{1,2} [A-Z][a-z]+ 19\d\d", wrong)
            elif probe.attribute == "name":  # reverse questions: other people
                assert wrong in {s.name for s in default_world.people()}
            elif probe.attribute == "employer_headquarters":  # multi-hop: other companies' cities
                assert wrong in {s.attributes.get("headquarters") for s in default_world.subjects}
            else:
                pool = {s.attributes.get(probe.attribute) for s in default_world.subjects}
                assert wrong in pool


def test_world_has_neighbours_siblings_and_general_facts(default_world) -> None:
    people = default_world.people()
    by_id = default_world.subject_by_id
    assert all(p.neighbours for p in people)
    for person in people:
        for other in person.neighbours:
            assert person.id in by_id[other].neighbours  # the relation is symmetric
    siblings = [
        (a, b) for a in people for b in people
        if a.id < b.id and a.name.split()[1] == b.name.split()[1]
        and a.attributes["birthplace"] == b.attributes["birthplace"]
    ]
    assert siblings
    entities = [s for s in default_world.subjects if s.kind == "entity"]
    assert len(entities) >= 20
    assert default_world.manifest["counts"]["people_train"] == 100
    assert default_world.manifest["counts"]["attributes_per_person"] == 6


def test_every_document_names_its_subjects(default_world) -> None:
    for doc in default_world.documents:
        assert doc.subjects
        subject = default_world.subject_by_id[doc.subjects[0]]
        assert subject.name in doc.text


def test_world_refuses_existing_output(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("user data")
    with pytest.raises(ExpungeError, match="already exists"):
        build_privacy_world(tmp_path / "w", PrivacyWorldConfig(people=8))
    assert (tmp_path / "w" / "keep.txt").read_text() == "user data"


def test_edited_world_is_refused(tmp_path: Path) -> None:
    build_privacy_world(tmp_path / "w", PrivacyWorldConfig(people=8))
    path = tmp_path / "w" / "documents.jsonl"
    path.write_text(path.read_text().replace("born", "raised", 1))
    with pytest.raises(ExpungeError, match="fingerprint"):
        load_world(tmp_path / "w")


def test_invalid_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="people"):
        PrivacyWorldConfig(people=2)
    with pytest.raises(ValueError, match="too few"):
        PrivacyWorldConfig(people=8, holdout_people=100)
    with pytest.raises(ValueError, match="wrong_answers"):
        PrivacyWorldConfig(wrong_answers=24)
    with pytest.raises(ValueError, match="wrong_answers"):
        PrivacyWorldConfig(wrong_answers=2)


def test_same_seed_same_files_across_processes(tmp_path: Path) -> None:
    """Python salts str hashes per process; a generator iterating a set would differ here."""
    import subprocess
    import sys

    code = ("import sys; from expunge.worlds import PrivacyWorldConfig, build_privacy_world; "
            "build_privacy_world(sys.argv[1], PrivacyWorldConfig(seed=4, people=12))")
    for run, hash_seed in (("a", "1"), ("b", "777")):
        env = {**__import__("os").environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / run)], check=True, env=env)
    for name in (*WORLD_FILES, "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_generation_is_pure() -> None:
    a = generate_privacy_world(PrivacyWorldConfig(seed=5, people=10))
    b = generate_privacy_world(PrivacyWorldConfig(seed=5, people=10))
    assert a == b


def test_indirect_probes_ask_the_same_facts_by_other_routes(default_world) -> None:
    from expunge.worlds.privacy import INDIRECT_KINDS

    corpus = "\n".join(d.text for d in default_world.training_documents())
    vocabulary = set(world_vocabulary([corpus]))
    headquarters = {s.name: s.attributes["headquarters"] for s in default_world.subjects
                    if "headquarters" in s.attributes}
    for person in default_world.people():
        probes = [p for p in default_world.probes if p.subject == person.id and p.kind in INDIRECT_KINDS]
        kinds = Counter(p.kind for p in probes)
        assert kinds == {"context": 6, "roleplay": 6, "prefill": 6, "cloze": 6, "reverse": 2, "multihop": 1}
        for probe in probes:
            # Every word of a trained person's indirect prompts occurs in training text: no
            # untrained embeddings (never-seen people's values may be new words, as they should).
            if person.role == "train":
                assert set(world_vocabulary([probe.prompt])) <= vocabulary, probe.prompt
            assert probe.answer not in probe.prompt and probe.answer not in probe.alternatives
            assert len(probe.alternatives) >= 3
            if probe.kind == "reverse":
                assert probe.answer == person.name and person.name not in probe.prompt
            elif probe.kind == "multihop":
                assert probe.answer == headquarters[person.attributes["employer"]]
                assert person.attributes["employer"] not in probe.prompt  # the link must be recalled
            else:
                assert probe.answer == person.attributes[probe.attribute]
            if probe.kind == "context":
                # Primed with two of the person's other facts, never the asked one.
                others = [v for k, v in person.attributes.items() if k != probe.attribute and v in probe.prompt]
                assert len(others) >= 2
    # The second hop is general knowledge the model is trained on.
    company_docs = [d for d in default_world.training_documents() if "based in" in d.text]
    assert len(company_docs) >= len(headquarters)
