"""What ROME and MEMIT share: where an edit is written (the lookup positions), the keys found
there, the target values optimised there, and the record that reverts an edit exactly.

Vocabulary (as in the papers):

* a **rewrite text** is one of the edit's prompts (preceded by a short context prefix) followed by
  the new target, e.g. "The company. The CEO of Posus is Daniel Moreno";
* a **lookup position** is where the edit is written. ``"subject_last"``: the subject's last
  token (ROME and MEMIT as published: in large models the subject's facts are read there);
  ``"prompt_last"``: the prompt's last token and every target token but the last, i.e. the
  positions that *predict* the target. Small models trained from scratch on a world resolve a
  fact at the question's end instead of at the subject (causal tracing shows it, see
  :mod:`expunge.methods.editing.trace`), and only there can an edit land;
* a **key** is the input of a layer's MLP output projection at a lookup position, and a **target
  value** the residual stream at a lookup position plus an optimised vector delta, such that the
  model then predicts the new target.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:  # annotations only: the CLI checks editor options before transformers loads
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.errors import ExpungeError
from expunge.methods.editing.stats import StopForward, projection_weight
from expunge.models.arch import arch_for, decoder_layers, layer_module
from expunge.records import FactEdit

__all__ = ["NEUTRAL_PREFIXES", "LookupToken", "EditResult", "EditContext", "revert", "merge_results",
           "subject_last_index", "RewriteBatch", "rewrite_batch", "keys_at", "keys_and_residual", "optimise_targets",
           "output_norms", "residual_at"]

LookupToken = Literal["subject_last", "prompt_last"]

# Context prefixes for pretrained models: short, about nothing in particular, so that the key and
# value hold when the fact is asked after other text, whatever the domain. (The editors' own
# defaults, "The company." and "The city of", are phrases of the built-in worlds.) ROME samples its
# prefixes from the model; fixed ones keep an edit reproducible.
NEUTRAL_PREFIXES: tuple[str, ...] = ("", "Hello.", "The news:", "I think that")
LOOKUP_TOKENS: tuple[str, ...] = ("subject_last", "prompt_last")


@dataclass
class EditResult:
    """What an edit (one ROME edit, or one MEMIT batch) did, and what is needed to undo it.

    Attributes:
        edits: the requests applied.
        method: "rome" or "memit".
        layers: the decoder layers whose MLP output projection changed.
        modules: their module paths, as in the model's state dict (without ``.weight``).
        original_weights: layer -> the projection's weight (out, in) before the edit.
        deltas: layer -> the change added to it (out, in); rank one for ROME.
        target_loss: mean NLL of the new targets during the value optimisation, per step (of the
            first chunk of edits for MEMIT).
    """

    edits: list[FactEdit]
    method: str
    layers: list[int]
    modules: list[str]
    original_weights: dict[int, torch.Tensor]
    deltas: dict[int, torch.Tensor]
    target_loss: list[float] = field(default_factory=list)


def revert(model: PreTrainedModel, result: EditResult) -> None:
    """Undo an edit exactly: every changed projection gets its stored original weight back.
    Reverting several edits applied in sequence must go in reverse order."""
    with torch.no_grad():
        for layer, weight in result.original_weights.items():
            projection_weight(model, layer).copy_(weight)


def _silent(_message: str) -> None:
    pass


@dataclass(frozen=True)
class EditContext:
    """What an editor may use besides the model, the tokenizer, the edits and its config.

    One object rather than more parameters, so that the editor protocol of
    :mod:`expunge.methods.editing.registry` stays the same when an editor needs something new:
    each editor reads what it uses and ignores the rest.

    Attributes:
        moments: layer -> C = E[k k^T] of that layer's MLP output projection inputs (computed on
            demand and cached by the caller; :func:`expunge.methods.editing.stats.second_moment`).
        preserve: (cloze template, subject name) pairs whose keys must keep their outputs
            (MEMIT's explicit preservation keys; editors without such a term ignore them).
        progress: one-line progress messages (stderr in the CLI).
    """

    moments: Callable[[int], torch.Tensor]
    preserve: Sequence[tuple[str, str]] = ()
    progress: Callable[[str], None] = _silent


def merge_results(model: PreTrainedModel, results: Sequence[EditResult], method: str) -> EditResult:
    """One :class:`EditResult` for edits applied one after another (ROME's sequence): for each
    changed layer the weight *before the first* edit (so one :func:`revert` undoes them all,
    exactly) and the total change since; ``target_loss`` is the per-step mean over the edits."""
    if not results:
        raise ValueError("merge_results needs at least one EditResult")
    originals: dict[int, torch.Tensor] = {}
    modules: dict[int, str] = {}
    for result in results:
        for layer, module in zip(result.layers, result.modules):
            modules.setdefault(layer, module)
        for layer, weight in result.original_weights.items():
            originals.setdefault(layer, weight)
    layers = sorted(originals)
    deltas = {layer: projection_weight(model, layer).detach() - originals[layer] for layer in layers}
    losses = [r.target_loss for r in results if r.target_loss]
    steps = min((len(ls) for ls in losses), default=0)
    target_loss = [sum(ls[i] for ls in losses) / len(losses) for i in range(steps)]
    edits = [e for r in results for e in r.edits]
    return EditResult(edits, method, layers, [modules[layer] for layer in layers], originals, deltas,
                      target_loss)


def check_lookup(token: str) -> None:
    if token not in LOOKUP_TOKENS:
        raise ValueError(f"unknown lookup token {token!r}; use one of: {', '.join(LOOKUP_TOKENS)}")


def subject_last_index(tokenizer: PreTrainedTokenizerBase, text: str, subject: str) -> int:
    """Index (in ``tokenizer(text)``, special tokens included) of the last token of the first
    occurrence of ``subject`` in ``text``."""
    at = text.find(subject)
    if at < 0:
        raise ExpungeError(f"subject {subject!r} does not occur in {text!r}", "the prompt must contain the subject")
    head = tokenizer(text[: at + len(subject)])["input_ids"]
    full = tokenizer(text)["input_ids"]
    if list(full[: len(head)]) != list(head):
        raise ExpungeError(f"the subject {subject!r} does not end on a token boundary in {text!r}",
                           "rephrase the prompt so that the subject is followed by a space or punctuation")
    return len(head) - 1


@dataclass
class RewriteBatch:
    """Tokenised rewrite texts of a few edits, right-padded (positions as when encoded alone).

    ``rows[i]`` is the edit (index into the edits) of row i; ``slots`` lists (row, position,
    slot): a delta vector per slot is added at (row, position). With ``subject_last`` an edit
    has one slot shared by all its rows; with ``prompt_last`` every (row, position) is a slot.
    ``targets`` lists (row, position) pairs whose next token is a target token (scored); the
    essence rows (``"{subject} is a"``, for the KL term) come last, one per edit, only for
    ``subject_last``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    rows: list[int]
    slots: list[tuple[int, int, int]]
    n_slots: int
    targets: list[tuple[int, int]]
    essence_rows: list[int]
    essence_last: list[int]


def _prompts(edit: FactEdit, prefixes: Sequence[str]) -> list[str]:
    forms = (edit.prompt, *edit.more_prompts)
    return [f"{prefix} {form.format(edit.subject_name)}".strip() for form in forms for prefix in prefixes]


def rewrite_batch(tokenizer: PreTrainedTokenizerBase, edits: Sequence[FactEdit], prefixes: Sequence[str],
                  token: str, *, with_essence: bool = True, prompt_only: bool = False) -> RewriteBatch:
    """The rewrite texts of ``edits`` (every prompt form x every prefix, then the new target);
    with ``prompt_only`` the texts stop at the prompt and the only slot of a row is its lookup
    position there (the keys of memories to preserve)."""
    check_lookup(token)
    sequences: list[list[int]] = []
    rows: list[int] = []
    slots: list[tuple[int, int, int]] = []
    targets: list[tuple[int, int]] = []
    n_slots = 0
    for e, edit in enumerate(edits):
        edit_slot = n_slots
        if token == "subject_last" and not prompt_only:
            n_slots += 1
        for prompt in _prompts(edit, prefixes):
            head = tokenizer(prompt)["input_ids"]
            if prompt_only:
                at = len(head) - 1 if token == "prompt_last" else subject_last_index(tokenizer, prompt, edit.subject_name)
                sequences.append(list(head))
                rows.append(e)
                slots.append((len(sequences) - 1, at, n_slots))
                n_slots += 1
                continue
            full = tokenizer(f"{prompt} {edit.target_new}")["input_ids"]
            if list(full[: len(head)]) != list(head) or len(full) <= len(head):
                raise ExpungeError(f"the target {edit.target_new!r} does not extend the prompt {prompt!r} by whole "
                                   "tokens", "give a non-empty target that starts a new word")
            row = len(sequences)
            sequences.append(list(full))
            rows.append(e)
            # Positions head-1 .. len-2 predict the target's tokens.
            targets += [(row, p) for p in range(len(head) - 1, len(full) - 1)]
            if token == "subject_last":
                slots.append((row, subject_last_index(tokenizer, prompt, edit.subject_name), edit_slot))
            else:
                for p in range(len(head) - 1, len(full) - 1):
                    slots.append((row, p, n_slots))
                    n_slots += 1
    essence_rows: list[int] = []
    essence_last: list[int] = []
    if with_essence and token == "subject_last":
        for e, edit in enumerate(edits):
            essence = f"{edit.subject_name} is a"
            row = len(sequences)
            sequences.append(list(tokenizer(essence)["input_ids"]))
            rows.append(e)
            essence_rows.append(row)
            essence_last.append(len(sequences[-1]) - 1)
            slots.append((row, subject_last_index(tokenizer, essence, edit.subject_name), e))
    width = max(len(s) for s in sequences)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        attention_mask[i, : len(seq)] = 1
    return RewriteBatch(input_ids, attention_mask, rows, slots, n_slots, targets, essence_rows, essence_last)


def _forward(model: PreTrainedModel, batch: RewriteBatch) -> torch.Tensor:
    device = next(model.parameters()).device
    return model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits


def _index(batch: RewriteBatch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = torch.tensor([r for r, _, _ in batch.slots], device=device)
    positions = torch.tensor([p for _, p, _ in batch.slots], device=device)
    slot_ids = torch.tensor([s for _, _, s in batch.slots], device=device)
    return rows, positions, slot_ids


def _group_mean(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean of ``values`` per group id (0..n_groups-1); empty groups give 0."""
    total = torch.zeros(n_groups, device=values.device, dtype=values.dtype).index_add(0, groups, values)
    return total / torch.bincount(groups, minlength=n_groups).clamp(min=1)


def _layer_output(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    # transformers 5 decoder layers may return the hidden states alone, or a tuple.
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def _at_slots(model: PreTrainedModel, batch: RewriteBatch, wanted: Sequence[tuple[torch.nn.Module, str]]
              ) -> list[torch.Tensor]:
    """For each (module, ``"input"`` or ``"output"``) of ``wanted``, that module's input or output at
    every slot position of ``batch``, in the order of ``batch.slots``: all from one forward pass,
    stopped once the last of them is read (MEMIT asks for a key and a residual per layer)."""
    captured: dict[int, torch.Tensor] = {}

    def grab(i: int, value: torch.Tensor) -> None:
        captured[i] = value.detach()
        if len(captured) == len(wanted):
            raise StopForward  # nothing above is needed

    handles = []
    for i, (module, want) in enumerate(wanted):
        if want == "input":
            handles.append(module.register_forward_pre_hook(lambda _m, inputs, i=i: grab(i, inputs[0])))
        else:
            handles.append(module.register_forward_hook(lambda _m, _i, output, i=i: grab(i, _layer_output(output))))
    try:
        _forward(model, batch)
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    rows, positions, _ = _index(batch, captured[0].device)
    return [captured[i][rows, positions] for i in range(len(wanted))]


def keys_at(model: PreTrainedModel, batch: RewriteBatch, layer: int, mlp_out: str) -> torch.Tensor:
    """The output projection's input at every slot position of ``batch`` (n_slot_positions, d_in),
    in the order of ``batch.slots``."""
    return _at_slots(model, batch, [(layer_module(model, layer, mlp_out), "input")])[0].double()


def residual_at(model: PreTrainedModel, batch: RewriteBatch, layer: int) -> torch.Tensor:
    """The residual stream after decoder layer ``layer`` at every slot position of ``batch``."""
    return _at_slots(model, batch, [(decoder_layers(model)[layer], "output")])[0].double()


def keys_and_residual(model: PreTrainedModel, batch: RewriteBatch, layer: int, mlp_out: str,
                      residual_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(:func:`keys_at` ``layer``, :func:`residual_at` ``residual_layer``) from one forward pass."""
    keys, residual = _at_slots(model, batch, [(layer_module(model, layer, mlp_out), "input"),
                                              (decoder_layers(model)[residual_layer], "output")])
    return keys.double(), residual.double()


def output_norms(model: PreTrainedModel, batch: RewriteBatch, layer: int, path: str) -> torch.Tensor:
    """Per slot, the mean norm of submodule ``path`` of decoder layer ``layer``'s output at the
    slot's positions (ROME scales its value step by the MLP output's norm)."""
    norms = _at_slots(model, batch, [(layer_module(model, layer, path), "output")])[0].float().norm(dim=-1)
    _, _, slot_ids = _index(batch, norms.device)
    return _group_mean(norms, slot_ids, batch.n_slots)


def _rows_of(output: Any, keep: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return output[keep]
    if isinstance(output, tuple):
        return tuple(_rows_of(o, keep) for o in output)
    return output


class _PrefixCache:
    """The rows of a rewrite batch split where an edit first touches them, so that each
    optimisation step recomputes only what the delta can change.

    The delta is added to the residual stream at the slot positions. In a causal model nothing
    before a row's first slot depends on it, in any layer: the keys and values of those positions
    are the same at every step. They are computed once (the *prefix*, left-padded, under
    ``no_grad``) and handed to the model as its key/value cache; each step then runs only the
    *suffix*, from the first slot to the last position whose logits are scored. For ROME's texts
    ("<prefix> The capital of France is Tokyo", slot at "France") that is 2-3 positions of about
    ten. Without a prefix (every row starts at its slot) it is the plain forward pass.

    The layers up to ``frozen_through`` (the one after which the delta is added) do not see the
    delta either, at any position: their outputs on the suffix are computed once too, and each
    step hands them back instead of running those layers (forward hooks on them, such as the one
    adding the delta, still run). On SmolLM2 that is the first 6 of 30 layers for ROME.
    """

    def __init__(self, model: PreTrainedModel, batch: RewriteBatch, device: torch.device,
                 frozen_through: int | None = None) -> None:
        n_rows = batch.input_ids.shape[0]
        first = [min((p for r, p, _ in batch.slots if r == row), default=0) for row in range(n_rows)]
        last = [0] * n_rows  # the last position whose output is used (a logit or a slot)
        for row, position, _ in batch.slots:
            last[row] = max(last[row], position)
        for row, position in batch.targets:
            last[row] = max(last[row], position)
        for row, position in zip(batch.essence_rows, batch.essence_last):
            last[row] = max(last[row], position)
        if any(t < s for t, s in ((p, first[r]) for r, p in batch.targets)):
            raise ValueError("a scored position lies before its row's first slot")  # a delta could not reach it
        self.split = torch.tensor(first, device=device)
        width_prefix = max(first)
        width = max(e + 1 - s for s, e in zip(first, last))
        ids = batch.input_ids
        prefix_ids = torch.zeros((len(first), width_prefix), dtype=torch.long)  # pads are masked: any id
        prefix_mask = torch.zeros_like(prefix_ids)
        suffix_ids = torch.zeros((len(first), width), dtype=torch.long)
        suffix_mask = torch.zeros_like(suffix_ids)
        positions = torch.zeros((len(first), width_prefix + width), dtype=torch.long)
        for row, (s, e) in enumerate(zip(first, last)):
            if s:  # left-padded, so that every row's suffix starts at the same cache length
                prefix_ids[row, width_prefix - s:] = ids[row, :s]
                prefix_mask[row, width_prefix - s:] = 1
                positions[row, width_prefix - s: width_prefix] = torch.arange(s)
            suffix_ids[row, : e + 1 - s] = ids[row, s : e + 1]
            suffix_mask[row, : e + 1 - s] = 1
            positions[row, width_prefix:] = torch.arange(s, s + width)
        self.model = model
        self.suffix_ids = suffix_ids.to(device)
        self.mask = torch.cat([prefix_mask, suffix_mask], 1).to(device)
        self.suffix_positions = positions[:, width_prefix:].to(device)
        # The decoder without its unembedding: the logits are needed at a few positions only (the
        # targets and the essence's last token), and the unembedding is a fifth of a small model.
        self.decoder = model.base_model
        self.unembed = model.get_submodule(arch_for(model).lm_head)
        from expunge.scoring import cache_argument  # (torch-side: not at import, see above)

        self.cache_kwarg = cache_argument(self.decoder) or "past_key_values"
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        if width_prefix:
            with torch.no_grad():
                out = self.decoder(input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device),
                                   position_ids=positions[:, :width_prefix].to(device), use_cache=True)
            cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
            self.kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.frozen: list[tuple[torch.nn.Module, Any]] = []
        if frozen_through is not None:
            layers = list(decoder_layers(model))[: frozen_through + 1]
            outputs: list[Any] = [None] * len(layers)

            def keep(i: int) -> Callable[..., None]:
                def hook(_m: torch.nn.Module, _inputs: Any, output: Any) -> None:
                    outputs[i] = output
                return hook

            handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
            try:
                with torch.no_grad():
                    self._run()
            finally:
                for handle in handles:
                    handle.remove()
            self.frozen = list(zip(layers, outputs))

    def rows(self, keep: torch.Tensor) -> _PrefixCache:
        """The same cache for the rows ``keep`` only (row i of the result is row ``keep[i]``): once
        an edit is done its rows need not run any more."""
        sub = copy.copy(self)
        sub.split = self.split[keep]
        sub.suffix_ids, sub.mask, sub.suffix_positions = (self.suffix_ids[keep], self.mask[keep],
                                                          self.suffix_positions[keep])
        sub.kv = [(keys[keep], values[keep]) for keys, values in self.kv]
        sub.frozen = [(layer, _rows_of(output, keep)) for layer, output in self.frozen]
        return sub

    def _run(self) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if self.kv:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)  # fresh each step: the suffix is appended to it
            for i, (keys, values) in enumerate(self.kv):
                cache.update(keys, values, i)
            kwargs = {self.cache_kwarg: cache, "use_cache": True}
        return self.decoder(input_ids=self.suffix_ids, attention_mask=self.mask, position_ids=self.suffix_positions,
                            **kwargs).last_hidden_state

    def logits(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(len(rows), vocab): the logits at suffix index ``positions[i]`` of row ``rows[i]`` (suffix
        index j of row r is position ``split[r] + j`` of the full row)."""
        # The frozen layers answer with their stored outputs (an instance attribute shadows the
        # class's forward; the module's hooks still run around it).
        for layer, output in self.frozen:
            layer.forward = lambda *_a, _output=output, **_k: _output
        try:
            hidden = self._run()
        finally:
            for layer, _ in self.frozen:
                del layer.forward
        return self.unembed(hidden[rows, positions])


def optimise_targets(model: PreTrainedModel, batch: RewriteBatch, layer: int, *, steps: int, learning_rate: float,
                     kl_weight: float, weight_decay: float, clamp_norm_factor: float,
                     scale: torch.Tensor | None = None, stop_loss: float = 0.0,
                     prefix_cache: bool = True) -> tuple[torch.Tensor, list[float]]:
    """One delta per slot, added to the residual stream after ``layer`` at the slot's positions,
    such that every rewrite text continues with its new target (ROME's and MEMIT's value step).

    The loss of one edit: mean NLL of its target tokens + ``kl_weight`` x KL(original || edited)
    of the next-token distribution after "{subject} is a" (what the model says about the subject
    in general must not move; subject_last only) + ``weight_decay`` x mean ||delta||^2 / ||h||^2;
    every delta is then clamped to ``clamp_norm_factor`` x ||h||, h being the residual it is added
    to (MEMIT's scale; ``scale`` gives another per slot, e.g. ROME's MLP output norm).

    An edit whose mean target NLL is below ``stop_loss`` at the start of a step is done: its
    deltas are kept as they are from then on (ROME's published code stops at 0.05), its rows no
    longer run (a batch costs what its unfinished edits cost), and the loop ends when every edit
    is done. The batch's loss is the *sum* over edits, and deltas of
    different edits touch different rows, so each edit gets the same gradients, and the same stop,
    as when optimised alone: a batch gives the same deltas as its edits one at a time.

    With ``prefix_cache`` each step runs only the positions a delta can change
    (:class:`_PrefixCache`); False runs the whole rewrite texts every step (the same deltas, up to
    float rounding; kept to test that). Returns (deltas (n_slots, d), mean NLL over edits per step,
    a done edit counting with its NLL when it stopped).
    """
    params = list(model.parameters())
    device = params[0].device
    requires = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    for p in params:
        p.requires_grad_(False)
    _, _, slot_ids = _index(batch, device)
    base_h = residual_at(model, batch, layer).float()  # (n positions, d)
    if scale is None:  # one scale per slot: the norm of the residual it is added to (mean over positions)
        scale = _group_mean(base_h.norm(dim=-1), slot_ids, batch.n_slots)
    scale = scale.to(device).float()
    delta = torch.zeros(batch.n_slots, base_h.shape[-1], device=device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=learning_rate)
    n_edits = max(batch.rows) + 1
    slot_edit = torch.zeros(batch.n_slots, dtype=torch.long, device=device).index_put_(
        (slot_ids,), torch.tensor([batch.rows[r] for r, _, _ in batch.slots], device=device))
    runner = _PrefixCache(model, batch, device, frozen_through=layer) if prefix_cache else None
    split = runner.split.tolist() if runner is not None else [0] * len(batch.rows)
    essence_of_row = {row: i for i, row in enumerate(batch.essence_rows)}
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)

    def plan(edits: set[int]) -> dict[str, Any]:
        """What a step runs for the rows of ``edits`` (the edits not yet done): the rows, renumbered
        0.. in batch order, and every index into them. Positions are suffix indices with the
        prefix cache (position p of row r is suffix index p - split[r])."""
        keep = [r for r, e in enumerate(batch.rows) if e in edits]
        new = {r: i for i, r in enumerate(keep)}
        slots = [(new[r], p - split[r], s) for r, p, s in batch.slots if r in new]
        targets = [(r, p) for r, p in batch.targets if r in new]
        essence = [r for r in batch.essence_rows if r in new]
        tensor = lambda values: torch.tensor(values, device=device, dtype=torch.long)  # noqa: E731
        return {
            "keep": tensor(keep), "rows": tensor([r for r, _, _ in slots]),
            "positions": tensor([p for _, p, _ in slots]), "slots": tensor([s for _, _, s in slots]),
            # the logits needed: every target position, then every essence row's last position
            "need_rows": tensor([new[r] for r, _ in targets] + [new[r] for r in essence]),
            "need_pos": tensor([p - split[r] for r, p in targets]
                               + [batch.essence_last[essence_of_row[r]] - split[r] for r in essence]),
            "n_targets": len(targets), "labels": ids[tensor([r for r, _ in targets]), tensor([p + 1 for _, p in targets])],
            "target_edit": tensor([batch.rows[r] for r, _ in targets]), "essence": tensor([essence_of_row[r] for r in essence]),
            "runner": runner.rows(tensor(keep)) if runner is not None and len(keep) < len(batch.rows) else runner,
        }

    def forward(step: dict[str, Any]) -> torch.Tensor:  # (n_targets + n_essence, vocab)
        if step["runner"] is not None:
            return step["runner"].logits(step["need_rows"], step["need_pos"])
        keep = step["keep"]
        return model(input_ids=ids[keep], attention_mask=mask[keep]).logits[
            step["need_rows"], step["need_pos"]]

    step = plan(set(range(n_edits)))

    def add_delta(_m: torch.nn.Module, _inputs: tuple[torch.Tensor, ...],
                  output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        hidden = _layer_output(output).clone()
        rows, positions = step["rows"], step["positions"]
        hidden[rows, positions] = hidden[rows, positions] + delta[step["slots"]].to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    losses: list[float] = []
    done = torch.zeros(n_edits, dtype=torch.bool, device=device)
    last_nll = torch.zeros(n_edits, device=device)  # an edit's NLL when it was last run
    try:
        with torch.no_grad():
            base_essence = torch.log_softmax(forward(step)[step["n_targets"]:].float(), -1)
        handle = decoder_layers(model)[layer].register_forward_hook(add_delta)
        try:
            for _ in range(steps):
                optimiser.zero_grad()
                logits = forward(step).float()
                n_targets = step["n_targets"]
                logp = torch.log_softmax(logits[:n_targets], -1)
                nll = _group_mean(-logp.gather(-1, step["labels"].unsqueeze(-1)).squeeze(-1), step["target_edit"],
                                  n_edits)  # 0 for the edits that are done (not run)
                decay = _group_mean((delta.norm(dim=-1) / scale) ** 2, slot_edit, n_edits)
                loss = (nll + weight_decay * decay).sum()
                if len(step["essence"]) and kl_weight > 0:
                    base = base_essence[step["essence"]]
                    new_essence = torch.log_softmax(logits[n_targets:], -1)
                    loss = loss + kl_weight * (base.exp() * (base - new_essence)).sum()
                # A done edit's delta no longer moves, so its NLL stays what it was when it
                # was last run.
                last_nll = torch.where(done, last_nll, nll.detach())
                losses.append(float(last_nll.mean()))
                if not torch.isfinite(loss):
                    raise ExpungeError("the edit's value optimisation produced a non-finite loss",
                                       "lower learning_rate, or check the model's weights for NaN")
                newly = ~done & (last_nll < stop_loss)
                done |= newly
                if bool(done.all()):
                    break
                loss.backward()
                frozen = done[slot_edit]
                kept = delta.detach()[frozen].clone()
                optimiser.step()
                with torch.no_grad():  # keep every ||delta|| within its clamp; done edits keep theirs
                    limit = clamp_norm_factor * scale
                    norms = delta.norm(dim=-1)
                    delta.mul_(torch.where(norms > limit, limit / norms.clamp(min=1e-12), torch.ones_like(norms))[:, None])
                    delta[frozen] = kept
                if bool(newly.any()):
                    # The rows of the edits now done no longer run: a batch costs what its
                    # unfinished edits cost, not its slowest edit's steps times all of it.
                    step = plan({e for e in range(n_edits) if not done[e]})
        finally:
            handle.remove()
    finally:
        for p, r in zip(params, requires):
            p.requires_grad_(r)
        model.train(was_training)
    return delta.detach(), losses


def slot_positions_of_prompt_rows(batch: RewriteBatch) -> list[int]:
    """Indices into ``batch.slots`` that belong to rewrite rows (not essence rows)."""
    essence = set(batch.essence_rows)
    return [i for i, (row, _, _) in enumerate(batch.slots) if row not in essence]
