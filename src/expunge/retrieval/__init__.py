"""Knowledge held outside the weights: a fact store served into the prompt, where an update or a
deletion is exact (the fact is gone from the store and its index, so no route can reach it)."""

from expunge.retrieval.store import FactStore, RetrievalContext, StoredFact, facts_from_world

__all__ = ["FactStore", "RetrievalContext", "StoredFact", "facts_from_world"]
