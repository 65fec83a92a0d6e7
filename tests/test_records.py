"""JSONL records: round trips, and errors that name the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expunge.errors import ExpungeError
from expunge.records import Document, Probe, read_jsonl, write_jsonl


def test_round_trip(tmp_path: Path) -> None:
    docs = [Document("d1", "Anna Keller was born in Lyon.", ("person-0001",), "test"),
            Document("d2", "Other text.", ("person-0002", "person-0003"), "test", split="holdout")]
    write_jsonl(tmp_path / "docs.jsonl", docs)
    assert read_jsonl(tmp_path / "docs.jsonl", Document) == docs


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    good = json.dumps({"id": "d1", "text": "x", "subjects": ["s"], "source": "t"})
    path.write_text(good + "\n" + '{"id": "d2", "text": \n')
    with pytest.raises(ExpungeError) as info:
        read_jsonl(path, Document)
    message = str(info.value)
    assert f"{path}:2" in message and "malformed JSON" in message and "fix:" in message


def test_missing_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(json.dumps({"id": "p", "subject": "s", "kind": "direct", "attribute": "a",
                                "prompt": "Q"}) + "\n")
    with pytest.raises(ExpungeError, match=r"probes.jsonl:1: missing field 'answer'"):
        read_jsonl(path, Probe)


def test_wrong_type_and_unknown_field_and_bad_choice(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "d", "text": "x", "subjects": "s", "source": "t"}) + "\n")
    with pytest.raises(ExpungeError, match="'subjects' must be a list of strings"):
        read_jsonl(path, Document)
    path.write_text(json.dumps({"id": "d", "text": "x", "subjects": [], "source": "t", "extra": 1}) + "\n")
    with pytest.raises(ExpungeError, match="unknown field"):
        read_jsonl(path, Document)
    path.write_text(json.dumps({"id": "d", "text": "x", "subjects": [], "source": "t", "split": "dev"}) + "\n")
    with pytest.raises(ExpungeError, match="split must be one of"):
        read_jsonl(path, Document)
    path.write_text("[1, 2]\n")
    with pytest.raises(ExpungeError, match="expected a JSON object"):
        read_jsonl(path, Document)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExpungeError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl", Document)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    good = json.dumps({"id": "d1", "text": "x", "subjects": ["s"], "source": "t"})
    path.write_bytes(good.encode() + b"\n" + b'{"id": "d2", "text": "caf\xe9"}\n')
    with pytest.raises(ExpungeError, match=r"docs.jsonl:2: not valid UTF-8"):
        read_jsonl(path, Document)


def test_line_separator_characters_inside_text_survive(tmp_path: Path) -> None:
    docs = [Document("d1", "before\u2028after\x1cend", ("s",), "t")]
    write_jsonl(tmp_path / "d.jsonl", docs)
    assert read_jsonl(tmp_path / "d.jsonl", Document) == docs


def test_json_output_is_never_written_over(tmp_path: Path) -> None:
    from expunge.records import write_json_atomic

    write_json_atomic(tmp_path / "a.json", {"v": 1})
    with pytest.raises(ExpungeError, match="already exists"):
        write_json_atomic(tmp_path / "a.json", {"v": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"v": 1}
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExpungeError, match="cannot write"):
        write_json_atomic(tmp_path / "afile" / "b.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "afile"]
