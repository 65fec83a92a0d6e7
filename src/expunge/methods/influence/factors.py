"""EK-FAC influence factors (Grosse et al. 2023, https://arxiv.org/abs/2308.03296) for expunge's
models, fitted with kronfluence and cached per model weights.

Influence functions need the inverse of the training loss's curvature, ``(G + lambda I)^-1``. G is
approximated by kronfluence's EK-FAC (eigenvalue-corrected Kronecker factors, George et al. 2018):
per linear layer, the eigenvectors of the input-activation and output-gradient covariances, and
the mean squared per-document gradient in that eigenbasis. Only ``nn.Linear`` layers are tracked
(kronfluence's rule): here the attention and MLP projections of every decoder layer, taken from the
architecture table (:mod:`expunge.models.arch`); embeddings and norms are not. GPT-2's ``Conv1D``
layers are invisible to it, so GPT-2 models are refused with a one-line error.

The loss is expunge's training loss for a document, summed over its tokens: every token of a
plain text, the answer tokens of a question-answer document (the encodings of
:func:`expunge.data.encode_documents`, through :func:`expunge.prompts.example_for`). A query's
measurement f(q) is the same summed NLL over its scored tokens, so a positive score
``s(q, m) = grad f(q)^T (G + lambda I)^-1 grad L(m)`` means that training on document m lowered
the query's loss (m supports the answer), and a negative one that it raised it.

Fitting costs a few passes over the training documents. The result is cached under a directory
(by default ``$EXPUNGE_INFLUENCE_DIR``, else ``expunge-workspace/influence``) as ``<weights sha256>/<settings and data key>/``,
written atomically (a temporary directory, then a rename; never over an existing one) with a
record of what it was fitted on and each file's sha256, checked when it is reused. Any later
attribution or removal for the same weights, data and settings reads it instead of fitting again.

kronfluence is an optional dependency (``pip install 'expunge[influence]'``); its package names
torchvision, which pulls a CUDA build of torch on a CPU-only machine, so ``make setup`` installs it
with ``--no-deps`` plus the packages it imports.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from expunge.data import IGNORE_INDEX, pad_collate
from expunge.errors import ExpungeError
from expunge.fsutil import atomic_directory
from expunge.integrity import file_sha256
from expunge.models.arch import arch_for
from expunge.scoring import eval_mode

__all__ = [
    "KRONFLUENCE_FIX",
    "DEFAULT_FACTORS_DIR",
    "default_factors_dir",
    "FactorSettings",
    "Factors",
    "require_kronfluence",
    "tracked_modules",
    "sequences_sha256",
    "fit_factors",
    "pairwise_scores",
    "forget_gradient",
    "Preconditioner",
    "summed_nll",
    "summed_losses",
    "preconditioned_gradient",
]

KRONFLUENCE_FIX = ("pip install 'expunge[influence]' (on a CPU-only machine run `make setup`, which installs "
                   "kronfluence with --no-deps so that it does not pull a CUDA build of torch)")
DEFAULT_FACTORS_DIR = "expunge-workspace/influence"
FACTORS_DIR_ENV = "EXPUNGE_INFLUENCE_DIR"  # overrides DEFAULT_FACTORS_DIR where no directory is given
RECORD = "expunge_factors.json"
_ANALYSIS = "expunge"  # kronfluence's analysis name inside its output directory
_FIT = "fit"  # kronfluence's factors name


def default_factors_dir() -> Path:
    """Where factors are cached when no directory is given: ``$EXPUNGE_INFLUENCE_DIR``, else
    ``expunge-workspace/influence``."""
    return Path(os.environ.get(FACTORS_DIR_ENV) or DEFAULT_FACTORS_DIR)


def require_kronfluence() -> None:
    """Raise the one-line error naming the extra when kronfluence (or a package it imports) is
    missing."""
    try:
        import kronfluence.analyzer  # noqa: F401
    except ImportError as exc:
        raise ExpungeError(f"influence functions need the kronfluence package ({exc})", KRONFLUENCE_FIX) from None


@dataclass(frozen=True)
class FactorSettings:
    """How the curvature factors are fitted (part of the cache key).

    Attributes:
        strategy: kronfluence's approximation of G: ``ekfac`` (Grosse et al. 2023), ``kfac``,
            ``diagonal`` or ``identity`` (no curvature: plain gradient dot products).
        fisher: ``true`` (labels sampled from the model, the Fisher the paper uses) or
            ``empirical`` (the documents' own labels).
        batch_size: documents per batch while fitting.
        seed: the sampled labels of the true Fisher.
    """

    strategy: Literal["ekfac", "kfac", "diagonal", "identity"] = "ekfac"
    fisher: Literal["true", "empirical"] = "true"
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in ("ekfac", "kfac", "diagonal", "identity"):
            raise ValueError("strategy must be ekfac, kfac, diagonal or identity")
        if self.fisher not in ("true", "empirical"):
            raise ValueError("fisher must be true or empirical")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


@dataclass(frozen=True)
class Factors:
    """Fitted factors in the cache: where, for which weights and data, and whether this call
    fitted them (``reused`` False) or found them (True)."""

    path: Path
    model_sha256: str
    data_sha256: str
    documents: int
    settings: FactorSettings
    modules: tuple[str, ...]
    reused: bool
    seconds: float

    @property
    def kronfluence_dir(self) -> Path:
        return self.path / "factors"

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "model_sha256": self.model_sha256, "data_sha256": self.data_sha256,
                "documents": self.documents, "settings": asdict(self.settings), "modules": len(self.modules),
                "reused": self.reused, "seconds": round(self.seconds, 2)}


def tracked_modules(model: torch.nn.Module) -> list[str]:
    """The names of the ``nn.Linear`` projections of every decoder layer (attention and MLP), as
    the architecture table lists them; kronfluence tracks these and nothing else."""
    arch = arch_for(model)
    layers = model.get_submodule(arch.layers)
    names, skipped = [], []
    for i in range(len(layers)):
        for path in (*arch.attention, *arch.mlp_in, arch.mlp_out):
            module = layers[i].get_submodule(path)
            full = f"{arch.layers}.{i}.{path}"
            (names if type(module) is torch.nn.Linear else skipped).append(full)
    if not names:
        kind = type(layers[0].get_submodule(arch.mlp_out)).__name__ if len(layers) else "none"
        raise ExpungeError(f"influence functions track nn.Linear layers only, and this model's projections are {kind} "
                           f"({model.config.model_type})", "use a Llama-architecture model (expunge's built-in models are)")
    return names


def sequences_sha256(sequences: Sequence[Sequence[int]]) -> str:
    """sha256 over token ids and each sequence's scored start: what the factors were fitted on."""
    digest = hashlib.sha256()
    for seq in sequences:
        digest.update(json.dumps([getattr(seq, "loss_start", 0), list(seq)]).encode())
    return digest.hexdigest()


def summed_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor], sample: bool = False) -> torch.Tensor:
    """The batch's next-token NLL summed over every scored token (labels not IGNORE_INDEX); with
    ``sample``, against labels drawn from the model's own predictions (the true Fisher)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    if sample:
        with torch.no_grad():
            drawn = torch.distributions.Categorical(logits=logits.detach()).sample()
        labels = torch.where(labels == IGNORE_INDEX, labels, drawn)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")


@torch.no_grad()
def summed_losses(model: torch.nn.Module, sequences: Sequence[Sequence[int]], *, pad_id: int) -> list[float]:
    """Each sequence's summed NLL over its scored tokens (f(q) of a query, L(m) of a document),
    one sequence per forward pass (no padding)."""
    collate = pad_collate(pad_id)
    device = next(model.parameters()).device
    with eval_mode(model):
        return [float(summed_nll(model, {k: v.to(device) for k, v in collate([seq]).items()})) for seq in sequences]


class _Sequences(Dataset):
    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        self.sequences = list(sequences)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> Sequence[int]:
        return self.sequences[index]


def _task(modules: list[str]) -> Any:
    """kronfluence's Task for a causal LM on expunge's padded batches."""
    from kronfluence.task import Task

    class LanguageModelingTask(Task):
        def compute_train_loss(self, batch: Any, model: torch.nn.Module, sample: bool = False) -> torch.Tensor:
            return summed_nll(model, batch, sample)

        def compute_measurement(self, batch: Any, model: torch.nn.Module) -> torch.Tensor:
            return summed_nll(model, batch)

        def get_influence_tracked_modules(self) -> list[str]:
            return modules

        def get_attention_mask(self, batch: Any) -> torch.Tensor:
            return batch["attention_mask"]

    return LanguageModelingTask()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """kronfluence's FutureWarnings (torch.cuda.amp) and info logs, silenced."""
    logger = logging.getLogger("kronfluence")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _analyzer(model: torch.nn.Module, modules: list[str], output_dir: Path, pad_id: int) -> Any:
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.utils.dataset import DataLoaderKwargs

    task = _task(modules)
    prepared = prepare_model(model, task)
    on_cpu = next(model.parameters()).device.type == "cpu"
    analyzer = Analyzer(_ANALYSIS, prepared, task, cpu=on_cpu, disable_tqdm=True,
                        output_dir=str(output_dir))
    analyzer.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=pad_collate(pad_id), num_workers=0))
    return analyzer


def _key(settings: FactorSettings, data_sha256: str) -> str:
    text = json.dumps({"settings": asdict(settings), "data": data_sha256}, sort_keys=True)
    return f"{settings.strategy}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def fit_factors(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    *,
    pad_id: int,
    model_sha256: str,
    cache_dir: str | os.PathLike[str] | None = None,
    settings: FactorSettings = FactorSettings(),
) -> Factors:
    """The factors of ``model`` (whose weights hash ``model_sha256``) over ``sequences`` (the
    training documents, encoded as the model trained on them): read from the cache (``cache_dir``,
    default :func:`default_factors_dir`) when fitted before for the same weights, data and
    settings, else fitted and written there. ``model`` is not modified (kronfluence works on a
    copy)."""
    require_kronfluence()
    if not sequences:
        raise ExpungeError("no training documents to fit the influence factors on", "give a world with training documents")
    modules = tracked_modules(model)
    data_sha = sequences_sha256(sequences)
    path = Path(cache_dir if cache_dir is not None else default_factors_dir()) / model_sha256 / _key(settings, data_sha)
    if (path / RECORD).is_file():
        return _reuse(path, model_sha256, data_sha, settings, modules)
    started = time.perf_counter()
    work_model = copy.deepcopy(model).float()
    try:
        with atomic_directory(path) as tmp, _quiet(), torch.random.fork_rng(devices=[]):
            from kronfluence.arguments import FactorArguments

            torch.manual_seed(settings.seed)
            with eval_mode(work_model):
                analyzer = _analyzer(work_model, modules, tmp / "work", pad_id)
                args = FactorArguments(strategy=settings.strategy, use_empirical_fisher=settings.fisher == "empirical",
                                       covariance_max_examples=None, lambda_max_examples=None)
                analyzer.fit_all_factors(_FIT, _Sequences(sequences), per_device_batch_size=settings.batch_size,
                                         factor_args=args)
            os.rename(tmp / "work" / _ANALYSIS / f"factors_{_FIT}", tmp / "factors")
            shutil.rmtree(tmp / "work")
            seconds = time.perf_counter() - started
            record = {"model_sha256": model_sha256, "data_sha256": data_sha, "documents": len(sequences),
                      "settings": asdict(settings), "modules": modules, "seconds": round(seconds, 3),
                      "kronfluence": _kronfluence_version(),
                      "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                      "files": {p.relative_to(tmp).as_posix(): file_sha256(p)
                                for p in sorted(tmp.rglob("*")) if p.is_file()}}
            (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    except ExpungeError:
        if (path / RECORD).is_file():  # another process fitted the same factors meanwhile: use theirs
            return _reuse(path, model_sha256, data_sha, settings, modules)
        raise
    return Factors(path, model_sha256, data_sha, len(sequences), settings, tuple(modules), False, seconds)


def _kronfluence_version() -> str:
    from kronfluence.version import __version__

    return str(__version__)


def _reuse(path: Path, model_sha256: str, data_sha: str, settings: FactorSettings, modules: list[str]) -> Factors:
    """Cached factors, checked: the record names these weights, data and settings, and every file
    has the sha256 it was written with."""
    started = time.perf_counter()
    try:
        record = json.loads((path / RECORD).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExpungeError(f"{path / RECORD}: unreadable influence-factor record ({exc})",
                           f"delete {path} so that the factors are fitted again") from None
    expected = {"model_sha256": model_sha256, "data_sha256": data_sha, "settings": asdict(settings), "modules": modules}
    wrong = [k for k, v in expected.items() if record.get(k) != v]
    if wrong:
        raise ExpungeError(f"{path}: cached influence factors recorded for other {', '.join(wrong)}",
                           f"delete {path} so that the factors are fitted again")
    for name, sha in sorted((record.get("files") or {}).items()):
        file = path / name
        if not file.is_file() or file_sha256(file) != sha:
            raise ExpungeError(f"{file}: cached influence factor missing or changed after it was written",
                               f"delete {path} so that the factors are fitted again")
    return Factors(path, model_sha256, data_sha, int(record["documents"]), settings, tuple(modules), True,
                   time.perf_counter() - started)


def _score_args(damping: float | None) -> Any:
    from kronfluence.arguments import ScoreArguments

    if damping is not None and damping < 0:
        raise ExpungeError(f"damping {damping} is negative", "give a damping >= 0, or none for kronfluence's heuristic "
                                                             "(0.1 x the mean eigenvalue)")
    return ScoreArguments(damping_factor=damping)


def pairwise_scores(
    model: torch.nn.Module,
    factors: Factors,
    queries: Sequence[Sequence[int]],
    train: Sequence[Sequence[int]],
    *,
    pad_id: int,
    damping: float | None = None,
    query_batch_size: int = 8,
    train_batch_size: int = 32,
) -> torch.Tensor:
    """``s(q, m) = grad f(q)^T (G + damping I)^-1 grad L(m)`` for every query (rows) and training
    sequence (columns), as a float32 (queries, train) tensor. ``damping`` None: kronfluence's
    heuristic, 0.1 x the mean of the factors' eigenvalues (per layer). ``model`` is not modified."""
    require_kronfluence()
    if not queries or not train:
        raise ValueError("pairwise_scores needs at least one query and one training sequence")

    scratch = Path(tempfile.mkdtemp(prefix="expunge-influence-"))
    try:
        (scratch / _ANALYSIS).mkdir()
        os.symlink(factors.kronfluence_dir.resolve(), scratch / _ANALYSIS / f"factors_{_FIT}")
        work_model = copy.deepcopy(model).float()
        with _quiet(), eval_mode(work_model):
            analyzer = _analyzer(work_model, list(factors.modules), scratch, pad_id)
            analyzer.compute_pairwise_scores("scores", _FIT, _Sequences(queries), _Sequences(train),
                                             per_device_query_batch_size=query_batch_size,
                                             per_device_train_batch_size=train_batch_size,
                                             score_args=_score_args(damping))
            scores = analyzer.load_pairwise_scores("scores")["all_modules"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return scores.float()


def forget_gradient(
    model: torch.nn.Module,
    modules: Sequence[str],
    sequences: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int = 32,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], float]:
    """``sum over sequences of grad L`` for the weight of each of ``modules`` and the summed loss
    itself; L is ``loss_fn(model, batch)`` summed over a batch (default: :func:`summed_nll`, the
    factors' loss). The model's ``.grad`` are left alone."""
    loss_fn = loss_fn or summed_nll
    weights = {name: model.get_submodule(name).weight for name in modules}
    total = {name: torch.zeros_like(w, dtype=torch.float32) for name, w in weights.items()}
    device = next(iter(weights.values())).device
    collate = pad_collate(pad_id)
    loss_sum = 0.0
    with eval_mode(model), torch.enable_grad():
        for start in range(0, len(sequences), batch_size):
            batch = {k: v.to(device) for k, v in collate(list(sequences[start : start + batch_size])).items()}
            loss = loss_fn(model, batch)
            grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
            loss_sum += float(loss.detach())
            for name, grad in zip(weights, grads):
                if grad is not None:
                    total[name] += grad.float()
    return total, loss_sum


class Preconditioner:
    """``(G + damping I)^-1`` from cached factors, per tracked module, with kronfluence's own
    preconditioning (the same as inside :func:`pairwise_scores`); the factors are read once."""

    def __init__(self, factors: Factors, damping: float | None = None) -> None:
        require_kronfluence()
        from kronfluence.factor.config import FactorConfig

        self.factors, self.damping = factors, damping
        self._strategy = FactorConfig.CONFIGS[factors.settings.strategy]
        self._args = _score_args(damping)
        self._storage = _storage(factors)
        with _quiet():
            for storage in self._storage.values():
                self._strategy.prepare(storage, self._args, torch.device("cpu"))

    def __call__(self, gradients: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each module's gradient (shaped like its weight), preconditioned."""
        out = {}
        with _quiet():
            for name, grad in gradients.items():
                pre = self._strategy.precondition_gradient(grad.unsqueeze(0).to(self._args.precondition_dtype),
                                                           self._storage[name])
                out[name] = pre[0].float()
        return out


def _storage(factors: Factors) -> dict[str, dict[str, Any]]:
    """Per module, the factor tensors kronfluence wrote (file stem -> tensor)."""
    from safetensors.torch import load_file

    per_module: dict[str, dict[str, Any]] = {name: {} for name in factors.modules}
    for file in sorted(factors.kronfluence_dir.glob("*.safetensors")):
        for module, tensor in load_file(file).items():
            if module in per_module:
                per_module[module][file.stem] = tensor
    return per_module


def preconditioned_gradient(
    model: torch.nn.Module,
    factors: Factors,
    sequences: Sequence[Sequence[int]],
    *,
    pad_id: int,
    damping: float | None = None,
    batch_size: int = 32,
) -> dict[str, torch.Tensor]:
    """``(G + damping I)^-1 sum over sequences of grad L``, per tracked module's weight (module
    name -> tensor shaped like the weight)."""
    gradients, _ = forget_gradient(model, factors.modules, sequences, pad_id=pad_id, batch_size=batch_size)
    return Preconditioner(factors, damping)(gradients)
