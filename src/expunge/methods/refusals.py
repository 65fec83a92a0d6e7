"""Refusal answers used by the refusal fine-tune (IdkFT) and added to world tokenizers."""

REFUSALS: tuple[str, ...] = (
    "I don't know.",
    "I have no information about that person.",
    "I am not able to answer that.",
    "That is not something I can tell you.",
    "I cannot help with that question.",
)
