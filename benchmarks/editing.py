"""Factual updates on the companies world: MEMIT with 1, 10, 100 (and 1000) edits, ROME one at a
time, and the retrieval layer, on the same requests and probes.

Builds (or reuses, in the workspace) the companies world and its base model (preset
``companies``), then prints two tables and writes them as JSON:

1. side by side, on the first 100 edits: unedited model, MEMIT as tuned for these models, MEMIT as
   published (subject's last token), ROME one edit at a time (first 10 edits), and retrieval: a
   model trained with the CEOs kept out of its text (``store_only``) reading a fact store, before
   and after the store is updated;
2. MEMIT (world-tuned) at every batch size: efficacy, paraphrase, neighbourhood, other relations,
   seconds per edit.

``--large`` adds 1000 edits: a world of 1,100 companies (one employee each) and a model trained
for it (preset ``companies-large``: 6,000 steps, about 7 minutes on 2 CPU cores, then about as
long for the edit).

    python benchmarks/editing.py [--workspace expunge-workspace] [--sizes 1,10,100] [--large]
                                 [--json benchmarks/results/editing.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table
from transformers.utils import logging as hf_logging

from expunge.methods.editing.compare import WORLD_EDITORS, compare_updates, preserve_prompts
from expunge.models.io import load_model
from expunge.pipeline import train_base
from expunge.records import FactEdit, Probe, read_jsonl, write_json_atomic
from expunge.worlds import CompaniesWorldConfig, build_companies_world, load_world
from expunge.worlds.companies import FACT_TEMPLATES, RELATIONS
from expunge.worlds.privacy import QUESTION_FORMAT

SIDE_BY_SIDE = (("setup", "setup"), ("edits", "edits"), ("efficacy", "efficacy"), ("paraphrase", "paraphrase"),
                ("paraphrase_old", "old para."), ("old_fact_probability", "P(old)"), ("alias", "alias"),
                ("implied_reverse", "reverse"), ("implied_multihop", "2-hop"), ("neighbourhood", "neighb."),
                ("other_relations", "other rel."), ("generation_new", "gen. new"), ("fluency", "fluency"),
                ("text_nll", "text NLL"), ("seconds_per_edit", "s/edit"))
SCALING = (("edits", "edits"), ("efficacy", "efficacy"), ("paraphrase", "paraphrase"),
           ("base_paraphrase", "base para."), ("neighbourhood", "neighb."), ("other_relations", "other rel."),
           ("seconds", "seconds"), ("seconds_per_edit", "s/edit"))


def prepare(root: Path, config: CompaniesWorldConfig, preset: str, log) -> tuple[Path, Path]:
    world_dir, model_dir = root / "world", root / "base"
    if not world_dir.exists():
        log(f"building the companies world in {world_dir}")
        build_companies_world(world_dir, config)
    if not model_dir.exists():
        log(f"training the base model ({preset}) in {model_dir}")
        train_base(world_dir, model_dir, preset=preset, seed=0, progress=True)
    return world_dir, model_dir


def trained_forms() -> list[str]:
    """Every relation's trained cloze statement and questions, with {} for the subject."""
    forms = []
    for statements, questions, _, _ in RELATIONS.values():
        forms.append(statements[0].split("{value}")[0].strip().replace("{name}", "{}"))
        forms += [QUESTION_FORMAT.format(question=q.format(name="{}")) for q in questions]
    return forms


def table(title: str, rows: list[dict], columns) -> Table:
    out = Table(title=title)
    for _, label in columns:
        out.add_column(label)
    for row in rows:
        out.add_row(*[(f"{row[k]:.3f}" if isinstance(row.get(k), float) else str(row.get(k, ""))) for k, _ in columns])
    return out


def run_world(root: Path, config: CompaniesWorldConfig, preset: str, sizes: list[int], side_by_side: int,
              console: Console) -> dict:
    world_dir, model_dir = prepare(root / "companies", config, preset, console.print)
    reader = None
    if side_by_side in sizes:  # the retrieval counterpart: CEOs only in the store, never in the weights
        store_world, store_model = prepare(root / "companies-store", replace(config, store_only=("ceo",)), preset,
                                           console.print)
        reader = load_model(store_model)[:2]
    world = load_world(world_dir)
    model, tokenizer, _ = load_model(model_dir)
    edits = read_jsonl(world_dir / "edits.jsonl", FactEdit)
    edit_probes = read_jsonl(world_dir / "edit_probes.jsonl", Probe)
    corpus = [d.text for d in world.training_documents()]
    readers = [s for s in world.subjects if s.id.startswith("reading-")]
    preserve = preserve_prompts(readers, trained_forms())
    store_subjects = [s for s in world.subjects if not s.id.startswith("reading-")]
    result: dict = {"world": str(world_dir), "model": str(model_dir), "scaling": []}
    for n in sizes:
        if n > len(edits):
            console.print(f"[yellow]skipping {n} edits: the world has {len(edits)}")
            continue
        full = n == side_by_side
        started = time.perf_counter()
        comparison = compare_updates(
            model, tokenizer, edits[:n], edit_probes, world.probes, corpus, documents=world.training_documents(),
            preserve=preserve,
            store_subjects=store_subjects if full else (), fact_templates=FACT_TEMPLATES if full else None,
            retrieval_model=reader,
            editors=WORLD_EDITORS if full else WORLD_EDITORS[:1],  # the first row: MEMIT world-tuned
            cache_dir=root / "cache", log=lambda m: console.print(f"  {m}"))
        console.print(f"{n} edits: {time.perf_counter() - started:.0f} s")
        unedited, memit = comparison.rows[0], comparison.rows[1]
        result["scaling"].append({**memit, "base_paraphrase": unedited["paraphrase_old"]})
        if full:
            result["side_by_side"] = comparison.to_dict()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("expunge-workspace"))
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--side-by-side", type=int, default=100, help="batch size of the side-by-side table")
    parser.add_argument("--large", action="store_true", help="also 1000 edits on a 1,100-company world")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    console = Console(width=200)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    root = args.workspace / "editing"
    results = {"default": run_world(root / "120", CompaniesWorldConfig(seed=0), "companies", sizes,
                                    args.side_by_side, console)}
    save(args.json, results, console)  # now, so a long --large run cannot lose these
    if args.large:
        results["large"] = run_world(root / "1100",
                                     CompaniesWorldConfig(seed=0, companies=1100, employees_per_company=1, edits=1000),
                                     "companies-large", [1000], -1, console)
    side = results["default"].get("side_by_side")
    if side:
        console.print(table(f"{args.side_by_side} update requests, side by side", side["rows"], SIDE_BY_SIDE))
        for note in side["notes"]:
            console.print(f"note: {note}")
    scaling = results["default"]["scaling"] + results.get("large", {}).get("scaling", [])
    console.print(table("MEMIT (world-tuned) by batch size", scaling, SCALING))
    save(args.json, results, console)
    return 0


def save(path: Path | None, results: dict, console: Console) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, results, overwrite=True)
        console.print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
