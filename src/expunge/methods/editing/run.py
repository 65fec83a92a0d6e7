"""``expunge edit``: apply update requests to a model directory and write a new model version.

The input model is never modified: the edit runs on a loaded copy and the result is written
atomically (temp dir, then rename) with the sha256 of its weights. Beside the weights the new
version holds ``edit.json`` (what was applied, where, with which options) and
``revert.safetensors``: the original values of every changed matrix, so that loading them into
the edited model gives the parent back exactly (:func:`revert_model_version`).

The editor is looked up by name in :mod:`expunge.methods.editing.registry` and its options are
parsed by :func:`expunge.options.build_config`; nothing here knows which editors exist. The
before/after evaluation is returned, not rendered: writing it is the report layer's job (the CLI
calls :func:`expunge.report.editing.write_updates_report`), since methods never import reports.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from expunge.errors import ExpungeError
from expunge.fsutil import ensure_new_output
from expunge.ledger.recording import Provenance
from expunge.ledger.store import RunKind
from expunge.methods.editing.common import EditContext, revert
from expunge.methods.editing.registry import get_editor
from expunge.methods.editing.stats import projection_weight, second_moments
from expunge.models.io import ModelRef, check_tokenizer_covers, load_model, save_model_version
from expunge.recipe import is_pretrained
from expunge.records import FactEdit, read_json, read_jsonl, write_json_atomic

__all__ = ["EditReport", "edit_model", "revert_model_version", "read_corpus"]

EDIT_RECORD = "edit.json"
REVERT_FILE = "revert.safetensors"


@dataclass
class EditReport:
    """What ``expunge edit`` did."""

    method: str
    model: dict[str, Any]
    parent_sha256: str
    edits: int
    layers: list[int]
    modules: list[str]
    seconds: float
    seconds_per_edit: float
    config: dict[str, Any] = field(default_factory=dict)
    evaluation: list[dict[str, Any]] = field(default_factory=list)  # before/after rows (evaluate=True)
    probe_sizes: dict[str, int] = field(default_factory=dict)  # probes per set of that evaluation
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: load, statistics, edit, ...
    notes: list[str] = field(default_factory=list)  # defaults chosen for the model, and why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def comparison(self) -> dict[str, Any]:
        """The before/after evaluation in the form :func:`expunge.report.editing.write_updates_report`
        renders (rows, probe sizes, notes)."""
        return {"rows": self.evaluation, "sizes": self.probe_sizes, "notes": []}


def read_corpus(path: str | os.PathLike[str]) -> list[str]:
    """Texts for the second-moment statistics: a world directory (its training documents) or a
    text file (one text per non-empty line)."""
    path = Path(path)
    if path.is_dir():
        from expunge.worlds.world import load_world

        return [d.text for d in load_world(path).training_documents()]
    if not path.is_file():
        raise ExpungeError(f"corpus {path} not found", "pass a world directory or a text file, one text per line")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ExpungeError(f"corpus {path} has no text", "give at least one non-empty line")
    return texts


def edit_model(
    model_dir: str | os.PathLike[str],
    edits_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    corpus: str | os.PathLike[str],
    method: str = "memit",
    options: dict[str, Any] | None = None,
    preserve_subjects: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    evaluate: bool = False,
    progress: bool = True,
    loaded: tuple[Any, Any, ModelRef] | None = None,
) -> EditReport:
    """Apply the update requests in ``edits_path`` (JSONL of FactEdit) to the model at
    ``model_dir`` with the registered editor ``method``; write the edited model to ``out`` (new
    directory). ``options`` (field -> value, text from the CLI or typed values) configure the
    editor; for a pretrained model (:func:`expunge.recipe.is_pretrained`) they start from the
    editor's pretrained defaults (the family's layers, neutral prefixes, the published step budget
    and early stop), which the report's ``notes`` list. ROME applies the edits one after another;
    MEMIT in one batch. ``preserve_subjects`` (MEMIT) names other subjects whose facts, asked in
    the edits' prompt forms, must keep their answers. With ``evaluate`` (``corpus`` must then be a
    world directory with ``edit_probes.jsonl``) the unedited and the edited model are scored on
    the world's probes: the before/after rows are in the report's ``evaluation``
    (``EditReport.comparison()`` is what ``write_updates_report`` renders).

    ``loaded`` is the model as :func:`expunge.models.io.load_model` returned it for ``model_dir``,
    to skip loading and hashing it again (several edits of one model in one process): it is
    edited in place, saved, and reverted exactly afterwards, so the caller's model is unchanged.
    Progress lines (with ``progress``) go to stderr; ``timings`` holds seconds per phase."""
    started = time.perf_counter()
    out = ensure_new_output(out)
    if evaluate and not (Path(corpus) / "edit_probes.jsonl").is_file():
        raise ExpungeError(f"--report needs probes: {corpus} is not a world directory with edit_probes.jsonl",
                           "pass the world the edits come from as --corpus (e.g. `expunge world companies`)")
    editor = get_editor(method)
    editor.make_config(options)  # bad options fail before the model loads
    edits = read_jsonl(edits_path, FactEdit)
    if not edits:
        raise ExpungeError(f"{edits_path} holds no edits", "give at least one FactEdit line")
    texts = read_corpus(corpus)
    say = (lambda message: print(f"[expunge edit] {message}", file=sys.stderr, flush=True)) if progress \
        else (lambda _m: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    if loaded is None:
        say(f"loading {model_dir}")
        model, tokenizer, parent = load_model(model_dir)
    else:
        model, tokenizer, parent = loaded
    timings["load"] = time.perf_counter() - clock
    check_tokenizer_covers(tokenizer, [e.prompt.format(e.subject_name) + " " + e.target_new for e in edits],
                           str(model_dir))
    pretrained = is_pretrained(parent.recipe)
    config = editor.make_config(options, model=model if pretrained else None)
    notes: list[str] = []
    if pretrained:
        defaults = editor.defaults_for(model)
        shown = ", ".join(f"{k}={_jsonable(v)}" for k, v in defaults.items() if k not in (options or {}))
        notes.append(f"pretrained model: the defaults for pretrained models ({shown}); -o overrides them")

    clock = time.perf_counter()
    needed = editor.layers_needing_stats(model, config)
    moments = second_moments(model, tokenizer, texts, needed, cache_dir=cache_dir, model_sha256=parent.sha256,
                             progress=say) if needed else {}

    def moment(layer: int) -> torch.Tensor:
        if layer not in moments:
            moments.update(second_moments(model, tokenizer, texts, [layer], cache_dir=cache_dir,
                                          model_sha256=parent.sha256, progress=say))
        return moments[layer]

    timings["statistics"] = time.perf_counter() - clock
    clock = time.perf_counter()
    score_after = _evaluator(Path(corpus), edits, model, tokenizer) if evaluate else None
    timings["evaluate"] = time.perf_counter() - clock
    forms = sorted({form for e in edits for form in (e.prompt, *e.more_prompts)})
    preserve = [(form, name) for name in preserve_subjects for form in forms]
    clock = time.perf_counter()
    result = editor.edit(model, tokenizer, edits, config, EditContext(moment, preserve, say))
    timings["edit"] = time.perf_counter() - clock
    try:
        # The original of every changed matrix (one revert of the batch's result restores them all).
        originals = dict(result.original_weights)
        layers = sorted(originals)
        names = {layer: _state_name(model, layer) for layer in layers}
        edits_sha = hashlib.sha256(Path(edits_path).read_bytes()).hexdigest()
        record = {"method": method, "config": _jsonable(asdict(config)), "edits_file": str(edits_path),
                  "edits_sha256": edits_sha, "edit_ids": [e.id for e in edits], "layers": layers,
                  "modules": [names[layer] for layer in layers], "parent_sha256": parent.sha256,
                  "preserve_subjects": list(preserve_subjects), "pretrained": pretrained,
                  # what `expunge revert` writes back: the parent's own lineage and recipe
                  "parent_parent": parent.parent, "parent_recipe": parent.recipe}
        carried = {"prompt_format": parent.recipe["prompt_format"]} if parent.recipe.get("prompt_format") else {}

        def extra(directory: Path) -> None:
            write_json_atomic(directory / EDIT_RECORD, record)
            save_file({names[layer]: _as_stored(model, layer, originals[layer]) for layer in layers},
                      str(directory / REVERT_FILE))

        clock = time.perf_counter()
        comparison = score_after(method) if score_after is not None else None
        timings["evaluate"] += time.perf_counter() - clock
        seconds = time.perf_counter() - started
        clock = time.perf_counter()
        say(f"writing {out}")
        ref = save_model_version(model, tokenizer, out, parent=parent.sha256,
                                 recipe={"kind": "edit", "method": method, "edits_sha256": edits_sha,
                                         "config": record["config"], "pretrained": pretrained, **carried},
                                 run={"seconds": seconds, "edits": len(edits)}, extra=extra,
                                 provenance=Provenance(RunKind.EDIT, None))
        timings["save"] = time.perf_counter() - clock
    finally:
        if loaded is not None:
            revert(model, result)  # the caller's model is theirs again, exactly
    seconds = time.perf_counter() - started
    if comparison is not None:
        comparison.rows[-1].update(seconds=seconds, seconds_per_edit=seconds / len(edits))
    return EditReport(method, {"path": ref.path, "sha256": ref.sha256}, parent.sha256, len(edits), layers,
                      record["modules"], seconds, seconds / len(edits), record["config"],
                      comparison.rows if comparison is not None else [],
                      dict(comparison.sizes) if comparison is not None else {},
                      {k: round(v, 3) for k, v in timings.items()}, notes)


def _evaluator(world_dir: Path, edits: list[FactEdit], model: Any, tokenizer: Any) -> Any:
    """Score the unedited model now; the returned function scores the edited one and returns
    both rows."""
    from expunge.methods.editing.compare import UpdateComparison
    from expunge.records import Probe
    from expunge.verify.editing import edit_probe_sets, evaluate_edits
    from expunge.worlds.world import load_world

    world = load_world(world_dir)
    sets = edit_probe_sets(edits, read_jsonl(world_dir / "edit_probes.jsonl", Probe), world.probes,
                           documents=world.training_documents())
    before = evaluate_edits(model, tokenizer, sets, name="unedited")

    def after(name: str) -> UpdateComparison:
        comparison = UpdateComparison(sizes=sets.sizes())
        comparison.add("unedited", before, 0, 0.0)
        comparison.add(name, evaluate_edits(model, tokenizer, sets, name=name, reference=before), len(edits), 0.0)
        return comparison

    return after


def revert_model_version(edited_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> str:
    """Write the parent of an edited model version to ``out`` from its ``revert.safetensors``;
    returns the sha256 of the restored weights, which equals the parent's recorded sha256."""
    out = ensure_new_output(out)
    edited_dir = Path(edited_dir)
    if not (edited_dir / REVERT_FILE).is_file():
        raise ExpungeError(f"{edited_dir} has no {REVERT_FILE}", "only models written by `expunge edit` can be reverted")
    record = read_json(edited_dir / EDIT_RECORD, "edit record")
    model, tokenizer, _ = load_model(edited_dir)
    originals = load_file(str(edited_dir / REVERT_FILE))
    state = dict(model.named_parameters())
    with torch.no_grad():
        for name, weight in originals.items():
            if name not in state:
                raise ExpungeError(f"{REVERT_FILE} names {name!r}, which the model lacks", "the files do not belong together")
            state[name].copy_(weight)
    # The parent's own recipe and lineage (older edit records lack them: then a plain revert recipe).
    recipe = dict(record.get("parent_recipe") or {"kind": "revert"})
    recipe["reverted_from"] = str(edited_dir)
    ref = save_model_version(model, tokenizer, out, parent=record.get("parent_parent"), recipe=recipe)
    if ref.sha256 != record["parent_sha256"]:
        raise ExpungeError(f"reverting {edited_dir} gave weights {ref.sha256[:16]}…, not the parent's "
                           f"{record['parent_sha256'][:16]}…", "the edited model was changed after it was written")
    return ref.sha256


def _state_name(model: torch.nn.Module, layer: int) -> str:
    weight = projection_weight(model, layer)
    for name, parameter in model.named_parameters():
        if parameter.data_ptr() == weight.data_ptr():
            return name
    raise ExpungeError(f"layer {layer}'s projection is not a parameter of the model", "report this as a bug")


def _as_stored(model: torch.nn.Module, layer: int, original: torch.Tensor) -> torch.Tensor:
    """(out, in) as edited -> the parameter's own layout (GPT-2's Conv1D stores the transpose)."""
    parameter = dict(model.named_parameters())[_state_name(model, layer)]
    return (original if parameter.shape == original.shape else original.t()).contiguous()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
