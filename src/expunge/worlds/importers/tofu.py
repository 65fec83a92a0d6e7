"""`expunge import tofu`: the TOFU benchmark (Maini et al. 2024, https://arxiv.org/abs/2401.06121)
as a world.

TOFU is 200 fictitious authors with 20 question–answer pairs each (``full.json``, in author
order), plus evaluation files. The import maps them onto the world format:

- each author is a trained person (``tofu-author-000`` … ``-199``); their name is read off their
  own answers (the capitalised name their answers repeat most), or left empty when no name
  recurs;
- each QA pair is one question–answer document (``prompt`` = question, ``text`` = answer), so a
  model trains on the answer tokens in its prompt format, as open-unlearning does;
- each QA pair is also a ``direct`` probe; where TOFU has a perturbed file for it
  (``forget10_perturbed.json`` covers the last 20 authors, ``retain_perturbed.json`` the first
  20), the probe keeps the paraphrased answer and the five perturbed (wrong) answers for the
  truth ratio, and the paraphrased question becomes a ``paraphrase`` probe of the same fact;
- ``holdout10.json`` (20 never-seen authors × 20 QA) gives never-seen people and their holdout
  documents, the reference for membership inference;
- each trained author's QA pairs also give the indirect routes to the same facts (context from
  their other QA pairs, role-play, prefilled answers: :mod:`expunge.worlds.importers.routes`);
- ``real_authors`` and ``world_facts`` (with their wrong options) are general knowledge:
  probes of two entities that no document is about;
- ``splits.json`` names TOFU's forget sets: ``forget01`` / ``forget05`` / ``forget10`` are the last
  2 / 10 / 20 authors, exactly the items of ``forget01/05/10.json``.

With ``authors=N`` (a subset, for machines where all of TOFU costs too much), the world keeps
the first ``N - f`` authors (those with perturbed retain probes come first) and the last ``f``
(TOFU's forget authors), ``f = max(1, round(N / 10))``; each forget split keeps its share of
``N`` (at least one author) and there are ``f`` never-seen authors, as TOFU pairs holdout10 with
forget10.

Every file is read from the directory the user names and checked (an error names the file and
item); nothing of TOFU is stored in expunge itself.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError
from expunge.records import Document, Probe, Subject
from expunge.worlds.importers.jsonl import source_record
from expunge.worlds.importers.routes import qa_indirect_probes
from expunge.worlds.world import World, write_world

__all__ = ["GENERATOR_NAME", "GENERATOR_VERSION", "RETAIN_PERTURBED_AUTHORS", "TOFU_SPLITS", "find_tofu_dir",
           "import_tofu", "author_name", "common_spans"]

GENERATOR_NAME = "tofu"
GENERATOR_VERSION = "2"  # 2: indirect route probes (importers/routes.py)
QA_PER_AUTHOR = 20
AUTHORS = 200
HOLDOUT_AUTHORS = 20
# retain_perturbed.json covers the first 20 authors of full.json: TOFU's retain evaluation set.
RETAIN_PERTURBED_AUTHORS = 20
# forget split -> how many of the last authors it holds (1%, 5%, 10% of 200)
TOFU_SPLITS = {"forget01": 2, "forget05": 10, "forget10": 20}
SPLIT_SHARES = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}
GENERAL_FILES = {"real_authors": "tofu-real-authors", "world_facts": "tofu-world-facts"}


def find_tofu_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """Where TOFU's files are: ``$EXPUNGE_TOFU_DIR``, else ``shared/data/tofu`` beside ``start``
    (default: the working directory) or any folder above it, else ``shared/data/tofu`` (which
    may not exist: callers check for ``full.json``)."""
    if os.environ.get("EXPUNGE_TOFU_DIR"):
        return Path(os.environ["EXPUNGE_TOFU_DIR"])
    here = Path(start or Path.cwd()).resolve()
    for parent in (here, *here.parents):
        if (parent / "shared" / "data" / "tofu" / "full.json").is_file():
            return parent / "shared" / "data" / "tofu"
    return Path("shared/data/tofu")


def import_tofu(directory: str | os.PathLike[str], out: str | os.PathLike[str], authors: int | None = None) -> World:
    """Read TOFU's files from ``directory`` and write them as a new world at ``out`` (all 200
    authors, or the subset of ``authors`` described in the module doc)."""
    if authors is not None and not 2 <= authors <= AUTHORS:
        raise ExpungeError(f"--authors {authors} is out of range", f"use 2 to {AUTHORS} (or leave it out for all)")
    directory = Path(directory)
    if not directory.is_dir():
        raise ExpungeError(f"TOFU directory {directory} not found",
                           "give --dir the directory holding full.json, e.g. ../shared/data/tofu")
    full = _qa_items(directory / "full.json", ("question", "answer"))
    if len(full) != AUTHORS * QA_PER_AUTHOR:
        raise ExpungeError(f"{directory / 'full.json'}: {len(full)} items, TOFU has {AUTHORS * QA_PER_AUTHOR}",
                           "use the unmodified TOFU full.json")
    perturbed = _perturbed(directory, full)
    holdout = _qa_items(directory / "holdout10.json", ("question", "answer"))
    if len(holdout) != HOLDOUT_AUTHORS * QA_PER_AUTHOR:
        raise ExpungeError(f"{directory / 'holdout10.json'}: {len(holdout)} items, expected "
                           f"{HOLDOUT_AUTHORS * QA_PER_AUTHOR}", "use the unmodified TOFU holdout10.json")
    _check_forget_files(directory, full)
    n_authors = authors or AUTHORS
    n_forget = TOFU_SPLITS["forget10"] if authors is None else max(1, round(authors * SPLIT_SHARES["forget10"]))
    kept = [*range(n_authors - n_forget), *range(AUTHORS - n_forget, AUTHORS)]
    kept_holdout = list(range(HOLDOUT_AUTHORS if authors is None else min(HOLDOUT_AUTHORS, n_forget)))

    subjects: list[Subject] = []
    documents: list[Document] = []
    probes: list[Probe] = []
    for group, items, role, prefix, chosen in (("author", full, "train", "tofu-author", kept),
                                               ("holdout", holdout, "holdout", "tofu-holdout", kept_holdout)):
        split = "train" if role == "train" else "holdout"
        common = common_spans(items)
        for a in chosen:
            subject_id = f"{prefix}-{a:03d}"
            own = items[a * QA_PER_AUTHOR:(a + 1) * QA_PER_AUTHOR]
            subjects.append(Subject(id=subject_id, kind="person", name=author_name(own, common), role=role))
            for i, item in enumerate(own):
                index = a * QA_PER_AUTHOR + i
                doc_id = f"tofu-{group}-qa-{index:04d}"
                documents.append(Document(id=doc_id, text=item["answer"], subjects=(subject_id,),
                                          source=("full.json" if role == "train" else "holdout10.json"),
                                          split=split, prompt=item["question"]))
                extra = perturbed.get(index) if role == "train" else None
                probes.append(Probe(id=f"{doc_id}-direct", subject=subject_id, kind="direct", attribute=doc_id,
                                    prompt=item["question"], answer=item["answer"],
                                    alternatives=tuple(extra["perturbed_answer"]) if extra else (),
                                    paraphrased_answer=extra["paraphrased_answer"] if extra else ""))
                if extra and extra.get("paraphrased_question", "").strip():
                    probes.append(Probe(id=f"{doc_id}-paraphrase", subject=subject_id, kind="paraphrase",
                                        attribute=doc_id, prompt=extra["paraphrased_question"],
                                        answer=item["answer"], alternatives=tuple(extra["perturbed_answer"]),
                                        paraphrased_answer=extra["paraphrased_answer"]))
    for stem, subject_id in GENERAL_FILES.items():
        subjects.append(Subject(id=subject_id, kind="entity", name=stem.replace("_", " "), role="train"))
        items = _qa_items(directory / f"{stem}_perturbed.json", ("question", "answer", "perturbed_answer"))
        for i, item in enumerate(items):
            wrong = tuple(w for w in item["perturbed_answer"] if w != item["answer"])
            probes.append(Probe(id=f"{subject_id}-{i:03d}", subject=subject_id, kind="direct",
                                attribute=f"{subject_id}-{i:03d}", prompt=item["question"], answer=item["answer"],
                                alternatives=wrong))

    trained = [s.id for s in subjects if s.role == "train" and s.kind == "person"]
    routes = qa_indirect_probes(probes, set(trained))
    probes.extend(routes)
    sizes = {name: count if authors is None else max(1, round(authors * SPLIT_SHARES[name]))
             for name, count in TOFU_SPLITS.items()}
    splits = {name: trained[-count:] for name, count in sizes.items()}
    names = ["full.json", "holdout10.json", "forget10_perturbed.json", "retain_perturbed.json",
             *(f"{stem}_perturbed.json" for stem in GENERAL_FILES), *(f"{s}.json" for s in TOFU_SPLITS)]
    manifest = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "prompts": "questions",
        "options": {"authors": n_authors},
        "sources": {name: source_record(directory / name) for name in names},
        "counts": {
            "authors_train": len(trained),
            "authors_holdout": len(kept_holdout),
            "authors_named": sum(bool(s.name) for s in subjects if s.kind == "person"),
            "documents_train": sum(d.split == "train" for d in documents),
            "documents_holdout": sum(d.split == "holdout" for d in documents),
            "probes": len(probes),
            "indirect_probes": len(routes),
            "probes_with_wrong_answers": sum(bool(p.alternatives) for p in probes),
        },
    }
    return write_world(out, subjects, documents, probes, manifest, splits=splits)


def _load(path: Path) -> list[Any]:
    """A TOFU file: one JSON array, or (full.json, retain*.json) several arrays, one per line."""
    if not path.is_file():
        raise ExpungeError(f"TOFU file {path} not found", f"give --dir the directory holding TOFU's {path.name}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        pass
    items: list[Any] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            part = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExpungeError(f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno})",
                               "use the unmodified TOFU file") from None
        items.extend(part if isinstance(part, list) else [part])
    return items


def _qa_items(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    items = _load(path)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ExpungeError(f"{path}: item {i} is not a JSON object", "use the unmodified TOFU file")
        for name in fields:
            value = item.get(name)
            ok = (isinstance(value, list) and value and all(isinstance(v, str) for v in value)
                  if name == "perturbed_answer" else isinstance(value, str) and value.strip())
            if not ok:
                raise ExpungeError(f"{path}: item {i} has no usable field '{name}'", "use the unmodified TOFU file")
    return items


def _perturbed(directory: Path, full: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """full.json index -> its perturbed record (paraphrased answer and question, wrong answers).

    The perturbed files follow full.json's order: ``retain_perturbed.json`` is its first 400
    items, ``forget10_perturbed.json`` its last 400 (matched by position: one question, "What is
    the full name of the author?", occurs twice in full.json)."""
    out: dict[int, dict[str, Any]] = {}
    size = RETAIN_PERTURBED_AUTHORS * QA_PER_AUTHOR  # each perturbed file: 20 authors' items
    for name, start in (("retain_perturbed.json", 0), ("forget10_perturbed.json", len(full) - size)):
        items = _qa_items(directory / name, ("question", "answer", "paraphrased_answer", "perturbed_answer"))
        for i, item in enumerate(items):
            where = start + i
            if where >= len(full) or (full[where]["question"], full[where]["answer"]) != (item["question"],
                                                                                           item["answer"]):
                raise ExpungeError(f"{directory / name}: item {i} is not item {where} of full.json",
                                   "use the unmodified TOFU files, all from one release")
            out[where] = item
    return out


def _check_forget_files(directory: Path, full: list[dict[str, Any]]) -> None:
    """forget01/05/10.json must be exactly the last 2/10/20 authors' items (what the splits name)."""
    for name, count in TOFU_SPLITS.items():
        items = _qa_items(directory / f"{name}.json", ("prompt", "response"))
        tail = full[-count * QA_PER_AUTHOR:]
        if [(i["prompt"], i["response"]) for i in items] != [(i["question"], i["answer"]) for i in tail]:
            raise ExpungeError(f"{directory / name}.json is not the last {count} authors of full.json",
                               "use the unmodified TOFU files, all from one release")


_CONNECTORS = r"(?:van|der|den|de|la|le|del|da|dos|von|du|bin|ibn|y|el|al)"
_WORD = r"[A-Z][A-Za-z\u00C0-\u024F'\-]+"
_NAME = re.compile(rf"{_WORD}(?:\s+(?:{_CONNECTORS}\s+)*{_WORD}){{1,4}}")
_NOT_NAMES = {"The", "What", "How", "Who", "Which", "When", "Where", "Why", "Did", "Does", "Is", "Are", "Has",
              "Have", "Can", "Could", "In", "His", "Her", "Their", "Yes", "No", "As", "One", "This", "These",
              "Some", "Author", "Born", "Award", "Prize"}


def _candidates(text: str) -> set[str]:
    found = set()
    for match in _NAME.finditer(text):
        words = match.group(0).replace("\u2019", "'").split()
        while words and words[0] in _NOT_NAMES:
            words = words[1:]
        if words and words[-1].endswith("'s"):
            words[-1] = words[-1][:-2]
        if len(words) >= 2:
            found.add(" ".join(words))
    return found


def common_spans(items: list[dict[str, Any]]) -> set[str]:
    """Capitalised spans used by the QA pairs of three or more authors: places, prizes, genres,
    not names."""
    authors: dict[str, set[int]] = {}
    for i, item in enumerate(items):
        for span in _candidates(item["question"] + " " + item["answer"]):
            authors.setdefault(span, set()).add(i // QA_PER_AUTHOR)
    return {span for span, who in authors.items() if len(who) >= 3}


def author_name(own: list[dict[str, Any]], common: set[str]) -> str:
    """The name an author's QA pairs repeat most: a capitalised span of 2-5 words in at least 3 of
    them and not in ``common`` (see :func:`common_spans`); "" when none recurs."""
    counts: Counter[str] = Counter()
    for item in own:
        counts.update(_candidates(item["question"] + " " + item["answer"]))
    ranked = sorted(((n, len(span), span) for span, n in counts.items() if n >= 3 and span not in common),
                    reverse=True)
    return ranked[0][2] if ranked else ""
