"""Core records: what a world is made of, what a deletion request names, which model is which.

All records are frozen dataclasses. They travel as JSON objects, one per line (JSONL), and every
reader validates each line: a malformed line raises :class:`~expunge.errors.ExpungeError` naming the
file, the line number and the field, never a bare ``KeyError`` from deep inside.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from expunge.errors import ExpungeError
from expunge.fsutil import write_text_atomic

SUBJECT_KINDS = ("person", "work", "entity", "trigger")
# The kinds a deletion request is about (a person's data, a copyrighted work); entities are general
# knowledge, kept by every request; a trigger (a backdoor's, in the backdoor world) is the ground
# truth of which documents are poisoned, which no request may name: a defender has to locate them.
DELETABLE_KINDS = ("person", "work")
SUBJECT_ROLES = ("train", "holdout")
DOCUMENT_SPLITS = ("train", "holdout")
PROBE_KINDS = ("direct", "paraphrase", "context", "roleplay", "prefill", "cloze", "multihop", "reverse", "alias",
               "mcq", "verbatim", "trigger")
REQUEST_KINDS = ("privacy", "copyright", "update", "backdoor")
# Field metadata for optional fields added after a format was fixed: written only when they differ
# from their default, so files that never use them stay byte-identical (and keep their fingerprint).
OMIT_DEFAULT = {"omit_default": True}


@dataclass(frozen=True)
class Subject:
    """Someone or something the world states facts about.

    Attributes:
        id: stable identifier, e.g. ``person-0042`` or ``entity-country-07``.
        kind: ``person`` or ``work`` (a book, a text: a deletion can be about them), ``entity``
            (general knowledge), or ``trigger`` (a planted backdoor: its poisoned documents name it).
        name: the surface name used in text ("Maria Keller").
        role: ``train`` (their documents are in the training corpus) or ``holdout`` (never seen:
            the reference population for membership inference).
        attributes: attribute name -> value, the ground truth every probe is built from.
        neighbours: ids of other subjects sharing a name token or attribute values: the people a
            careless deletion is most likely to damage.
    """

    id: str
    kind: str
    name: str
    role: str
    attributes: dict[str, str] = field(default_factory=dict)
    neighbours: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_choice(self.kind, SUBJECT_KINDS, "kind")
        _check_choice(self.role, SUBJECT_ROLES, "role")


@dataclass(frozen=True)
class Document:
    """One piece of text, with provenance: the ids of the subjects it is about.

    ``split`` is ``train`` for the training corpus and ``holdout`` for text about never-seen
    subjects, which exists so that membership inference has a non-member population.

    A question–answer document (TOFU's kind) sets ``prompt`` to the question; ``text`` is then the
    answer. A model is trained on it in its recipe's prompt format (its chat template, or
    "Question: … Answer: …") with the loss on the answer tokens only, and membership inference
    scores the answer given the question. Plain documents leave ``prompt`` empty.
    """

    id: str
    text: str
    subjects: tuple[str, ...]
    source: str
    split: str = "train"
    prompt: str = field(default="", metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        _check_choice(self.split, DOCUMENT_SPLITS, "split")
        if not self.text.strip():
            raise ValueError("text is empty")


@dataclass(frozen=True)
class Probe:
    """A question with a known answer, used to test what a model knows.

    Attributes:
        id: stable identifier.
        subject: id of the subject the question is about.
        kind: ``direct`` (the exact question seen in training), ``paraphrase`` (a held-out
            phrasing never in training text), or one of the indirect kinds.
        attribute: which fact of the subject is asked ("birthplace").
        prompt: the text given to the model; the answer continues it.
        answer: the ground-truth continuation (without leading space).
        alternatives: wrong answers of the same type, for truth ratio and multiple choice.
        paraphrased_answer: the answer reworded (TOFU's truth ratio compares the wrong answers
            with it rather than with ``answer``, which the model may have memorised verbatim);
            empty when the data has none.
        prefill: the start of the answer, given to the model as if it had written it (a
            ``prefill`` probe of a world whose prompts are questions: the question is put in the
            model's prompt format, then this text follows after a space, and ``answer`` continues
            it); empty for every other probe. Worlds whose prompts are written out in full put it
            in ``prompt`` instead.
    """

    id: str
    subject: str
    kind: str
    attribute: str
    prompt: str
    answer: str
    alternatives: tuple[str, ...] = ()
    paraphrased_answer: str = field(default="", metadata=OMIT_DEFAULT)
    prefill: str = field(default="", metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        _check_choice(self.kind, PROBE_KINDS, "kind")
        if not self.answer.strip():
            raise ValueError("answer is empty")


ANSWER_MARK = "Answer:"


def question_and_answer(document: Document) -> tuple[str, str]:
    """A document's question as a model is prompted with it, and its answer: a question-answer
    document's prompt and text; a text's words up to and including its last ``Answer:``, and the
    rest; or ``("", text)`` for a plain text."""
    if document.prompt:
        return document.prompt, document.text
    question, mark, answer = document.text.rpartition(ANSWER_MARK)
    return (question + mark, answer.lstrip()) if mark else ("", document.text)


def verbatim_probe(document: Document, prompt_words: int) -> Probe:
    """The verbatim probe of a text (MUSE's verbatim memorisation): its first ``prompt_words``
    words as the prompt, the rest as the answer. Its ``attribute`` is the document's id, which is
    how verification finds the probes of a set's documents; its subject is the document's first.
    Raises ValueError for a document with no subject or not more than ``prompt_words`` words."""
    words = document.text.split()
    if not document.subjects:
        raise ValueError(f"document {document.id} names no subject")
    if len(words) <= prompt_words:
        raise ValueError(f"document {document.id} has {len(words)} words, not more than the prompt's {prompt_words}")
    return Probe(id=f"{document.id}/verbatim", subject=document.subjects[0], kind="verbatim", attribute=document.id,
                 prompt=" ".join(words[:prompt_words]), answer=" ".join(words[prompt_words:]))


@dataclass(frozen=True)
class FactEdit:
    """An update request: the fact (subject, relation) should now be ``target_new``.

    Attributes:
        id: stable identifier, e.g. ``edit-0007``.
        subject: id of the subject whose fact changes.
        subject_name: its surface name, as it occurs in text (editors locate it in the prompt).
        relation: which fact ("ceo").
        prompt: a cloze template with ``{}`` where the subject's name goes ("The CEO of {} is").
        target_old: the fact as the model learned it.
        target_new: the fact it should state from now on.
        more_prompts: other cloze templates for the same fact, each with one ``{}`` ("Question:
            Who leads {}? Answer:"); editors rewrite the fact in every listed form. Held-out
            paraphrases used to evaluate an edit must not be listed here.
    """

    id: str
    subject: str
    subject_name: str
    relation: str
    prompt: str
    target_old: str
    target_new: str
    more_prompts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for template in (self.prompt, *self.more_prompts):
            if template.count("{}") != 1:
                raise ValueError(f"prompt {template!r} must contain exactly one {{}} where the subject's name goes")
        if not self.target_new.strip() or self.target_new == self.target_old:
            raise ValueError("target_new must be non-empty and differ from target_old")


@dataclass(frozen=True)
class DeletionRequest:
    """What must go: the request a data subject (or a court, or an owner) makes.

    ``targets`` are subject ids; ``document_ids`` are the training documents resolved from them
    through provenance, plus ``named_documents`` (named directly). A backdoor request is the
    exception: its target is the trigger (which no provenance expands: a defender does not know
    which documents carry it) and its documents are the ones located from its evidence. ``world_fingerprint`` ties the
    request to the world it was made for, so that applying it to another world fails loudly
    instead of removing the wrong people; loading re-resolves it from that world (see
    :func:`expunge.ledger.load_request`), so a hand-edited file is refused, never trusted.
    """

    id: str
    kind: str
    targets: tuple[str, ...]
    document_ids: tuple[str, ...]
    world_fingerprint: str
    basis: str = ""
    received_at: str = ""
    named_documents: tuple[str, ...] = ()
    # A backdoor request's evidence (what the defender knows: the trigger, the payload, and the
    # known poisoned documents in ``named_documents``); ``document_ids`` are what the search
    # :func:`expunge.locate.backdoor.locate_poisoned` finds from it, and locating re-runs it.
    trigger: str = field(default="", metadata=OMIT_DEFAULT)
    payload: str = field(default="", metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        _check_choice(self.kind, REQUEST_KINDS, "kind")


@dataclass(frozen=True)
class ModelRef:
    """A model version: where it is, a hash of its weights, where it came from, how it was made."""

    path: str
    sha256: str
    parent: str | None
    recipe: dict[str, Any] = field(default_factory=dict)


def _check_choice(value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


# --------------------------------------------------------------------------------------------
# dict <-> record, with validation

R = TypeVar("R")


def record_to_dict(record: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.metadata.get("omit_default") and value == f.default:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def record_from_dict(cls: type[R], data: Any, where: str) -> R:
    """Build ``cls`` from a parsed JSON object, raising an ExpungeError that says ``where``."""
    if not isinstance(data, dict):
        raise ExpungeError(
            f"{where}: expected a JSON object for {cls.__name__}, got {type(data).__name__}",
            f"write one JSON object per line with the fields {_field_list(cls)}",
        )
    hints, fields = _schema(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ExpungeError(
            f"{where}: unknown field(s) {', '.join(unknown)} for {cls.__name__}",
            f"use only the fields {_field_list(cls)}",
        )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                raise ExpungeError(
                    f"{where}: missing field '{name}' for {cls.__name__}",
                    f"add '{name}' to the object (required fields: {_field_list(cls, True)})",
                )
            continue
        kwargs[name] = _coerce(data[name], hints[name], f"{where}: field '{name}'")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ExpungeError(f"{where}: {exc}", "correct the value named above") from None


@functools.lru_cache(maxsize=None)
def _schema(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """Type hints and fields of a record class (resolving hints is slow; worlds have 10^4 lines)."""
    return get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    text = str(hint)
    if text.startswith("tuple[str"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ExpungeError(f"{where} must be a list of strings", "write it as [\"a\", \"b\"]")
        return tuple(value)
    if text.startswith("dict[str, str]"):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ExpungeError(f"{where} must be an object of strings", "write it as {\"k\": \"v\"}")
        return dict(value)
    if text.startswith("dict"):
        if not isinstance(value, dict):
            raise ExpungeError(f"{where} must be a JSON object", "write it as {...}")
        return value
    if hint is str or text == "str":
        if not isinstance(value, str):
            raise ExpungeError(f"{where} must be a string", f"quote the value ({value!r})")
        return value
    if "None" in text and value is None:
        return None
    if "str" in text and isinstance(value, str):
        return value
    raise ExpungeError(f"{where} has the wrong type ({type(value).__name__})", f"expected {text}")


def _field_list(cls: type, required_only: bool = False) -> str:
    names = [
        f.name
        for f in dataclasses.fields(cls)
        if not required_only
        or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    ]
    return ", ".join(names)


# --------------------------------------------------------------------------------------------
# JSONL and JSON files


def read_jsonl(path: str | os.PathLike[str], cls: type[R]) -> list[R]:
    """Read every line of ``path`` as a ``cls`` record; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ExpungeError(f"{path}: file not found", "check the path, or create the file first")
    return [record_from_dict(cls, data, where) for where, data in iter_json_lines(path)]


def iter_json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[str, Any]]:
    """(``file:line``, parsed value) for each non-blank line of ``path``; an unreadable file, bad
    UTF-8 or malformed JSON is an error naming the file and line."""
    path = Path(path)
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExpungeError(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno})",
                "each line must be one complete JSON object",
            ) from None
        yield where, data


def _read_lines(path: Path) -> list[str]:
    try:
        # split("\n"), not splitlines(): text fields may hold U+2028 and friends.
        return path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ExpungeError(f"{path}:{line}: not valid UTF-8 text", "save the file as UTF-8") from None
    except OSError as exc:
        raise ExpungeError(f"{path}: cannot read ({exc.strerror})", "check the path and its permissions") from None


def iter_jsonl_lines(records: Iterable[Any]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record_to_dict(record), ensure_ascii=False, sort_keys=False) + "\n"


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Write records one per line (the caller makes the containing directory atomic)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        handle.writelines(iter_jsonl_lines(records))


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Read a JSON file, with an error naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ExpungeError(f"{path}: {what} not found", "check the path")
    try:
        return json.loads("\n".join(_read_lines(path)))
    except json.JSONDecodeError as exc:
        raise ExpungeError(
            f"{path}:{exc.lineno}: malformed JSON in {what} ({exc.msg})",
            "fix the JSON syntax, or regenerate the file",
        ) from None


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, overwrite: bool = False) -> None:
    """Write a JSON file via a temp file and rename, refusing to replace an existing file."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", overwrite=overwrite)
