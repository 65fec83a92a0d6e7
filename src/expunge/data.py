"""Token sequences, padding and a seeded, resumable batch order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset, Sampler

if TYPE_CHECKING:  # type hints only: importing transformers costs seconds the option checks must not pay
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100

# A training example: a plain text (every token counts), or a (prompt, answer) pair whose loss
# covers the answer's tokens only (question-answer documents, as TOFU trains them).
Example = str | tuple[str, str]


class TokenSequence(list):
    """Token ids whose first ``loss_start`` positions are context: :func:`pad_collate` gives them
    no label, so every loss, likelihood and membership score covers the rest only."""

    def __init__(self, ids: Sequence[int] = (), loss_start: int = 0) -> None:
        super().__init__(ids)
        self.loss_start = loss_start


def encode_documents(tokenizer: PreTrainedTokenizerBase, texts: Sequence[Example], max_length: int) -> list[list[int]]:
    """Token ids of each example (with the tokenizer's BOS convention) followed by EOS, cut to
    ``max_length``. A (prompt, answer) pair is encoded as prompt then answer, as one sequence
    whose loss starts at the answer (a :class:`TokenSequence`)."""
    eos = tokenizer.eos_token_id
    tail = [eos] if eos is not None else []
    plain = [i for i, t in enumerate(texts) if isinstance(t, str)]
    pairs = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    out: list[list[int]] = [[] for _ in texts]
    if plain:
        for i, ids in zip(plain, tokenizer([texts[i] for i in plain], add_special_tokens=True)["input_ids"]):
            out[i] = (list(ids) + tail)[:max_length]
    if pairs:
        prompts = tokenizer([texts[i][0] for i in pairs], add_special_tokens=True)["input_ids"]
        answers = tokenizer([texts[i][1] for i in pairs], add_special_tokens=False)["input_ids"]
        for i, prompt, answer in zip(pairs, prompts, answers):
            ids = (list(prompt) + list(answer) + tail)[:max_length]
            # A prompt longer than max_length still leaves the last token to learn.
            out[i] = TokenSequence(ids, loss_start=min(len(prompt), len(ids) - 1))
    return out


def _copy(sequence: Sequence[int]) -> list[int]:
    return TokenSequence(sequence, sequence.loss_start) if isinstance(sequence, TokenSequence) else list(sequence)


class SequenceDataset(Dataset):
    """A list of token-id sequences; items are plain lists (or :class:`TokenSequence`), padded by
    :func:`pad_collate`."""

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        self.sequences = [_copy(s) for s in sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> list[int]:
        return self.sequences[index]

    def num_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    def lengths(self) -> list[int]:
        return [len(s) for s in self.sequences]


def padding_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id to pad batches with: the pad token, else EOS, else 0. Padded positions are masked
    out of attention and labels, so any valid id will do."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def pad_collate(pad_id: int) -> Callable[..., dict[str, torch.Tensor]]:
    """Right-pad a batch (to its longest sequence, or to ``width`` if that is longer); padded
    positions get attention 0 and label IGNORE_INDEX, and so do a :class:`TokenSequence`'s
    context positions."""

    def collate(batch: list[list[int]], width: int = 0) -> dict[str, torch.Tensor]:
        width = max(width, *(len(s) for s in batch))
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention[row, : len(seq)] = 1
        labels = input_ids.masked_fill(attention == 0, IGNORE_INDEX)
        for row, seq in enumerate(batch):
            labels[row, : getattr(seq, "loss_start", 0)] = IGNORE_INDEX
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

    return collate


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose order depends only on (seed, epoch).

    The order of any epoch can be recomputed from scratch, which is what makes resuming after an
    interruption reproduce the uninterrupted run exactly.

    With ``lengths`` given, batches are grouped by length: the shuffled order is cut into windows
    of ``group_window`` batches, each window is sorted by length and cut into batches, and the
    batches are shuffled again. Short documents then share batches with short documents, which
    cuts padding (a batch pads to its longest member) several-fold on corpora of short facts
    mixed with longer biographies.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        lengths: Sequence[int] | None = None,
        group_window: int = 32,
    ) -> None:
        if size < 1:
            raise ValueError("cannot batch an empty dataset")
        if lengths is not None and len(lengths) != size:
            raise ValueError("lengths must have one entry per sequence")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.lengths = list(lengths) if lengths is not None else None
        self.group_window = group_window
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:
        # Not named set_epoch on purpose: accelerate calls set_epoch(<its own iteration count>)
        # on batch samplers, which after a resume is not the epoch we are in.
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.lengths is None:
            for start in range(0, self.size, self.batch_size):
                yield order[start : start + self.batch_size]
            return
        window = self.batch_size * self.group_window
        batches: list[list[int]] = []
        for start in range(0, self.size, window):
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        # Only full batches are shuffled; a short one goes last, where accelerate's sharding across
        # processes expects it (a short batch in the middle would be dropped, making epochs shorter
        # than len(self) and resume offsets wrong).
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        for index in torch.randperm(len(full), generator=generator).tolist():
            yield full[index]
        yield from short

    def __len__(self) -> int:
        return (self.size + self.batch_size - 1) // self.batch_size
