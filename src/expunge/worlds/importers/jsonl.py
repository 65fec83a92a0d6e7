"""`expunge import jsonl`: the user's own documents (and questions about them) as a world.

Input files, one JSON object per line:

documents (required)
    ``text`` (required); optional ``id`` (default ``doc-`` + line number), ``subjects`` (the ids
    of who or what the document is about: its provenance, a list or one string), ``split``
    (``train``: the model was trained on it, or may know it; ``holdout``: never seen, the
    reference for membership inference) and ``prompt`` (the question, when the document is a
    question–answer pair whose ``text`` is the answer).
probes (optional)
    ``question`` and ``answer`` (required); optional ``id``, ``subject``, ``paraphrased_answer``
    and ``wrong_answers`` (a list). A probe without a subject is general knowledge that must
    survive every deletion (its subject is the entity ``general``).
subjects (optional)
    ``id`` (required); optional ``name`` (how the text names them; default the id) and ``kind``
    (``person``, ``work`` or ``entity``; default ``person``).

A subject's role follows from its documents: named only by ``holdout`` documents, it is
never-seen; otherwise it is trained. Without a subjects file, every id the documents and probes
name becomes a person named by its id. Every plain document (no ``prompt``) that names a subject
and has at least ``VERBATIM_PROMPT_WORDS + MIN_CONTINUATION_WORDS`` words gets a ``verbatim``
probe: its first words, then the rest (MUSE's verbatim memorisation; a document about no one has
no subject to hold it, and membership inference still reads it). Without probes those are all
the world has, and verification runs only what documents support (membership inference, verbatim
continuation). With probes, each trained subject's questions also give the indirect routes to
the same facts (context, role-play, prefilled answers: :mod:`expunge.worlds.importers.routes`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError
from expunge.integrity import file_sha256
from expunge.records import (DOCUMENT_SPLITS, SUBJECT_KINDS, Document, Probe, Subject, iter_json_lines,
                             verbatim_probe)
from expunge.worlds.importers.routes import qa_indirect_probes
from expunge.worlds.world import PROMPT_STYLES, World, write_world

__all__ = ["GENERATOR_NAME", "GENERATOR_VERSION", "GENERAL_SUBJECT", "VERBATIM_PROMPT_WORDS", "MIN_CONTINUATION_WORDS",
           "JsonlSources", "import_jsonl", "verbatim_probes"]

GENERATOR_NAME = "import-jsonl"
GENERATOR_VERSION = "3"  # 2: indirect route probes (importers/routes.py); 3: verbatim probes
# A verbatim probe gives a document's first words and asks for the rest, of at least this many.
VERBATIM_PROMPT_WORDS = 8
MIN_CONTINUATION_WORDS = 8
GENERAL_SUBJECT = "general"

# field -> (type check, what to write); "required" fields first.
_STR = (lambda v: isinstance(v, str), "a string")
_STRS = (lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v), "a list of strings")
_STR_OR_STRS = (lambda v: isinstance(v, str) or _STRS[0](v), "a string or a list of strings")
DOCUMENT_FIELDS = {"text": _STR, "id": _STR, "subjects": _STR_OR_STRS, "split": _STR, "prompt": _STR}
PROBE_FIELDS = {"question": _STR, "answer": _STR, "id": _STR, "subject": _STR, "paraphrased_answer": _STR,
                "wrong_answers": _STRS}
SUBJECT_FIELDS = {"id": _STR, "name": _STR, "kind": _STR}
_REQUIRED = {"documents": ("text",), "probes": ("question", "answer"), "subjects": ("id",)}


@dataclass(frozen=True)
class JsonlSources:
    """The files of one import (see the module doc for their fields).

    Attributes:
        documents: the documents file (required).
        probes: questions with known answers about the documents' subjects, or None.
        subjects: who or what the documents are about, or None (derived from the documents).
        prompts: how probe questions are written: ``questions`` (bare questions, wrapped in a
            model's prompt format) or ``text`` (cloze prompts such as "The capital of France
            is", used verbatim).
    """

    documents: Path
    probes: Path | None = None
    subjects: Path | None = None
    prompts: str = "questions"


def import_jsonl(out: str | os.PathLike[str], sources: JsonlSources) -> World:
    """Validate the files of ``sources`` line by line and write them as a new world at ``out``."""
    if sources.prompts not in PROMPT_STYLES:
        raise ExpungeError(f"--prompts {sources.prompts!r} is not a prompt style",
                           f"use one of {', '.join(PROMPT_STYLES)}")
    declared = _read_subjects(sources.subjects) if sources.subjects else None
    documents, doc_lines = _read_documents(sources.documents, declared)
    probes = _read_probes(sources.probes, declared) if sources.probes else []
    subjects = _subjects(declared, documents, doc_lines, probes, sources)
    # The indirect routes to each trained subject's facts, built from their own probes.
    trained = {s.id for s in subjects if s.role == "train" and s.id != GENERAL_SUBJECT}
    routes = qa_indirect_probes(probes, trained, questions=sources.prompts == "questions")
    texts = verbatim_probes(documents)
    probes = [*probes, *routes, *texts]
    files = {"documents": sources.documents, "probes": sources.probes, "subjects": sources.subjects}
    counts = {
        "subjects_train": sum(s.role == "train" for s in subjects),
        "subjects_holdout": sum(s.role == "holdout" for s in subjects),
        "documents_train": sum(d.split == "train" for d in documents),
        "documents_holdout": sum(d.split == "holdout" for d in documents),
        "probes": len(probes),
        "indirect_probes": len(routes),
        "verbatim_probes": len(texts),
    }
    manifest = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "prompts": sources.prompts,
        "sources": {role: source_record(path) for role, path in files.items() if path is not None},
        "counts": counts,
    }
    return write_world(out, subjects, documents, probes, manifest)


def verbatim_probes(documents: list[Document], prompt_words: int = VERBATIM_PROMPT_WORDS,
                    min_continuation: int = MIN_CONTINUATION_WORDS) -> list[Probe]:
    """A verbatim probe (:func:`expunge.records.verbatim_probe`) for every plain document that
    names a subject and has at least ``min_continuation`` words after the first ``prompt_words``."""
    return [verbatim_probe(d, prompt_words) for d in documents
            if not d.prompt and d.subjects and len(d.text.split()) >= prompt_words + min_continuation]


def source_record(path: Path) -> dict[str, Any]:
    """What the manifest keeps of a source file: where it was and its sha256 (``sha256sum``)."""
    return {"path": str(path.resolve()), "sha256": file_sha256(path)}


def read_objects(path: Path, what: str, fields: dict[str, tuple[Any, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each non-blank line of ``path`` as (``file:line``, object), every field checked: known,
    of the right type, required ones present and non-empty."""
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "not found"
        raise ExpungeError(f"{what} file {path} {problem}", f"give the path of a JSON Lines {what} file")
    required = _REQUIRED[what]
    seen = False
    for where, data in iter_json_lines(path):
        if not isinstance(data, dict):
            raise ExpungeError(f"{where}: expected a JSON object, got {type(data).__name__}",
                               f"write one object per line with the fields {', '.join(fields)}")
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ExpungeError(f"{where}: unknown field(s) {', '.join(unknown)} in a {what} line",
                               f"use only {', '.join(fields)}")
        for name in required:
            if name not in data:
                raise ExpungeError(f"{where}: missing field '{name}'",
                                   f"every {what} line needs {' and '.join(repr(r) for r in required)}")
        for name, value in data.items():
            check, kind = fields[name]
            if not check(value):
                raise ExpungeError(f"{where}: field '{name}' must be {kind}, got {json.dumps(value)[:40]}",
                                   f"write '{name}' as {kind}")
            if name in required and not value.strip():
                raise ExpungeError(f"{where}: field '{name}' is empty", f"give every {what} a non-empty '{name}'")
        seen = True
        yield where, data
    if not seen:
        raise ExpungeError(f"{path}: the {what} file has no lines", f"put one JSON object per line in {path}")


def _read_subjects(path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    declared: dict[str, tuple[str, dict[str, Any]]] = {}
    for where, data in read_objects(path, "subjects", SUBJECT_FIELDS):
        if data["id"] in declared:
            raise ExpungeError(f"{where}: subject id {data['id']!r} is already used at {declared[data['id']][0]}",
                               "give every subject its own id")
        if data.get("kind", "person") not in SUBJECT_KINDS:
            raise ExpungeError(f"{where}: field 'kind' is {data['kind']!r}", f"use one of {', '.join(SUBJECT_KINDS)}")
        declared[data["id"]] = (where, data)
    return declared


def _known(subject: str, where: str, declared: dict[str, Any] | None, field: str, path: Path | None) -> None:
    if declared is not None and subject not in declared:
        raise ExpungeError(f"{where}: field '{field}' names {subject!r}, which is not in the subjects file {path}",
                           "add the subject to the subjects file, or correct the id")


def _read_documents(path: Path, declared: dict[str, Any] | None) -> tuple[list[Document], dict[str, str]]:
    documents: list[Document] = []
    lines: dict[str, str] = {}  # document id -> file:line
    for where, data in read_objects(path, "documents", DOCUMENT_FIELDS):
        number = where.rsplit(":", 1)[1]
        doc_id = data.get("id", f"doc-{int(number):06d}")
        if doc_id in lines:
            raise ExpungeError(f"{where}: document id {doc_id!r} is already used at {lines[doc_id]}",
                               "give every document its own id (or leave 'id' out everywhere)")
        subjects = data.get("subjects", [])
        subjects = [subjects] if isinstance(subjects, str) else list(dict.fromkeys(subjects))
        for subject in subjects:
            _known(subject, where, declared, "subjects", path)
        split = data.get("split", "train")
        if split not in DOCUMENT_SPLITS:
            raise ExpungeError(f"{where}: field 'split' is {split!r}", f"use one of {', '.join(DOCUMENT_SPLITS)}")
        lines[doc_id] = where
        documents.append(Document(id=doc_id, text=data["text"], subjects=tuple(subjects), source=path.name,
                                  split=split, prompt=data.get("prompt", "")))
    return documents, lines


def _read_probes(path: Path, declared: dict[str, Any] | None) -> list[Probe]:
    probes: list[Probe] = []
    lines: dict[str, str] = {}
    for where, data in read_objects(path, "probes", PROBE_FIELDS):
        number = int(where.rsplit(":", 1)[1])
        probe_id = data.get("id", f"probe-{number:06d}")
        if probe_id in lines:
            raise ExpungeError(f"{where}: probe id {probe_id!r} is already used at {lines[probe_id]}",
                               "give every probe its own id (or leave 'id' out everywhere)")
        subject = data.get("subject", GENERAL_SUBJECT)
        if "subject" in data:
            _known(subject, where, declared, "subject", path)
        wrong = tuple(data.get("wrong_answers", ()))
        if data["answer"] in wrong:
            raise ExpungeError(f"{where}: the answer {data['answer']!r} is also listed in 'wrong_answers'",
                               "remove it from 'wrong_answers'")
        lines[probe_id] = where
        probes.append(Probe(id=probe_id, subject=subject, kind="direct", attribute=f"qa-{probe_id}",
                            prompt=data["question"], answer=data["answer"], alternatives=wrong,
                            paraphrased_answer=data.get("paraphrased_answer", "")))
    return probes


def _subjects(declared: dict[str, tuple[str, dict[str, Any]]] | None, documents: list[Document],
              doc_lines: dict[str, str], probes: list[Probe], sources: JsonlSources) -> list[Subject]:
    """Every subject with its role: trained when a training document names it (or none does),
    never-seen when only holdout documents do."""
    train_line: dict[str, str] = {}
    holdout_line: dict[str, str] = {}
    for doc in documents:
        for subject in doc.subjects:
            (train_line if doc.split == "train" else holdout_line).setdefault(subject, doc_lines[doc.id])
    for subject, line in holdout_line.items():
        if subject in train_line:
            raise ExpungeError(
                f"{line}: subject {subject!r} is named by a holdout document here and by a training document at "
                f"{train_line[subject]}",
                "a never-seen (holdout) subject must have no training documents: correct one of the two lines")
    order = list(declared or {})
    for doc in documents:
        order.extend(doc.subjects)
    order.extend(p.subject for p in probes if p.subject != GENERAL_SUBJECT)
    subjects = []
    for subject_id in dict.fromkeys(order):
        data = declared[subject_id][1] if declared and subject_id in declared else {}
        role = "holdout" if subject_id in holdout_line else "train"
        subjects.append(Subject(id=subject_id, kind=data.get("kind", "person"), name=data.get("name", subject_id),
                                role=role))
    if any(p.subject == GENERAL_SUBJECT for p in probes) and GENERAL_SUBJECT not in {s.id for s in subjects}:
        subjects.append(Subject(id=GENERAL_SUBJECT, kind="entity", name="general knowledge", role="train"))
    return subjects
