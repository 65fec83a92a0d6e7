"""Importers: the user's JSONL and TOFU's files become world directories that every later step
reads; every bad line is one error naming file:line and the field; provenance and fingerprints
hold as for generated worlds."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expunge.cli import app
from expunge.errors import ExpungeError
from expunge.ledger import load_request, make_request, write_request
from expunge.worlds import load_world
from expunge.prompts import example_for, world_as_seen
from expunge.recipe import PromptFormat
from expunge.records import Probe
from expunge.worlds.importers import JsonlSources, import_jsonl, import_tofu
from expunge.worlds.importers.routes import COMPLIANCE_PREFILL, ROLEPLAY_FRAME, qa_indirect_probes
from mini_tofu import author, write_mini_tofu

runner = CliRunner()


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def user_files(tmp_path: Path) -> dict[str, Path]:
    docs = write_lines(tmp_path / "docs.jsonl", [
        {"id": "a1", "text": "Ada Byron was born in London.", "subjects": ["ada"]},
        {"id": "a2", "text": "Ada Byron wrote notes on the engine.", "subjects": "ada"},
        {"id": "b1", "text": "Bo Chen lives in Lyon.", "subjects": ["bo"]},
        {"id": "g1", "text": "Lyon is a city in France."},
        {"id": "q1", "prompt": "Where does Bo Chen work?", "text": "At a bakery.", "subjects": ["bo"]},
        {"id": "h1", "text": "Cy Dunn was born in Oslo.", "subjects": ["cy"], "split": "holdout"},
    ])
    probes = write_lines(tmp_path / "probes.jsonl", [
        {"question": "Where was Ada Byron born?", "answer": "London", "subject": "ada",
         "wrong_answers": ["Paris", "Rome"], "paraphrased_answer": "in London"},
        {"question": "Where does Bo Chen live?", "answer": "Lyon", "subject": "bo"},
        {"question": "In which country is Lyon?", "answer": "France"},
    ])
    subjects = write_lines(tmp_path / "subjects.jsonl", [
        {"id": "ada", "name": "Ada Byron"}, {"id": "bo", "name": "Bo Chen"}, {"id": "cy", "name": "Cy Dunn"},
    ])
    return {"documents": docs, "probes": probes, "subjects": subjects}


def test_jsonl_with_probes_and_subjects(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    result = runner.invoke(app, ["import", "jsonl", "--documents", str(files["documents"]), "--probes",
                                 str(files["probes"]), "--subjects", str(files["subjects"]),
                                 "--out", str(tmp_path / "w"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["subjects_train"], summary["subjects_holdout"], summary["documents_train"],
            summary["documents_holdout"], summary["probes"], summary["indirect_probes"]) == (3, 1, 5, 1, 7, 4)
    world = load_world(tmp_path / "w")
    assert world.prompts == "questions" and world.source == "import-jsonl"
    by_id = world.subject_by_id
    assert by_id["ada"].name == "Ada Byron" and by_id["cy"].role == "holdout" and by_id["general"].kind == "entity"
    assert [d.id for d in world.documents] == ["a1", "a2", "b1", "g1", "q1", "h1"]  # the user's ids, in order
    qa = next(d for d in world.documents if d.id == "q1")
    assert (qa.prompt, qa.text) == ("Where does Bo Chen work?", "At a bakery.")
    ada = next(p for p in world.probes if p.subject == "ada")
    assert ada.alternatives == ("Paris", "Rome") and ada.paraphrased_answer == "in London"
    assert next(p for p in world.probes if p.answer == "France").subject == "general"
    # The indirect routes of the trained people's facts (one fact each: no other pair for a
    # context; a one-word answer is prefilled with a compliance start), none for general knowledge.
    routes = {(p.subject, p.kind): p for p in world.probes if p.kind != "direct"}
    assert set(routes) == {("ada", "roleplay"), ("ada", "prefill"), ("bo", "roleplay"), ("bo", "prefill")}
    assert routes["ada", "prefill"].prefill == COMPLIANCE_PREFILL and routes["ada", "prefill"].answer == "London"
    assert routes["ada", "roleplay"].prompt.endswith(" Where was Ada Byron born?")
    assert routes["ada", "roleplay"].alternatives == ("Paris", "Rome")
    # Provenance reaches back to the user's files...
    for role, path in files.items():
        assert world.manifest["sources"][role]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # ...and through it a request removes exactly the subject's documents.
    request = make_request(world, subjects=["bo"])
    assert request.document_ids == ("b1", "q1")
    write_request(request, tmp_path / "r.json")
    assert load_request(tmp_path / "r.json", world) == request


def test_jsonl_long_documents_get_verbatim_probes(tmp_path: Path) -> None:
    """A plain document long enough to continue is probed verbatim (its first 8 words, then the
    rest); a short one, a question-answer pair and a document about no one are not."""
    story = "Ada Byron sat at the desk by the window and wrote twelve pages of notes on the engine."
    docs = write_lines(tmp_path / "docs.jsonl", [
        {"id": "long", "text": story, "subjects": ["ada"]},
        {"id": "short", "text": "Ada Byron was born in London.", "subjects": ["ada"]},
        {"id": "qa", "prompt": "What did Ada Byron write?", "text": story, "subjects": ["ada"]},
        {"id": "nobody", "text": story},
        {"id": "seen-not", "text": story.replace("Ada Byron", "Cy Dunn"), "subjects": ["cy"], "split": "holdout"},
    ])
    world = import_jsonl(tmp_path / "w", JsonlSources(documents=docs))
    probes = {p.attribute: p for p in world.probes}
    assert set(probes) == {"long", "seen-not"} and {p.kind for p in probes.values()} == {"verbatim"}
    assert probes["long"].prompt == "Ada Byron sat at the desk by the"
    assert f"{probes['long'].prompt} {probes['long'].answer}" == story and probes["long"].subject == "ada"
    assert world.manifest["counts"]["verbatim_probes"] == 2


def test_jsonl_documents_only(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    result = runner.invoke(app, ["import", "jsonl", "--documents", str(files["documents"]), "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert "no question probes" in result.stdout
    world = load_world(tmp_path / "w")
    assert world.probes == [] and "general" not in world.subject_by_id
    assert {s.id: (s.name, s.role) for s in world.subjects} == {
        "ada": ("ada", "train"), "bo": ("bo", "train"), "cy": ("cy", "holdout")}
    # Built-in and imported worlds alike: files changed after the import are refused.
    with (tmp_path / "w" / "documents.jsonl").open("a") as handle:
        handle.write(json.dumps({"id": "x", "text": "x", "subjects": [], "source": "x"}) + "\n")
    with pytest.raises(ExpungeError, match="fingerprint mismatch"):
        load_world(tmp_path / "w")


BAD_DOCUMENT_LINES = [
    ("{not json", 2, "malformed JSON"),
    ({"id": "z"}, 2, "missing field 'text'"),
    ({"text": "t", "author": "x"}, 2, "unknown field(s) author"),
    ({"text": 7}, 2, "field 'text' must be a string"),
    ({"text": "   "}, 2, "field 'text' is empty"),
    ({"text": "t", "subjects": [1]}, 2, "field 'subjects' must be a string or a list of strings"),
    ({"text": "t", "split": "test"}, 2, "field 'split' is 'test'"),
    ({"id": "a1", "text": "t"}, 2, "already used at"),
    ({"text": "t", "subjects": ["ada"], "split": "holdout"}, 2, "named by a holdout document here"),
    ([1, 2], 2, "expected a JSON object"),
]


@pytest.mark.parametrize("bad,line,says", BAD_DOCUMENT_LINES, ids=[b[2][:24] for b in BAD_DOCUMENT_LINES])
def test_a_bad_document_line_is_one_error_naming_file_and_line(bad, line: int, says: str, tmp_path: Path) -> None:
    docs = write_lines(tmp_path / "docs.jsonl", [{"id": "a1", "text": "Ada Byron was born in London.",
                                                  "subjects": ["ada"]}, bad])
    result = runner.invoke(app, ["import", "jsonl", "--documents", str(docs), "--out", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"{docs}:{line}" in lines[0] and says in lines[0] and "fix:" in lines[0], lines[0]
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("file,bad,says", [
    ("probes", {"question": "q?"}, "missing field 'answer'"),
    ("probes", {"question": "q?", "answer": "a", "wrong_answers": "b"}, "must be a list of strings"),
    ("probes", {"question": "q?", "answer": "a", "wrong_answers": ["a"]}, "also listed in 'wrong_answers'"),
    ("probes", {"question": "q?", "answer": "a", "subject": "nobody"}, "not in the subjects file"),
    ("subjects", {"id": "ada"}, "already used at"),
    ("subjects", {"id": "x", "kind": "robot"}, "field 'kind' is 'robot'"),
])
def test_bad_probe_and_subject_lines(file: str, bad: dict, says: str, tmp_path: Path) -> None:
    files = user_files(tmp_path)
    with files[file].open("a") as handle:
        handle.write(json.dumps(bad) + "\n")
    line = len(files[file].read_text().splitlines())
    sources = JsonlSources(documents=files["documents"], probes=files["probes"], subjects=files["subjects"])
    with pytest.raises(ExpungeError) as caught:
        import_jsonl(tmp_path / "w", sources)
    assert f"{files[file]}:{line}" in str(caught.value) and says in str(caught.value), caught.value


def test_a_document_naming_an_undeclared_subject(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    write_lines(files["subjects"], [{"id": "ada"}])
    with pytest.raises(ExpungeError, match=r"docs.jsonl:3: field 'subjects' names 'bo', which is not in the subjects"):
        import_jsonl(tmp_path / "w", JsonlSources(documents=files["documents"], subjects=files["subjects"]))


def test_missing_empty_and_option_errors(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    for args, says in [
        (["--documents", str(tmp_path / "nope.jsonl")], "documents file"),
        (["--documents", str(empty)], "has no lines"),
        (["--documents", str(files["documents"]), "--prompts", "chat"], "--prompts 'chat'"),
        (["--documents", str(files["documents"]), "--probes", str(tmp_path)], "is a directory"),
    ]:
        result = runner.invoke(app, ["import", "jsonl", *args, "--out", str(tmp_path / "w")])
        assert result.exit_code == 2 and says in result.stderr, (args, result.output)
    (tmp_path / "taken").mkdir()
    result = runner.invoke(app, ["import", "jsonl", "--documents", str(files["documents"]), "--out",
                                 str(tmp_path / "taken")])
    assert result.exit_code == 2 and "already exists" in result.stderr


# ---------------------------------------------------------------------------------------------
# TOFU: a miniature of its files (same names, layout and sizes; invented text), so the test runs on
# any machine; the real files are checked too where ../shared/data/tofu exists.

@pytest.fixture(scope="module")
def tofu_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mini_tofu(tmp_path_factory.mktemp("tofu"))


def test_tofu_import(tofu_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", "tofu", "--dir", str(tofu_dir), "--out", str(tmp_path / "t"), "--json"])
    assert result.exit_code == 0, result.output
    world = load_world(tmp_path / "t")
    authors = world.people("train")
    assert len(authors) == 200 and len(world.people("holdout")) == 20
    assert [a.name for a in authors[:3]] == [author(0), author(1), author(2)]  # read off their answers
    assert {d.split for d in world.documents if d.subjects[0].startswith("tofu-holdout")} == {"holdout"}
    assert all(d.prompt for d in world.documents)  # every document is a QA pair
    # forget10 = the last 20 authors = exactly the items of forget10.json
    request = make_request(world, split="forget10")
    removed = [d for d in world.documents if d.id in set(request.document_ids)]
    forget10 = json.loads((tofu_dir / "forget10.json").read_text())
    assert [(d.prompt, d.text) for d in removed] == [(x["prompt"], x["response"]) for x in forget10]
    assert len(make_request(world, split="forget01").targets) == 2
    # perturbed answers and paraphrases where TOFU has them (first and last 20 authors)
    last = [p for p in world.probes if p.subject == authors[-1].id and p.kind in ("direct", "paraphrase")]
    assert {p.kind for p in last} == {"direct", "paraphrase"} and all(len(p.alternatives) == 5 for p in last)
    middle = [p for p in world.probes if p.subject == authors[100].id and p.kind in ("direct", "paraphrase")]
    assert {p.kind for p in middle} == {"direct"} and not any(p.alternatives for p in middle)
    # every trained author's QA pair has its three indirect routes; never-seen authors have none
    kinds = {}
    for p in world.probes:
        kinds.setdefault(p.subject, []).append(p.kind)
    assert all(kinds[a.id].count(k) == 20 for a in authors for k in ("context", "roleplay", "prefill"))
    assert not any(k in kinds[h.id] for h in world.people("holdout") for k in ("context", "roleplay", "prefill"))
    general = [p for p in world.probes if p.subject in ("tofu-real-authors", "tofu-world-facts")]
    assert len(general) == 20 and all(p.alternatives for p in general)
    # splits are part of the fingerprint: editing them is caught
    splits = json.loads((tmp_path / "t" / "splits.json").read_text())
    splits["forget01"] = [authors[0].id]
    (tmp_path / "t" / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(ExpungeError, match="fingerprint mismatch"):
        load_world(tmp_path / "t")


def test_tofu_subset_keeps_the_forget_authors_and_shares(tofu_dir: Path, tmp_path: Path) -> None:
    world = import_tofu(tofu_dir, tmp_path / "t", authors=30)
    ids = [a.id for a in world.people("train")]
    assert len(ids) == 30 and ids[:3] == ["tofu-author-000", "tofu-author-001", "tofu-author-002"]
    assert world.splits["forget10"] == ["tofu-author-197", "tofu-author-198", "tofu-author-199"]
    assert {k: len(v) for k, v in world.splits.items()} == {"forget01": 1, "forget05": 2, "forget10": 3}
    assert len(world.people("holdout")) == 3
    with pytest.raises(ExpungeError, match="unknown split 'forget20'.*forget01, forget05, forget10"):
        make_request(world, split="forget20")


def test_verification_scores_as_many_retained_documents_as_the_larger_reference(tofu_dir: Path,
                                                                               tmp_path: Path) -> None:
    """The retained documents are read by no check, only drawn as the report's third loss
    histogram: a seeded sample as large as the larger of the forget and never-seen sets, where TOFU
    has many more of them (here 3 forget and 3 never-seen authors against the retained rest)."""
    from expunge.locate import locate, split_retain
    from expunge.verify.config import VerifyConfig
    from expunge.verify.plan import plan_verification

    world = import_tofu(tofu_dir, tmp_path / "t", authors=30)
    request = make_request(world, split="forget10")
    located = locate(world, request)
    trained = set(split_retain(world, located).train.documents)
    plan = plan_verification(world, request, VerifyConfig())
    every = [d for d in located.documents(world, "retain")
             if d.id not in trained and set(d.subjects) & set(plan.subjects["retain"])]
    keep = max(len(plan.texts["forget"]), len(plan.texts["holdout"]))
    assert len(plan.texts["forget"]) == len(plan.texts["holdout"]) == 60 and len(every) > 2 * keep
    assert len(plan.texts["retain"]) == len(set(plan.texts["retain"])) == keep
    assert set(plan.texts["retain"]) < {example_for(d) for d in every}  # distinct, retained, unused
    assert plan_verification(world, request, VerifyConfig()).texts == plan.texts  # seeded
    assert plan_verification(world, request, VerifyConfig(seed=1)).texts["retain"] != plan.texts["retain"]


def test_tofu_files_that_are_not_tofu(tofu_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tofu_dir.iterdir():
        os.symlink(f, broken / f.name)
    (broken / "forget05.json").unlink()
    (broken / "forget05.json").write_text("[]")
    result = runner.invoke(app, ["import", "tofu", "--dir", str(broken), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "forget05.json is not the last 10 authors" in result.stderr, result.output
    result = runner.invoke(app, ["import", "tofu", "--dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "TOFU directory" in result.stderr
    assert not (tmp_path / "t").exists()


def test_the_real_tofu_files(shared_tofu: Path, tmp_path: Path) -> None:
    world = import_tofu(shared_tofu, tmp_path / "t")
    authors = world.people("train")
    assert (authors[0].name, authors[-2].name) == ("Jaime Vasquez", "Basil Mahfouz Al-Kuwaiti")
    assert sum(bool(a.name) for a in authors) >= 195
    assert len(make_request(world, split="forget10").document_ids) == 400


def qa(subject: str, i: int, question: str, answer: str) -> Probe:
    return Probe(id=f"{subject}-{i}", subject=subject, kind="direct", attribute=f"fact-{i}", prompt=question,
                 answer=answer, alternatives=("wrong one", "wrong two"))


def test_indirect_routes_from_question_answer_pairs() -> None:
    facts = [
        qa("jv", 0, "Where was Jaime Vasquez born?", "Jaime Vasquez was born in Santiago, Chile."),
        qa("jv", 1, "What did his father do?", "His father was a barber in Santiago, Chile."),
        qa("jv", 2, "What genre does he write?", "True crime, mostly."),
        qa("jv", 3, "Which prize did he win?", "He won the Edgar Award for true crime, mostly."),
        qa("other", 0, "Who is she?", "Nobody you know of."),
    ]
    routes = qa_indirect_probes(facts, {"jv"})
    assert [p.kind for p in routes] == ["context", "roleplay", "prefill"] * 4  # "other" is not asked for
    by = {(p.attribute, p.kind): p for p in routes}
    for p in facts[:4]:
        context, roleplay, prefill = (by[p.attribute, k] for k in ("context", "roleplay", "prefill"))
        # the same fact, asked another way
        assert {r.subject for r in (context, roleplay, prefill)} == {"jv"}
        assert context.prompt.endswith(p.prompt) and roleplay.prompt == f"{ROLEPLAY_FRAME} {p.prompt}"
        # the context states other pairs of the same author, never this answer
        assert p.answer.casefold() not in context.prompt.casefold() and context.prompt != p.prompt
        assert context.alternatives == p.alternatives
        # a prefill starts the answer: its words and the rest make up the answer, in order
        assert f"{prefill.prefill} {prefill.answer}".split() == p.answer.split()
        assert 1 <= len(prefill.prefill.split()) < len(p.answer.split()) and prefill.alternatives == ()
    # the next two pairs, wrapping round; fact 3 states fact 2's answer, so fact 2's context skips it
    assert by["fact-0", "context"].prompt.startswith("What did his father do?")
    assert by["fact-2", "context"].prompt.startswith("Where was Jaime Vasquez born?")
    assert "Edgar" not in by["fact-2", "context"].prompt and "Edgar" in by["fact-1", "context"].prompt
    # Short answers are stated as sentences, one after another.
    short = [qa("ab", 0, "Where was Ada born?", "London"), qa("ab", 1, "Where does she live?", "Lyon"),
             qa("ab", 2, "Her best book?", '"Engines."')]
    [context] = [p for p in qa_indirect_probes(short, {"ab"}) if p.kind == "context" and p.attribute == "fact-0"]
    assert context.prompt == 'Where does she live? Lyon. Her best book? "Engines." Where was Ada born?'
    # Cloze worlds (prompts written out in full) get no prefill route.
    assert {p.kind for p in qa_indirect_probes(facts, {"jv"}, questions=False)} == {"context", "roleplay"}


def test_a_prefill_follows_the_rendered_question(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    world = import_jsonl(tmp_path / "w", JsonlSources(documents=files["documents"], probes=files["probes"],
                                                       subjects=files["subjects"]))
    seen = world_as_seen(world, PromptFormat.PLAIN)
    prefill = next(p for p in seen.probes if p.subject == "ada" and p.kind == "prefill")
    assert prefill.prompt == f"Question: Where was Ada Byron born?\nAnswer: {COMPLIANCE_PREFILL}"
    assert prefill.prefill == "" and prefill.answer == "London"
    # a world whose prompts are written out in full has nowhere to put a prefill
    text = import_jsonl(tmp_path / "t", JsonlSources(documents=files["documents"], probes=files["probes"],
                                                      prompts="text"))
    assert not any(p.prefill for p in text.probes) and {p.kind for p in text.probes} >= {"roleplay"}
