"""Hugging Face causal-LM directories in and out, each version hashed and never overwritten.

Every model expunge writes is a new directory, written to a temporary sibling and renamed into
place, holding the usual Hugging Face files plus ``expunge_model.json``: the sha256 of every file
(``sha256sum`` checks them), the sha256 of the weight tensors (the version's identity), the
parent's, and the recipe that made it (see :mod:`expunge.integrity` for what each hash covers).
Loading checks both, so a model altered after it was written is refused rather than silently
verified; a directory without the record loads as a plain Hugging Face model, with a warning that
it is unverified.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.fsutil import atomic_directory
from expunge.integrity import MODEL_RECORD, check_model_dir, check_model_files, files_sha256
from expunge.ledger.recording import Provenance, record_version
from expunge.records import ModelRef, read_json, write_json_atomic


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict: names, dtypes, shapes and bytes, in sorted name order.

    Hashing tensors rather than files makes the hash independent of how they were serialised.
    """
    return tensors_sha256(model.state_dict())


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over named tensors (names, dtypes, shapes, bytes; sorted names): a model's identity
    (:func:`weights_sha256`), an adapter's (:func:`expunge.models.sharded.adapter_sha256`)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.view(torch.uint8).numpy() if tensor.numel() else b"")  # the buffer, not a copy
    return digest.hexdigest()


def save_model_version(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out: str | os.PathLike[str],
    *,
    parent: str | None,
    recipe: dict[str, Any],
    run: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
    provenance: Provenance | None = None,
) -> ModelRef:
    """Write ``model`` and ``tokenizer`` as a new version at ``out`` (which must not exist).

    ``run`` holds measurements of the run that made it (seconds, steps, ...), kept for reports.
    ``extra(directory)`` writes further files into the version before it appears (same atomicity;
    they are hashed with the rest). ``provenance`` is recorded in the ledger in force
    (:func:`expunge.ledger.recording`) before the version appears: a version whose row could not be
    committed is not written.
    """
    # The weights' hash runs beside the writing (hashlib lets go of the GIL; on 2 cores that takes
    # most of a second off every save of a 540 MB model).
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(weights_sha256, model)
        with atomic_directory(out) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if extra is not None:
                extra(tmp)
            sha = hashing.result()
            _write_record(tmp, sha, parent, recipe, run)
            record_version(provenance, sha256=sha, path=str(Path(out).resolve()), parent=parent, recipe=recipe)
    return ModelRef(path=str(Path(out)), sha256=sha, parent=parent, recipe=recipe)


def _write_record(tmp: Path, sha: str, parent: str | None, recipe: dict[str, Any], run: dict[str, Any] | None) -> None:
    record = {
        "sha256": sha,
        "sha256_covers": "the weight tensors: names, dtypes, shapes and bytes in sorted name order "
                         "(expunge.models.weights_sha256); each file's own sha256 is under 'files'",
        "files": files_sha256(tmp),
        "parent": parent,
        "recipe": recipe,
        "run": run or {},
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(tmp / MODEL_RECORD, record)


def load_model(
    path: str | os.PathLike[str], *, verify_hash: bool = True, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelRef]:
    """Load a causal LM directory with its tokenizer; check its files and weights against the
    hashes its record lists (:func:`expunge.integrity.check_model_dir`; without a record, warn
    that it is unverified). A sharded model (:mod:`expunge.models.sharded`) loads combined as its
    record says."""
    path = Path(path)
    from expunge.models.sharded import is_sharded, load_sharded

    if is_sharded(path):
        return load_sharded(path, verify_hash=verify_hash, dtype=dtype)  # type: ignore[return-value]
    record = check_model_dir(path, files=False) if verify_hash else read_model_record(path)
    # The files' hashes are checked beside the loading (hashlib lets go of the GIL), and before
    # anything is done with the model: a changed file is refused all the same.
    with ThreadPoolExecutor(max_workers=1) as pool:
        files_checked = pool.submit(check_model_files, path, record) if verify_hash and record else None
        try:
            tokenizer = load_tokenizer(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except Exception as exc:
            if files_checked is not None:
                files_checked.result()  # a changed file explains a failed load best
            if isinstance(exc, ExpungeError):
                raise
            raise ExpungeError(f"{path}: cannot load the model ({exc})", "check that the weights are complete") from None
        model.eval()
        sha = weights_sha256(model)
        if files_checked is not None:
            files_checked.result()
    check_tokenizer_matches(model, tokenizer, str(path))
    if record:
        if verify_hash and record.get("sha256") != sha:
            raise ExpungeError(
                f"{path}: weights do not match the sha256 in {MODEL_RECORD} (changed after they were written)",
                "restore the original weights, or re-create this model version",
            )
    return model, tokenizer, ModelRef(str(path), sha, record.get("parent"), record.get("recipe", {}))


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model directory (a sharded model's: its base's); any failure is one
    line naming the directory."""
    from expunge.models.sharded import BASE_DIR, is_sharded

    if is_sharded(path):
        path = Path(path) / BASE_DIR
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises many types; the user needs the one line
        raise ExpungeError(f"{path}: cannot load the tokenizer ({exc})", "save the tokenizer next to the model") from None


def check_tokenizer_matches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, where: str) -> None:
    """Refuse a tokenizer that can emit ids the model has no embedding for."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ExpungeError(
            f"{where}: the tokenizer has {len(tokenizer)} tokens but the model embeds only {rows}",
            "use the tokenizer saved with this model",
        )


def check_tokenizer_covers(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], where: str) -> None:
    """Refuse a tokenizer that turns words of ``texts`` into the unknown token: a model that cannot
    read the world's text can neither be unlearned on it nor verified against it."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return
    for text in texts:
        if unk in tokenizer(text, add_special_tokens=False)["input_ids"]:
            raise ExpungeError(
                f"the tokenizer of {where} does not cover this world (unknown words in {text!r})",
                "use a model trained on this world (`expunge train --world …`)",
            )


def read_model_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``expunge_model.json`` of a model directory ({} for models expunge did not write), unchecked."""
    if not Path(path).is_dir():
        raise ExpungeError(f"model directory {path} not found", "check the path, or train one with `expunge train`")
    record_path = Path(path) / MODEL_RECORD
    return read_json(record_path, "model record") if record_path.is_file() else {}
