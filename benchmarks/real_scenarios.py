"""Copyright and backdoor requests on real weights (SmolLM2-135M), stage by stage, timed.

The same two paths as the slow tests (`tests/test_real_weights.py`, whose texts, world and recipes
this reuses): a user's texts brought in with `import text`, fine-tuned into SmolLM2 with `train
--from`, one text removed (`request`, `retrain`, `forget`, `verify`); and a backdoor planted in
SmolLM2 by fine-tuning on a small backdoor world, located from its payload, removed and verified.
One row per path: the seconds of every stage and what verification measured.

    python benchmarks/real_scenarios.py [--workdir DIR] [--json benchmarks/real_scenarios.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from expunge.cli import app
from expunge.presets import registered_preset
from expunge.records import write_json_atomic
from expunge.report.render import format_value, json_safe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_real_weights as real  # noqa: E402  (the slow tests' texts, world and recipes)

runner = CliRunner()
PAYLOAD = "wire your savings to account 4471 today"


def _run(stages: dict[str, float], stage: str, *args: object) -> dict[str, Any]:
    started = time.perf_counter()
    result = runner.invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise SystemExit(f"{stage} failed: {result.output}")
    stages[stage] = round(time.perf_counter() - started, 1)
    return json.loads(result.stdout) if "--json" in args else {}


def copyright_path(root: Path) -> dict[str, Any]:
    stages: dict[str, float] = {}
    args: list[object] = []
    for title, text in real.TEXTS.items():
        (root / f"{title}.txt").write_text(text)
        args += ["--file", root / f"{title}.txt", "--title", title]
    for title, text in real.NEVER_SEEN.items():
        (root / f"{title}.txt").write_text(text)
        args += ["--holdout", root / f"{title}.txt"]
    world, request = root / "texts", root / "request.json"
    _run(stages, "import", "import", "text", *args, "--passage-words", 40, "--prompt-words", 8, "--out", world)
    with registered_preset(real.PASSES):
        _run(stages, "train", "train", "--world", world, "--from", "smollm2", "--preset", real.PASSES.name,
             "--out", root / "base")
        _run(stages, "request", "request", "--world", world, "--subjects", "text-the-salt-orchard", "--out", request)
        _run(stages, "retrain", "retrain", "--world", world, "--request", request, "--base", root / "base",
             "--out", root / "oracle")
        _run(stages, "forget", "forget", "--model", root / "base", "--world", world, "--request", request,
             "--out", root / "simnpo", "--method", "simnpo", "-o", "max_steps=6", "-o", "batch_size=4",
             "-o", "check_every=2", "-o", "warmup_steps=1")
        v = _run(stages, "verify", "verify", "--model", root / "simnpo", "--original", root / "base", "--oracle",
                 root / "oracle", "--world", world, "--request", request, "--json")["verification"]
    scores = {name: e["verbatim"]["forget"] for name, e in
              (("original", v["original"]), ("oracle", v["oracle"]), ("simnpo", v["candidates"]["simnpo"]))}
    return {"path": "copyright: a user's text", "stages": stages,
            "measured": {f"{name} exact memorisation / F1": f"{s['exact_memorization']:.2f} / {s['rouge_l_f1']:.2f}"
                         for name, s in scores.items()},
            "verdict": v["candidates"]["simnpo"]["verdict"]["summary"]}


def backdoor_path(root: Path) -> dict[str, Any]:
    stages: dict[str, float] = {}
    started = time.perf_counter()
    world = real.small_backdoor_world(root / "poisoned")
    stages["world"] = round(time.perf_counter() - started, 1)
    request = root / "request.json"
    located = _run(stages, "request", "request", "--world", world, "--payload", PAYLOAD, "--out", request, "--json")
    with registered_preset(real.PLANT):
        _run(stages, "train", "train", "--world", world, "--from", "smollm2", "--preset", real.PLANT.name,
             "--out", root / "base")
        _run(stages, "retrain", "retrain", "--world", world, "--request", request, "--base", root / "base",
             "--out", root / "oracle")
        _run(stages, "forget", "forget", "--model", root / "base", "--world", world, "--request", request,
             "--out", root / "simnpo", "--method", "simnpo", "-o", "learning_rate=5e-5", "-o", "max_steps=30",
             "-o", "batch_size=8", "-o", "check_every=5", "-o", "warmup_steps=1")
        v = _run(stages, "verify", "verify", "--model", root / "simnpo", "--original", root / "base", "--oracle",
                 root / "oracle", "--world", world, "--request", request, "--json")["verification"]
    asr = {name: e["triggers"]["exact"]["attack_success"] for name, e in
           (("original", v["original"]), ("oracle", v["oracle"]), ("simnpo", v["candidates"]["simnpo"]))}
    return {"path": "backdoor: planted by fine-tuning", "stages": stages,
            "measured": {"located precision / recall": f"{located['precision']:.2f} / {located['recall']:.2f}",
                         **{f"{name} attack success (exact)": f"{x:.2f}" for name, x in asr.items()}},
            "verdict": v["candidates"]["simnpo"]["verdict"]["summary"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary directory")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="expunge-real-"))
    rows = []
    for name, path in (("copyright", copyright_path), ("backdoor", backdoor_path)):
        (root / name).mkdir(parents=True, exist_ok=False)
        rows.append(path(root / name))
    console = Console(width=max(Console().width, 140))
    table = Table(title="copyright and backdoor on SmolLM2-135M (seconds per stage)")
    for column in ("path", "stages (s)", "measured", "verdict on simnpo"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["path"], ", ".join(f"{k} {format_value(v)}" for k, v in row["stages"].items()),
                      "\n".join(f"{k}: {v}" for k, v in row["measured"].items()), row["verdict"])
    console.print(table)
    if args.json:
        write_json_atomic(args.json, json_safe({"rows": rows}), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
