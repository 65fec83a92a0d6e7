"""The passages world: books to memorise for copyright requests, and their knowledge questions."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from world_checks import assert_same_files_across_processes

from expunge.models.tokenizer import world_vocabulary
from expunge.worlds import PassagesWorldConfig, build_passages_world, generate_passages_world, load_world
from expunge.worlds import pools
from expunge.worlds.passages import FACT_NAMES, QUEST_OBJECTS
from expunge.verify.judge import Forgotten


@pytest.fixture(scope="module")
def generated():
    return generate_passages_world(PassagesWorldConfig())


def _books(generated, role: str | None = None):
    return [s for s in generated.subjects if s.kind == "work" and (role is None or s.role == role)]


def _question(prompt: str) -> str:
    return re.sub(r"^Question: (.*) Answer:$", r"\1", prompt)


def test_same_seed_same_files_across_processes(tmp_path: Path) -> None:
    assert_same_files_across_processes(tmp_path, "PassagesWorldConfig", "build_passages_world", "books=6")


def test_books_are_works_with_passages_guides_and_never_seen_books(generated) -> None:
    trained, holdout = _books(generated, "train"), _books(generated, "holdout")
    assert len(trained) == 12 and len(holdout) == 4
    assert len({b.name for b in _books(generated)}) == 16  # distinct titles
    for book in _books(generated):
        docs = [d for d in generated.documents if d.subjects == (book.id,)]
        assert {d.split for d in docs} == {"train" if book.role == "train" else "holdout"}
        sources = Counter(d.source for d in docs)
        assert sources == {"passages-book": 1 + 6, "passages-guide": len(FACT_NAMES)}
        assert set(book.attributes) == set(FACT_NAMES)
        assert len({book.attributes[r] for r in ("hero", "companion", "rival")}) == 3
    corpus = "\n".join(d.text for d in generated.documents if d.split == "train")
    for book in holdout:  # never-seen books: not one mention in the training text
        assert book.name not in corpus
    assert {s.kind for s in generated.subjects} == {"work", "entity"}


def test_every_title_word_and_name_is_shared_by_two_books(generated) -> None:
    """No book owns a token: forgetting one means removing associations (DESIGN.md's trap)."""
    books = _books(generated)
    words = Counter(w for b in books for w in b.name.split()[1:])
    names = Counter(b.attributes[r] for b in books for r in ("hero", "companion", "rival"))
    assert min(words.values()) >= 2 and min(names.values()) >= 2
    for column in ("city", "quest", "trade"):
        assert min(Counter(b.attributes[column] for b in books).values()) >= 2, column
    for part in (0, 1):  # authors share first and last names, as the privacy world's people do
        assert min(Counter(b.attributes["author"].split()[part] for b in books).values()) >= 2
    assert all(b.neighbours for b in _books(generated, "train"))


def test_never_seen_books_are_a_random_sample_made_like_the_others() -> None:
    """Never-seen books are drawn from books made the same way (exchangeable with removed ones),
    not appended after the trained ones."""
    worlds = [generate_passages_world(PassagesWorldConfig(seed=seed)) for seed in range(4)]
    positions = {i for w in worlds for i, b in enumerate(_books(w)) if b.role == "holdout"}
    assert len(positions) > 4 and min(positions) < 12


def test_verbatim_probes_continue_their_passage_from_a_unique_prompt(generated) -> None:
    texts = {d.text for d in generated.documents if d.source == "passages-book"}
    verbatim = [p for p in generated.probes if p.kind == "verbatim"]
    assert len(verbatim) == 16 * 6
    for probe in verbatim:
        assert len(probe.prompt.split()) == 8 and len(probe.answer.split()) > 20
        assert f"{probe.prompt} {probe.answer}" in texts
    assert len({p.prompt for p in verbatim}) == len(verbatim)
    # No sentence of a passage occurs twice in the world: each can only be reproduced by memory.
    sentences = [s for d in generated.documents if d.source == "passages-book" and ", a novel by" not in d.text
                 for s in re.split(r"(?<=\.) ", d.text)]
    assert len(set(sentences)) == len(sentences)


def test_passages_state_the_facts_the_knowledge_questions_ask(generated) -> None:
    """Knowledge is learnable from the book's own text, not only from its reader's guide."""
    for book in _books(generated):
        text = " ".join(d.text for d in generated.documents
                        if d.subjects == (book.id,) and d.source == "passages-book")
        for fact in FACT_NAMES:
            assert book.attributes[fact] in text, (book.id, fact)


def test_heldout_questions_never_in_training_text_and_use_its_words(generated) -> None:
    corpus = "\n".join(d.text for d in generated.documents if d.split == "train")
    by_id = {s.id: s for s in generated.subjects}
    paraphrases = [p for p in generated.probes if p.kind == "paraphrase"]
    assert paraphrases
    for probe in paraphrases:
        question = _question(probe.prompt)
        assert question not in corpus, question
        frame = re.escape(question.replace(by_id[probe.subject].name, "\x00")).replace("\x00", ".+?")
        assert re.search(frame, corpus) is None, question
    for probe in generated.probes:
        if probe.kind == "direct" and by_id[probe.subject].role == "train":
            assert f"{probe.prompt} {probe.answer}" in corpus
    # The trained books' held-out questions use only words of the training text.
    seen = set(world_vocabulary([corpus]))
    asked = set(world_vocabulary(p.prompt for p in generated.probes if p.kind in ("paraphrase", "verbatim")
                                 and by_id[p.subject].role == "train"))
    assert asked <= seen, sorted(asked - seen)


def test_wrong_answers_are_of_the_same_type(generated) -> None:
    same_type = {"hero": pools.FIRST_NAMES, "companion": pools.FIRST_NAMES, "rival": pools.FIRST_NAMES,
                 "city": pools.CITIES, "quest": QUEST_OBJECTS, "trade": pools.OCCUPATIONS}
    for probe in generated.probes:
        if probe.kind == "verbatim" or probe.subject.startswith("entity-"):
            continue
        assert len(probe.alternatives) == 4 and probe.answer not in probe.alternatives
        if probe.attribute == "author":
            assert all(a.split()[0] in pools.FIRST_NAMES and a.split()[1] in pools.LAST_NAMES
                       for a in probe.alternatives)
        else:
            assert set(probe.alternatives) <= set(same_type[probe.attribute]), probe.id


def test_a_request_for_a_book_locates_books_not_people(tmp_path: Path) -> None:
    from expunge.ledger import make_request
    from expunge.locate import locate

    world = build_passages_world(tmp_path / "w", PassagesWorldConfig(books=6, holdout_books=2))
    target = world.deletable("train")[0]
    request = make_request(world, subjects=[target.id])
    assert request.kind == "copyright"  # every target is a work
    located = locate(world, request)
    assert located.forget.subjects == (target.id,)
    assert set(located.forget.documents) == {d.id for d in world.documents_about([target.id])}
    assert set(located.retain.subjects) == {b.id for b in world.deletable("train")} - {target.id}
    assert set(located.never_seen.subjects) == {b.id for b in world.deletable("holdout")}
    assert located.general.subjects and all(s.startswith("entity-") for s in located.general.subjects)
    assert set(located.neighbours.subjects) == set(target.neighbours) & set(located.retain.subjects)
    # A random share of the deletable subjects draws books here.
    drawn = make_request(world, random_fraction=0.3)
    assert drawn.kind == "copyright" and all(t.startswith("book-") for t in drawn.targets)


def test_a_world_with_a_document_id_used_twice_is_refused(tmp_path: Path, generated) -> None:
    from expunge.errors import ExpungeError
    from expunge.worlds.world import write_world

    assert len({d.id for d in generated.documents}) == len(generated.documents)
    twice = [*generated.documents, generated.documents[0]]
    with pytest.raises(ExpungeError, match="used twice"):
        write_world(tmp_path / "w", generated.subjects, twice, generated.probes, {"generator": "test"})
    assert not (tmp_path / "w").exists()


def test_invalid_options_are_rejected() -> None:
    for kwargs, message in ((dict(books=1), "books"), (dict(holdout_books=0), "holdout"),
                            (dict(passages_per_book=21), "passages_per_book"),
                            (dict(sentences_per_passage=2), "sentences_per_passage"),
                            (dict(prompt_words=3), "prompt_words"), (dict(fact_share=1.0), "fact_share"),
                            (dict(guide_questions=3), "guide_questions"), (dict(wrong_answers=2), "wrong_answers"),
                            (dict(books=399), "400")):
        with pytest.raises(ValueError, match=message):
            PassagesWorldConfig(**kwargs)


def test_cli_world_passages(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from expunge.cli import app

    result = CliRunner().invoke(app, ["world", "passages", "--out", str(tmp_path / "w"), "--books", "6",
                                      "--passages", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["books_train"], data["books_holdout"], data["verbatim_probes"]) == (6, 4, 30)
    assert load_world(tmp_path / "w").fingerprint == data["fingerprint"]
    bad = CliRunner().invoke(app, ["world", "passages", "--out", str(tmp_path / "x"), "--passages", "40"])
    assert bad.exit_code == 2 and "passages_per_book" in bad.output
    taken = CliRunner().invoke(app, ["world", "passages", "--out", str(tmp_path / "w")])
    assert taken.exit_code == 2 and "exists" in taken.output


# --------------------------------------------------------------------------------------------
# end to end on a tiny model: train on the books, retrain without two, verify (about 30 s)


@pytest.fixture(scope="module")
def copyright_run(tmp_path_factory: pytest.TempPathFactory):
    from expunge.ledger import make_request, write_request
    from expunge.pipeline import retrain_oracle, train_base
    from expunge.verify.policy import default_policy, override_policy
    from expunge.verify.suite import VerifyConfig, verify_models

    root = tmp_path_factory.mktemp("copyright")
    world = build_passages_world(root / "w", PassagesWorldConfig(seed=0, books=6, holdout_books=4,
                                                                 passages_per_book=4))
    base = train_base(root / "w", root / "base", preset="tiny", seed=0, progress=False)
    request = make_request(world, subjects=[b.id for b in world.deletable("train")[:2]])
    write_request(request, root / "request.json")
    oracle = retrain_oracle(root / "w", root / "request.json", root / "oracle", base=base.model.path, progress=False)
    config = VerifyConfig(policy=override_policy(default_policy(), evidence={"min_subjects": 2}),
                          bootstrap_samples=200)
    # Two candidates of known verdict: the oracle itself (retrained: removed), the original
    # (unchanged: remembers).
    verification = verify_models({"retrained": oracle.model.path, "unchanged": base.model.path}, base.model.path,
                                 oracle.model.path, root / "w", root / "request.json", config=config)
    return request, verification


def test_copyright_request_verified_on_verbatim_memory_and_knowledge(copyright_run) -> None:
    """Measured on seeds 0-2 (tiny preset, 2 threads): the original continues its removed passages
    perfectly (ROUGE-L F1 1.00, extraction strength 1.00) where the oracle reaches 0.23-0.29, the
    level of never-seen books (0.22-0.30); the original answers 0.36-0.41 of the removed books'
    questions against the oracle's 0.00-0.02. The assertions keep margins inside those gaps."""
    request, v = copyright_run
    assert request.kind == "copyright"
    original, oracle = v.original.verbatim, v.oracle.verbatim
    assert original["forget"]["rouge_l_f1"] >= 0.9 and original["forget"]["extraction_strength"] >= 0.9
    assert original["forget"]["rouge_l_f1"] - oracle["forget"]["rouge_l_f1"] >= 0.5
    assert oracle["forget"]["rouge_l_f1"] <= oracle["holdout"]["rouge_l_f1"] + 0.15  # at never-seen level
    assert v.original.sets["forget"]["exact_match"] - v.oracle.sets["forget"]["exact_match"] >= 0.15
    checks = {name: {c.policy_key: c for c in v.checks[name]} for name in v.candidates}
    assert checks["retrained"]["verbatim_memorization"].passed is True
    assert checks["unchanged"]["verbatim_memorization"].passed is False
    assert checks["unchanged"]["forget_exact_match"].passed is False
    # The kept books are scored too. How much of them a tiny oracle keeps varies too much to assert
    # on (0.50-1.00 of the original's over seeds 0-2: the tiny recipe is not made to memorise).
    for name in ("retrained", "unchanged"):
        check = checks[name]["retain_verbatim"]
        assert check.decisive and check.reference == original["retain"]["rouge_l_f1"]
    assert checks["unchanged"]["retain_verbatim"].passed is True
    # Never "forgotten". (On this 6-book world the oracle can fail its own membership check, AUC
    # 0.30-0.47 over seeds 0-2 with 2 removed books: then the verdict is "not verified", else "no".)
    assert v.verdicts["unchanged"].forgotten is (Forgotten.NO if v.oracle_trusted else Forgotten.NOT_VERIFIED)
    assert "verbatim continuation of removed texts" in v.verdicts["unchanged"].attacks_tried


def test_copyright_report_shows_verbatim_memory(copyright_run) -> None:
    from expunge.report import report_from_verification, to_html, to_markdown

    _, v = copyright_run
    data = report_from_verification(v)
    assert set(data.verbatim) == {"original", "oracle"} | set(v.candidates)
    markdown = to_markdown(data)
    assert "## Verbatim memorisation of texts (MUSE)" in markdown and "| forget (8) |" in markdown
    assert "Verbatim memorisation of texts" in to_html(data, with_plots=False)
