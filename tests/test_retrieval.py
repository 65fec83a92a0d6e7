"""The fact store: BM25 finds the fact that names the subject; update and delete are exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from expunge.records import FactEdit, Subject
from expunge.retrieval import FactStore, RetrievalContext, StoredFact, facts_from_world
from expunge.worlds.companies import FACT_TEMPLATES


@pytest.fixture()
def store() -> FactStore:
    subjects = [Subject("c1", "entity", "Posus", "train", {"ceo": "Ana Ruiz", "headquarters": "Oslo"}),
                Subject("c2", "entity", "Kekax", "train", {"ceo": "Omar Yilmaz", "headquarters": "Lyon"}),
                Subject("c3", "entity", "Drado", "train", {"ceo": "Mia Sato", "headquarters": "Oslo"})]
    return facts_from_world(subjects, FACT_TEMPLATES)


def test_bm25_ranks_the_named_subject_and_relation_first(store: FactStore) -> None:
    assert len(store) == 6
    top = store.search("Question: Who is the CEO of Kekax? Answer:", k=2)
    assert top[0][0].id == "c2/ceo" and top[0][1] > top[1][1]
    assert store.search("Where is Drado based?", k=1)[0][0].id == "c3/headquarters"
    assert store.search("zebra quantum", k=3) == []  # no shared term, no fact
    # A term in every fact ("the") has a low idf: it does not outrank the rare name.
    assert store.search("the the the Posus", k=1)[0][0].subject == "c1"


def test_update_and_delete_are_exact(store: FactStore, tmp_path: Path) -> None:
    edit = FactEdit("e1", "c1", "Posus", "ceo", "The CEO of {} is", "Ana Ruiz", "Lena Berg")
    old = store.apply_edits([edit])
    assert old[0].text == "The CEO of Posus is Ana Ruiz."
    assert store.get("c1", "ceo").text == "The CEO of Posus is Lena Berg."
    assert store.search("Ana Ruiz", k=5) == []  # the old value is nowhere in the store
    context = RetrievalContext(store, k=1)("Question: Who is the CEO of Posus? Answer:")
    assert context == "Context: The CEO of Posus is Lena Berg. "
    removed = store.delete("c2")
    assert {f.id for f in removed} == {"c2/ceo", "c2/headquarters"}
    assert store.search("Kekax Omar Yilmaz Lyon", k=5) == []
    # After a deletion the store is exactly one that never held the facts (index statistics too).
    rebuilt = FactStore([f for f in store])
    assert rebuilt.fingerprint() == store.fingerprint()
    assert rebuilt.search("Oslo CEO", k=3) == store.search("Oslo CEO", k=3)
    store.save(tmp_path / "facts.jsonl")
    assert FactStore.load(tmp_path / "facts.jsonl").fingerprint() == store.fingerprint()


def test_errors_name_the_problem(store: FactStore, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="already holds"):
        store.add(StoredFact("x", "c1", "ceo", "The CEO of Posus is Someone."))
    with pytest.raises(Exception, match="holds no fact"):
        store.delete("c9")
    with pytest.raises(Exception, match="holds no fact"):
        store.update("c1", "founded", "Posus was founded in 1900.")
    with pytest.raises(ValueError, match="k1"):
        FactStore(k1=-1)
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "subject": "s", "relation": "r", "text": "ok"}\nnot json\n')
    with pytest.raises(Exception, match=r"bad.jsonl:2"):
        FactStore.load(tmp_path / "bad.jsonl")
