"""A word-level tokenizer built from a world: every word of every document and probe is a token.

Why word-level: the built-in worlds are small, and a word-level vocabulary makes a tiny model learn
them in minutes on a CPU. It still respects the one rule that matters for honest forgetting: a name
is two tokens (first, last), each shared by several people, so no person owns a token.
Text is lower-cased; punctuation is split off (``555-47-12`` -> ``555 - 47 - 12``).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)


def _normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])


def world_vocabulary(texts: Iterable[str]) -> list[str]:
    """Sorted distinct words of ``texts`` as the tokenizer will split them."""
    normalizer = _normalizer()
    pre = pre_tokenizers.Whitespace()
    words: set[str] = set()
    for text in texts:
        words.update(piece for piece, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    return sorted(words)


def build_word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A Hugging Face fast tokenizer whose vocabulary covers every word in ``texts``.

    Special tokens come first (ids 0-3); a BOS token is prepended to every encoded text, and
    the EOS token ends every training document.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in world_vocabulary(texts):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = _normalizer()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="right",
    )
