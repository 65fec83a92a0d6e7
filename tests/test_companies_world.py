"""The companies world: facts that change, update requests and the probes that check them."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from expunge.records import FactEdit, Probe, read_jsonl
from expunge.worlds import CompaniesWorldConfig, build_companies_world, generate_companies_world, load_world
from expunge.worlds.companies import RELATIONS


@pytest.fixture(scope="module")
def generated():
    return generate_companies_world(CompaniesWorldConfig(seed=0, companies=40, edits=20, reading_documents=50))


def test_same_seed_same_files(tmp_path: Path) -> None:
    config = CompaniesWorldConfig(seed=3, companies=12, edits=5)
    a = build_companies_world(tmp_path / "a", config)
    b = build_companies_world(tmp_path / "b", config)
    for name in ("subjects.jsonl", "documents.jsonl", "probes.jsonl", "edits.jsonl", "edit_probes.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a.fingerprint == b.fingerprint
    assert build_companies_world(tmp_path / "c", CompaniesWorldConfig(seed=4, companies=12, edits=5)).fingerprint \
        != a.fingerprint
    # The update requests are recorded in the manifest by hash, and load back as records.
    loaded = load_world(tmp_path / "a")
    for name, digest in loaded.manifest["extra_files"].items():
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).hexdigest() == digest
    assert len(read_jsonl(tmp_path / "a" / "edits.jsonl", FactEdit)) == 5


def test_companies_own_their_name_token_people_share_theirs(generated) -> None:
    companies = [s for s in generated.subjects if s.id.startswith("company-")]
    assert len(companies) == 40 and len({c.name.lower() for c in companies}) == 40
    assert all(len(c.name.split()) == 1 for c in companies)  # the editors' lookup token is the company's
    people = [s for s in generated.subjects if s.kind == "person"]
    other_words = {w.lower() for p in people for w in p.name.split()} | {c.attributes["headquarters"].lower()
                                                                          for c in companies}
    assert not other_words & {c.name.lower() for c in companies}


def test_every_company_has_every_relation(generated) -> None:
    companies = [s for s in generated.subjects if s.id.startswith("company-")]
    ceos = [c.attributes["ceo"] for c in companies]
    assert len(set(ceos)) == len(ceos)
    for company in companies:
        facts = {(p.attribute, p.kind) for p in generated.probes if p.subject == company.id}
        for relation in RELATIONS:
            assert {(relation, "direct"), (relation, "paraphrase"), (relation, "alias")} <= facts
        assert ("company", "reverse") in facts and ("ceo", "multihop") in facts


def test_heldout_questions_never_in_training_text(generated) -> None:
    corpus = "\n".join(d.text for d in generated.documents)
    for probe in generated.probes:
        question = re.sub(r"^Question: (.*) Answer:$", r"\1", probe.prompt)
        if probe.kind == "direct":
            assert f"{probe.prompt} {probe.answer}" in corpus
        else:
            assert question not in corpus, question
        assert probe.answer not in probe.alternatives and len(probe.alternatives) >= 3


def test_update_requests_and_their_probes(generated) -> None:
    companies = {s.id: s for s in generated.subjects if s.id.startswith("company-")}
    ceos = {c.attributes["ceo"] for c in companies.values()}
    people = {s.name for s in generated.subjects if s.kind == "person"}
    assert len(generated.edits) == 20 and len({e.subject for e in generated.edits}) == 20
    for edit in generated.edits:
        company = companies[edit.subject]
        assert edit.subject_name == company.name and edit.target_old == company.attributes["ceo"]
        assert edit.target_new not in ceos and edit.target_new not in people  # leads nothing yet
        assert edit.prompt.format(edit.subject_name) == f"The CEO of {company.name} is"
        mine = [p for p in generated.edit_probes if p.id.startswith(edit.id + "/")]
        assert Counter(p.kind for p in mine) == {"direct": 2, "paraphrase": 2, "alias": 1, "multihop": 2,
                                                 "reverse": 1}
        for probe in mine:
            if probe.kind == "reverse":  # "Which company does <new CEO> lead?"
                assert probe.answer == company.name and edit.target_new in probe.prompt
            else:
                assert probe.answer == edit.target_new and probe.alternatives[0] == edit.target_old
    # Neighbourhood and the subject's other relations stay as they were: plain world probes.
    edited = {e.subject for e in generated.edits}
    assert any(p.subject not in edited and p.attribute == "ceo" for p in generated.probes)
    assert any(p.subject in edited and p.attribute == "headquarters" for p in generated.probes)


def test_bad_options_and_records() -> None:
    with pytest.raises(ValueError, match="edits"):
        CompaniesWorldConfig(companies=10, edits=11)
    with pytest.raises(ValueError, match="companies"):
        CompaniesWorldConfig(companies=2)
    with pytest.raises(ValueError, match="exactly one"):
        FactEdit("e", "c", "Y", "ceo", "The CEO of Y is", "X", "Z")
    with pytest.raises(ValueError, match="differ"):
        FactEdit("e", "c", "Y", "ceo", "The CEO of {} is", "X", "X")
    assert Probe("p", "s", "alias", "ceo", "Q", "A").kind == "alias"


def test_cli_world_companies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from expunge.cli import app

    result = CliRunner().invoke(app, ["world", "companies", "--out", str(tmp_path / "w"), "--companies", "12",
                                      "--edits", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["companies"] == 12 and data["edits"] == 4 and data["people"] == 24
    bad = CliRunner().invoke(app, ["world", "companies", "--out", str(tmp_path / "x"), "--companies", "4",
                                   "--edits", "9"])
    assert bad.exit_code == 2


def test_reading_documents_answer_from_their_context_about_invented_companies(generated) -> None:
    readers = {s.id: s for s in generated.subjects if s.id.startswith("reading-")}
    world_names = {s.name for s in generated.subjects if not s.id.startswith("reading-")}
    assert readers and not {r.name for r in readers.values()} & world_names
    # No reading document names anyone else in the world as a CEO, least of all an edit's new CEO.
    people = {s.name for s in generated.subjects if s.kind == "person"} | {e.target_new for e in generated.edits}
    reading_text = " ".join(d.text for d in generated.documents if d.text.startswith("Context: "))
    assert not [p for p in people if p in reading_text]
    reading = [d for d in generated.documents if d.text.startswith("Context: ")]
    assert len(reading) == 50
    questions = [d for d in reading if " Question: " in d.text]
    assert 0 < len(questions) < len(reading)  # questions and statements
    for doc in reading:
        assert doc.subjects and set(doc.subjects) <= set(readers)
    for doc in questions:
        context, _, rest = doc.text.partition(" Question: ")
        assert rest.rsplit(" Answer: ", 1)[1] in context  # the answer can only come from the context
    # Values are drawn per document: the same company is asked about with different answers.
    answers: dict[str, set[str]] = {}
    for doc in questions:
        question, answer = doc.text.partition(" Question: ")[2].rsplit(" Answer: ", 1)
        answers.setdefault(question, set()).add(answer)
    assert any(len(a) > 1 for a in answers.values())
