"""`expunge import text`: a user's own texts as works cut into passages, each probed verbatim."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expunge.cli import app
from expunge.errors import ExpungeError
from expunge.ledger import make_request
from expunge.worlds import load_world
from expunge.worlds.importers import TextSources, import_text
from expunge.worlds.importers.text import split_passages

runner = CliRunner()


def _story(name: str, sentences: int) -> str:
    return "\n\n".join(f"{name} walked to the harbour on day {i} and counted {i + 3} boats.  "
                       f"Nobody followed {name} there." for i in range(sentences))


def test_split_passages_keeps_the_text_and_cuts_at_sentence_ends() -> None:
    text = 'He said "Go." Then she   left!\nWhy? ' + " ".join(["w"] * 10) + ". Tail end."
    # 'He said "Go."' (3 words) is short of 5, so the next sentence joins it; "Tail end." (2 words,
    # under the minimum of 3) joins the passage before it.
    assert split_passages(text, passage_words=5, min_words=3) == [
        'He said "Go." Then she left!', "Why? " + "w " * 9 + "w. Tail end."]
    run_on = " ".join(f"x{i}" for i in range(25))  # no punctuation at all: cut every 2 x 5 words
    assert [len(p.split()) for p in split_passages(run_on, 5, 3)] == [10, 10, 5]


def test_import_text_writes_works_passages_and_verbatim_probes(tmp_path: Path) -> None:
    book = tmp_path / "harbour.txt"
    book.write_text(_story("Mira", 12), encoding="utf-8")
    other = tmp_path / "other.txt"
    other.write_text(_story("Tomas", 8), encoding="utf-8")
    unseen = tmp_path / "unseen.txt"
    unseen.write_text(_story("Olga", 8), encoding="utf-8")
    world = import_text(tmp_path / "w", TextSources(files=(book, other), titles=("The Harbour", "Other Days"),
                                                    holdout=(unseen,), passage_words=30, prompt_words=8))
    works = {s.name: s for s in world.subjects}
    assert {n: (s.kind, s.role) for n, s in works.items()} == {
        "The Harbour": ("work", "train"), "Other Days": ("work", "train"), "unseen": ("work", "holdout")}
    harbour = works["The Harbour"].id
    passages = [d for d in world.documents if d.subjects == (harbour,)]
    assert " ".join(d.text for d in passages) == " ".join(book.read_text().split())
    assert all(d.split == "train" and d.source == "harbour.txt" for d in passages)
    assert {d.split for d in world.documents if d.subjects == (works["unseen"].id,)} == {"holdout"}
    probes = {p.attribute: p for p in world.probes}
    assert set(probes) == {d.id for d in world.documents} and {p.kind for p in world.probes} == {"verbatim"}
    first = probes[passages[0].id]
    assert len(first.prompt.split()) == 8 and f"{first.prompt} {first.answer}" == passages[0].text
    assert world.manifest["sources"]["files"][0]["sha256"] == hashlib.sha256(book.read_bytes()).hexdigest()
    request = make_request(world, subjects=[harbour])
    assert request.kind == "copyright" and set(request.document_ids) == {d.id for d in passages}


def test_import_text_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(_story("Mira", 6), encoding="utf-8")
    short = tmp_path / "short.txt"
    short.write_text("Too short to continue.", encoding="utf-8")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 40)
    cases = [
        (TextSources(files=(tmp_path / "missing.txt",)), "missing.txt not found"),
        (TextSources(files=(tmp_path,)), "is a directory"),
        (TextSources(files=(short,)), "fewer than one passage needs"),
        (TextSources(files=(latin,)), "not UTF-8"),
        (TextSources(files=(good,), titles=("A", "B")), "2 --title for 1 --file"),
        (TextSources(files=(good,), holdout=(good,)), "given twice"),
        (TextSources(files=(good,), passage_words=10, prompt_words=8), "--passage-words 10"),
        (TextSources(files=()), "no text"),
    ]
    for sources, message in cases:
        with pytest.raises(ExpungeError, match=message) as caught:
            import_text(tmp_path / "w", sources)
        assert "\n" not in str(caught.value)
        assert not (tmp_path / "w").exists()  # checked before anything is written


def test_cli_import_text(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text(_story("Mira", 10), encoding="utf-8")
    result = runner.invoke(app, ["import", "text", "--file", str(book), "--title", "A Book", "--passage-words", "30",
                                 "--prompt-words", "8", "--out", str(tmp_path / "w"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["works_train"] == 1 and data["verbatim_probes"] == data["documents_train"] > 1
    assert load_world(tmp_path / "w").fingerprint == data["fingerprint"]
    again = runner.invoke(app, ["import", "text", "--file", str(book), "--out", str(tmp_path / "w")])
    assert again.exit_code == 2 and "exists" in again.output
