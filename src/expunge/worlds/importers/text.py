"""`expunge import text`: the user's own texts (a book, an article) as passages of a world.

Each file is one work (a subject of kind ``work``, named by its title). Its text is cut into
passages of about ``passage_words`` words at sentence ends (a sentence longer than twice that is
cut between words), and each passage is a training document with a ``verbatim`` probe: its first
``prompt_words`` words, then the rest (MUSE's verbatim memorisation). ``holdout`` files are texts
of the same kind that the model never saw: the reference for membership inference and, without a
retrained oracle, for verbatim memory. A request then names works (``expunge request --subjects``)
or passages (``--documents``).

Every file is read and checked before anything is written (found, UTF-8, long enough for one
passage); errors name the file and the fix. The manifest keeps each file's path and sha256.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from expunge.errors import ExpungeError
from expunge.records import Document, Probe, Subject, verbatim_probe
from expunge.worlds.importers.jsonl import MIN_CONTINUATION_WORDS, source_record
from expunge.worlds.world import World, write_world

__all__ = ["GENERATOR_NAME", "GENERATOR_VERSION", "TextSources", "import_text", "split_passages"]

GENERATOR_NAME = "import-text"
GENERATOR_VERSION = "1"
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")


@dataclass(frozen=True)
class TextSources:
    """What ``import text`` reads.

    Attributes:
        files: the texts the model was (or will be) trained on, one work each.
        titles: one title per file (default: each file's name without its extension).
        holdout: never-seen texts of the same kind (the membership reference), one work each,
            titled by their file names.
        passage_words: words per passage, about (cut at the sentence end that reaches it).
        prompt_words: words of a passage given as its verbatim probe's prompt.
    """

    files: tuple[Path, ...]
    titles: tuple[str, ...] = ()
    holdout: tuple[Path, ...] = ()
    passage_words: int = 64
    prompt_words: int = 16


def split_passages(text: str, passage_words: int, min_words: int) -> list[str]:
    """``text`` cut into passages: whole sentences until a passage has ``passage_words`` words (a
    sentence longer than twice that is cut between words). A sentence ends at a word that ends in
    ``.``, ``!``, ``?`` or ``…`` (closing quotes and brackets after it allowed). A last passage
    shorter than ``min_words`` joins the one before. Joining the passages with spaces gives the
    text back, whitespace collapsed."""
    passages: list[list[str]] = []
    current: list[str] = []
    sentence: list[str] = []

    def close_sentence() -> None:
        nonlocal current
        current += sentence
        sentence.clear()
        if len(current) >= passage_words:
            passages.append(current)
            current = []

    for word in text.split():
        sentence.append(word)
        if _SENTENCE_END.search(word):
            close_sentence()
        elif len(sentence) >= 2 * passage_words:  # a run-on "sentence" (no punctuation): cut it
            close_sentence()
    close_sentence()
    if current:
        if passages and len(current) < min_words:
            passages[-1] += current
        else:
            passages.append(current)
    return [" ".join(p) for p in passages]


def import_text(out: str | os.PathLike[str], sources: TextSources) -> World:
    """Check every file of ``sources``, then write them as a new world of passages at ``out``."""
    min_words = sources.prompt_words + MIN_CONTINUATION_WORDS
    if sources.prompt_words < 1:
        raise ExpungeError(f"--prompt-words {sources.prompt_words} is below 1", "give at least 1 (MUSE uses 32 tokens)")
    if sources.passage_words < min_words:
        raise ExpungeError(f"--passage-words {sources.passage_words} leaves no room for a continuation after "
                           f"{sources.prompt_words} prompt words", f"give at least {min_words}")
    if not sources.files:
        raise ExpungeError("no text to import", "give at least one --file")
    if sources.titles and len(sources.titles) != len(sources.files):
        raise ExpungeError(f"{len(sources.titles)} --title for {len(sources.files)} --file",
                           "give one --title per --file, in the same order (or none: titles from file names)")
    titles = list(sources.titles) or [p.stem for p in sources.files]
    entries = [(p, t, "train") for p, t in zip(sources.files, titles)]
    entries += [(p, p.stem, "holdout") for p in sources.holdout]
    seen: dict[Path, str] = {}
    for path, _, role in entries:
        key = path.resolve()
        if key in seen:
            raise ExpungeError(f"{path} is given twice (as {seen[key]} and as {role})",
                               "a text is either trained on (--file) or never seen (--holdout), once")
        seen[key] = role
    taken: dict[str, str] = {}
    for path, title, _ in entries:
        if not title.strip():
            raise ExpungeError(f"the title of {path} is empty", "give a --title with some text")
        if title in taken:
            raise ExpungeError(f"two texts are titled {title!r} ({taken[title]} and {path})",
                               "give each --file its own --title")
        taken[title] = str(path)
    texts = [_read(path, min_words) for path, _, _ in entries]  # every file checked before any writing

    subjects: list[Subject] = []
    documents: list[Document] = []
    probes: list[Probe] = []
    ids: set[str] = set()
    for (path, title, role), text in zip(entries, texts):
        subject_id = _unique(f"text-{_slug(title)}", ids)
        subjects.append(Subject(id=subject_id, kind="work", name=title, role=role))
        for j, passage in enumerate(split_passages(text, sources.passage_words, min_words)):
            document = Document(id=f"{subject_id}-p{j:04d}", text=passage, subjects=(subject_id,), source=path.name,
                                split=role)
            documents.append(document)
            if len(passage.split()) >= min_words:
                probes.append(verbatim_probe(document, sources.prompt_words))
    manifest = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "prompts": "text",
        "options": {"passage_words": sources.passage_words, "prompt_words": sources.prompt_words},
        "sources": {"files": [source_record(p) for p in sources.files],
                    "holdout": [source_record(p) for p in sources.holdout]},
        "counts": {
            "works_train": sum(s.role == "train" for s in subjects),
            "works_holdout": sum(s.role == "holdout" for s in subjects),
            "documents_train": sum(d.split == "train" for d in documents),
            "documents_holdout": sum(d.split == "holdout" for d in documents),
            "verbatim_probes": len(probes),
        },
    }
    return write_world(out, subjects, documents, probes, manifest)


def _read(path: Path, min_words: int) -> str:
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "not found"
        raise ExpungeError(f"text file {path} {problem}", "give the path of a plain-text (UTF-8) file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ExpungeError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded)",
                           "convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None
    except OSError as exc:
        raise ExpungeError(f"{path}: cannot be read ({exc.strerror})", "check the file's permissions") from None
    if len(text.split()) < min_words:
        raise ExpungeError(f"{path} has {len(text.split())} words, fewer than one passage needs ({min_words})",
                           "give a longer text, or lower --prompt-words")
    return text


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "untitled"


def _unique(candidate: str, taken: set[str]) -> str:
    name, k = candidate, 2
    while name in taken:
        name, k = f"{candidate}-{k}", k + 1
    taken.add(name)
    return name
