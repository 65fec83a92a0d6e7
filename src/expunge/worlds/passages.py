"""The passages world: invented books whose text a model memorises, for copyright requests.

A rights holder asks for two things (MUSE, Shi et al. 2024, https://arxiv.org/abs/2407.06460):
no verbatim regurgitation of the book, and no knowledge of its content beyond what a model that
never read it has. So every book here comes with both kinds of ground truth:

* **passages**: a title page and a run of passages, each a chain of sentences drawn from one
  seeded stream. Sentences combine the book's own cast and setting with details drawn afresh for
  each passage (a colour, an animal, a number, a street), so no two passages share a sentence and
  a model can only reproduce one by having memorised it. Each passage gives a ``verbatim`` probe:
  its first words as the prompt, the rest as the answer.
* **knowledge**: facts the passages state again and again (the hero, the companion, the rival, the
  city, the object of the quest, the hero's trade) and the author named on the title page. A short
  reader's guide per book asks a few of them in the training text ("Question: Who is the hero of
  The Copper Lantern? Answer: Mira"), which teaches the question form; held-out paraphrases never
  occur in any text. Both carry wrong answers of the same type (other books' heroes, other cities)
  for the truth ratio and multiple choice.

Never-seen books (role ``holdout``, documents split ``holdout``) are made exactly as the others
and drawn from them at random, so that a never-seen book is exchangeable with a removed one: the
membership reference. General facts (country capitals, as in the privacy world) measure utility.
Books that share a city, a character's name or the author are each other's neighbours.

Design rules, as in the other worlds: names are drawn from shared pools, so a character's first
name belongs to several books and forgetting a book means removing associations, not a token; a
title is two words drawn from pools (``The Copper Lantern``), distinct per book; held-out
questions never occur in training text; one seeded generator gives byte-identical files. (A word
dealt only to never-seen books, or only to removed ones, is one a model trained without them has
not learned; the world's tokenizer still knows it.)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from expunge.records import Document, Probe, Subject, verbatim_probe
from expunge.worlds import pools
from expunge.worlds.privacy import (ENTITY_ATTRIBUTES, QUESTION_FORMAT, _article, _country_subjects, _probe,
                                    _value_pools, _wrong_answers)

GENERATOR_NAME = "passages"
GENERATOR_VERSION = "1.1"
SUBJECT_KIND = "work"

# Titles: "The" + adjective + noun, every combination distinct within a world.
TITLE_ADJECTIVES = (
    "Copper", "Silent", "Hollow", "Amber", "Northern", "Broken", "Silver", "Crimson", "Quiet", "Distant",
    "Hidden", "Winter", "Golden", "Painted", "Salt", "Iron", "Paper", "Glass", "Lonely", "Burning",
)
TITLE_NOUNS = (
    "Lantern", "Harbour", "Orchard", "Bridge", "Garden", "Tower", "River", "Letter", "Mirror", "Island",
    "Clock", "Road", "Forest", "Lighthouse", "Market", "Violin", "Compass", "Station", "Meadow", "Chapel",
)
# What the hero searches for (a fact of each book) and the details drawn afresh per sentence.
QUEST_OBJECTS = (
    "brass key", "lost map", "silver compass", "old violin", "sealed letter", "green ring", "stone idol",
    "pocket watch", "glass eye", "wooden box", "painted fan", "iron crown", "blue notebook", "golden seed",
    "broken sword", "paper crane",
)
COLOURS = ("red", "grey", "white", "black", "yellow", "blue", "brown", "green", "pale", "dark")
ANIMALS = ("cat", "heron", "dog", "crow", "goat", "fox", "owl", "horse", "sparrow", "mule")
PLACES = ("harbour", "market", "church", "bridge", "station", "bakery", "library", "square", "tavern", "quay")
SMELLS = ("bread", "oranges", "smoke", "salt", "coffee", "rain", "tar", "lilac", "fish", "pepper")
FOODS = ("bread", "oranges", "figs", "soup", "cheese", "plums", "fish", "olives", "cake", "walnuts")
TIMES = ("dawn", "noon", "dusk", "midnight", "sunrise", "sunset")
WEATHERS = ("rain", "fog", "snow", "wind", "heat", "frost")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "twelve", "twenty")
OBJECTS = ("lamps", "bells", "baskets", "ropes", "flags", "mirrors", "kettles", "ladders", "candles", "barrels")

# Sentences of a passage. Fact sentences state the book's facts (the cast, the city, the quest, the
# trade); detail sentences carry the words drawn afresh. {hero}, {companion}, {rival} are first
# names; {city}, {quest}, {trade}, {a_trade} the book's; the rest per sentence.
FACT_SENTENCES = (
    "{hero} had lived in {city} for as long as anyone remembered.",
    "{hero} walked through the {place} of {city} at {time}.",
    "{hero} was still looking for the {quest}.",
    "Nobody in {city} had seen the {quest} since the {weather} of that year.",
    "{companion} walked beside {hero} and said nothing about the {quest}.",
    "{hero} trusted {companion} more than anyone in {city}.",
    "{rival} wanted the {quest} as badly as {hero} did.",
    "{hero} had never forgiven {rival} for the night at the {place}.",
    "As {a_trade} {trade}, {hero} rose before {time} and worked until the {weather} came.",
    "{companion} often teased {hero} about being {a_trade} {trade}.",
    "{rival} followed {hero} and {companion} across {city}.",
    "The {weather} over {city} reminded {hero} of the {quest}.",
)
DETAIL_SENTENCES = (
    "A {colour} {animal} slept on the steps of the {place}.",
    "The air smelled of {smell} and {smell2}.",
    "{number} {objects} hung from the ceiling of the {place}.",
    "At {time} the {animal} crossed the {place} and nobody followed it.",
    "Somewhere a {colour} door closed, and {number} {objects} rattled in the {weather}.",
    "The {place} was {colour} with {weather}, and the {animal} would not move.",
    "Someone had left {number} {objects} and a plate of {food} by the {place}.",
    "The {colour} {objects} of the {place} swung in the {weather}.",
)
TITLE_PAGE = "{title}, a novel by {author}. The author tells the story of {hero}, {a_trade} {trade} of {city}."

# fact -> (training questions of the reader's guide, held-out questions); {title} and {hero}.
# Held-out questions are worded from the title page, the passages and the general facts' questions
# alone, so a word-level model knows every word of them even without the guide.
FACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "author": (("Who wrote {title}?", "Who is the writer of {title}?"),
               ("Who is the author of the novel {title}?", "The novel {title} is by which author?")),
    "hero": (("Who is the hero of {title}?", "Who is the main character of {title}?"),
             ("Who is the novel {title} the story of?", "{title} tells the story of who?")),
    "companion": (("Who is the companion of the hero of {title}?", "Who travels with the hero of {title}?"),
                  ("Who walked beside {hero} in {title}?", "In the novel {title}, who walked beside {hero}?")),
    "rival": (("Who is the rival of the hero of {title}?", "Who opposes the hero of {title}?"),
              ("Who had {hero} never forgiven in {title}?", "In the novel {title}, who followed {hero} across the city?")),
    "city": (("In which city is {title} set?", "Where does {title} take place?"),
             ("In the novel {title}, which city had {hero} lived in?", "In {title}, {hero} walked through which city?")),
    "quest": (("What does the hero of {title} search for?", "What is the hero of {title} after?"),
              ("What was {hero} still looking for in {title}?", "In the novel {title}, what was {hero} looking for?")),
    "trade": (("What is the trade of the hero of {title}?", "What does the hero of {title} do for a living?"),
              ("What had {hero} worked as in {title}?", "In the novel {title}, what was {hero} teased about being?")),
}
FACT_NAMES = tuple(FACTS)
# A knowledge probe's attribute is its fact's name; a verbatim probe's is its passage's document id
# (see expunge.records.verbatim_probe).


@dataclass(frozen=True)
class PassagesWorldConfig:
    """Options of the passages world generator (see the module doc; MUSE's two criteria,
    https://arxiv.org/abs/2407.06460, are why each book has both passages and knowledge).

    Attributes:
        seed: random seed; the same seed gives byte-identical output.
        books: books whose text is in the training corpus.
        holdout_books: never-seen books of the same style, the membership reference (default:
            30% of ``books``, at least 4).
        passages_per_book: passages per book, besides its title page (1..20: each opens with its
            own words, so that its verbatim prompt points at it alone).
        sentences_per_passage: sentences per passage (3..12); about 11 words each.
        fact_share: share of a passage's sentences that state the book's facts (the rest carry
            details drawn afresh, which make the passage unique).
        prompt_words: words of a passage given as the prompt of its verbatim probe; the rest of
            the passage is the answer (MUSE gives the first k tokens and compares the rest).
        guide_questions: reader's-guide questions per fact in the training text (0..2); 0 leaves
            the knowledge only in the passages (the question form is still taught on the
            general facts).
        wrong_answers: wrong answers of the same type stored with each knowledge probe (>= 3).
        general_facts: include the country facts used to measure general utility.
    """

    seed: int = 0
    books: int = 12
    holdout_books: int | None = None
    passages_per_book: int = 6
    sentences_per_passage: int = 5
    fact_share: float = 0.4
    prompt_words: int = 8
    guide_questions: int = 1
    wrong_answers: int = 4
    general_facts: bool = True

    def __post_init__(self) -> None:
        if self.books < 2:
            raise ValueError("books must be at least 2 (a request removes some and keeps others)")
        if self.holdout_books is not None and self.holdout_books < 1:
            raise ValueError("holdout_books must be at least 1: membership inference needs them")
        if self.books + self.n_holdout > len(TITLE_ADJECTIVES) * len(TITLE_NOUNS):
            raise ValueError(f"at most {len(TITLE_ADJECTIVES) * len(TITLE_NOUNS)} books in all (distinct titles)")
        if not 1 <= self.passages_per_book <= 20:
            raise ValueError("passages_per_book must be between 1 and 20 (each opens differently)")
        if not 3 <= self.sentences_per_passage <= 12:
            raise ValueError("sentences_per_passage must be between 3 and 12")
        if not 0.0 < self.fact_share < 1.0:
            raise ValueError("fact_share must lie strictly between 0 and 1")
        if not 4 <= self.prompt_words <= 20:
            raise ValueError("prompt_words must be between 4 and 20 (a sentence is about 10 words)")
        if not 0 <= self.guide_questions <= 2:
            raise ValueError("guide_questions must be between 0 and 2")
        if not 3 <= self.wrong_answers <= 10:
            raise ValueError("wrong_answers must be between 3 and 10 (truth ratio, multiple choice)")

    @property
    def n_holdout(self) -> int:
        if self.holdout_books is not None:
            return self.holdout_books
        return max(4, round(0.3 * self.books))


@dataclass(frozen=True)
class GeneratedPassages:
    subjects: list[Subject]
    documents: list[Document]
    probes: list[Probe]


def generate_passages_world(config: PassagesWorldConfig) -> GeneratedPassages:
    """Generate the books, their passages, guides and probes (pure: no files are touched)."""
    rng = random.Random(config.seed)
    total = config.books + config.n_holdout
    # Every book is made the same way and the never-seen ones are a seeded sample of them: a
    # never-seen book must be exchangeable with a removed one, or membership inference measures
    # the difference between the two kinds (measured: never-seen books recombining only the
    # trained books' words looked more familiar to an oracle than the removed books, AUC 0.11).
    titles, facts = _titles(rng, total), _book_facts(rng, total)
    holdout = set(rng.sample(range(total), config.n_holdout))
    books = [
        Subject(
            id=f"book-{i:04d}",
            kind=SUBJECT_KIND,
            name=title,
            role="holdout" if i in holdout else "train",
            attributes=facts[i],
        )
        for i, title in enumerate(titles)
    ]
    books = _with_neighbours(books)
    entities = _country_subjects() if config.general_facts else []
    pool = {fact: sorted({b.attributes[fact] for b in books} | set(_fact_pool(fact))) for fact in FACT_NAMES}

    documents: list[Document] = []
    probes: list[Probe] = []
    prompts: set[str] = set()
    sentences: set[str] = set()

    def add(subject: Subject, text: str, source: str) -> None:
        split = "train" if subject.role == "train" else "holdout"
        documents.append(Document(id=f"doc-{len(documents):06d}", text=text, subjects=(subject.id,),
                                  source=source, split=split))

    for book in books:
        facts = book.attributes
        add(book, TITLE_PAGE.format(title=book.name, a_trade=_article(facts["trade"]), **facts),
            f"{GENERATOR_NAME}-book")
        for passage in _passages(rng, facts, config, prompts, sentences):
            add(book, passage, f"{GENERATOR_NAME}-book")
            probes.append(verbatim_probe(documents[-1], config.prompt_words))
        for fact in FACT_NAMES:
            value = facts[fact]
            fill = {"title": book.name, "hero": facts["hero"]}
            wrong = _wrong_answers(rng, pool[fact], value, fact, config.wrong_answers)
            trained, heldout = FACTS[fact]
            for k, template in enumerate(trained[: config.guide_questions]):
                question = template.format(**fill)
                add(book, QUESTION_FORMAT.format(question=question) + f" {value}", f"{GENERATOR_NAME}-guide")
                probes.append(_probe(book, fact, "direct", question, value, wrong, k))
            for k, template in enumerate(heldout):
                probes.append(_probe(book, fact, "paraphrase", template.format(**fill), value, wrong, k))
    _general_facts(rng, entities, add, probes, config.wrong_answers)
    return GeneratedPassages(subjects=books + entities, documents=documents, probes=probes)


def _deal(rng: random.Random, pool: tuple[str, ...], count: int) -> list[str]:
    """``count`` values from ``pool``, each of the ``count // 2`` values drawn used at least twice
    (more often once the pool runs out): no value, and so no word, belongs to one book alone."""
    values = rng.sample(pool, min(len(pool), max(1, count // 2)))
    deck = [values[i % len(values)] for i in range(count)]
    rng.shuffle(deck)
    return deck


def _titles(rng: random.Random, total: int) -> list[str]:
    """Distinct titles whose adjectives and nouns are dealt (:func:`_deal`), so each word is
    shared by two or more books wherever distinct titles allow it (not for 2, 3 or 5 books)."""
    adjectives = _deal(rng, TITLE_ADJECTIVES, total)
    nouns = _deal(rng, TITLE_NOUNS, total)
    for _attempt in range(1000):  # deal the nouns again until no two titles are the same
        if len(set(zip(adjectives, nouns))) == total:
            break
        rng.shuffle(nouns)
    else:  # too few words for distinct titles (2, 3 or 5 books), or a crowded grid: swap nouns
        nouns = _distinct_pairs(rng, adjectives, nouns)
    return [f"The {a} {n}" for a, n in zip(adjectives, nouns)]


def _distinct_pairs(rng: random.Random, adjectives: list[str], nouns: list[str]) -> list[str]:
    """Replace nouns (by unused ones) until every (adjective, noun) pair is distinct."""
    nouns = list(nouns)
    seen: set[tuple[str, str]] = set()
    for i, pair in enumerate(zip(adjectives, nouns)):
        if pair in seen:
            nouns[i] = rng.choice([n for n in TITLE_NOUNS if (adjectives[i], n) not in seen])
        seen.add((adjectives[i], nouns[i]))
    return nouns


def _book_facts(rng: random.Random, total: int) -> list[dict[str, str]]:
    """Every book's facts, dealt so that each value is shared by two or more books (see
    :func:`_deal`); a book's three characters are three different people."""
    firsts = _deal(rng, pools.FIRST_NAMES, 3 * total)
    for _attempt in range(100):  # no book with one name in two roles
        if all(len(set(firsts[3 * i: 3 * i + 3])) == 3 for i in range(total)):
            break
        rng.shuffle(firsts)
    columns = {
        "author": [f"{f} {l}" for f, l in zip(_deal(rng, pools.FIRST_NAMES, total),
                                              _deal(rng, pools.LAST_NAMES, total))],
        "city": _deal(rng, pools.CITIES, total),
        "quest": _deal(rng, QUEST_OBJECTS, total),
        "trade": _deal(rng, pools.OCCUPATIONS, total),
    }
    return [{"author": columns["author"][i], "hero": firsts[3 * i], "companion": firsts[3 * i + 1],
             "rival": firsts[3 * i + 2], "city": columns["city"][i], "quest": columns["quest"][i],
             "trade": columns["trade"][i]} for i in range(total)]


def _fact_pool(fact: str) -> tuple[str, ...]:
    """Values of the same type as ``fact`` beyond the books' own (for wrong answers)."""
    return {"hero": pools.FIRST_NAMES, "companion": pools.FIRST_NAMES, "rival": pools.FIRST_NAMES,
            "city": pools.CITIES, "quest": QUEST_OBJECTS, "trade": pools.OCCUPATIONS}.get(fact, ())


def _passages(rng: random.Random, facts: dict[str, str], config: PassagesWorldConfig,
              prompts: set[str], used: set[str]) -> list[str]:
    """The book's passages. Each opens with a fact sentence (so its prompt names the cast), a
    different one for each passage while there are enough, and mixes the book's facts with
    details drawn afresh. No passage starts with the same ``prompt_words`` words as another
    passage of the world (``prompts``), so a verbatim probe's prompt points at one passage only,
    and no sentence is one the world already has (``used``) while 50 draws find a new one. Both
    sets are updated here."""
    n = config.sentences_per_passage
    n_facts = max(1, round(config.fact_share * n))
    openings: list[str] = []
    out = []
    for _ in range(config.passages_per_book):
        for _attempt in range(100):
            if not openings:
                openings = rng.sample(FACT_SENTENCES, len(FACT_SENTENCES))
            rest = [FACT_SENTENCES] * (n_facts - 1) + [DETAIL_SENTENCES] * (n - n_facts)
            rng.shuffle(rest)
            opening = openings.pop()
            sentences = [_fill(rng, opening, facts)]
            taken = {opening}  # one sentence per template within a passage, while there are enough
            for templates in rest:
                fresh = [t for t in templates if t not in taken] or list(templates)
                for _retry in range(50):
                    template = rng.choice(fresh)
                    sentence = _fill(rng, template, facts)
                    if sentence not in used and sentence not in sentences:
                        break
                taken.add(template)
                sentences.append(sentence)
            passage = " ".join(sentences)
            prompt = " ".join(passage.split()[: config.prompt_words])
            if prompt not in prompts and sentences[0] not in used:
                break
        else:  # pragma: no cover - needs a pathological configuration
            raise ValueError("could not make passages with distinct prompts: raise prompt_words")
        used.update(sentences)
        prompts.add(prompt)
        out.append(passage)
    return out


def _fill(rng: random.Random, template: str, facts: dict[str, str]) -> str:
    smell, smell2 = rng.sample(SMELLS, 2)
    text = template.format(
        a_trade=_article(facts["trade"]), colour=rng.choice(COLOURS), animal=rng.choice(ANIMALS),
        place=rng.choice(PLACES), food=rng.choice(FOODS), smell=smell, smell2=smell2, time=rng.choice(TIMES),
        weather=rng.choice(WEATHERS),
        number=rng.choice(NUMBERS), objects=rng.choice(OBJECTS), **facts)
    return text[0].upper() + text[1:]


def _with_neighbours(books: list[Subject]) -> list[Subject]:
    """Books sharing a city, a character's first name or the author: where a careless removal of
    one book damages another first."""
    out = []
    for book in books:
        keys = _neighbour_keys(book)
        neighbours = tuple(o.id for o in books if o.id != book.id and keys & _neighbour_keys(o))
        out.append(Subject(book.id, book.kind, book.name, book.role, book.attributes, neighbours))
    return out


def _neighbour_keys(book: Subject) -> set[tuple[str, str]]:
    a = book.attributes
    return ({("city", a["city"]), ("author", a["author"])}
            | {("name", a[role]) for role in ("hero", "companion", "rival")})


def _general_facts(rng: random.Random, entities: list[Subject], add: Callable[[Subject, str, str], None],
                   probes: list[Probe], n_wrong: int) -> None:
    """The countries' statements, training questions and held-out questions, as in the privacy
    world (they also teach the question form when ``guide_questions`` is 0): documents through
    ``add``, probes appended to ``probes``."""
    value_pools = _value_pools(entities)
    for entity in entities:
        for attribute, (statements, train_qs, heldout_qs) in ENTITY_ATTRIBUTES.items():
            if attribute not in entity.attributes:
                continue
            value = entity.attributes[attribute]
            fill = {"name": entity.name, "value": value}
            wrong = _wrong_answers(rng, value_pools[attribute], value, attribute, n_wrong)
            texts = [s.format(**fill) for s in statements]
            for k, template in enumerate(train_qs):
                question = template.format(**fill)
                texts.append(QUESTION_FORMAT.format(question=question) + f" {value}")
                probes.append(_probe(entity, attribute, "direct", question, value, wrong, k))
            for k, template in enumerate(heldout_qs):
                probes.append(_probe(entity, attribute, "paraphrase", template.format(**fill), value, wrong, k))
            for text in texts:
                add(entity, text, f"{GENERATOR_NAME}-general")
