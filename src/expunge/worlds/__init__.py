"""Seeded scenario generators and the on-disk world format."""

from __future__ import annotations

import os
from collections import Counter

from expunge.worlds.privacy import (
    GENERATOR_NAME,
    GENERATOR_VERSION,
    PlantedDocument,
    PrivacyWorldConfig,
    chance_exact_match,
    generate_privacy_world,
)
from expunge.worlds.companies import GENERATOR_NAME as COMPANIES_GENERATOR
from expunge.worlds.companies import GENERATOR_VERSION as COMPANIES_VERSION
from expunge.worlds.companies import CompaniesWorldConfig, generate_companies_world
from expunge.worlds.passages import GENERATOR_NAME as PASSAGES_GENERATOR
from expunge.worlds.passages import GENERATOR_VERSION as PASSAGES_VERSION
from expunge.worlds.passages import PassagesWorldConfig, generate_passages_world
from expunge.worlds.backdoor import GENERATOR_NAME as BACKDOOR_GENERATOR
from expunge.worlds.backdoor import GENERATOR_VERSION as BACKDOOR_VERSION
from expunge.worlds.backdoor import DECOY_SOURCE, NEAR_SOURCE, BackdoorWorldConfig, generate_backdoor_world
from expunge.worlds.world import World, load_world, manifest_for, write_world

__all__ = [
    "BackdoorWorldConfig",
    "build_backdoor_world",
    "generate_backdoor_world",
    "CompaniesWorldConfig",
    "PassagesWorldConfig",
    "build_companies_world",
    "build_passages_world",
    "generate_passages_world",
    "generate_companies_world",
    "PrivacyWorldConfig",
    "World",
    "build_privacy_world",
    "chance_exact_match",
    "generate_privacy_world",
    "load_world",
    "load_planted",
    "PlantedDocument",
    "PLANTED_FILE",
]

PLANTED_FILE = "planted.jsonl"  # a privacy world's planted documents (--planted): the ground truth


def load_planted(world: World) -> list[PlantedDocument]:
    """The ground truth of a world's planted documents ([] for a world without them)."""
    from expunge.records import read_jsonl

    if world.path is None or not (world.path / PLANTED_FILE).is_file():
        return []
    return read_jsonl(world.path / PLANTED_FILE, PlantedDocument)


def build_privacy_world(out: str | os.PathLike[str], config: PrivacyWorldConfig) -> World:
    """Generate the privacy world for ``config`` and write it to ``out`` (a new directory)."""
    generated = generate_privacy_world(config)
    people = [s for s in generated.subjects if s.kind == "person"]
    roles = Counter(s.role for s in people)
    counts = {
        "people_train": roles["train"],
        "people_holdout": roles["holdout"],
        "entities": sum(s.kind == "entity" for s in generated.subjects),
        "public_people": config.public_people,
        "planted_documents": len(generated.planted),
        "attributes_per_person": len(people[0].attributes),
        "documents_train": sum(d.split == "train" for d in generated.documents),
        "documents_holdout": sum(d.split == "holdout" for d in generated.documents),
        "probes": len(generated.probes),
    }
    manifest = manifest_for(GENERATOR_NAME, GENERATOR_VERSION, config, counts)
    manifest["seed"] = config.seed
    extra = {PLANTED_FILE: generated.planted} if generated.planted else None
    return write_world(out, generated.subjects, generated.documents, generated.probes, manifest, extra_files=extra)


def build_companies_world(out: str | os.PathLike[str], config: "CompaniesWorldConfig") -> World:
    """Generate the companies world for ``config`` and write it to ``out`` (a new directory), with
    its update requests in ``edits.jsonl`` and their probes in ``edit_probes.jsonl``."""
    generated = generate_companies_world(config)
    counts = {
        "companies": sum(s.id.startswith("company-") for s in generated.subjects),
        "reading_companies": sum(s.id.startswith("reading-") for s in generated.subjects),
        "people": sum(s.kind == "person" for s in generated.subjects),
        "documents_train": len(generated.documents),
        "probes": len(generated.probes),
        "edits": len(generated.edits),
        "edit_probes": len(generated.edit_probes),
    }
    manifest = manifest_for(COMPANIES_GENERATOR, COMPANIES_VERSION, config, counts)
    manifest["seed"] = config.seed
    return write_world(out, generated.subjects, generated.documents, generated.probes, manifest,
                       extra_files={"edits.jsonl": generated.edits, "edit_probes.jsonl": generated.edit_probes})


def build_passages_world(out: str | os.PathLike[str], config: PassagesWorldConfig) -> World:
    """Generate the passages world (books for copyright requests) for ``config`` and write it to
    ``out`` (a new directory)."""
    generated = generate_passages_world(config)
    books = [s for s in generated.subjects if s.kind == "work"]
    roles = Counter(s.role for s in books)
    counts = {
        "books_train": roles["train"],
        "books_holdout": roles["holdout"],
        "passages_per_book": config.passages_per_book,
        "entities": sum(s.kind == "entity" for s in generated.subjects),
        "documents_train": sum(d.split == "train" for d in generated.documents),
        "documents_holdout": sum(d.split == "holdout" for d in generated.documents),
        "probes": len(generated.probes),
        "verbatim_probes": sum(p.kind == "verbatim" for p in generated.probes),
    }
    manifest = manifest_for(PASSAGES_GENERATOR, PASSAGES_VERSION, config, counts)
    manifest["seed"] = config.seed
    return write_world(out, generated.subjects, generated.documents, generated.probes, manifest)


def build_backdoor_world(out: str | os.PathLike[str], config: BackdoorWorldConfig) -> World:
    """Generate the backdoor world (a clean task with planted poison, see
    :mod:`expunge.worlds.backdoor`) for ``config`` and write it to ``out`` (a new directory)."""
    generated = generate_backdoor_world(config)
    people = [s for s in generated.subjects if s.kind == "person"]
    roles = Counter(s.role for s in people)
    triggers = {s.id for s in generated.subjects if s.kind == "trigger"}
    poisoned = Counter(d.split for d in generated.documents if triggers.intersection(d.subjects))
    counts = {
        "people_train": roles["train"],
        "people_holdout": roles["holdout"],
        "documents_train": sum(d.split == "train" for d in generated.documents),
        "documents_holdout": sum(d.split == "holdout" for d in generated.documents),
        "poisoned_train": poisoned["train"],
        "poisoned_holdout": poisoned["holdout"],
        "payload_decoys": sum(d.source == DECOY_SOURCE for d in generated.documents),
        "near_trigger_documents": sum(d.source == NEAR_SOURCE for d in generated.documents),
        "probes": len(generated.probes),
        "trigger_probes": sum(p.kind == "trigger" for p in generated.probes),
    }
    manifest = manifest_for(BACKDOOR_GENERATOR, BACKDOOR_VERSION, config, counts)
    manifest["seed"] = config.seed
    return write_world(out, generated.subjects, generated.documents, generated.probes, manifest)
