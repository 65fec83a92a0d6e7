"""Verification, part 1: the plan — which people, probes and documents each set holds.

The sets come from the request's :class:`expunge.locate.Located` record (the same one unlearning
and retraining use), sampled (seeded) to at most ``max_subjects_per_set`` people:

- ``forget`` — the request's targets and the documents it removes;
- ``holdout`` — never-seen people, the reference population for membership inference;
- ``retain`` — the other trained people;
- ``neighbours`` — retained people who share a name token or two attribute values with a
  target: where a careless deletion does damage first;
- ``general`` — facts about countries and companies, not people.

The forget people's *indirect* probes (context priming, role-play framing, prefilled answers,
cloze, multi-hop, reverse questions) are kept apart: they ask about the same facts by other routes.
So are ``verbatim`` probes (a text's first words, then the rest: MUSE's verbatim memorisation),
one per document of the forget, never-seen and retained documents that have one (the passages
world's passages, a user's imported texts).

A backdoor request's target is a trigger: its forget questions are the triggered questions whose
answer is the payload (so forget exact match is the attack success rate, and every check and
attack on the forget questions reads it), and ``triggers`` holds them by variant (the trigger
moved, cut short, reworded, and the near-trigger look-alikes, whose payload rate is the
false-trigger rate). Its never-seen reference is the never-seen poisoned documents alone: text of
the same kind as the removed.

What must survive (retain, neighbours, general) is drawn only from the subjects and documents
that no retain term trained on (:func:`expunge.locate.split_retain`): collateral damage measured
on what a method fine-tuned on would show nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from expunge.data import Example
from expunge.locate import Located, locate, split_retain
from expunge.prompts import example_for
from expunge.records import DeletionRequest, Probe
from expunge.verify.config import VerifyConfig
from expunge.verify.plausibility import AnswerValidator
from expunge.worlds import World
from expunge.worlds.backdoor import ATTACK_VARIANTS, trigger_variant

__all__ = ["SETS", "UTILITY_SETS", "QA_KINDS", "INDIRECT_KINDS", "VERBATIM_SETS", "VerificationPlan",
           "plan_verification", "one_per_fact", "with_choices"]

SETS = ("forget", "holdout", "retain", "neighbours", "general")
# The sets whose knowledge must survive; model utility is measured over them (TOFU's choice).
UTILITY_SETS = ("retain", "neighbours", "general")
QA_KINDS = ("direct", "paraphrase")
INDIRECT_KINDS = ("context", "roleplay", "prefill", "cloze", "multihop", "reverse")
# The sets whose texts are continued verbatim: the removed ones, never-seen ones (the reference
# without an oracle) and the other trained ones (which must stay memorised).
VERBATIM_SETS = ("forget", "holdout", "retain")
# plan set name -> the Located set it samples from
_LOCATED = {"forget": "forget", "holdout": "never_seen", "retain": "retain", "neighbours": "neighbours",
            "general": "general"}


@dataclass
class VerificationPlan:
    """The people, probes and documents of each set (see the module doc)."""

    world: World
    request: DeletionRequest
    located: Located
    subjects: dict[str, list[str]]
    probes: dict[str, list[Probe]]  # training and paraphrased questions
    fact_probes: dict[str, list[Probe]]  # one question per fact: truth ratio, multiple choice, probe
    indirect: dict[str, list[Probe]]  # kind -> the forget people's indirect probes
    verbatim: dict[str, list[Probe]]  # set -> its documents' verbatim probes (none: no texts to continue)
    triggers: dict[str, list[Probe]]  # variant -> the targeted triggers' probes (none: no trigger targeted)
    # membership inference: the removed documents, never-seen documents, retained documents (a
    # question-answer document as the pair (question, answer), scored on its answer)
    texts: dict[str, list[Example]]
    text_subjects: dict[str, list[str]]
    validator: AnswerValidator

    def sizes(self) -> dict[str, dict[str, int]]:
        out = {
            name: {"subjects": len(self.subjects[name]), "probes": len(self.probes[name]),
                   "facts": len(self.fact_probes[name]), "documents": len(self.texts.get(name, []))}
            for name in SETS
        }
        out["forget"]["indirect_probes"] = sum(len(v) for v in self.indirect.values())
        # How many independent observations each side of the comparison has: people (one person's
        # facts are not independent of each other), or never-seen documents that name no one; for
        # a backdoor, its triggered questions and the never-seen poisoned documents.
        if self.triggers:
            out["forget"]["independent"] = len({p.attribute for p in self.probes["forget"] if p.kind == "trigger"})
            out["holdout"]["independent"] = len(self.texts.get("holdout", []))
        else:
            out["forget"]["independent"] = len(self.subjects["forget"])
            out["holdout"]["independent"] = max(len(self.subjects["holdout"]),
                                                len(set(self.text_subjects.get("holdout", []))))
        for name, probes in self.verbatim.items():
            out[name]["verbatim_probes"] = len(probes)
        return out


def one_per_fact(probes: list[Probe]) -> list[Probe]:
    """The first held-out paraphrase of each (subject, attribute) fact, else its first question.

    Truth ratios and multiple choice are scored on one question per fact: the five phrasings of
    one fact are not five independent observations, and scoring one is five times cheaper.
    """
    chosen: dict[tuple[str, str], Probe] = {}
    for probe in probes:
        key = (probe.subject, probe.attribute)
        if key not in chosen or (probe.kind == "paraphrase" and chosen[key].kind != "paraphrase"):
            chosen[key] = probe
    return list(chosen.values())


def with_choices(probes: list[Probe]) -> list[Probe]:
    """The probes that have wrong answers: the ones multiple choice and truth ratios can score."""
    return [p for p in probes if p.alternatives]


def _cap_facts(probes: list[Probe], cap: int | None, rng: random.Random) -> list[Probe]:
    """At most ``cap`` facts (subject, attribute), a seeded sample, with all their questions."""
    facts = list(dict.fromkeys((p.subject, p.attribute) for p in probes))
    if cap is None or len(facts) <= cap:
        return probes
    chosen = set(rng.sample(facts, cap))
    return [p for p in probes if (p.subject, p.attribute) in chosen]


def plan_verification(world: World, request: DeletionRequest, config: VerifyConfig | None = None,
                      located: Located | None = None) -> VerificationPlan:
    """Choose the sets for ``request`` (seeded samples of at most ``max_subjects_per_set`` people)."""
    config = config or VerifyConfig()
    if located is None:
        located = locate(world, request)
    else:
        located.check_for(world, request)
    rng = random.Random(config.seed)
    # Never score as kept what a retain term may have trained on.
    split = split_retain(world, located)
    trained_subjects, trained_docs = set(split.train.subjects), set(split.train.documents)
    subjects = {name: [s for s in getattr(located, source).subjects if s not in trained_subjects]
                for name, source in _LOCATED.items()}
    for name in ("holdout", "retain", "neighbours", "general"):
        if len(subjects[name]) > config.max_subjects_per_set:
            subjects[name] = sorted(rng.sample(subjects[name], config.max_subjects_per_set))
    probes = {name: _cap_facts(world.probes_for(ids, kinds=QA_KINDS), config.max_facts_per_set, rng)
              for name, ids in subjects.items()}
    # A targeted trigger's probes, by variant; those of the attack variants are the forget questions.
    triggered = world.probes_for(subjects["forget"], kinds=("trigger",))
    triggers = {variant: [p for p in triggered if trigger_variant(p) == variant]
                for variant in dict.fromkeys(trigger_variant(p) for p in triggered)}
    if triggered:
        attack = [p for p in triggered if trigger_variant(p) in ATTACK_VARIANTS]
        probes["forget"] = probes["forget"] + _cap_facts(attack, config.max_facts_per_set, rng)
    # The routes ask about the facts the forget set scores: a fact the cap left out is left out
    # of every route too (routes to facts that are no question of their own, such as multi-hop,
    # stay).
    forget_probes = world.probes_for(subjects["forget"])  # one pass over the world's probes
    dropped = ({(p.subject, p.attribute) for p in forget_probes if p.kind in QA_KINDS}
               - {(p.subject, p.attribute) for p in probes["forget"]})
    indirect = {kind: [p for p in forget_probes if p.kind == kind and (p.subject, p.attribute) not in dropped]
                for kind in INDIRECT_KINDS}
    # Membership inference reads the removed documents and those of the sampled never-seen and
    # retained people.
    docs = {
        "forget": located.documents(world, "forget"),
        # (a never-seen document about no one is a reference of its own)
        # (a backdoor's reference: the never-seen documents that carry its trigger)
        "holdout": [d for d in located.documents(world, "never_seen")
                    if (set(d.subjects) & set(subjects["forget"]) if triggered
                        else not d.subjects or set(d.subjects) & set(subjects["holdout"]))],
        "retain": [d for d in located.documents(world, "retain")
                   if d.id not in trained_docs and set(d.subjects) & set(subjects["retain"])],
    }
    # No check reads the retained documents' scores: they are the third histogram of the report's
    # per-document loss, beside the forget and never-seen ones. As many as the larger of those two
    # (a seeded sample) draw the same density; on TOFU all of them were three quarters of the
    # membership pass (380 of 500 documents, 66 s of a pretrained model's 500-s evaluation).
    keep = max(len(docs["forget"]), len(docs["holdout"]))
    if len(docs["retain"]) > keep:
        chosen = set(rng.sample(range(len(docs["retain"])), keep))
        docs["retain"] = [d for i, d in enumerate(docs["retain"]) if i in chosen]
    # A verbatim probe continues one text (its attribute is the document's id): each set's are
    # those of the documents membership inference reads.
    by_document = {p.attribute: p for p in world.probes if p.kind == "verbatim"}
    verbatim = {name: _cap_facts([by_document[d.id] for d in docs[name] if d.id in by_document],
                                 config.max_facts_per_set, rng) for name in VERBATIM_SETS}
    return VerificationPlan(
        world=world, request=request, located=located, subjects=subjects, probes=probes,
        fact_probes={name: one_per_fact(p) for name, p in probes.items()},
        indirect={kind: p for kind, p in indirect.items() if p},
        verbatim={name: p for name, p in verbatim.items() if p},
        triggers=triggers,
        texts={k: [example_for(d) for d in v] for k, v in docs.items()},
        text_subjects={k: [d.subjects[0] if d.subjects else d.id for d in v] for k, v in docs.items()},
        validator=AnswerValidator(world.probes),
    )
