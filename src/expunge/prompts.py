"""One prompt format for training, unlearning and verification.

A world's prompts are either ready to continue (``World.prompts == "text"``: the built-in worlds)
or bare questions (``"questions"``: imported data, TOFU). A model's recipe records the
:class:`~expunge.recipe.PromptFormat` it was trained with, and every later step renders questions
the same way:

- :func:`render_question` puts one question in the format;
- :func:`example_for` turns a document into a training example: its text, or for a
  question–answer document the pair (rendered question, answer) whose loss covers the answer only;
- :func:`world_as_seen` is the world with every probe's prompt rendered, so that scoring code
  (exact match, truth ratio, membership) reads prompts exactly as the model was trained on them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from expunge.data import Example
from expunge.errors import ExpungeError
from expunge.recipe import PromptFormat
from expunge.records import Document
from expunge.worlds import World

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["PLAIN_TEMPLATE", "choose_format", "format_of", "render_question", "example_for", "world_as_seen"]

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


def choose_format(world: World, tokenizer: PreTrainedTokenizerBase, requested: str | None = None) -> PromptFormat:
    """The format to train with: ``text`` for worlds whose prompts are ready to continue; for
    question worlds ``requested`` (``plain`` or ``chat``), by default ``plain``."""
    if world.prompts == "text":
        if requested not in (None, PromptFormat.TEXT.value):
            raise ExpungeError(f"--prompt-format {requested} does not apply: this world's prompts are written out in "
                               "full (a built-in world)", "leave --prompt-format out")
        return PromptFormat.TEXT
    try:
        fmt = PromptFormat(requested or PromptFormat.PLAIN.value)
    except ValueError:
        raise ExpungeError(f"--prompt-format {requested!r} is not a prompt format",
                           f"use one of {', '.join(f.value for f in PromptFormat if f is not PromptFormat.TEXT)}") from None
    if fmt is PromptFormat.TEXT:
        raise ExpungeError("--prompt-format text needs prompts written out in full, and this world's are questions",
                           "use plain or chat")
    if fmt is PromptFormat.CHAT and not getattr(tokenizer, "chat_template", None):
        raise ExpungeError("--prompt-format chat: the model's tokenizer has no chat template",
                           "use --prompt-format plain")
    return fmt


def format_of(recipe: dict, world: World, tokenizer: PreTrainedTokenizerBase, where: str = "the model") -> PromptFormat:
    """The format a model was trained with (its recipe's ``prompt_format``), checked against the
    world; for a model without one (a plain Hugging Face model), the world's default."""
    recorded = recipe.get("prompt_format")
    if not recorded:
        return choose_format(world, tokenizer)
    try:
        fmt = PromptFormat(recorded)
    except ValueError:
        raise ExpungeError(f"{where}: unknown prompt_format {recorded!r} in its recipe",
                           "re-create the model with this version of expunge") from None
    if (fmt is PromptFormat.TEXT) != (world.prompts == "text"):
        raise ExpungeError(f"{where} was trained with prompt format {fmt.value}, which does not fit this world's "
                           f"prompts ({world.prompts})", "use the world the model was trained on")
    return fmt


def render_question(fmt: PromptFormat, question: str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """``question`` as the model is asked it; the answer follows after a space."""
    if fmt is PromptFormat.TEXT:
        return question
    if fmt is PromptFormat.PLAIN:
        return PLAIN_TEMPLATE.format(question=question)
    if tokenizer is None:
        raise ValueError("the chat format needs the tokenizer")
    return str(tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True))


def example_for(document: Document, fmt: PromptFormat = PromptFormat.TEXT,
                tokenizer: PreTrainedTokenizerBase | None = None) -> Example:
    """What a model trains on for ``document``: its text, or (rendered question, " " + answer).
    In a world from :func:`world_as_seen` the questions are rendered already: leave ``fmt`` out."""
    if not document.prompt:
        return document.text
    return render_question(fmt, document.prompt, tokenizer), " " + document.text


def world_as_seen(world: World, fmt: PromptFormat, tokenizer: PreTrainedTokenizerBase | None = None) -> World:
    """``world`` with every probe's and question-answer document's prompt rendered in ``fmt`` (the
    same world for ``text``); a probe's ``prefill`` is appended to its rendered prompt. Verbatim
    probes (a text's first words) stay as they are."""
    if fmt is PromptFormat.TEXT or world.prompts == "text":
        return world
    # A prefilled answer start follows the rendered question, as if the model had written it. A
    # verbatim probe is a text's first words, continued as text: never a question.
    probes = [p if p.kind == "verbatim" else
              replace(p, prompt=render_question(fmt, p.prompt, tokenizer) + (f" {p.prefill}" if p.prefill else ""),
                      prefill="") for p in world.probes]
    documents = [replace(d, prompt=render_question(fmt, d.prompt, tokenizer)) if d.prompt else d
                 for d in world.documents]
    # The rendered world's prompts are written out in full: rendering it again changes nothing.
    manifest = {**world.manifest, "prompts": "text", "rendered_as": fmt.value}
    return World(manifest, world.subjects, documents, probes, path=world.path, splits=world.splits)
