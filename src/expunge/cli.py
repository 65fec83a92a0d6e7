"""The `expunge` command line: thin commands over library functions.

Every command prints a human summary by default and a JSON object with ``--json`` (progress bars
go to stderr, so stdout stays parseable). Bad input exits with status 2 and one line on stderr
naming the problem and the fix.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from expunge.errors import ExpungeError

app = typer.Typer(
    name="expunge",
    help="Make a trained language model forget specific things, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
world_app = typer.Typer(help="Generate a built-in world (seeded, deterministic).", no_args_is_help=True)
app.add_typer(world_app, name="world")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

JSON_OPTION = typer.Option(False, "--json", help="Print the result as one JSON object on stdout.")


def friendly_errors(func: F) -> F:
    """Turn ExpungeError (and Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ExpungeError as exc:
            err_console.print(f"[bold red]error:[/] {exc.one_line()}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: run the same command again to resume from the last checkpoint")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


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
    as_json: bool = JSON_OPTION,
) -> None:
    """Fictitious people with shared names and personal attributes, never-seen people, general facts."""
    from expunge.worlds import PrivacyWorldConfig, build_privacy_world

    try:
        config = PrivacyWorldConfig(seed=seed, people=people, holdout_people=holdout)
    except ValueError as exc:
        raise ExpungeError(f"invalid world options: {exc}", "adjust --people / --holdout") from None
    world = build_privacy_world(out, config)
    data = {"world": str(out), "fingerprint": world.fingerprint, **world.manifest["counts"]}
    _emit(as_json, data, lambda: console.print(
        f"wrote privacy world to {out}: {data['people_train']} people trained, {data['people_holdout']} never seen, "
        f"{data['documents_train']} training documents, {data['probes']} probes"))


@app.command("request")
@friendly_errors
def request_cmd(
    world: Path = typer.Option(..., "--world", help="World directory."),
    out: Path = typer.Option(..., "--out", help="New request file (JSON) to write."),
    subjects: str | None = typer.Option(None, "--subjects", help="Comma-separated subject ids to forget."),
    documents: str | None = typer.Option(None, "--documents", help="Comma-separated document ids to forget."),
    random_fraction: float | None = typer.Option(None, "--random-fraction", help="Forget this share of the trained people."),
    seed: int = typer.Option(0, "--seed", help="Seed for --random-fraction."),
    basis: str = typer.Option("", "--basis", help="Legal or other basis, recorded in the request."),
    as_json: bool = JSON_OPTION,
) -> None:
    """File a deletion request: subjects or documents, resolved to training documents by provenance."""
    from expunge.ledger.requests import make_request, write_request
    from expunge.worlds import load_world

    if out.exists():
        raise ExpungeError(f"output {out} already exists", "choose a new --out path")
    loaded = load_world(world)
    request = make_request(loaded, subjects=_split_ids(subjects), documents=_split_ids(documents),
                           random_fraction=random_fraction, seed=seed, basis=basis)
    write_request(request, out)
    data = {"request": str(out), "id": request.id, "subjects": list(request.targets),
            "documents": len(request.document_ids)}
    _emit(as_json, data, lambda: console.print(
        f"wrote request {request.id} to {out}: {len(request.targets)} subjects, "
        f"{len(request.document_ids)} training documents"))


@app.command("train")
@friendly_errors
def train_cmd(
    world: Path = typer.Option(..., "--world", help="World directory."),
    out: Path = typer.Option(..., "--out", help="New model directory."),
    preset: str = typer.Option("default", "--preset", help="Model size and recipe: tiny or default."),
    seed: int = typer.Option(0, "--seed", help="Seed for initial weights and batch order."),
    stop_at_step: int | None = typer.Option(None, "--stop-at-step", hidden=True,
                                            help="Checkpoint and stop after this step (resume later)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train the base model on a world's training corpus."""
    from expunge.pipeline import train_base

    report = train_base(world, out, preset=preset, seed=seed, progress=True, stop_at_step=stop_at_step)
    _emit(as_json, report.to_dict(), lambda: _print_training(report.to_dict()))


@app.command("retrain")
@friendly_errors
def retrain_cmd(
    world: Path = typer.Option(..., "--world", help="World directory."),
    request: Path = typer.Option(..., "--request", help="Request file from `expunge request`."),
    out: Path = typer.Option(..., "--out", help="New model directory for the oracle."),
    base: Path | None = typer.Option(None, "--base", help="Copy preset and seed from this base model's recipe."),
    preset: str | None = typer.Option(None, "--preset", help="Model size and recipe (default: default)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (default 0); must match the base model."),
    stop_at_step: int | None = typer.Option(None, "--stop-at-step", hidden=True,
                                            help="Checkpoint and stop after this step (resume later)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Retrain from scratch without the requested documents: the oracle every method is judged against."""
    from expunge.pipeline import retrain_oracle

    report = retrain_oracle(world, request, out, preset=preset, seed=seed, base=base,
                            progress=True, stop_at_step=stop_at_step)
    _emit(as_json, report.to_dict(), lambda: _print_training(report.to_dict()))


@app.command("demo")
@friendly_errors
def demo_cmd(
    workspace: Path = typer.Option(Path("expunge-workspace"), "--workspace", help="Where worlds and models are cached."),
    preset: str = typer.Option("default", "--preset", help="Model size and recipe: tiny or default."),
    people: int = typer.Option(100, "--people", help="People in the world."),
    seed: int = typer.Option(0, "--seed", help="Seed for world, request and training."),
    fraction: float = typer.Option(0.1, "--fraction", help="Share of people the request deletes."),
    as_json: bool = JSON_OPTION,
) -> None:
    """World -> base model -> deletion request -> retrained oracle, with their numbers (cached)."""
    from expunge.demo import run_demo

    result = run_demo(workspace, preset=preset, people=people, seed=seed, fraction=fraction,
                      progress=True, log=(lambda m: err_console.print(m)))
    _emit(as_json, result, lambda: _print_demo(result))


def _knowledge_table(title: str, knowledge: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("group", "subjects", "direct EM", "paraphrase EM", "chance", "at chance"):
        table.add_column(column, justify="right" if column != "group" else "left")
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
    console.print(
        f"{data['kind']} model written to {data['model']['path']} (sha256 {data['model']['sha256'][:16]}…) in "
        f"{data['seconds']:.1f} s, {data['steps']} steps, {data['tokens_per_second']:,.0f} tokens/s, final loss "
        f"{data['final_loss']:.4f}" + (f", {data['removed_documents']} documents removed" if data["removed_documents"] else "")
    )
    console.print(_knowledge_table("what the model knows (greedy exact match)", data["knowledge"]))


def _print_demo(result: dict[str, Any]) -> None:
    for stage in ("base", "oracle"):
        data = result[stage]
        console.print(f"{stage}: {data['model']['path']} — {data['seconds']:.1f} s"
                      + (" (cached)" if data.get("cached") else ""))
        console.print(_knowledge_table(f"{stage} model", data["knowledge"]))
    for line in result["summary"]:
        console.print(line)


def main() -> None:
    # Library chatter (per-shard progress bars, load reports) would bury our own output.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    app()


if __name__ == "__main__":
    main()
