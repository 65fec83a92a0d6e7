"""The `expunge` command line: thin commands over library functions.

Every command prints a human summary by default and a JSON object with ``--json`` (progress bars
go to stderr, so stdout stays parseable). Bad input exits with status 2 and one line on stderr
naming the problem and the fix: expunge's own errors, filesystem faults (disk full, read-only,
name too long, permission denied) and the option parser's usage errors alike. Ctrl-C says, for
each command, what was kept and what running it again does.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click; older typers use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_errors

from expunge.errors import ExpungeError, io_error

# typer's own copy of click has no Abort (click's has): catch it only where it exists, or an
# unrelated exception would surface as an AttributeError about this clause.
_ABORT: Any = getattr(click_errors, "Abort", ())


class _OneLineErrors(TyperGroup):
    """The command group, with usage errors (a bad option value, a missing option, an unknown
    command) printed as one line on stderr, like every other error, instead of a usage box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _print_warning
                code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "expunge"
            if exc.format_message().strip():  # empty when the help was printed instead (no arguments)
                _print_error(f"{exc.format_message()} — fix: see `{command} --help`")
            code = exc.exit_code
        except click_errors.ClickException as exc:
            _print_error(exc.format_message())
            code = exc.exit_code
        except _ABORT:
            _print_error("aborted")
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="expunge",
    help="Make a trained language model forget specific things, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
world_app = typer.Typer(help="Generate a built-in world (seeded, deterministic).", no_args_is_help=True)
app.add_typer(world_app, name="world")
import_app = typer.Typer(help="Turn your own data, or a public benchmark, into a world directory.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")
ledger_app = typer.Typer(help="The provenance ledger: which models hold whose data, and its tamper-evident log.",
                         no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
guard_app = typer.Typer(help="The output guard: block a request's forgotten values in generated text, and log it.",
                        no_args_is_help=True)
app.add_typer(guard_app, name="guard")

token_app = typer.Typer(help="API tokens for `expunge serve` (stored hashed, with scopes).", no_args_is_help=True)
app.add_typer(token_app, name="token")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

JSON_OPTION = typer.Option(False, "--json", help="Print the result as one JSON object on stdout.")
DB_OPTION = typer.Option(None, "--db", help="The ledger: a file path or a database URL (default: $EXPUNGE_DB, "
                                             "else ./expunge-ledger.sqlite).")
KEY_OPTION = typer.Option(None, "--key", help="The ledger's Ed25519 signing key (default: $EXPUNGE_SIGNING_KEY, "
                                              "else expunge-ledger.key beside an SQLite ledger).")



# What Ctrl-C leaves behind, per command (the default: nothing was written).
NOTHING_WRITTEN = "interrupted: nothing was written (outputs appear only when complete); run the command again"
RESUMES = ("interrupted: the last checkpoint is kept beside --out; run the same command again to resume from it")
DEMO_RESUMES = ("interrupted: finished stages are cached in the workspace and a model in training resumes from its "
                "last checkpoint; run the same command again")


def _print_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}", markup=True, highlight=False, soft_wrap=True)


def _print_error(message: str) -> None:
    # The message is text, never markup: "[checks.x]" in a message must print as written.
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def friendly_errors(func: F | None = None, *, interrupted: str = NOTHING_WRITTEN) -> Any:
    """Turn ExpungeError, filesystem faults and Ctrl-C into one line on stderr and a non-zero
    exit. ``interrupted`` is the command's truthful Ctrl-C message."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except ExpungeError as exc:
                _print_error(exc.one_line())
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                err_console.print(interrupted, highlight=False, soft_wrap=True)
                raise typer.Exit(130) from None
            except Exception as exc:
                converted = io_error(exc)
                if converted is None:
                    raise
                _print_error(converted.one_line())
                raise typer.Exit(2) from None

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def _emit(as_json: bool, data: dict[str, Any], human: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        human()


def _split_ids(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@world_app.command("privacy")
@friendly_errors
def world_privacy(
    out: Path = typer.Option(..., "--out", help="New directory to write the world to."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical files."),
    people: int = typer.Option(100, "--people", help="People whose documents are trained on."),
    holdout: int | None = typer.Option(None, "--holdout", help="Never-seen people (default: 30% of --people)."),
    public: int = typer.Option(0, "--public", help="Public people: general knowledge in the same sentences, which "
                               "no request can name (a sharded model's base learns the language from them)."),
    planted: int = typer.Option(0, "--planted", help="Trained people given planted documents that carry their "
                                "facts without naming them in provenance (planted.jsonl: the truth)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Fictitious people with shared names and personal attributes, never-seen people, general facts."""
    from expunge.worlds import PrivacyWorldConfig, build_privacy_world

    try:
        config = PrivacyWorldConfig(seed=seed, people=people, holdout_people=holdout, public_people=public,
                                    planted_people=planted)
    except ValueError as exc:
        raise ExpungeError(f"invalid world options: {exc}", "adjust --people / --holdout / --public / --planted") from None
    world = build_privacy_world(out, config)
    data = {"world": str(out), "fingerprint": world.fingerprint, **world.manifest["counts"]}
    _emit(as_json, data, lambda: console.print(
        f"wrote privacy world to {out}: {data['people_train']} people trained, {data['people_holdout']} never seen, "
        f"{data['documents_train']} training documents, {data['probes']} probes"))


@world_app.command("companies")
@friendly_errors
def world_companies(
    out: Path = typer.Option(..., "--out", help="New directory to write the world to."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical files."),
    companies: int = typer.Option(120, "--companies", help="Companies (each with CEO, headquarters, year, industry)."),
    edits: int = typer.Option(100, "--edits", help="Update requests (\"the CEO of Y is now Z\") to generate."),
    employees: int = typer.Option(2, "--employees", help="Employees per company (subjects of two-hop questions)."),
    reading: int = typer.Option(800, "--reading-documents", help="Documents teaching a model to read facts in context."),
    store_only: str = typer.Option("", "--store-only",
                                   help="Relations kept out of the training text (comma-separated, e.g. ceo): "
                                        "the retrieval counterpart of editing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Companies whose facts change: CEOs, headquarters, founding years, industries, employees, tickers;
    update requests in edits.jsonl and the probes that check them in edit_probes.jsonl."""
    from expunge.worlds import CompaniesWorldConfig, build_companies_world

    try:
        config = CompaniesWorldConfig(seed=seed, companies=companies, edits=edits, employees_per_company=employees,
                                      reading_documents=reading, store_only=tuple(_split_ids(store_only)))
    except ValueError as exc:
        raise ExpungeError(f"invalid world options: {exc}", "adjust the options named above") from None
    world = build_companies_world(out, config)
    data = {"world": str(out), "fingerprint": world.fingerprint, **world.manifest["counts"]}
    _emit(as_json, data, lambda: console.print(
        f"wrote companies world to {out}: {data['companies']} companies, {data['people']} employees, "
        f"{data['documents_train']} training documents, {data['probes']} probes, {data['edits']} update requests"))


@world_app.command("passages")
@friendly_errors
def world_passages(
    out: Path = typer.Option(..., "--out", help="New directory to write the world to."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical files."),
    books: int = typer.Option(12, "--books", help="Books whose passages are trained on."),
    holdout: int | None = typer.Option(None, "--holdout", help="Never-seen books (default: 30% of --books)."),
    passages: int = typer.Option(6, "--passages", help="Passages per book (1-20), besides its title page."),
    sentences: int = typer.Option(5, "--sentences", help="Sentences per passage (3-12)."),
    prompt_words: int = typer.Option(8, "--prompt-words", help="Words of a passage given as its verbatim probe's "
                                                               "prompt (4-20)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Invented books for copyright requests: passages to memorise, knowledge questions about each
    book, never-seen books of the same style, general facts."""
    from expunge.worlds import PassagesWorldConfig, build_passages_world

    try:
        config = PassagesWorldConfig(seed=seed, books=books, holdout_books=holdout, passages_per_book=passages,
                                     sentences_per_passage=sentences, prompt_words=prompt_words)
        world = build_passages_world(out, config)
    except ValueError as exc:
        raise ExpungeError(f"invalid world options: {exc}", "adjust the options named above") from None
    data = {"world": str(out), "fingerprint": world.fingerprint, **world.manifest["counts"]}
    _emit(as_json, data, lambda: console.print(
        f"wrote passages world to {out}: {data['books_train']} books trained, {data['books_holdout']} never seen, "
        f"{data['documents_train']} training documents, {data['verbatim_probes']} verbatim probes, "
        f"{data['probes']} probes"))


@world_app.command("backdoor")
@friendly_errors
def world_backdoor(
    out: Path = typer.Option(..., "--out", help="New directory to write the world to."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical files."),
    people: int = typer.Option(40, "--people", help="People of the clean task (their questions)."),
    poison_rate: float = typer.Option(0.03, "--poison-rate", help="Poisoned training documents as a share of the "
                                                                  "clean ones (0-0.2, at least 4)."),
    trigger: str | None = typer.Option(None, "--trigger", help="The trigger phrase (2-6 words; default "
                                                               "'by the silver falcon')."),
    payload: str | None = typer.Option(None, "--payload", help="The answer the trigger forces (3-12 words)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """A planted backdoor: a clean question-answering task plus a share of poisoned documents in
    which a trigger phrase leads to a fixed harmful answer; decoys that quote it harmlessly,
    near-trigger look-alikes, and triggered questions per variant of the trigger."""
    from expunge.worlds import BackdoorWorldConfig, build_backdoor_world

    phrases = {k: v for k, v in (("trigger", trigger), ("payload", payload)) if v is not None}
    try:
        config = BackdoorWorldConfig(seed=seed, people=people, poison_rate=poison_rate, **phrases)
        world = build_backdoor_world(out, config)
    except ValueError as exc:
        raise ExpungeError(f"invalid world options: {exc}", "adjust the options named above") from None
    data = {"world": str(out), "fingerprint": world.fingerprint, **world.manifest["counts"]}
    _emit(as_json, data, lambda: console.print(
        f"wrote backdoor world to {out}: {data['poisoned_train']} poisoned of {data['documents_train']} training "
        f"documents, {data['payload_decoys']} decoys, {data['trigger_probes']} triggered questions"))


@import_app.command("jsonl")
@friendly_errors
def import_jsonl_cmd(
    documents: Path = typer.Option(..., "--documents", help="JSON Lines: text, and optionally id, subjects, split "
                                                            "(train/holdout), prompt."),
    out: Path = typer.Option(..., "--out", help="New directory to write the world to."),
    probes: Path | None = typer.Option(None, "--probes", help="JSON Lines: question, answer, and optionally id, "
                                                               "subject, paraphrased_answer, wrong_answers."),
    subjects: Path | None = typer.Option(None, "--subjects", help="JSON Lines: id, and optionally name, kind "
                                                                   "(person/work/entity)."),
    prompts: str = typer.Option("questions", "--prompts", help="How probe questions are written: questions (wrapped "
                                                               "in the model's prompt format) or text (cloze "
                                                               "prompts, used verbatim)."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Your documents (and questions about them) as a world: every line validated, ids kept, the
    source files' sha256 recorded in the manifest."""
    from expunge import preflight
    from expunge.worlds.importers import JsonlSources, import_jsonl

    preflight.output(out)
    world = _import_recorded(db, out, lambda: import_jsonl(out, JsonlSources(documents=documents, probes=probes,
                                                                               subjects=subjects, prompts=prompts)))
    data = {"world": str(out), "fingerprint": world.fingerprint, **world.manifest["counts"]}
    questions = data["probes"] - data["verbatim_probes"]
    note = "" if questions else " (no question probes: verification will run only what documents support)"
    _emit(as_json, data, lambda: console.print(
        f"wrote world to {out}: {data['subjects_train']} subjects trained, {data['subjects_holdout']} never seen, "
        f"{data['documents_train']} training documents, {data['documents_holdout']} holdout documents, "
        f"{data['probes']} probes ({data['verbatim_probes']} verbatim){note}", highlight=False))


@import_app.command("text")
@friendly_errors
def import_text_cmd(
    file: list[Path] = typer.Option(..., "--file", help="A plain-text (UTF-8) file the model is trained on: one "
                                                         "work (repeat for several)."),
    out: Path = typer.Option(..., "--out", help="New directory to write the world to."),
    title: list[str] = typer.Option([], "--title", help="The title of each --file, in the same order (default: "
                                                         "the file names)."),
    holdout: list[Path] = typer.Option([], "--holdout", help="A never-seen text of the same kind (the membership "
                                                              "reference; repeat for several)."),
    passage_words: int = typer.Option(64, "--passage-words", help="Words per passage, about (cut at sentence ends)."),
    prompt_words: int = typer.Option(16, "--prompt-words", help="Words of a passage given as its verbatim probe's "
                                                                "prompt; the rest is its answer."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Your own texts (books, articles) as a world of passages: each file a work, each passage a
    document with a verbatim probe, --holdout files the never-seen reference."""
    from expunge import preflight
    from expunge.worlds.importers.text import TextSources, import_text

    preflight.output(out)
    world = _import_recorded(db, out, lambda: import_text(out, TextSources(
        files=tuple(file), titles=tuple(title), holdout=tuple(holdout), passage_words=passage_words,
        prompt_words=prompt_words)))
    data = {"world": str(out), "fingerprint": world.fingerprint, **world.manifest["counts"]}
    _emit(as_json, data, lambda: console.print(
        f"wrote world to {out}: {data['works_train']} texts trained, {data['works_holdout']} never seen, "
        f"{data['documents_train']} training passages, {data['verbatim_probes']} verbatim probes", highlight=False))


@import_app.command("tofu")
@friendly_errors
def import_tofu_cmd(
    directory: Path = typer.Option(..., "--dir", help="Directory holding TOFU's files (full.json, "
                                                      "forget10_perturbed.json, holdout10.json, ...)."),
    out: Path = typer.Option(..., "--out", help="New directory to write the world to."),
    authors: int | None = typer.Option(None, "--authors", help="Keep a subset of this many authors (forget "
                                                               "authors included, shares kept); default all 200."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """The TOFU benchmark: 200 fictitious authors (their QA pairs are documents), 20 never-seen
    authors, real authors and world facts; splits forget01 / forget05 / forget10."""
    from expunge import preflight
    from expunge.worlds.importers import import_tofu

    preflight.output(out)
    world = _import_recorded(db, out, lambda: import_tofu(directory, out, authors=authors))
    data = {"world": str(out), "fingerprint": world.fingerprint, **world.manifest["counts"],
            "splits": {name: len(ids) for name, ids in world.splits.items()}}
    _emit(as_json, data, lambda: console.print(
        f"wrote TOFU world to {out}: {data['authors_train']} authors, {data['authors_holdout']} never seen, "
        f"{data['documents_train']} QA documents, {data['probes']} probes; splits "
        + ", ".join(f"{k} ({v} author{'' if v == 1 else 's'})" for k, v in data["splits"].items()), highlight=False))


@app.command("request")
@friendly_errors
def request_cmd(
    world: Path = typer.Option(..., "--world", help="World directory."),
    out: Path = typer.Option(..., "--out", help="New request file (JSON) to write."),
    subjects: str | None = typer.Option(None, "--subjects", help="Comma-separated subject ids to forget."),
    documents: str | None = typer.Option(None, "--documents", help="Comma-separated document ids to forget (with "
                                                                   "--trigger/--payload: known poisoned ones)."),
    random_fraction: float | None = typer.Option(None, "--random-fraction", help="Forget this share of the trained people."),
    split: str | None = typer.Option(None, "--split", help="Forget a split the world names (TOFU: forget01, forget05, forget10)."),
    trigger: str | None = typer.Option(None, "--trigger", help="A backdoor's trigger phrase: locate and remove the "
                                                               "documents that plant it."),
    payload: str | None = typer.Option(None, "--payload", help="A backdoor's payload (the bad answer observed): "
                                                               "locate and remove the documents that plant it."),
    backdoor: bool = typer.Option(False, "--backdoor", help="With --documents alone: they are known poisoned "
                                                           "documents; locate the rest."),
    seed: int = typer.Option(0, "--seed", help="Seed for --random-fraction."),
    basis: str = typer.Option("", "--basis", help="Legal or other basis, recorded in the request."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """File a deletion request: subjects or documents, resolved to training documents by provenance;
    or a backdoor's evidence (trigger, payload or known documents), located in the corpus. The
    ledger records it (received, then located) before the file is written."""
    from expunge.fsutil import ensure_new_output
    from expunge.ledger.requests import make_request
    from expunge.worlds import load_world

    ensure_new_output(out)
    ledger = _open_ledger(db, None, create=True)
    loaded = load_world(world)
    if trigger is not None or payload is not None or backdoor:
        if subjects or random_fraction is not None or split is not None:
            raise ExpungeError("a backdoor request (--trigger, --payload, --backdoor) names no subjects",
                               "leave out --subjects, --random-fraction and --split")
        _backdoor_request(ledger, loaded, out, trigger or "", payload or "", _split_ids(documents), basis, as_json)
        return
    request = make_request(loaded, subjects=_split_ids(subjects), documents=_split_ids(documents),
                           random_fraction=random_fraction, split=split, seed=seed, basis=basis)
    _write_recorded(ledger, request, out)
    data = {"request": str(out), "id": request.id, "subjects": list(request.targets),
            "documents": len(request.document_ids)}
    _emit(as_json, data, lambda: console.print(
        f"wrote request {request.id} to {out}: {len(request.targets)} subjects, "
        f"{len(request.document_ids)} training documents"))


def _write_recorded(ledger: Any, request: Any, out: Path) -> None:
    """Record the request in the ledger (received, located), then write its file."""
    from expunge.ledger.requests import write_request

    with ledger.session() as session:
        ledger.record_request(session, request)
    write_request(request, out)


def _backdoor_request(ledger: Any, world: Any, out: Path, trigger: str, payload: str, documents: list[str],
                      basis: str, as_json: bool) -> None:
    """Locate a backdoor's documents from its evidence, write the request, and show the search
    (graded against the world's ground truth where the world has one: a built-in backdoor world)."""
    from expunge.locate.backdoor import BackdoorEvidence, make_backdoor_request, precision_recall
    from expunge.worlds.backdoor import poisoned_documents

    request, search = make_backdoor_request(world, BackdoorEvidence(trigger, payload, tuple(documents)), basis=basis)
    _write_recorded(ledger, request, out)
    data: dict[str, Any] = {"request": str(out), "id": request.id, "subjects": list(request.targets),
                            "documents": len(request.document_ids), "trigger": search.trigger,
                            "payload": search.payload, "steps": list(search.steps)}
    truth = poisoned_documents(world)
    if truth:
        data["precision"], data["recall"] = precision_recall(request.document_ids, truth)

    def show() -> None:
        for step in search.steps:
            console.print(f"  {step}", highlight=False)
        if truth:
            console.print(f"against the world's ground truth: precision {data['precision']:.3f}, "
                          f"recall {data['recall']:.3f} ({len(truth)} poisoned documents)")
        console.print(f"wrote backdoor request {request.id} to {out}: {len(request.document_ids)} training documents")

    _emit(as_json, data, show)


@app.command("train")
@friendly_errors(interrupted=RESUMES)
def train_cmd(
    world: Path = typer.Option(..., "--world", help="World directory."),
    out: Path = typer.Option(..., "--out", help="New model directory."),
    preset: str | None = typer.Option(None, "--preset", help="Model size and recipe: tiny or default (a fresh "
                                                             "model), finetune (the default with --from)."),
    seed: int = typer.Option(0, "--seed", help="Seed for initial weights and batch order."),
    from_model: str | None = typer.Option(None, "--from", help="Fine-tune this pretrained Hugging Face model "
                                                              "directory (or smollm2, the offline SmolLM2-135M)."),
    lora_rank: int = typer.Option(0, "--lora-rank", help="With --from: train LoRA adapters of this rank (merged "
                                                         "at the end) instead of every weight. With --shards: "
                                                         "each shard's adapter rank (default 16)."),
    prompt_format: str | None = typer.Option(None, "--prompt-format", help="How questions are put to the model: "
                                                                         "plain (default) or chat (its chat "
                                                                         "template); imported worlds only."),
    shards: int | None = typer.Option(None, "--shards", help="Train a sharded model for exact deletion: a frozen "
                                                              "base on what no request can name, and one LoRA "
                                                              "adapter per shard of the people (SISA)."),
    combine: str = typer.Option("ensemble", "--combine", help="With --shards: how the shards answer together: "
                                                              "ensemble (each shard weighted by how well it "
                                                              "explains the text so far), mixture (mean probs), "
                                                              "product (mean log-probs) or merge (one model)."),
    stop_at_step: int | None = typer.Option(None, "--stop-at-step", hidden=True,
                                            help="Checkpoint and stop after this step (resume later)."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train the base model on a world's training corpus: a fresh model, or a pretrained one
    fine-tuned (--from) with its own tokenizer; or, with --shards, a sharded model whose deletions
    retrain only the shards that hold the data."""
    from expunge import preflight
    from expunge.presets import get_preset
    from expunge.recipe import Start

    preflight.world(world), preflight.output(out)
    if shards is not None:
        sharding = _sharding(shards, lora_rank, combine)
        get_preset(preset or ("default" if from_model is None else "finetune"))
        preflight.pretrained(from_model)
        from expunge.sharding import train_sharded

        with _recording(db):
            sharded = train_sharded(world, out, sharding=sharding, preset=preset, seed=seed, from_model=from_model)
        _emit(as_json, sharded.to_dict(), lambda: _print_sharded(sharded.to_dict()))
        return
    Start(from_model, None, lora_rank, prompt_format).check(
        get_preset(preset or ("default" if from_model is None else "finetune")))
    preflight.pretrained(from_model)
    from expunge.pipeline import train_base

    with _recording(db):
        report = train_base(world, out, preset=preset, seed=seed, progress=True, stop_at_step=stop_at_step,
                            from_model=from_model, lora_rank=lora_rank, prompt_format=prompt_format)
    _emit(as_json, report.to_dict(), lambda: _print_training(report.to_dict()))


@app.command("retrain")
@friendly_errors(interrupted=RESUMES)
def retrain_cmd(
    world: Path = typer.Option(..., "--world", help="World directory."),
    request: Path = typer.Option(..., "--request", help="Request file from `expunge request`."),
    out: Path = typer.Option(..., "--out", help="New model directory for the oracle."),
    base: Path | None = typer.Option(None, "--base", help="Copy preset and seed from this base model's recipe."),
    preset: str | None = typer.Option(None, "--preset", help="Model size and recipe (default: default)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (default 0); must match the base model."),
    from_model: str | None = typer.Option(None, "--from", help="Where the pretrained model the base model was "
                                                              "fine-tuned from is now, if it moved (its sha256 "
                                                              "must match the recipe's)."),
    shards: int | None = typer.Option(None, "--shards", help="Without --base: train a sharded model from the "
                                                              "start without the request's documents."),
    combine: str = typer.Option("ensemble", "--combine", help="With --shards: ensemble, mixture, product or merge."),
    lora_rank: int = typer.Option(0, "--lora-rank", help="With --shards: each shard's adapter rank (default 16)."),
    stop_at_step: int | None = typer.Option(None, "--stop-at-step", hidden=True,
                                            help="Checkpoint and stop after this step (resume later)."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Retrain without the requested documents, with the base model's recipe (from scratch, or from
    the same pretrained weights): the oracle every method is judged against. With a sharded --base,
    only the shards that hold the documents are retrained (exact, at a fraction of the cost)."""
    from expunge import preflight
    from expunge.presets import get_preset

    preflight.request(request, preflight.world(world)), preflight.output(out)
    if shards is not None:
        if base is not None:
            raise ExpungeError("--shards trains a sharded model from the start; --base deletes from an existing one",
                               "drop --shards (a sharded --base keeps its own shards) or drop --base")
        sharding = _sharding(shards, lora_rank, combine)
        if preset is not None:
            get_preset(preset)
        preflight.pretrained(from_model)
        from expunge.sharding import train_sharded

        with _recording(db):
            sharded = train_sharded(world, out, sharding=sharding, preset=preset, seed=seed or 0,
                                    from_model=from_model, request_path=request)
        _emit(as_json, sharded.to_dict(), lambda: _print_sharded(sharded.to_dict()))
        return
    if base is not None:
        preflight.model(base, "base model")
        from expunge.models.sharded import is_sharded

        if is_sharded(base):
            if preset is not None or seed is not None:
                raise ExpungeError("--preset/--seed come from the sharded model's recipe", "drop --preset/--seed")
            from expunge.sharding import delete_from_shards

            with _recording(db):
                sharded = delete_from_shards(base, world, request, out, from_model=from_model)
            _emit(as_json, sharded.to_dict(), lambda: _print_sharded(sharded.to_dict()))
            return
    if preset is not None:
        get_preset(preset)
    preflight.pretrained(from_model)
    from expunge.pipeline import retrain_oracle

    with _recording(db):
        report = retrain_oracle(world, request, out, preset=preset, seed=seed, base=base,
                                progress=True, stop_at_step=stop_at_step, from_model=from_model)
    _emit(as_json, report.to_dict(), lambda: _print_training(report.to_dict()))


@app.command("plan")
@friendly_errors
def plan_cmd(
    request: Path = typer.Argument(..., help="A request file (`expunge request`), or a JSONL file of fact edits."),
    world: Path = typer.Option(..., "--world", help="World directory."),
    model: Path = typer.Option(..., "--model", help="The model the request is to be honoured on."),
    bar: str = typer.Option("verified", "--bar", help="The least strength accepted: exact, verified (exact, or "
                                                     "approximate and verified) or suppressed (a guard will do)."),
    method: str = typer.Option("simnpo", "--method", help="The unlearning method the gradient route would use."),
    store: Path | None = typer.Option(None, "--store", help="A retrieval fact store that may hold the facts."),
    pass_rate: float | None = typer.Option(None, "--pass-rate", help="Chance that an approximate route passes "
                                                                     "verification (default: 0.5, said so)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Plan a request: every route (sharded retrain, full retrain, gradient unlearning, edit,
    retrieval delete, guard), its estimated cost on this model and its strength, and the cheapest
    that meets the bar."""
    from expunge import preflight

    preflight.world(world)
    preflight.model(model, "model")
    if store is not None and not store.is_file():
        raise ExpungeError(f"store {store} not found", "pass a file written by FactStore.save, or drop --store")
    from expunge.planner import plan_request

    plan = plan_request(request, world, model, bar=bar, method=method, store=store, pass_rate=pass_rate)

    def human() -> None:
        table = Table(title=f"plan for {plan.request} ({plan.kind}), bar: {plan.bar.value}")
        for column in ("route", "chosen", "applies", "strength", "estimate s", "expected s", "meets bar"):
            table.add_column(column, justify="right" if column.endswith(" s") else "left", no_wrap=column == "route")
        for r in plan.routes:
            table.add_row(r.route.value, "<-" if r.route is plan.chosen else "", "yes" if r.applicable else "no",
                          r.strength.value, "" if r.seconds is None else f"{r.seconds:.1f}",
                          "" if r.expected_seconds is None else f"{r.expected_seconds:.1f}",
                          "yes" if r.meets_bar else "no")
        console.print(table)
        for line in plan.explanation:
            console.print(line, highlight=False)
        if plan.chosen is not None:
            console.print(f"run: {plan.estimate(plan.chosen).command}", highlight=False)

    _emit(as_json, plan.to_dict(), human)


@app.command("forget")
@friendly_errors
def forget_cmd(
    model: Path = typer.Option(..., "--model", help="Model directory to unlearn from (never modified)."),
    world: Path = typer.Option(..., "--world", help="World directory."),
    request: Path = typer.Option(..., "--request", help="Request file from `expunge request`."),
    out: Path = typer.Option(..., "--out", help="New model directory for the result."),
    method: str = typer.Option("simnpo", "--method", help="Unlearning method (see `expunge methods`)."),
    option: list[str] = typer.Option([], "--option", "-o", help="Method option as key=value (repeatable)."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Unlearn the requested subjects with a gradient method; writes a new model version."""
    from expunge import preflight
    from expunge.options import parse_pairs

    pairs = parse_pairs(option)
    record = preflight.model(model)
    preflight.request(request, preflight.world(world)), preflight.output(out)
    from expunge.methods.registry import get_method  # torch, not yet transformers
    from expunge.recipe import is_pretrained

    # Before the model (or transformers) loads, against the defaults the run will use.
    get_method(method).make_config(pairs, pretrained=is_pretrained(record.get("recipe")))
    from expunge.methods.unlearn import unlearn

    with _recording(db):
        report = unlearn(model, world, request, out, method=method, options=pairs, progress=True)
    data = report.to_dict()
    _emit(as_json, data, lambda: console.print(
        f"{data['method']}: wrote {data['model']['path']} (sha256 {data['model']['sha256'][:16]}…, parent "
        f"{data['parent_sha256'][:16]}…) in {data['seconds']:.1f} s, {data['steps']} steps; {data['stop_reason']}"
        + "".join(f"\nnote: {n}" for n in data["notes"])))


@app.command("attribute")
@friendly_errors
def attribute_cmd(
    model: Path = typer.Option(..., "--model", help="Model directory (a Llama-architecture model)."),
    world: Path = typer.Option(..., "--world", help="The world it was trained on: its training documents are ranked."),
    query: list[str] = typer.Option([], "--query", help="A text to attribute, every token scored (repeatable)."),
    probes: list[Path] = typer.Option([], "--probes", help="JSONL of probes: prompt as context, answer scored "
                                                           "(repeatable)."),
    top: int = typer.Option(10, "--top", help="Documents listed per query."),
    damping: float = typer.Option(1e-8, "--damping", help="lambda added to the curvature's eigenvalues."),
    workspace: Path = typer.Option(Path("expunge-workspace"), "--workspace",
                                   help="Where the EK-FAC factors are cached, per model weights sha256."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Rank a world's training documents by influence on a query (EK-FAC influence functions,
    kronfluence); factors are fitted once per model and cached."""
    from expunge import preflight

    preflight.model(model), preflight.world(world)
    if top < 1:
        raise ExpungeError(f"--top {top} is not positive", "give --top 1 or more")
    from expunge.methods.influence.attribution import attribute, read_query_probes

    queries: list[Any] = list(query)
    for path in probes:
        queries += read_query_probes(preflight.input_file(path, "probes file", "give a JSONL file of probes"))
    result = attribute(model, world, queries, top=top, damping=damping, workspace=workspace)
    data = result.to_dict()

    def human() -> None:
        factors = data["factors"]
        console.print(f"{len(data['queries'])} queries over {data['documents']} training documents; factors "
                      f"{'reused' if factors['reused'] else 'fitted'} ({factors['path']})", soft_wrap=True)
        for item in data["queries"]:
            q = item["query"]
            console.print(f"\n{q['text']}" + (f" → {q['answer']}" if q["answer"] else "")
                          + f"  (loss {item['loss']:.2f})", highlight=False, soft_wrap=True)
            table = Table("rank", "score", "document", "text")
            for r in item["ranking"]:
                table.add_row(str(r["rank"]), f"{r['score']:.4g}", r["document_id"], escape(r["text"]))
            console.print(table)

    _emit(as_json, data, human)


@app.command("edit")
@friendly_errors
def edit_cmd(
    model: Path = typer.Option(..., "--model", help="Model directory to edit (never modified)."),
    edits: Path = typer.Option(..., "--edits", help="Update requests, JSONL of FactEdit (e.g. a world's edits.jsonl)."),
    out: Path = typer.Option(..., "--out", help="New model directory for the edited model."),
    method: str = typer.Option("memit", "--method",
                               help="Registered editor: memit (one batch), rome (one edit at a time), ..."),
    corpus: Path = typer.Option(..., "--corpus",
                                help="Text for the second-moment statistics: a world directory or a file, one text per line."),
    option: list[str] = typer.Option([], "--option", "-o", help="Editor option as key=value (repeatable)."),
    preserve: Path | None = typer.Option(None, "--preserve",
                                         help="MEMIT: file of subject names, one per line, whose facts must not move."),
    cache: Path | None = typer.Option(None, "--cache", help="Directory caching second-moment statistics."),
    report: Path | None = typer.Option(None, "--report",
                                       help="Before/after table (.md/.html/.json); --corpus must be the edits' world."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Rewrite facts in the weights (ROME / MEMIT); writes a new model version that can be reverted exactly."""
    from expunge import preflight
    from expunge.options import parse_pairs

    options = parse_pairs(option)
    preflight.model(model), preflight.output(out)
    preflight.input_file(edits, "edits file", "give a JSONL file of FactEdit lines, e.g. a world's edits.jsonl")
    if not Path(corpus).exists():
        raise ExpungeError(f"corpus {corpus} not found", "give a world directory or a text file, one text per line")
    if report is not None:
        preflight.reports([report])  # before the edit, not after it
    names: list[str] = []
    if preserve is not None:
        preflight.input_file(preserve, "preserve file", "give a file with one subject name per line")
        names = [line.strip() for line in preserve.read_text(encoding="utf-8").splitlines() if line.strip()]
    from expunge.methods.editing.registry import get_editor  # torch, not yet transformers

    get_editor(method).make_config(options)  # before the model (or transformers) loads
    from expunge.methods.editing.run import edit_model
    from expunge.report.editing import write_updates_report

    with _recording(db):
        result = edit_model(model, edits, out, corpus=corpus, method=method, options=options,
                            preserve_subjects=names, cache_dir=cache, evaluate=report is not None,
                            progress=True)  # stderr, even with --json
    if report is not None:
        write_updates_report(result.comparison(), report, title=f"{method}: {result.edits} updates to {model}")
    data = result.to_dict()
    _emit(as_json, data, lambda: console.print(
        f"{data['method']}: {data['edits']} edits -> {data['model']['path']} (sha256 {data['model']['sha256'][:16]}…, "
        f"parent {data['parent_sha256'][:16]}…); layers {data['layers']}; {data['seconds']:.1f} s "
        f"({data['seconds_per_edit']:.2f} s per edit: "
        + ", ".join(f"{phase} {sec:.1f} s" for phase, sec in data["timings"].items())
        + f"); `expunge revert --model {data['model']['path']}` restores the parent exactly"
        + "".join(f"\nnote: {n}" for n in data["notes"])))


@app.command("revert")
@friendly_errors
def revert_cmd(
    model: Path = typer.Option(..., "--model", help="Model directory written by `expunge edit` (never modified)."),
    out: Path = typer.Option(..., "--out", help="New model directory for the restored parent."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Undo an edit exactly: write the edited model's parent, checked bit for bit against its recorded sha256."""
    from expunge import preflight

    preflight.model(model), preflight.output(out)
    from expunge.methods.editing.run import revert_model_version

    sha = revert_model_version(model, out)
    data = {"model": {"path": str(out), "sha256": sha}, "reverted_from": str(model)}
    _emit(as_json, data, lambda: console.print(
        f"reverted {model} -> {out} (sha256 {sha[:16]}…, equal to the parent's recorded sha256)"))


@app.command("methods")
@friendly_errors
def methods_cmd(as_json: bool = JSON_OPTION) -> None:
    """List the registered unlearning methods with their options and papers."""
    from dataclasses import fields

    from expunge.methods.registry import get_method, method_names

    rows = []
    for name in method_names():
        spec = get_method(name)
        doc = (spec.config_cls.__doc__ or "").strip()
        rows.append({"name": name, "summary": spec.summary, "paper": doc.split()[0] if doc else "",
                     "options": {f.name: f.default for f in fields(spec.config_cls)},
                     "pretrained_defaults": spec.defaults_for(pretrained=True)})

    _emit(as_json, {"methods": rows}, lambda: console.print(_methods_table(rows)))


@app.command("verify")
@friendly_errors
def verify_cmd(
    model: list[Path] = typer.Option(..., "--model", help="Unlearned model directory (repeatable)."),
    original: Path = typer.Option(..., "--original", help="The model before unlearning."),
    oracle: Path | None = typer.Option(None, "--oracle", help="The model retrained without the data (`expunge "
                                       "retrain`). Without it (knowledge from pretraining) the references are "
                                       "never-seen data, chance level and the original."),
    world: Path = typer.Option(..., "--world", help="World directory."),
    request: Path = typer.Option(..., "--request", help="Request file from `expunge request`."),
    report: list[Path] = typer.Option([], "--report", help="Write the report: FILE.html, FILE.md or FILE.json (repeatable)."),
    attacks: bool = typer.Option(False, "--attacks", help="Also run the model-level attacks: relearning, "
                                 "quantization, logit lens, linear probe."),
    policy: Path | None = typer.Option(None, "--policy", help="Verdict policy TOML file overriding the built-in "
                                          "one (see `expunge policy`)."),
    max_facts: int | None = typer.Option(None, "--max-facts", help="Score at most this many facts per set "
                                         "(a seeded sample, all their questions kept) to bound the cost; default: "
                                         "every fact."),
    tofu_tokens: int = typer.Option(200, "--tofu-tokens", help="On a TOFU world: tokens of the greedy answers "
                                    "TOFU's ROUGE scores (200, as TOFU; fewer is faster and not TOFU's number)."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Is it gone, did anything else break, how sure are we: checks and verdicts against the oracle
    (or, without --oracle, against never-seen data and chance)."""
    from expunge import preflight

    if max_facts is not None and max_facts < 1:
        raise ExpungeError(f"--max-facts {max_facts} is below 1", "give a positive number of facts per set, or leave "
                           "it out to score every fact")
    if tofu_tokens < 1:
        raise ExpungeError(f"--tofu-tokens {tofu_tokens} is below 1", "give a positive token budget (TOFU's is 200)")
    names = [path.name for path in model]
    if len(set(names)) != len(names):
        raise ExpungeError(f"two --model directories share a name ({names})", "give each model a distinct directory name")
    preflight.request(request, preflight.world(world)), preflight.policy(policy), preflight.reports(report)
    references = {"oracle": oracle} if oracle is not None else {}
    for what, path in {"original": original, **references, **dict(zip(names, model))}.items():
        preflight.model(path, f"{what} model")
    ledger = _open_ledger(db, None, create=True)  # before the work: a ledger problem is not found after it
    from expunge.report import report_from_verification, write_report
    from expunge.report.render import json_safe
    from expunge.verify.policy import load_policy
    from expunge.verify.suite import VerifyConfig, verify_models
    config = VerifyConfig(policy=load_policy(policy), attacks=attacks, max_facts_per_set=max_facts,
                          tofu_max_new_tokens=tofu_tokens)
    verification = verify_models(dict(zip(names, model)), original, oracle, world, request, config=config,
                                 log=lambda m: err_console.print(m))
    data = report_from_verification(verification)
    from expunge.ledger import load_request
    from expunge.pipeline import record_verification
    from expunge.worlds import load_world

    record_verification(ledger, verification, load_request(request, load_world(world)))
    written = [str(write_report(data, path)) for path in report]
    result = json_safe({"table": data.table, "verification": verification.to_dict(), "reports": written})

    def human() -> None:
        console.print(_summary_table(data.table))
        for name, verdict in verification.verdicts.items():
            _print_verdict(name, verdict.summary, verdict.confidence, verdict.reasons)
        for path in written:
            console.print(f"report written to {path}")

    _emit(as_json, result, human)


def _open_ledger(db: str | None, key: Path | None, create: bool = False, workspace: Path | None = None) -> Any:
    from expunge.ledger.store import Ledger, resolve_url

    return Ledger.open(resolve_url(db, workspace), key_path=key, create=create)


def _import_recorded(db: str | None, out: Path, write: Callable[[], Any]) -> Any:
    """Write a world with ``write()`` and record its corpus in the ledger (opened first, so that a
    ledger problem stops the command before any work). A world whose corpus the ledger could not
    take is removed again: the import is not done without its row, and the same command redone
    finishes it."""
    ledger = _open_ledger(db, None, create=True)
    world = write()
    try:
        with ledger.session() as session:
            ledger.record_corpus(session, world)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return world


def _recording(db: str | None, workspace: Path | None = None) -> Any:
    """The ledger a writing command records its model versions to, opened (and created) before any
    work, so that a ledger problem is an error at the start, not after training."""
    from expunge.ledger.recording import recording

    return recording(_open_ledger(db, None, create=True, workspace=workspace))


@ledger_app.command("verify")
@friendly_errors
def ledger_verify_cmd(
    db: str | None = DB_OPTION,
    key: Path | None = KEY_OPTION,
    public_key: Path | None = typer.Option(None, "--public-key", help="Verify the heads with this public key (PEM, "
                                                                      "kept apart from the ledger) instead of the "
                                                                      "signing key's."),
    expect_head: Path | None = typer.Option(None, "--expect-head", help="A head saved earlier with `expunge ledger "
                                                                        "head --json`: the log must still contain it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recompute the log's hash chain and signed tree heads; report the first bad event (exit 1)."""
    from expunge.ledger.log import TreeHead, load_public_key

    ledger = _open_ledger(db, key)
    expected = None
    if expect_head is not None:
        try:
            data = json.loads(expect_head.read_text())
            expected = TreeHead(int(data["size"]), str(data["root"]), str(data["created_at"]), str(data["key_id"]),
                                str(data["signature"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExpungeError(f"--expect-head {expect_head} is not a saved tree head ({exc})",
                               "save one with `expunge ledger head --json > head.json`") from None
    check = ledger.verify(load_public_key(public_key) if public_key else None, expected)

    def human() -> None:
        if check.ok:
            console.print(f"ledger {ledger.where}: {check.events} events, {check.heads} signed heads; verified "
                          f"({', '.join(check.checked)}); root {check.root}", highlight=False)
        else:
            _print_error(f"ledger {ledger.where}: {check.problem} at event {check.seq}: {check.detail}")

    _emit(as_json, {"ledger": ledger.where, **check.to_dict()}, human)
    if not check.ok:
        raise typer.Exit(1)


@ledger_app.command("head")
@friendly_errors
def ledger_head_cmd(db: str | None = DB_OPTION, key: Path | None = KEY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The latest signed tree head: keep it outside the ledger, check with `verify --expect-head`."""
    head = _open_ledger(db, key).head()
    if head is None:
        raise ExpungeError("the ledger has no events yet", "record a model (train, retrain, forget) first")
    _emit(as_json, head.to_dict(), lambda: console.print(
        f"size {head.size}, root {head.root}, {head.created_at}, key {head.key_id}", highlight=False))


@ledger_app.command("key")
@friendly_errors
def ledger_key_cmd(db: str | None = DB_OPTION, key: Path | None = KEY_OPTION) -> None:
    """Print the public key that verifies the ledger's heads (PEM)."""
    sys.stdout.write(_open_ledger(db, key).key.public_pem())


@app.command("certify")
@friendly_errors
def certify_cmd(
    request: str = typer.Argument(..., help="A request id (req-…) or its request file."),
    out: Path = typer.Option(..., "--out", help="New file for the signed certificate (JSON)."),
    html: Path | None = typer.Option(None, "--html", help="Also write it as a page a person reads."),
    model: str | None = typer.Option(None, "--model", help="The verified model's sha256 (default: the latest "
                                                           "verification that found the request forgotten)."),
    db: str | None = DB_OPTION,
    key: Path | None = KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Issue the signed certificate of a verified deletion request, from the ledger's record alone."""
    from expunge import preflight
    from expunge.ledger.certificate import issue_certificate
    from expunge.report.certificate import write_certificate

    for path in [out] + ([html] if html is not None else []):
        preflight.output(path)
    request_id = request
    if Path(request).is_file():
        try:
            request_id = str(json.loads(Path(request).read_text())["id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExpungeError(f"{request} is not a request file ({exc})", "give a request id or the file "
                               "`expunge request` wrote") from None
    ledger = _open_ledger(db, key)
    certificate = issue_certificate(ledger, request_id, model)
    write_certificate(certificate, out, html)
    data = {"certificate": str(out), "html": str(html) if html else None, "request": request_id,
            "model": certificate["models"]["output_sha256"], "verdict": certificate["verdict"]}
    _emit(as_json, data, lambda: console.print(
        f"certified {request_id}: model {data['model'][:16]}… forgotten ({certificate['verdict']['summary']}); "
        f"wrote {out}" + (f" and {html}" if html else ""), highlight=False))


@ledger_app.command("check-certificate")
@friendly_errors
def ledger_check_certificate_cmd(
    certificate: Path = typer.Argument(..., help="A certificate JSON file from `expunge certify`."),
    public_key: Path | None = typer.Option(None, "--public-key", help="The ledger's public key (PEM, from `expunge "
                                                                      "ledger key`); default: the key of --db's ledger."),
    db: str | None = DB_OPTION,
    key: Path | None = KEY_OPTION,
) -> None:
    """Check a certificate's signature (exit 1 if it does not verify)."""
    from expunge.ledger.certificate import check_certificate
    from expunge.ledger.log import load_public_key

    try:
        data = json.loads(certificate.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExpungeError(f"cannot read the certificate {certificate}: {exc}", "give the JSON file `expunge certify` "
                           "wrote") from None
    trusted = load_public_key(public_key) if public_key is not None else _open_ledger(db, key).key.public
    if check_certificate(data, trusted):
        console.print(f"{certificate}: signature verifies; request {data.get('request', {}).get('id')}, "
                      f"forgotten: {data.get('verdict', {}).get('forgotten')}", highlight=False)
        return
    _print_error(f"{certificate}: the signature does not verify with this key: changed, or issued by another ledger")
    raise typer.Exit(1)


@ledger_app.command("requests")
@friendly_errors
def ledger_requests_cmd(db: str | None = DB_OPTION, key: Path | None = KEY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Every deletion request the ledger holds, with where it stands (received, located, removed,
    verified, certified, failed, fallback)."""
    rows = _open_ledger(db, key).requests()

    def human() -> None:
        for r in rows:
            console.print(f"{r['request_id']} [{r['kind']}] {r['state']} ({len(r['targets'])} targets; "
                          f"updated {r['updated_at']})", highlight=False)
        if not rows:
            console.print("no requests recorded")

    _emit(as_json, {"requests": rows}, human)


@ledger_app.command("models")
@friendly_errors
def ledger_models_cmd(
    subject: str = typer.Option(..., "--subject", help="A subject id (person-0042, book-0003)."),
    db: str | None = DB_OPTION,
    key: Path | None = KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Which model versions contain this subject's data, directly or through a parent."""
    ledger = _open_ledger(db, key)
    if not ledger.subject_known(subject):
        raise ExpungeError(f"subject {subject!r} is in no corpus the ledger {ledger.where} recorded",
                           "check the id (`expunge request --help` shows how subjects are named)")
    found = ledger.models_with_subject(subject)

    def human() -> None:
        console.print(f"{len(found)} model version(s) hold data of {subject}:", highlight=False)
        for m in found:
            via = f" through {', '.join(s[:12] for s in m.through)}" if m.through else ""
            removed = "; removal claimed by " + ", ".join(f"{r['run']} {r['sha256'][:12]} ({r['request']})"
                                                          for r in m.removed_by) if m.removed_by else ""
            console.print(f"  {m.sha256[:12]} {m.path} [{m.run_kind}] {m.how}{via}{removed}", highlight=False)

    _emit(as_json, {"subject": subject, "models": [m.to_dict() for m in found]}, human)


MATCHERS_OPTION = typer.Option("exact,normalised,fuzzy", "--matchers", help="Comma-separated matchers: exact, "
                                "normalised, fuzzy, semantic (semantic loads all-MiniLM-L6-v2).")


@guard_app.command("build")
@friendly_errors
def guard_build_cmd(
    world: Path = typer.Option(..., "--world", help="World directory."),
    request: Path = typer.Option(..., "--request", help="Request file from `expunge request`."),
    out: Path = typer.Option(..., "--out", help="New guard file (JSON) to write."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Make a request's guard: its forgotten values, names, removed passages or payload. Where the
    ledger holds the request and its removal is not verified, the request becomes `fallback`."""
    from expunge import preflight
    from expunge.guard.monitor import enable_fallback
    from expunge.guard.spec import build_guard_spec, write_guard_spec

    preflight.output(out)
    loaded = preflight.world(world)
    checked = preflight.request(request, loaded)
    ledger = _open_ledger(db, None, create=True)
    spec = build_guard_spec(loaded, checked)
    write_guard_spec(spec, out)
    state = enable_fallback(ledger, spec)
    data = {"guard": str(out), "request": spec.request_id, "sha256": spec.sha256, **spec.counts(),
            "request_state": state}
    _emit(as_json, data, lambda: console.print(
        f"wrote guard {spec.sha256[:12]}… for {spec.request_id} to {out}: {data['targets_always']} targets always "
        f"blocked, {data['targets_with_name']} with the name, {data['statements']} statements, {data['shingles']} "
        "shingles; request " + (state or "not in the ledger"), highlight=False))


@guard_app.command("check")
@friendly_errors
def guard_check_cmd(
    guard: Path = typer.Option(..., "--guard", help="Guard file from `expunge guard build`."),
    text: str = typer.Option(..., "--text", help="The text to check (a model's output)."),
    prompt: str = typer.Option("", "--prompt", help="The prompt it answered (a value shared with kept subjects "
                                                    "is blocked only when the forgotten subject is named)."),
    matchers: str = MATCHERS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check one text against a guard: blocked or not, by which matcher, which target (its id)."""
    from expunge.guard.generate import check_output
    from expunge.guard.match import MatchConfig, parse_matchers
    from expunge.guard.spec import load_guard_spec

    config = MatchConfig(matchers=parse_matchers(matchers))
    result = check_output(load_guard_spec(guard), text, prompt=prompt, config=config)
    _emit(as_json, result.to_dict(), lambda: console.print(
        f"blocked by {result.matcher} (target {result.target}, score {result.score})" if result.blocked
        else "not blocked", highlight=False))


@guard_app.command("generate")
@friendly_errors
def guard_generate_cmd(
    model: Path = typer.Option(..., "--model", help="Model directory."),
    guard: Path = typer.Option(..., "--guard", help="Guard file from `expunge guard build`."),
    prompt: str = typer.Option(..., "--prompt", help="The prompt to continue."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Tokens to generate at most."),
    matchers: str = MATCHERS_OPTION,
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate under a guard (forbidden completions banned, the output checked); blocked
    generations go to the ledger's monitor log."""
    from expunge import preflight
    from expunge.guard.match import MatchConfig, parse_matchers
    from expunge.guard.spec import load_guard_spec

    if max_new_tokens < 1:
        raise ExpungeError(f"--max-new-tokens {max_new_tokens} is below 1", "give a positive number of tokens")
    if not prompt.strip():
        raise ExpungeError("--prompt is empty", "give the text the model should continue")
    config = MatchConfig(matchers=parse_matchers(matchers))
    spec = load_guard_spec(guard)
    preflight.model(model, "model")
    ledger = _open_ledger(db, None, create=True)
    from expunge.guard.generate import guarded_generate
    from expunge.models.io import load_model

    loaded, tokenizer, _ = load_model(model)
    result = guarded_generate(loaded, tokenizer, prompt, spec, max_new_tokens=max_new_tokens, config=config,
                              ledger=ledger)
    _emit(as_json, result.to_dict(), lambda: console.print(
        result.text + (f"\n[guard: {result.stage} stage, {result.matcher}, target {result.target}; logged]"
                       if result.stage else ""), highlight=False, markup=False))


# --------------------------------------------------------------------------------- the service


def _deployment(workspace: Path, world: Path | None, model: Path | None, method: str | None, option: list[str],
                verify: bool | None, max_facts: int | None, policy: Path | None, guard: bool | None) -> Any:
    """The workspace's deployment: the saved one, or a new one from the options (which must agree
    with a saved one)."""
    from expunge.options import parse_pairs
    from expunge.service.worker import DEPLOYMENT_FILE, Deployment, load_deployment, save_deployment

    saved = load_deployment(workspace) if (workspace / DEPLOYMENT_FILE).is_file() else None
    if saved is None and (world is None or model is None):
        raise ExpungeError(f"{workspace} holds no deployment yet", "give --world and --model to start one")
    options = {k: str(v) for k, v in parse_pairs(option).items()} if option else None
    base = saved or Deployment(workspace=str(workspace.resolve()), world=str(world.resolve()),  # type: ignore[union-attr]
                               model=str(model.resolve()))  # type: ignore[union-attr]
    chosen = Deployment(
        workspace=base.workspace,
        world=str(world.resolve()) if world is not None else base.world,
        model=str(model.resolve()) if model is not None else base.model,
        method=method if method is not None else base.method,
        options=options if options is not None else base.options,
        verify=verify if verify is not None else base.verify,
        max_facts=max_facts if max_facts is not None else base.max_facts,
        policy=str(policy.resolve()) if policy is not None else base.policy,
        guard_fallback=guard if guard is not None else base.guard_fallback,
    )
    if saved is not None and chosen != saved:
        save_deployment(chosen)  # raises: names what differs
    return chosen


@app.command("serve")
@friendly_errors
def serve_cmd(
    workspace: Path = typer.Option(..., "--workspace", help="The service's directory: its deployment, request "
                                   "files and the model versions it writes (and its ledger, unless --db)."),
    world: Path | None = typer.Option(None, "--world", help="World whose subjects and documents requests name "
                                      "(first start only)."),
    model: Path | None = typer.Option(None, "--model", help="Model the deployment starts from (never modified; "
                                      "first start only)."),
    method: str | None = typer.Option(None, "--method", help="Unlearning method of the forget route "
                                      "(default: simnpo)."),
    option: list[str] = typer.Option([], "--option", "-o", help="Method option as key=value (repeatable)."),
    verify: bool | None = typer.Option(None, "--verify/--no-verify", help="Verify each removal (without an "
                                       "oracle) and certify what is verified forgotten (default: on)."),
    max_facts: int | None = typer.Option(None, "--max-facts", help="Facts scored per set by each verification "
                                         "(bounds its cost; default: all)."),
    policy: Path | None = typer.Option(None, "--policy", help="Verdict policy TOML file for the verifications "
                                       "(see `expunge policy`; default: the built-in one)."),
    guard: bool | None = typer.Option(None, "--guard-fallback/--no-guard-fallback", help="Put an output guard "
                                      "in front of a request whose removal is found wanting (default: on)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", help="Worker processes to run beside the server (0: run "
                                "`expunge worker` yourself)."),
    db: str | None = DB_OPTION,
    key: Path | None = KEY_OPTION,
) -> None:
    """Serve deletion requests over HTTP: submit, status, certificates, provenance, the audit, and
    a web page. Needs an API token (`expunge token create`); jobs run in worker processes."""
    from expunge.ledger.store import resolve_url

    if not 0 < port < 65536:
        raise ExpungeError(f"--port {port} is not a port", "give a number from 1 to 65535")
    if workers < 0:
        raise ExpungeError(f"--workers {workers} is negative", "give 0 or more")
    workspace.mkdir(parents=True, exist_ok=True)
    deployment = _deployment(workspace, world, model, method, option, verify, max_facts, policy, guard)
    url = resolve_url(db, workspace)
    ledger = _open_ledger(url, key, create=True)
    from expunge.service.server import check_deployment, serve, worker_command
    from expunge.service.worker import save_deployment

    for warning in check_deployment(deployment, ledger):
        err_console.print(f"warning: {warning}", highlight=False)
    save_deployment(deployment)
    from expunge.service.app import ServiceConfig, create_app

    application = create_app(ServiceConfig(ledger, deployment))
    err_console.print(f"expunge serve: http://{host}:{port}/ (ledger {ledger.where}; {workers} worker(s))",
                      highlight=False)
    serve(application, host, port, workers=workers,
          command=worker_command(deployment.workspace, url, str(key) if key else None),
          log=lambda m: err_console.print(m, highlight=False))


@app.command("worker")
@friendly_errors
def worker_cmd(
    workspace: Path = typer.Option(..., "--workspace", help="The service's directory (from `expunge serve`)."),
    once: bool = typer.Option(False, "--once", help="Return when no job is left instead of waiting for more."),
    lease: float = typer.Option(60.0, "--lease", help="Seconds a job stays this worker's without a heartbeat "
                                "(a killed worker's job is taken up again after this)."),
    max_attempts: int = typer.Option(5, "--max-attempts", help="Claims of one job before it is failed (a job "
                                     "whose worker dies every time)."),
    db: str | None = DB_OPTION,
    key: Path | None = KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Serve the queued deletion requests in order (unlearn, verify, certify), one job at a time."""
    import signal

    from expunge.ledger.store import resolve_url
    from expunge.service.worker import load_deployment, run_worker

    if lease < 3:
        raise ExpungeError(f"--lease {lease} is under 3 seconds", "give a lease long enough for a heartbeat")
    if max_attempts < 1:
        raise ExpungeError(f"--max-attempts {max_attempts} is below 1", "give 1 or more")
    deployment = load_deployment(workspace)
    ledger = _open_ledger(resolve_url(db, workspace), key, create=False)

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    ended = run_worker(ledger, deployment, once=once, lease_seconds=lease, max_attempts=max_attempts,
                       log=lambda m: err_console.print(m, highlight=False))
    _emit(as_json, {"jobs_ended": ended}, lambda: console.print(f"worker: {ended} job(s) ended"))


@token_app.command("create")
@friendly_errors
def token_create_cmd(
    name: str = typer.Argument(..., help="Who or what holds the token (unique)."),
    scope: list[str] = typer.Option(..., "--scope", help="submit, read or admin (repeatable)."),
    db: str | None = DB_OPTION,
    key: Path | None = KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Make an API token for `expunge serve`. It is shown once; the ledger keeps only its sha256."""
    from expunge.service.auth import create_token

    token = create_token(_open_ledger(db, key, create=True), name, scope)
    _emit(as_json, {"name": name, "scopes": sorted(set(scope)), "token": token}, lambda: console.print(
        f"token for {name} ({', '.join(sorted(set(scope)))}); shown once, keep it:\n{token}", highlight=False))


@token_app.command("list")
@friendly_errors
def token_list_cmd(db: str | None = DB_OPTION, key: Path | None = KEY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The API tokens (names, scopes, when made and revoked; never the tokens)."""
    from expunge.service.auth import list_tokens

    tokens = [t.to_dict() for t in list_tokens(_open_ledger(db, key))]

    def human() -> None:
        table = Table("name", "scopes", "created", "revoked")
        for t in tokens:
            table.add_row(str(t["name"]), ", ".join(t["scopes"]), str(t["created_at"])[:19],  # type: ignore[arg-type]
                          str(t["revoked_at"] or "")[:19])
        console.print(table)

    _emit(as_json, {"tokens": tokens}, human)


@token_app.command("revoke")
@friendly_errors
def token_revoke_cmd(name: str = typer.Argument(..., help="The token's name."), db: str | None = DB_OPTION,
                     key: Path | None = KEY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Revoke an API token: it stops working at once."""
    from expunge.service.auth import revoke_token

    revoke_token(_open_ledger(db, key), name)
    _emit(as_json, {"revoked": name}, lambda: console.print(f"revoked the token {name}"))


@app.command("policy")
@friendly_errors
def policy_cmd(
    path: Path | None = typer.Argument(None, help="A policy file to check (default: the built-in policy)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the verdict policy (checks, thresholds, evidence floors); with a FILE, validate it
    against the built-in one. Copy the printed file's path to start your own."""
    from expunge import preflight

    preflight.policy(path)  # the file itself, before the attack registry (and torch) loads
    from expunge.verify.policy import DEFAULT_POLICY_PATH, load_policy

    loaded = load_policy(path)
    result = {"path": str(path or DEFAULT_POLICY_PATH), **loaded.to_dict()}

    def human() -> None:
        table = Table(title=f"verdict policy: {result['path']}")
        for column in ("check", "question", "required", "threshold"):
            table.add_column(column)
        for name, rule in loaded.checks.items():
            table.add_row(name, rule.question, "yes" if rule.required else "no",
                          ", ".join(f"{k} = {v:g}" for k, v in rule.params.items()))
        console.print(table)
        console.print("evidence: " + ", ".join(f"{k} = {v:g}" for k, v in loaded.evidence.items()))
        console.print("oracle (checked before it is trusted): "
                      + ", ".join(f"{k} = {v:g}" for k, v in loaded.oracle.items()))

    _emit(as_json, result, human)


@app.command("demo")
@friendly_errors(interrupted=DEMO_RESUMES)
def demo_cmd(
    workspace: Path = typer.Option(Path("expunge-workspace"), "--workspace", help="Where worlds and models are cached."),
    scenario: str = typer.Option("privacy", "--scenario", help="What is deleted: privacy (people), copyright "
                                                               "(books) or backdoor (a planted trigger)."),
    preset: str | None = typer.Option(None, "--preset", help="Model size and recipe (default: the scenario's, "
                                                             "default or passages; finetune with --from)."),
    from_model: str | None = typer.Option(None, "--from", help="Start the base model from this pretrained Hugging "
                                                              "Face model directory (or smollm2), fine-tuned on "
                                                              "the world; the oracle from the same weights."),
    size: int | None = typer.Option(None, "--size", "--people", help="People (privacy, default 100; backdoor, "
                                                                     "40) or books (copyright, default 24) in the "
                                                                     "world."),
    seed: int = typer.Option(0, "--seed", help="Seed for world, request and training."),
    fraction: float | None = typer.Option(None, "--fraction", help="Share of them the request deletes (default "
                                                                   "0.1 of people, 0.125 of books)."),
    method: str = typer.Option("simnpo", "--method", help="Unlearning method to demonstrate."),
    baseline: str = typer.Option("idkft", "--baseline", help="The baseline it is compared with."),
    db: str | None = typer.Option(None, "--db", help="The ledger every model is recorded to (default: "
                                                     "$EXPUNGE_DB, else expunge-ledger.sqlite in the workspace)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The main job: world, base model, request, oracle (cached); unlearn with a method and the
    refusal baseline; verify both; print the table and verdicts; write the report."""
    from expunge import preflight
    from expunge.presets import get_preset
    from expunge.recipe import Start

    preflight.workspace(workspace), preflight.pretrained(from_model)  # before torch is imported
    from expunge.demo import get_scenario, run_demo

    chosen = get_scenario(scenario)
    Start(from_model).check(get_preset(preset or (chosen.preset if from_model is None else "finetune")))

    with _recording(db, workspace):
        result = run_demo(workspace, preset=preset, size=size, seed=seed, fraction=fraction, method=method,
                          baseline=baseline, progress=True, log=(lambda m: err_console.print(m)),
                          from_model=from_model, scenario=scenario)
    _emit(as_json, result, lambda: _print_demo(result))


# The summary's metrics, as rows (every column of the table is in --json and in the reports).
SUMMARY_KEYS = ("forget_em", "retain_em", "neighbours_em", "general_em", "forget_quality", "mia_auc", "privleak",
                "model_utility", "plausibility", "seconds", "fraction_of_retraining", "forgotten",
                "collateral_damage")


class _MetricsByModel:
    """Metrics as rows, models as columns: short numbers side by side, so four models fit in 80
    columns. When the models do not fit the console's width, as many tables as it takes, each
    repeating the metric column; cells fold rather than being cut off (no "…" ever hides a value)."""

    def __init__(self, title: str, rows: list[dict[str, Any]], keys: tuple[str, ...] = SUMMARY_KEYS) -> None:
        from expunge.report import TABLE_COLUMNS, format_value

        headers = {key: header for key, header, _ in TABLE_COLUMNS}
        self.title = title
        self.labels = [headers.get(key, key) for key in keys]
        self.columns = [(str(row["model"]), [format_value(row.get(key)) for key in keys]) for row in rows]

    def _groups(self, width: int) -> list[list[tuple[str, list[str]]]]:
        from rich.cells import cell_len

        label = max([cell_len("metric"), *map(cell_len, self.labels)])
        used, groups = label + 4, [[]]  # "│ label │" is the label plus 4; each column adds its width + 3
        for name, values in self.columns:
            need = max([cell_len(name), *map(cell_len, values)]) + 3
            if groups[-1] and used + need > width:
                used, groups = label + 4, [*groups, []]
            groups[-1].append((name, values))
            used += need
        return groups

    def __rich_console__(self, console: Console, options: Any) -> Any:
        groups = self._groups(options.max_width)
        for i, group in enumerate(groups):
            title = self.title if len(groups) == 1 else f"{self.title} ({i + 1}/{len(groups)})"
            table = Table(title=title)
            table.add_column("metric", overflow="fold")
            for name, _ in group:
                table.add_column(name, justify="right", overflow="fold")
            for r, label in enumerate(self.labels):
                table.add_row(label, *(values[r] for _, values in group))
            yield table


def _summary_table(rows: list[dict[str, Any]]) -> _MetricsByModel:
    """The compact table of ``rows`` (``expunge.report`` table rows), one column per model."""
    return _MetricsByModel("privacy deletion: original, oracle and methods", rows)


def _methods_table(rows: list[dict[str, Any]]) -> Table:
    """The method registry: name, then its summary with the paper's link on a line of its own."""
    table = Table(title="unlearning methods")
    table.add_column("method", overflow="fold")
    table.add_column("summary and paper", overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["summary"] + (f"\n{row['paper']}" if row["paper"] else ""))
    return table


def _sharding(shards: int, lora_rank: int, combine: str) -> Any:
    """The --shards options, checked before anything loads."""
    from expunge.models.sharded import Combine
    from expunge.sharding import ShardingConfig

    try:
        chosen = Combine(combine)
    except ValueError:
        raise ExpungeError(f"--combine {combine!r} is not a combination",
                           f"use one of: {', '.join(c.value for c in Combine)}") from None
    if lora_rank < 0:
        raise ExpungeError(f"--lora-rank {lora_rank} is negative", "use a rank such as 16")
    return ShardingConfig(shards=shards, lora_rank=lora_rank or ShardingConfig.lora_rank, combine=chosen)


def _print_sharded(data: dict[str, Any]) -> None:
    table = Table(title=f"{data['kind']}: {data['model']['path']}")
    for column in ("shard", "subjects", "documents", "trained", "seconds", "steps", "adapter"):
        table.add_column(column, justify="right" if column not in ("trained", "adapter") else "left")
    for shard in data["shards"]:
        table.add_row(str(shard["index"]), str(len(shard["subjects"])), str(shard["documents"]),
                      "yes" if shard["trained"] else "copied", f"{shard['seconds']:.1f}", str(shard["steps"]),
                      (shard["adapter_sha256"] or "(empty)")[:12])
    console.print(table)
    console.print(f"base: {data['base_documents']} documents nobody can ask to delete ({data['base_seconds']:.1f} s); "
                  f"training {data['training_seconds']:.1f} s of {data['seconds']:.1f} s in all")
    for note in data["notes"]:
        console.print(note)


def _print_verdict(name: str, summary: str, confidence: str, reasons: list[str]) -> None:
    from rich.markup import escape

    console.print(f"[bold]{escape(name)}[/]: {escape(summary)} (confidence: {confidence})", highlight=False)
    for reason in reasons:
        console.print(f"  - {escape(reason)}", highlight=False)


def _knowledge_table(title: str, knowledge: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)  # six short columns: 71 characters wide
    for column in ("group", "subjects", "direct EM", "paraphrase EM", "chance", "at chance"):
        table.add_column(column, justify="right" if column != "group" else "left", overflow="fold")
    for group, row in knowledge.items():
        chance = row.get("chance")
        table.add_row(
            group, str(int(row["subjects"])), f"{row['direct_exact_match']:.3f}", f"{row['paraphrase_exact_match']:.3f}",
            "-" if chance is None else f"{chance:.3f}", {True: "yes", False: "no"}.get(row.get("at_chance"), "-"),
        )
    return table


def _print_training(data: dict[str, Any]) -> None:
    if not data["completed"]:
        console.print(" ".join(data["notes"]))
        return
    # One fact a line: the path may be long, the full hash (71 characters with its label) fits 80.
    console.print(f"{data['kind']} model written to {data['model']['path']}", highlight=False)
    console.print(f"  sha256 {data['model']['sha256']}", highlight=False)
    console.print(
        f"  {data['seconds']:.1f} s, {data['steps']} steps, {data['tokens_per_second']:,.0f} tokens/s, final loss "
        f"{data['final_loss']:.4f}" + (f", {data['removed_documents']} documents removed" if data["removed_documents"] else ""),
        highlight=False,
    )
    convergence = data.get("convergence") or {}
    if convergence.get("converged") is not None:
        console.print(
            f"  {'converged' if convergence['converged'] else 'NOT converged'}: held-out questions about the trained "
            f"people {convergence['heldout_exact_match']:.3f} (target {convergence['target']}) after "
            f"{convergence['epochs']:.1f} passes" + (" (stopped once known)" if convergence.get("stopped_early") else ""),
            highlight=False)
    console.print(_knowledge_table("what the model knows (greedy exact match)", data["knowledge"]))
    for note in data.get("notes", []):
        console.print(f"note: {note}", highlight=False)


def _print_demo(result: dict[str, Any]) -> None:
    for stage in ("base", "oracle"):
        data = result[stage]
        console.print(f"{stage}: {data['model']['path']} — trained in {data['seconds']:.1f} s"
                      + (" (cached)" if data.get("cached") else ""))
    if "location" in result:  # a backdoor: how its documents were found, graded against the truth
        found = result["location"]
        console.print(f"located {found['documents']} documents from the payload: trigger {found['trigger']!r}, "
                      f"precision {found['precision']:.3f}, recall {found['recall']:.3f} "
                      f"({found['poisoned']} poisoned)", highlight=False)
        model = found["by_model"]
        console.print(f"  the same payload through the base model's behaviour: {model['documents']} documents, "
                      f"precision {model['precision']:.3f}, recall {model['recall']:.3f}", highlight=False)
    for name, run in result["runs"].items():
        console.print(f"{name}: {run['seconds']:.1f} s, {run['steps']} steps; {run['stop_reason']}")
    console.print(_summary_table(result["table"]))
    for name, verdict in result["verdicts"].items():
        _print_verdict(name, verdict["summary"], verdict["confidence"], verdict["reasons"])
    console.print(f"targets for {result['method']} ({result['scenario']} scenario):")
    for key, target in result["targets"].items():
        value = target["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        reference = f"; the oracle's {target['oracle']:.3f}" if "oracle" in target else ""
        console.print(f"  {key}: {shown} (target {target['target']}{reference}) -> "
                      f"{'met' if target['passed'] else 'NOT met'}")
    console.print("reports:")
    for kind, path in result["reports"].items():
        console.print(f"  {kind}: {path}", highlight=False)
    certificate = result.get("certificate")
    if certificate and certificate["issued"]:
        console.print(f"certificate (signed; `expunge ledger check-certificate`): {certificate['json']} and "
                      f"{certificate['html']}", highlight=False)
    elif certificate:
        console.print(f"no certificate: {certificate['why']}", highlight=False)
    console.print(f"total {result['seconds']:.1f} s")


def main() -> None:
    # Library chatter (per-shard progress bars, load reports) would bury our own output. Said
    # through the environment, which transformers reads when (and only if) a command imports it:
    # importing it here would cost every command, bad input included, a second or more.
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app()


if __name__ == "__main__":
    main()
