"""Generic targets for the forget documents: what the model would say about someone it never met.

After a deletion, the oracle (retrained without the data) still answers "Where was X born?" with
*a* city — just not X's. Pushing the forget data's likelihood down (GradAscent, NPO, SimNPO) says
nothing about what should come instead, and measured on the privacy world it often yields noise
of the wrong type (a date for a birthplace). Eldan & Russinovich ("Who's Harry Potter?",
https://arxiv.org/abs/2310.02238) give the model a target instead: its own predictions on text
where the specific entity is replaced by a generic one.

For a person this is exact to build: replace every occurrence of a target's name in a forget
document by a *stand-in* name — a first and last name the model has seen, combined into a person
it never saw — and ask the original model what comes next. A work's title is replaced the same
way (title words it has seen, combined into a title it never saw); a text that does not name its
subject (a book's passage) has no stand-in version. That is its behaviour towards an
unknown person, which is what the oracle shows towards the forgotten one. The anchor term
(:func:`expunge.methods.gradient.losses.kl_to_reference`) pulls the model's next-token
distributions on the real document towards those, at every position whose next token lies outside
the name (the name tokens themselves differ between the two texts).

Stand-ins must tokenize to as many tokens as the name they replace, so that the two sequences
align position by position; a document for which no such stand-in exists (or whose text does not
contain the name) gets no anchor.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from expunge.records import Document
from expunge.worlds import World


@dataclass
class GenericTargets:
    """Per forget document: the stand-in text's token ids and, per token, whether it equals the
    real document's token (only those positions are anchored). ``None`` where no anchor exists."""

    ids: list[list[int] | None]
    same: list[list[bool] | None]

    @property
    def coverage(self) -> float:
        """Share of documents that have an anchor."""
        return sum(x is not None for x in self.ids) / max(len(self.ids), 1)


def stand_in_names(world: World, kind: str = "person") -> list[str]:
    """Every combination of the world's name parts for subjects of ``kind`` that no trained
    subject has: someone (or a work) the model never saw. A name's parts are its last word and
    what comes before it: a person's first and last name, a title's "The Amber" and "Violin".
    Never-seen subjects' names qualify: nothing about them was trained, and only the original
    model's predictions are read on them."""
    named = [s for s in world.subjects if s.kind == kind and " " in s.name.strip()]
    trained = {s.name for s in named if s.role == "train"}
    heads = sorted({s.name.rsplit(" ", 1)[0] for s in named})
    tails = sorted({s.name.rsplit(" ", 1)[1] for s in named})
    return [f"{h} {t}" for h in heads for t in tails if f"{h} {t}" not in trained]


def generic_targets(
    world: World,
    documents: Sequence[Document],
    encoded: Sequence[list[int]],
    tokenizer: PreTrainedTokenizerBase,
    encode: Callable[[list[str]], list[list[int]]],
    seed: int,
) -> GenericTargets:
    """Stand-in versions of ``documents`` (whose token ids are ``encoded``), aligned token by token."""
    rng = random.Random(seed)
    length = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    pools: dict[str, dict[int, list[str]]] = {}  # subject kind -> token length -> stand-ins

    def by_length(kind: str) -> dict[int, list[str]]:
        if kind not in pools:
            candidates = stand_in_names(world, kind)
            rng.shuffle(candidates)
            pools[kind] = {}
            for name in candidates:
                pools[kind].setdefault(length(name), []).append(name)
        return pools[kind]

    names = world.subject_by_id
    ids: list[list[int] | None] = []
    same: list[list[bool] | None] = []
    for doc, real in zip(documents, encoded):
        text, replaced = doc.text, False
        for subject_id in doc.subjects:
            subject = names.get(subject_id)
            name = subject.name if subject is not None else ""
            pool = by_length(subject.kind).get(length(name), []) if name and name in text else []
            if pool:
                text, replaced = text.replace(name, rng.choice(pool)), True
        generic = encode([text])[0] if replaced else None
        if generic is None or len(generic) != len(real):  # no name, or it changed how words split
            ids.append(None)
            same.append(None)
            continue
        ids.append(generic)
        same.append([a == b for a, b in zip(real, generic)])
    return GenericTargets(ids, same)
