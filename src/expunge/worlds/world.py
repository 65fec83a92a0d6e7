"""A world on disk: subjects, documents (with provenance), probes and a manifest.

Layout of a world directory::

    manifest.json     generator, version, seed, options, counts, fingerprint
    subjects.jsonl    one Subject per line (ground truth, roles, neighbours)
    documents.jsonl   one Document per line; split "train" is the training corpus
    probes.jsonl      one Probe per line
    splits.json       optional: named groups of trained subjects a request can name at once
                      (TOFU's forget01 / forget05 / forget10)

The fingerprint is a sha256 over the three JSONL files (and ``splits.json`` when there is one);
deletion requests carry it, so a request can never be applied to a different world by mistake.

The manifest's ``prompts`` says how probe prompts (and question–answer documents' prompts) are
written: ``text`` (the built-in worlds) means they are used verbatim; ``questions`` (imported
data) means they are bare questions that a model's prompt format wraps.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError
from expunge.fsutil import atomic_directory
from expunge.records import (
    DELETABLE_KINDS,
    Document,
    Probe,
    Subject,
    iter_jsonl_lines,
    read_json,
    read_jsonl,
    write_json_atomic,
)

WORLD_FILES = ("subjects.jsonl", "documents.jsonl", "probes.jsonl")
SPLITS_FILE = "splits.json"
PROMPT_STYLES = ("text", "questions")


@dataclass
class World:
    """An in-memory world with the lookups every stage needs."""

    manifest: dict[str, Any]
    subjects: list[Subject]
    documents: list[Document]
    probes: list[Probe]
    path: Path | None = field(default=None, compare=False)
    splits: dict[str, list[str]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def prompts(self) -> str:
        """How prompts are written: ``text`` (verbatim) or ``questions`` (see the module doc)."""
        return str(self.manifest.get("prompts", "text"))

    @property
    def source(self) -> str:
        """What made the world: a generator's name or an importer's (``import-jsonl``, ``tofu``)."""
        return str(self.manifest.get("generator", "unknown"))

    @cached_property
    def subject_by_id(self) -> dict[str, Subject]:
        return {s.id: s for s in self.subjects}

    def people(self, role: str | None = None) -> list[Subject]:
        """People (not general entities), optionally only those with ``role``."""
        return [s for s in self.subjects if s.kind == "person" and (role is None or s.role == role)]

    def deletable(self, role: str | None = None) -> list[Subject]:
        """The subjects a deletion request can be about (people and works, not general
        entities), optionally only those with ``role``."""
        return [s for s in self.subjects if s.kind in DELETABLE_KINDS and (role is None or s.role == role)]

    def training_documents(self) -> list[Document]:
        return [d for d in self.documents if d.split == "train"]

    def documents_about(self, subject_ids: Iterable[str]) -> list[Document]:
        """Training documents whose provenance names any of ``subject_ids``."""
        wanted = set(subject_ids)
        return [d for d in self.training_documents() if wanted.intersection(d.subjects)]

    def probes_for(self, subject_ids: Iterable[str], kinds: Iterable[str] | None = None) -> list[Probe]:
        wanted = set(subject_ids)
        kind_set = set(kinds) if kinds is not None else None
        return [
            p for p in self.probes
            if p.subject in wanted and (kind_set is None or p.kind in kind_set)
        ]


def fingerprint_files(directory: Path) -> str:
    digest = hashlib.sha256()
    names = WORLD_FILES + ((SPLITS_FILE,) if (directory / SPLITS_FILE).is_file() else ())
    for name in names:
        digest.update(name.encode())
        with (directory / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_world(
    out: str | os.PathLike[str],
    subjects: list[Subject],
    documents: list[Document],
    probes: list[Probe],
    manifest: dict[str, Any],
    extra_files: dict[str, list[Any]] | None = None,
    splits: dict[str, list[str]] | None = None,
) -> World:
    """Write a world directory atomically; refuses to write over an existing path.

    ``extra_files`` (file name -> records) are written beside the three world files, e.g. a
    world's update requests; the manifest records the sha256 of each. ``splits`` (name -> trained
    subject ids) go to ``splits.json``, which the fingerprint covers.
    """
    world = World(manifest, subjects, documents, probes, splits=dict(splits or {}))
    _check_references(world, Path(out))
    with atomic_directory(out) as tmp:
        for name, records in zip(WORLD_FILES, (subjects, documents, probes)):
            with (tmp / name).open("w", encoding="utf-8") as handle:
                handle.writelines(iter_jsonl_lines(records))
        extras = {}
        for name, records in (extra_files or {}).items():
            with (tmp / name).open("w", encoding="utf-8") as handle:
                handle.writelines(iter_jsonl_lines(records))
            extras[name] = hashlib.sha256((tmp / name).read_bytes()).hexdigest()
        if splits:
            (tmp / SPLITS_FILE).write_text(json.dumps(splits, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        if extras:
            manifest = {**manifest, "extra_files": extras}
        manifest = {**manifest, "fingerprint": fingerprint_files(tmp)}
        write_json_atomic(tmp / "manifest.json", manifest)
    return World(manifest, subjects, documents, probes, path=Path(out), splits=dict(splits or {}))


def load_world(path: str | os.PathLike[str]) -> World:
    """Load and validate a world directory (errors name the file, line and field)."""
    path = Path(path)
    if not path.is_dir():
        raise ExpungeError(
            f"world directory {path} not found",
            "create one with `expunge world privacy --out DIR`, or from your data with `expunge import jsonl`",
        )
    manifest = read_json(path / "manifest.json", "world manifest")
    if not isinstance(manifest, dict) or "fingerprint" not in manifest:
        raise ExpungeError(
            f"{path / 'manifest.json'}: missing field 'fingerprint'",
            "make the world again (`expunge world …` or `expunge import …`)",
        )
    subjects = read_jsonl(path / "subjects.jsonl", Subject)
    documents = read_jsonl(path / "documents.jsonl", Document)
    probes = read_jsonl(path / "probes.jsonl", Probe)
    splits = _read_splits(path / SPLITS_FILE) if (path / SPLITS_FILE).is_file() else {}
    world = World(manifest, subjects, documents, probes, path=path, splits=splits)
    _check_references(world, path)
    actual = fingerprint_files(path)
    if actual != manifest["fingerprint"]:
        raise ExpungeError(
            f"{path}: the world files were changed after generation (fingerprint mismatch)",
            "make the world again (`expunge world …` or `expunge import …`), or restore the original files",
        )
    return world


def _read_splits(path: Path) -> dict[str, list[str]]:
    data = read_json(path, "world splits")
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(i, str) for i in v) for k, v in data.items()
    ):
        raise ExpungeError(f"{path}: expected an object of split name -> list of subject ids",
                           "re-import the world")
    return data


def _check_references(world: World, path: Path) -> None:
    if world.prompts not in PROMPT_STYLES:
        raise ExpungeError(f"{path / 'manifest.json'}: field 'prompts' is {world.prompts!r}",
                           f"use one of {', '.join(PROMPT_STYLES)}")
    known = world.subject_by_id
    if len(known) != len(world.subjects):
        raise ExpungeError(f"{path / 'subjects.jsonl'}: duplicate subject ids", "make ids unique")
    document_ids: set[str] = set()
    for doc in world.documents:
        if doc.id in document_ids:
            raise ExpungeError(f"{path / 'documents.jsonl'}: document id {doc.id!r} is used twice",
                               "make document ids unique (requests and provenance name documents by id)")
        document_ids.add(doc.id)
    for name, ids in world.splits.items():
        for subject in ids:
            if subject not in known or known[subject].role != "train":
                raise ExpungeError(f"{path / SPLITS_FILE}: split {name!r} names {subject!r}, not a trained subject",
                                   "every id in a split must be a subject with role 'train'")
    for number, doc in enumerate(world.documents, start=1):
        for subject in doc.subjects:
            if subject not in known:
                raise ExpungeError(
                    f"{path / 'documents.jsonl'}: document {doc.id} names unknown subject {subject!r}",
                    "every subject in a document must be listed in subjects.jsonl",
                )
    for probe in world.probes:
        if probe.subject not in known:
            raise ExpungeError(
                f"{path / 'probes.jsonl'}: probe {probe.id} names unknown subject {probe.subject!r}",
                "every probe's subject must be listed in subjects.jsonl",
            )
        if probe.prefill and world.prompts == "text":
            raise ExpungeError(
                f"{path / 'probes.jsonl'}: probe {probe.id} has a 'prefill', but this world's prompts are written out "
                "in full", "put the answer's start at the end of the probe's prompt instead")


def manifest_for(generator: str, version: str, options: Any, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "generator": generator,
        "generator_version": version,
        "options": asdict(options),
        "counts": counts,
    }
