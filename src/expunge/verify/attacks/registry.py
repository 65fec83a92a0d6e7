"""Attacks are plug-ins: a registry of :class:`Attack` objects with typed results.

An attack reads one model and the verification plan and returns an :class:`AttackResult`
(a dataclass of its own). Verification runs every registered attack (``VerifyConfig.attacks``);
the judge asks each attack to compare a candidate's result with the oracle's and the original's
(:meth:`Attack.comparisons`, one :class:`Comparison` per check), and the report shows each
result's :meth:`AttackResult.values` and its optional curve. Nothing outside this package knows
an attack by name: adding one is registering it.

Each attack's ``name`` is also its key in the verdict policy (``[checks.NAME]``; an attack the
policy file does not list is judged by its ``default_margin``) and its route in a verdict
(``attack: NAME``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from expunge.registry import Registry

if TYPE_CHECKING:
    from expunge.verify.config import VerifyConfig
    from expunge.verify.plan import VerificationPlan

__all__ = ["AttackResult", "Comparison", "Attack", "register_attack", "unregister_attack", "registered_attack",
           "get_attack", "attack_names", "attacks"]


class AttackResult(Protocol):
    """What an attack measured on one model."""

    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``attacks`` entry of a model's evaluation)."""

    def values(self) -> dict[str, float]:
        """Compact rows for reports: row label -> accuracy recovered on the forget facts."""


@dataclass(frozen=True)
class Comparison:
    """One check's numbers: the candidate's value, the oracle's (the reference) and the original
    model's under the same attack. The check passes when ``value <= reference + margin``; it only
    counts when the original beats the oracle by the policy's gap (``original_gap``, default
    ``original - reference``) on at least the policy's number of ``probes``."""

    name: str
    value: float
    reference: float
    original: float
    probes: int
    detail: str = ""
    original_gap: float | None = None


@runtime_checkable
class Attack(Protocol):
    """A model-level attack (see the module doc).

    Attributes:
        name: registry key, policy key and route name.
        summary: one line for listings and reports.
        default_margin: the pass margin when the policy file has no entry for ``name``.
    """

    name: str
    summary: str
    default_margin: float

    def run(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, plan: VerificationPlan,
            config: VerifyConfig) -> AttackResult | None:
        """Attack a model (never modifying it); None when the plan gives it nothing to attack."""

    def comparisons(self, candidate: Any, oracle: Any, original: Any) -> list[Comparison]:
        """The checks of a candidate's result against the oracle's and the original's."""


_ATTACKS: Registry[Attack] = Registry("attack", ordered=True)


def register_attack(attack: Attack) -> Attack:
    return _ATTACKS.register(attack.name, attack)


def unregister_attack(name: str) -> None:
    _ATTACKS.unregister(name)


def registered_attack(attack: Attack) -> AbstractContextManager[Attack]:
    """Register ``attack`` for the duration of a block (tests, experiments)."""
    return _ATTACKS.registered(attack.name, attack)


def get_attack(name: str) -> Attack:
    return _ATTACKS.get(name)


def attack_names() -> list[str]:
    """Registered attacks in registration order (the order they run and are reported in)."""
    return _ATTACKS.names()


def attacks() -> list[Attack]:
    return _ATTACKS.items()
