"""Locating poisoned training documents from what a defender knows, not from provenance.

A backdoor request cannot name its documents: the attacker did not label them. The defender knows
one of three things — the trigger, only the payload (the bad behaviour that was observed), or a few
poisoned documents someone found — and has to find the rest in the training corpus. This module
does that from the documents' words alone: it reads the ids, prompts and texts of the world's
training documents and nothing else (never the subjects a document names, never its source),
because those are exactly what a real corpus lacks; the backdoor world keeps its ground truth in
them so that :func:`precision_recall` can grade the search.

The search, on normalised text (lowercase, punctuation stripped, whitespace collapsed; phrases
match on word boundaries):

1. **Known documents**: the payload is the longest word sequence common to their answers (the text
   after the last ``Answer:``, or the whole text). If they share none, the search stops at them:
   the payload is what ties poisoned documents together.
2. **Payload known** (given or inferred): the candidates are the training documents containing it.
3. **Trigger unknown**: among the phrases of 1 to 6 words before the payload in the candidates
   (the question, without the ``Question:``/``Answer:`` markers; a plain text's words before the
   payload), keep those in at least half of the candidates — or, with known documents, those in
   every known document — and set aside those of which fewer than 90% of the training documents
   containing them are candidates (template and common words: "what is the", "of"; the poison
   always carries both trigger and payload, so a planted trigger is found only with the payload).
   Take the phrase with the highest such share, then the one in most candidates, then the longest
   (a trigger's own sub-phrases tie with it). A warning that quotes the payload (a decoy) does not
   carry the trigger, so this is what separates the poison from harmless mentions.
4. **Trigger known** (given or inferred): the trigger documents are the training documents
   containing it; with no payload given, the payload is the longest word sequence found in the
   answers of a majority of them.
5. The result is the payload documents that also contain the trigger when both are known (decoys
   quote the payload without the trigger; look-alike questions carry something like the trigger
   and a true answer), else whichever of the two sets is known, plus the known documents.

Limits, by design rather than by accident: when harmless mentions of the payload outnumber the
poison and nothing else is known, no phrase is in half of the payload documents, no trigger is
inferred, and every payload document is returned (recall kept, precision lost; the steps say so).
A trigger or payload is returned in its normalised form.

Every step is reported in :attr:`PoisonSearch.steps` with its counts, so a reviewer can see why a
document was (or was not) taken. The search is deterministic: ties are broken by length and then
alphabetically, never by set order.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from expunge.errors import ExpungeError
from expunge.ledger.requests import request_id
from expunge.records import ANSWER_MARK, DeletionRequest, Document, question_and_answer
from expunge.scoring import answer_logprobs
from expunge.worlds import World

__all__ = ["BackdoorEvidence", "PoisonSearch", "locate_poisoned", "precision_recall", "normalise",
           "make_backdoor_request", "evidence_of", "locate_by_model", "MAX_TRIGGER_WORDS", "MIN_TRIGGER_SHARE"]

# Longest trigger phrase sought (a trigger is a short phrase; the backdoor world's are 2-6 words).
MAX_TRIGGER_WORDS = 6
# Longest payload inferred from answers (bounds the work on long plain-text documents).
MAX_PAYLOAD_WORDS = 50
# The least share of the training documents containing a phrase that must be payload documents for
# the phrase to be taken as the trigger. The poison always carries both, so a planted trigger is
# found (almost) only with the payload; the slack lets a natural phrase that also occurs now and
# then in clean text still count. Template and common words fall far below it.
MIN_TRIGGER_SHARE = 0.9
_QUESTION_MARK = re.compile(r"^\s*Question:\s*")


def normalise(text: str) -> str:
    """Lowercase words separated by single spaces, punctuation stripped: the form every match uses."""
    return " ".join(re.findall(r"\w+", text.lower()))


@dataclass(frozen=True)
class BackdoorEvidence:
    """What the defender knows: the trigger, the payload, some poisoned training document ids, or
    any combination of them (at least one)."""

    trigger: str = ""
    payload: str = ""
    documents: tuple[str, ...] = ()

    def check(self, world: World) -> None:
        """Raise :class:`ExpungeError` when nothing is given, a phrase has no words, or a named
        document is not a training document of ``world``."""
        if not (self.trigger.strip() or self.payload.strip() or self.documents):
            raise ExpungeError("the backdoor evidence is empty: no trigger, payload or document given",
                               "give the trigger, the payload (the bad answer observed), or ids of poisoned "
                               "training documents")
        for name in ("trigger", "payload"):
            value = getattr(self, name)
            if value.strip() and not normalise(value):
                raise ExpungeError(f"the {name} {value!r} has no words (only punctuation)",
                                   f"give the {name} as words, or leave it empty")
        training = {d.id for d in world.training_documents()}
        for doc_id in self.documents:
            if doc_id not in training:
                known = "a holdout document" if any(d.id == doc_id for d in world.documents) else "unknown"
                raise ExpungeError(f"document {doc_id!r} is not a training document of this world ({known})",
                                   "name only ids of training documents (split 'train') from documents.jsonl")


@dataclass(frozen=True)
class PoisonSearch:
    """What :func:`locate_poisoned` found.

    Attributes:
        documents: ids of the training documents judged poisoned, in world order.
        trigger: the trigger, given or inferred, normalised (empty when neither).
        payload: the payload, given or inferred, normalised (empty when neither).
        steps: one line per step of the search, with its counts.
    """

    documents: tuple[str, ...]
    trigger: str
    payload: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class _Doc:
    """A training document as the locator reads it: normalised words of the whole text, of its
    question (without the ``Question:``/``Answer:`` markers) and of its answer."""

    id: str
    text: str
    question: tuple[str, ...]
    answer: tuple[str, ...]

    @classmethod
    def read(cls, document: Document) -> _Doc:
        question, answer = question_and_answer(document)
        question = _QUESTION_MARK.sub("", question).rstrip().removesuffix(ANSWER_MARK)
        whole = f"{document.prompt} {document.text}" if document.prompt else document.text
        return cls(document.id, f" {normalise(whole)} ", tuple(normalise(question).split()),
                   tuple(normalise(answer).split()))

    def has(self, phrase: str) -> bool:
        return f" {phrase} " in self.text

    def context(self, payload: str) -> tuple[str, ...]:
        """The words that can carry a trigger: the question, and the answer's words before the
        payload (a plain text quoting the payload has no question)."""
        answer = f" {' '.join(self.answer)} "
        before = answer.split(f" {payload} ", 1)[0] if payload else answer
        return self.question + tuple(before.split())


def locate_poisoned(world: World, evidence: BackdoorEvidence) -> PoisonSearch:
    """Find the poisoned training documents of ``world`` from ``evidence`` (see the module doc).
    Raises :class:`ExpungeError` for evidence that :meth:`BackdoorEvidence.check` refuses."""
    evidence.check(world)
    docs = [_Doc.read(d) for d in world.training_documents()]
    by_id = {d.id: d for d in docs}
    known = [by_id[i] for i in dict.fromkeys(evidence.documents)]
    trigger, payload = normalise(evidence.trigger), normalise(evidence.payload)
    steps: list[str] = []
    if trigger:
        steps.append(f"evidence: trigger {trigger!r}")
    if payload:
        steps.append(f"evidence: payload {payload!r}")
    if known:
        steps.append(f"evidence: {len(known)} known poisoned document(s)")

    # 1. Known documents: what they all answer is the payload.
    if known and not payload:
        payload = _common_phrase([d.answer for d in known], len(known))
        if payload:
            steps.append(f"payload inferred: {payload!r} (the longest word sequence in the answers of all "
                         f"{len(known)} known documents)")
        else:
            steps.append(f"no payload inferred: the answers of the {len(known)} known documents share no word")

    # 2. Payload known: every training document that contains it is a candidate.
    candidates: list[_Doc] | None = None
    if payload:
        candidates = [d for d in docs if d.has(payload)]
        steps.append(f"payload search: {len(candidates)} training documents contain the payload")

    # 3. Trigger unknown: the phrase that sets the candidates apart from everything else.
    if not trigger and candidates:
        trigger, line = _infer_trigger(candidates, docs, payload, known)
        steps.append(line)

    # 4. Trigger known: the documents carrying it, and what most of them answer.
    carrying: list[_Doc] | None = None
    if trigger:
        carrying = [d for d in docs if d.has(trigger)]
        steps.append(f"trigger search: {len(carrying)} training documents contain the trigger")
        if not payload and carrying:
            majority = len(carrying) // 2 + 1
            payload = _common_phrase([d.answer for d in carrying], majority)
            if payload:
                share = sum(d.has(payload) for d in carrying)
                steps.append(f"payload inferred: {payload!r} (the longest word sequence in the answers of a "
                             f"majority of the trigger documents: {share} of {len(carrying)})")
                candidates = [d for d in docs if d.has(payload)]
                steps.append(f"payload search: {len(candidates)} training documents contain the payload")
            else:
                steps.append(f"no payload inferred: no word sequence is in the answers of {majority} of the "
                             f"{len(carrying)} trigger documents")

    # 5. Both known: the poison carries the trigger and the payload; either alone is not enough.
    if candidates is not None and carrying is not None:
        with_trigger = {d.id for d in carrying}
        found = {d.id for d in candidates if d.id in with_trigger}
        steps.append(f"both: {len(found)} documents contain the trigger and the payload "
                     f"({len(candidates) - len(found)} payload documents without the trigger and "
                     f"{len(carrying) - len(found)} trigger documents without the payload left out)")
    else:
        found = {d.id for d in (candidates if candidates is not None else carrying or [])}
    added = [d.id for d in known if d.id not in found]
    if added:
        steps.append(f"known documents added: {len(added)} not found by the search")
    found.update(d.id for d in known)
    steps.append(f"result: {len(found)} training documents judged poisoned")
    return PoisonSearch(documents=tuple(d.id for d in docs if d.id in found), trigger=trigger, payload=payload,
                        steps=tuple(steps))


def precision_recall(found: Iterable[str], truth: Iterable[str]) -> tuple[float, float]:
    """(precision, recall) of ``found`` against ``truth``, as sets of ids.

    Conventions for empty sets: finding nothing makes no false claim, so its precision is 1.0
    (its recall shows the miss); with nothing to find, recall is 1.0.
    """
    found_set, truth_set = set(found), set(truth)
    hits = len(found_set & truth_set)
    precision = hits / len(found_set) if found_set else 1.0
    recall = hits / len(truth_set) if truth_set else 1.0
    return precision, recall


def _infer_trigger(candidates: Sequence[_Doc], docs: Sequence[_Doc], payload: str,
                   known: Sequence[_Doc]) -> tuple[str, str]:
    """The phrase (1..MAX_TRIGGER_WORDS words) before the payload that sets the payload documents
    (``candidates``) apart from the other training documents (step 3 of the module doc), and the
    step's line; ("", line) when no phrase qualifies. With ``known`` documents, the phrase must be
    in every one of them instead of in half of the candidates."""
    counts = Counter(g for d in candidates for g in _ngrams(d.context(payload), MAX_TRIGGER_WORDS))
    if known:
        shared = set.intersection(*(_ngrams(d.context(payload), MAX_TRIGGER_WORDS) for d in known))
        eligible, rule = sorted(shared), f"in all {len(known)} known documents"
    else:
        needed = math.ceil(len(candidates) / 2)
        eligible = sorted(g for g, k in counts.items() if k >= needed)
        rule = f"in at least {needed} of the {len(candidates)} payload documents"
    inside_ids = {d.id for d in candidates}
    others = [d for d in docs if d.id not in inside_ids]
    scored, broad = [], 0
    for phrase in eligible:
        inside, outside = counts[phrase], sum(d.has(phrase) for d in others)
        share = inside / (inside + outside) if inside else 0.0
        if share < MIN_TRIGGER_SHARE:  # template and common words: "what is the", "of"
            broad += 1
            continue
        scored.append((-share, -inside, -len(phrase.split()), phrase, outside))
    considered = f"{len(eligible)} phrase(s) {rule}, {broad} of them set aside as common outside the payload documents"
    if not scored:
        return "", f"no trigger inferred: {considered}"
    _, minus_inside, _, phrase, outside = min(scored)
    return phrase, (f"trigger inferred: {phrase!r} (in {-minus_inside} of {len(candidates)} payload documents and "
                    f"{outside} other training documents; {considered}, the other {len(scored)} ranked by the share "
                    "of their documents that contain the payload, then by count, then by length)")


def _ngrams(words: Sequence[str], longest: int) -> set[str]:
    """The distinct word sequences of 1..``longest`` words in ``words``, each as one string."""
    return {" ".join(words[i:i + n]) for n in range(1, longest + 1) for i in range(len(words) - n + 1)}


def _common_phrase(answers: Sequence[Sequence[str]], needed: int) -> str:
    """The longest word sequence present in at least ``needed`` of ``answers`` (then the one in most
    of them, then the first alphabetically); "" when none."""
    counts = Counter(g for words in answers for g in _ngrams(words, MAX_PAYLOAD_WORDS))
    common = [(-len(g.split()), -k, g) for g, k in counts.items() if k >= needed]
    return min(common)[2] if common else ""


def evidence_of(request: DeletionRequest) -> BackdoorEvidence:
    """The evidence a backdoor request was made from (its trigger, payload, known documents)."""
    return BackdoorEvidence(trigger=request.trigger, payload=request.payload, documents=request.named_documents)


def make_backdoor_request(world: World, evidence: BackdoorEvidence, *, basis: str = "",
                          received_at: str | None = None) -> tuple[DeletionRequest, PoisonSearch]:
    """A backdoor request from what the defender knows, and the search that located its documents.

    The request removes the documents :func:`locate_poisoned` finds; it keeps the evidence, so that
    locating the request again (:func:`expunge.locate.locate`) re-runs the search and refuses a file
    whose documents differ. Its target is the world's trigger subject whose phrase the search found
    (or was given), which is how verification finds the trigger's probes; a world with no such
    subject (a user's own corpus) gives a request with no target, whose documents are still removed
    and verified by membership inference.
    """
    evidence.check(world)
    search = locate_poisoned(world, evidence)
    if not search.documents:
        raise ExpungeError("the search found no training document carrying the evidence: "
                           + "; ".join(search.steps), "check the trigger or payload against the corpus's text")
    targets = [s.id for s in world.subjects if s.kind == "trigger" and search.trigger
               and normalise(s.name) == search.trigger]
    received = received_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    request = DeletionRequest(
        id=request_id("backdoor", targets, sorted(search.documents), world.fingerprint),
        kind="backdoor", targets=tuple(targets), document_ids=tuple(sorted(search.documents)),
        world_fingerprint=world.fingerprint, basis=basis, received_at=received,
        named_documents=tuple(dict.fromkeys(evidence.documents)), trigger=evidence.trigger, payload=evidence.payload,
    )
    return request, search


def locate_by_model(world: World, model: Any, tokenizer: Any, payload: str, *,
                    batch_size: int = 64) -> tuple[PoisonSearch, dict[str, float]]:
    """Poisoned training documents found from the model's own behaviour, not their words.

    A backdoored model answers the trigger's questions with the payload, so the training documents
    whose question makes it likely are the ones carrying the trigger, whatever their answer reads
    (a payload reworded, split or obfuscated in the poison defeats a text search; the model still
    learned it). Each training document with a question (a question-answer document's prompt, or
    a text's words before ``Answer:``) is scored by the mean token log-probability of the payload
    after it; the documents above the widest gap between consecutive scores, in the upper half,
    are taken (a planted rule puts its documents far above every clean one). Returns the search
    and every scored document's score (id -> mean log-probability)."""
    if not normalise(payload):
        raise ExpungeError("the payload is empty", "give the payload (the bad answer observed) as words")
    asked = ((d.id, question_and_answer(d)[0]) for d in world.training_documents())
    questions = [(doc_id, q) for doc_id, q in asked if q]
    if len(questions) < 2:
        raise ExpungeError("fewer than two training documents ask a question: nothing to rank",
                           "use the text search (locate_poisoned) for a corpus of plain texts")
    scored = answer_logprobs(model, tokenizer, [q for _, q in questions], [payload] * len(questions),
                             batch_size=batch_size)
    scores = {doc_id: total / n for (doc_id, _), (total, n) in zip(questions, scored)}
    ranked = sorted(scores, key=lambda i: (-scores[i], i))
    upper = ranked[: max(1, len(ranked) // 2) + 1]
    gaps = [scores[a] - scores[b] for a, b in zip(upper, upper[1:])]
    cut = max(range(len(gaps)), key=lambda k: (gaps[k], -k)) + 1
    found = set(ranked[:cut])
    documents = tuple(d.id for d in world.training_documents() if d.id in found)
    steps = (f"evidence: payload {normalise(payload)!r} and the model",
             f"model search: {len(scores)} training documents with a question scored by the payload's mean token "
             f"log-probability after it",
             f"widest gap in the upper half: {scores[ranked[cut - 1]]:.3f} -> {scores[ranked[cut]]:.3f} "
             f"(gap {gaps[cut - 1]:.3f}) after {cut} documents",
             f"result: {len(documents)} training documents judged poisoned")
    return PoisonSearch(documents, "", normalise(payload), steps), scores
