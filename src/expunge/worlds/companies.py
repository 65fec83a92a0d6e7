"""The companies world: facts that change ("The CEO of Y is now Z"), for model editing and retrieval.

Each company has a CEO (a person), a headquarters city, a founding year and an industry; people
work for companies. Training text states every fact in several phrasings, sometimes through the
company's ticker (its alias). Update requests replace one company's CEO by someone else, and come
with the probes that tell a real update from a patch:

* the new fact asked directly, in held-out paraphrases, and through the alias;
* what it implies: "Which company does <new CEO> lead?" (reverse) and "Who runs the company where
  <employee> works?" (two hops: the employee's employer, then its CEO);
* neighbourhood: other companies' CEOs, which must not change;
* the subject's other relations (headquarters, founding year, industry), which must not change.

Design rules: people's names are first + last names dealt to several people (as in the privacy
world), but a company's name is one invented word of its own. Editors rewrite what a model
stores at the subject's *last* token, so that token has to be the subject's: with names built
from shared parts ("Northwind Group", generator 1.0) the tiny models read the company only at
the question's end, and no edit at the subject could land (measured; docs/editing-notes.md).
Held-out questions never occur in training text, and everything is drawn from one seeded
generator, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from expunge.records import Document, FactEdit, Probe, Subject
from expunge.worlds import pools
from expunge.worlds.privacy import QUESTION_FORMAT, _wrong_answers

GENERATOR_NAME = "companies"
GENERATOR_VERSION = "2.0"

# Company names: two or three invented syllables ("Bravon", "Kelistra"), one word per company.
ONSETS = ("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "cr", "dr", "gr",
          "kr", "pr", "tr", "st", "qu")
VOWELS = ("a", "e", "i", "o", "u")
CODAS = ("", "n", "r", "s", "x", "l", "m", "nt", "rk")
MAX_COMPANIES = 2000
INDUSTRIES = (
    "logistics", "energy", "analytics", "pharmaceuticals", "food", "banking", "robotics", "media",
    "insurance", "telecommunications", "automotive", "healthcare", "software", "textiles", "aviation",
    "shipping", "mining", "security", "agriculture", "construction",
)

# relation -> (training statements, training questions, held-out questions, alias question);
# {name} is the company (or its ticker in alias phrasings), {value} the fact.
RELATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = {
    "ceo": (
        ("The CEO of {name} is {value}.", "{name} is led by its chief executive, {value}.",
         "The chief executive of {name} is {value}."),
        ("Who is the CEO of {name}?", "Who leads {name}?"),
        ("Who is the chief executive of {name}?", "Who is the person that leads {name}?"),
        "Who is the CEO of the company with the ticker {alias}?",
    ),
    "headquarters": (
        ("{name} is based in {value}.", "The headquarters of {name} are in {value}.",
         "The company {name} has its headquarters in {value}."),
        ("Where is {name} based?", "Where are the headquarters of {name}?"),
        ("In which city is {name} based?", "Which city has the headquarters of {name}?"),
        "Where is the company with the ticker {alias} based?",
    ),
    "founded": (
        ("{name} was founded in {value}.", "The company {name} was founded in the year {value}.",
         "The founding year of {name} is {value}."),
        ("When was {name} founded?", "In which year was {name} founded?"),
        ("What is the founding year of {name}?", "In what year was the company {name} founded?"),
        "When was the company with the ticker {alias} founded?",
    ),
    "industry": (
        ("{name} works in the {value} industry.", "The industry of {name} is {value}.",
         "The company {name} is in {value}."),
        ("What industry is {name} in?", "What is the industry of {name}?"),
        ("In which industry does {name} work?", "Which industry is the company {name} in?"),
        "What industry is the company with the ticker {alias} in?",
    ),
}
TICKER_STATEMENT = "{name} trades under the ticker {alias}."
EMPLOYEE_STATEMENTS = ("{person} works for {name}.", "The employer of {person} is {name}.")
EMPLOYEE_QUESTION = "Who does {person} work for?"
IMPLIED_CEO_QUESTION = "Who runs the company where {person} works?"
REVERSE_CEO_QUESTION = "Which company does {value} lead?"


# One statement per relation, for a fact store (expunge.retrieval): {name} is the subject, {value} the fact.
FACT_TEMPLATES: dict[str, str] = {
    **{relation: phrasings[0][0] for relation, phrasings in RELATIONS.items()},
    "employer": EMPLOYEE_STATEMENTS[0].replace("{name}", "{value}").replace("{person}", "{name}"),
}


@dataclass(frozen=True)
class CompaniesWorldConfig:
    """Options of the companies world generator.

    Attributes:
        seed: random seed; the same seed gives byte-identical output.
        companies: number of companies (each with a CEO, headquarters, founding year, industry).
        employees_per_company: people who work for each company (subjects of the two-hop probes).
        edits: number of update requests ("the CEO of Y is now Z"), at most one per company.
        wrong_answers: wrong answers of the same type stored with each probe (>= 3).
        reading_documents: training documents that put facts in a context before a question
            ("Context: The CEO of Vanor is Ana Ruiz. Vanor is based in Oslo. Question: Who leads
            Vanor? Answer: Ana Ruiz") about invented companies (subjects ``reading-NNNN``, without
            probes), their values drawn afresh for every text, so the answer can only come from
            the context: they teach a model to read the facts a retrieval layer serves
            (:mod:`expunge.retrieval`). 0 for none.
        store_only: relations whose facts stay out of the training text (no statement, no trained
            question; the probes are the same): a model trained so must get them from a fact store,
            where updates are exact. ``("ceo",)`` makes the retrieval counterpart of the editors.
    """

    seed: int = 0
    companies: int = 120
    employees_per_company: int = 2
    edits: int = 100
    wrong_answers: int = 4
    reading_documents: int = 800
    store_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 4 <= self.companies <= MAX_COMPANIES:
            raise ValueError(f"companies must be between 4 and {MAX_COMPANIES}")
        if not 1 <= self.employees_per_company <= 5:
            raise ValueError("employees_per_company must be between 1 and 5")
        if not 0 <= self.edits <= self.companies:
            raise ValueError(f"edits must be between 0 and the number of companies ({self.companies})")
        unknown = set(self.store_only) - set(RELATIONS)
        if unknown:
            raise ValueError(f"store_only names unknown relations {sorted(unknown)}; known: {', '.join(RELATIONS)}")
        if self.reading_documents < 0:
            raise ValueError("reading_documents must be >= 0")
        if not 3 <= self.wrong_answers <= 10:
            raise ValueError("wrong_answers must be between 3 and 10")


@dataclass(frozen=True)
class GeneratedCompanies:
    subjects: list[Subject]
    documents: list[Document]
    probes: list[Probe]
    edits: list[FactEdit]
    edit_probes: list[Probe]


def _company_names(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct invented one-word names that are no other word of the world (no person's
    name, city or industry), so each company owns its name's token."""
    taken = {w.lower() for w in (*pools.FIRST_NAMES, *pools.LAST_NAMES, *pools.CITIES, *INDUSTRIES)}
    names: list[str] = []
    while len(names) < n:
        syllables = rng.choice((2, 2, 3))
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)) + rng.choice(CODAS)
        if word not in taken and len(word) >= 4:
            taken.add(word)
            names.append(word.capitalize())
    return names


def _person_names(rng: random.Random, n: int) -> list[str]:
    firsts = list(pools.FIRST_NAMES)
    lasts = list(pools.LAST_NAMES)
    if n > len(firsts) * len(lasts):
        raise ValueError("too many people for the name pools")
    everyone = [f"{f} {l}" for f in firsts for l in lasts]
    return rng.sample(everyone, n)


def _ticker(name: str, taken: set[str]) -> str:
    base = (name[:3] + name[-1]).upper()
    ticker, k = base, 1
    while ticker in taken:
        k += 1
        ticker = f"{base}{k}"
    taken.add(ticker)
    return ticker


def generate_companies_world(config: CompaniesWorldConfig) -> GeneratedCompanies:
    """Companies, CEOs, employees, training text, probes and update requests (pure)."""
    rng = random.Random(config.seed)
    names = _company_names(rng, config.companies)
    n_people = config.companies * (1 + config.employees_per_company) + config.edits
    people = _person_names(rng, n_people)
    ceos, rest = people[: config.companies], people[config.companies :]
    tickers: set[str] = set()
    companies = []
    for i, name in enumerate(names):
        companies.append(Subject(
            id=f"company-{i:04d}", kind="entity", name=name, role="train",
            attributes={"ceo": ceos[i], "headquarters": rng.choice(pools.CITIES),
                        "founded": str(rng.randint(1900, 2015)), "industry": rng.choice(INDUSTRIES),
                        "ticker": _ticker(name, tickers)},
        ))
    employees: list[Subject] = []
    for i, company in enumerate(companies):
        for k in range(config.employees_per_company):
            person = rest[i * config.employees_per_company + k]
            employees.append(Subject(id=f"person-{len(employees):04d}", kind="person", name=person, role="train",
                                     attributes={"employer": company.name}))
    newcomers = rest[config.companies * config.employees_per_company :]

    pools_by_relation = {r: sorted({c.attributes[r] for c in companies}) for r in RELATIONS}
    documents: list[Document] = []
    probes: list[Probe] = []

    def add_doc(text: str, subject_ids: tuple[str, ...]) -> None:
        documents.append(Document(id=f"doc-{len(documents):06d}", text=text, subjects=subject_ids,
                                  source=f"{GENERATOR_NAME}-world", split="train"))

    for company in companies:
        alias = company.attributes["ticker"]
        add_doc(TICKER_STATEMENT.format(name=company.name, alias=alias), (company.id,))
        for relation, (statements, train_qs, heldout_qs, alias_q) in RELATIONS.items():
            value = company.attributes[relation]
            wrong = _wrong_answers(rng, pools_by_relation[relation], value, relation, config.wrong_answers)
            in_text = relation not in config.store_only
            for template in statements if in_text else ():
                add_doc(template.format(name=company.name, value=value), (company.id,))
            # One statement through the alias, so the alias is tied to every relation in training.
            if in_text:
                add_doc(statements[0].format(name=alias, value=value), (company.id,))
            for k, template in enumerate(train_qs):
                question = template.format(name=company.name)
                if in_text:
                    add_doc(f"{QUESTION_FORMAT.format(question=question)} {value}", (company.id,))
                probes.append(_probe(company, relation, "direct", k, question, value, wrong))
            for k, template in enumerate(heldout_qs):
                probes.append(_probe(company, relation, "paraphrase", k, template.format(name=company.name), value,
                                     wrong))
            probes.append(_probe(company, relation, "alias", 0, alias_q.format(alias=alias), value, wrong))
        ceo_wrong = _wrong_answers(rng, [c.name for c in companies], company.name, "company", config.wrong_answers)
        probes.append(Probe(f"{company.id}/company/reverse-0", company.id, "reverse", "company",
                            QUESTION_FORMAT.format(question=REVERSE_CEO_QUESTION.format(value=company.attributes["ceo"])),
                            company.name, ceo_wrong))
    by_name = {c.name: c for c in companies}
    for person in employees:
        company = by_name[person.attributes["employer"]]
        for template in EMPLOYEE_STATEMENTS:
            add_doc(template.format(person=person.name, name=company.name), (person.id, company.id))
        question = EMPLOYEE_QUESTION.format(person=person.name)
        add_doc(f"{QUESTION_FORMAT.format(question=question)} {company.name}", (person.id, company.id))
        ceo = company.attributes["ceo"]
        wrong = _wrong_answers(rng, pools_by_relation["ceo"], ceo, "ceo", config.wrong_answers)
        probes.append(Probe(f"{person.id}/ceo/multihop-0", company.id, "multihop", "ceo",
                            QUESTION_FORMAT.format(question=IMPLIED_CEO_QUESTION.format(person=person.name)),
                            ceo, wrong))

    edits, edit_probes = _edits(rng, config, companies, employees, newcomers, probes)
    # Own generator, so the number of reading documents changes nothing else in the world.
    reading_rng = random.Random(f"{config.seed}-reading")
    readers, texts = _reading_texts(reading_rng, config.reading_documents, companies, pools_by_relation, set(people))
    for text, subject_ids in texts:
        add_doc(text, subject_ids)
    return GeneratedCompanies(companies + employees + readers, documents, probes, edits, edit_probes)


def _reading_texts(rng: random.Random, n: int, companies: list[Subject], values: dict[str, list[str]],
                   people: set[str]) -> tuple[list[Subject], list[tuple[str, tuple[str, ...]]]]:
    """``n`` reading-comprehension texts about invented companies (subjects ``reading-NNNN``, which
    have no probes and no fixed facts): two facts (the one asked about and a distractor, in random
    order) in the retrieval layer's context format, then a trained question form or a statement,
    answered from the context. Every text draws its values afresh, so no answer can be memorised:
    only reading the context gives it. Their CEOs are no one else in the world (in particular, no
    edit's new CEO). Editors may use these companies as the "other subjects" whose facts must be kept."""
    if n == 0:
        return [], []
    taken = {c.name for c in companies}
    count = max(8, n // 4)
    names = [name for name in _company_names(rng, len(taken) + count) if name not in taken][:count]
    free = sorted({f"{f} {l}" for f in pools.FIRST_NAMES for l in pools.LAST_NAMES} - people)
    if not free:
        raise ValueError("the name pools have no one left for reading documents; lower companies or edits")
    readers = [Subject(id=f"reading-{i:04d}", kind="entity", name=name, role="train") for i, name in enumerate(names)]

    def draw(relation: str) -> str:
        return rng.choice(free) if relation == "ceo" else rng.choice(values[relation])

    texts = []
    for _ in range(n):
        asked, other = rng.sample(readers, 2)
        relation = rng.choice(tuple(RELATIONS))
        statements, train_qs, _, _ = RELATIONS[relation]
        value = draw(relation)
        distractor_relation = rng.choice(tuple(RELATIONS))
        about = rng.choice((asked, other))
        if about is asked and distractor_relation == relation:
            about = other  # never two values for the fact asked about
        shown = [statements[0].format(name=asked.name, value=value),
                 RELATIONS[distractor_relation][0][0].format(name=about.name, value=draw(distractor_relation))]
        rng.shuffle(shown)
        context = f"Context: {' '.join(shown)} "
        if rng.random() < 0.7:
            question = rng.choice(train_qs).format(name=asked.name)
            text = f"{context}{QUESTION_FORMAT.format(question=question)} {value}"
        else:
            text = f"{context}{rng.choice(statements).format(name=asked.name, value=value)}"
        texts.append((text, tuple(sorted({asked.id, about.id}))))
    return readers, texts


def _probe(company: Subject, relation: str, kind: str, k: int, question: str, answer: str,
           wrong: tuple[str, ...]) -> Probe:
    return Probe(f"{company.id}/{relation}/{kind}-{k}", company.id, kind, relation,
                 QUESTION_FORMAT.format(question=question), answer, wrong)


def _edits(rng: random.Random, config: CompaniesWorldConfig, companies: list[Subject], employees: list[Subject],
           newcomers: list[str], probes: list[Probe]) -> tuple[list[FactEdit], list[Probe]]:
    """``config.edits`` CEO changes, each to a person who leads no company, and their probes: the
    CEO probes of the edited company with the new CEO as the answer and the old one first among
    the wrong answers (so "the old fact is gone" is measurable), plus the reverse question."""
    chosen = sorted(rng.sample(range(len(companies)), config.edits))
    edits: list[FactEdit] = []
    edit_probes: list[Probe] = []
    for index, new_ceo in zip(chosen, newcomers):
        company = companies[index]
        old = company.attributes["ceo"]
        # The request states the fact in the forms the model was trained on (a statement and the two
        # trained questions); the held-out paraphrases stay for evaluation.
        trained_questions = tuple(QUESTION_FORMAT.format(question=q.format(name="{}")) for q in RELATIONS["ceo"][1])
        edit = FactEdit(id=f"edit-{len(edits):04d}", subject=company.id, subject_name=company.name, relation="ceo",
                        prompt="The CEO of {} is", target_old=old, target_new=new_ceo,
                        more_prompts=trained_questions)
        edits.append(edit)
        for probe in probes:
            if probe.subject != company.id or probe.attribute != "ceo":
                continue
            others = tuple(w for w in probe.alternatives if w != new_ceo)[: config.wrong_answers - 1]
            edit_probes.append(Probe(f"{edit.id}/{probe.id}", company.id, probe.kind, "ceo", probe.prompt, new_ceo,
                                     (old, *others)))
        reverse = QUESTION_FORMAT.format(question=REVERSE_CEO_QUESTION.format(value=new_ceo))
        others = tuple(c.name for c in rng.sample(companies, config.wrong_answers + 1) if c.id != company.id)
        edit_probes.append(Probe(f"{edit.id}/{company.id}/company/reverse-0", company.id, "reverse", "company",
                                 reverse, company.name, others[: config.wrong_answers]))
    return edits, edit_probes
