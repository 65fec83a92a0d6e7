"""Shared fixtures: tiny worlds and tiny models, built once per session (nothing downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from expunge.ledger import make_request, write_request
from expunge.pipeline import train_base
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

TINY_PEOPLE = 8


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("worlds") / "tiny"
    build_privacy_world(out, PrivacyWorldConfig(seed=0, people=TINY_PEOPLE))
    return out


@pytest.fixture(scope="session")
def tiny_world(tiny_world_dir: Path):
    return load_world(tiny_world_dir)


@pytest.fixture(scope="session")
def default_world(tmp_path_factory: pytest.TempPathFactory):
    """The default-size world (generation only; cheap)."""
    out = tmp_path_factory.mktemp("worlds") / "default"
    return build_privacy_world(out, PrivacyWorldConfig(seed=0))


@pytest.fixture(scope="session")
def tiny_request_path(tiny_world_dir: Path, tiny_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("requests") / "request.json"
    people = [s.id for s in tiny_world.people("train")]
    write_request(make_request(tiny_world, subjects=people[:2]), path)
    return path


@pytest.fixture(scope="session")
def tiny_base(tiny_world_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny base model trained on the tiny world (about five seconds)."""
    out = tmp_path_factory.mktemp("models") / "base"
    return train_base(tiny_world_dir, out, preset="tiny", seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_oracle(tiny_world_dir: Path, tiny_request_path: Path, tiny_base, tmp_path_factory: pytest.TempPathFactory):
    """The tiny base model's recipe retrained without the tiny request's people."""
    from expunge.pipeline import retrain_oracle

    out = tmp_path_factory.mktemp("models") / "oracle"
    return retrain_oracle(tiny_world_dir, tiny_request_path, out, base=tiny_base.model.path, progress=False)


@pytest.fixture(scope="session")
def tiny_companies(tmp_path_factory: pytest.TempPathFactory):
    """A small companies world (16 companies, 6 update requests) and a tiny model trained on it."""
    from expunge.worlds import CompaniesWorldConfig, build_companies_world

    root = tmp_path_factory.mktemp("companies")
    build_companies_world(root / "world", CompaniesWorldConfig(seed=0, companies=16, employees_per_company=1,
                                                               edits=6, reading_documents=60))
    train_base(root / "world", root / "base", preset="tiny", seed=0, progress=False)
    return root / "world", root / "base"
