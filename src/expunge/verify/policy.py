"""The verdict policy: which checks decide a verdict and with what thresholds, read from a file.

The built-in policy is ``policy.toml`` next to this module — a commented file a compliance officer
can read. A user policy file overrides any subset of it; unknown tables or keys, wrong types and
out-of-range values are errors that name the file and the key.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError, io_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["CheckRule", "VerdictPolicy", "DEFAULT_POLICY_PATH", "load_policy", "default_policy"]

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.toml")
QUESTIONS = ("forgotten", "collateral")
# Each check's threshold parameter and the range it must lie in.
_PARAMETERS: dict[str, tuple[float, float]] = {"margin": (0.0, 1.0), "ratio": (0.0, 1.0), "alpha": (0.0, 1.0)}
_EVIDENCE: dict[str, type] = {"min_subjects": int, "min_forget_probes": int, "min_informative_gap": float,
                              "min_route_probes": int, "max_auc_ci_width": float, "min_reference_documents": int}
# The oracle's own checks (``[oracle]``): each a tolerance between 0 and 1.
_ORACLE = ("max_knowledge_gap", "max_forget_gap", "auc_margin")


@dataclass(frozen=True)
class CheckRule:
    """One check of the policy: the question it answers, whether it decides, its thresholds."""

    name: str
    question: str
    required: bool
    params: dict[str, float]

    def param(self, key: str) -> float:
        return float(self.params[key])


@dataclass(frozen=True)
class VerdictPolicy:
    """The parsed policy (see ``policy.toml`` for what every entry means)."""

    source: str
    evidence: dict[str, float]
    checks: dict[str, CheckRule]
    oracle: dict[str, float]

    def rule(self, name: str) -> CheckRule:
        if name not in self.checks:
            raise KeyError(f"the policy has no check {name!r}; known: {', '.join(sorted(self.checks))}")
        return self.checks[name]

    @property
    def min_subjects(self) -> int:
        return int(self.evidence["min_subjects"])

    @property
    def min_forget_probes(self) -> int:
        return int(self.evidence["min_forget_probes"])

    @property
    def min_informative_gap(self) -> float:
        return float(self.evidence["min_informative_gap"])

    @property
    def min_route_probes(self) -> int:
        return int(self.evidence["min_route_probes"])

    @property
    def max_auc_ci_width(self) -> float:
        return float(self.evidence["max_auc_ci_width"])

    @property
    def min_reference_documents(self) -> int:
        return int(self.evidence["min_reference_documents"])

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "evidence": dict(self.evidence), "oracle": dict(self.oracle),
                "checks": {n: {"question": r.question, "required": r.required, **r.params}
                           for n, r in self.checks.items()}}


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ExpungeError(f"policy file {path} not found", "pass an existing TOML file to --policy") from None
    except IsADirectoryError:
        raise ExpungeError(f"policy file {path} is a directory", "pass a TOML file, e.g. a copy of "
                           f"{DEFAULT_POLICY_PATH}") from None
    except UnicodeDecodeError as exc:
        raise ExpungeError(f"{path}: not a text file ({exc.reason})", "pass a UTF-8 TOML file") from None
    except OSError as exc:
        converted = io_error(exc, path)
        if converted is None:
            raise
        raise converted from None
    except tomllib.TOMLDecodeError as exc:
        raise ExpungeError(f"{path}: not valid TOML ({exc})", "fix the syntax; see the built-in policy.toml") from None


def _merge(base: dict[str, Any], override: dict[str, Any], path: Path) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for top, value in override.items():
        if top not in base:
            raise ExpungeError(f"{path}: unknown table [{top}]", "use [evidence], [oracle] or [checks.NAME]")
        if top in ("evidence", "oracle"):
            known = _EVIDENCE if top == "evidence" else _ORACLE
            if not isinstance(value, dict):
                raise ExpungeError(f"{path}: {top} must be a table", f"write [{top}]")
            for key, v in value.items():
                if key not in known:
                    raise ExpungeError(f"{path}: unknown key {top}.{key}", f"known: {', '.join(sorted(known))}")
                merged[top][key] = v
        else:
            for name, entry in value.items():
                if name not in base["checks"]:
                    raise ExpungeError(f"{path}: unknown check [checks.{name}]",
                                       f"known checks: {', '.join(sorted(base['checks']))}")
                if not isinstance(entry, dict):
                    raise ExpungeError(f"{path}: checks.{name} must be a table", f"write [checks.{name}]")
                for key, v in entry.items():
                    if key not in base["checks"][name]:
                        raise ExpungeError(f"{path}: unknown key checks.{name}.{key}",
                                           f"known: {', '.join(sorted(base['checks'][name]))}")
                    merged["checks"][name][key] = v
    return merged


def _parse(raw: dict[str, Any], source: str) -> VerdictPolicy:
    evidence: dict[str, float] = {}
    for key, kind in _EVIDENCE.items():
        value = raw.get("evidence", {}).get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
            raise ExpungeError(f"{source}: evidence.{key} must be a{'n integer' if kind is int else ' number'}",
                               f"set evidence.{key} = a {'whole ' if kind is int else ''}number")
        if value < 0 or (kind is int and value < 1):
            raise ExpungeError(f"{source}: evidence.{key} = {value} is out of range",
                               "use a positive value (counts at least 1)")
        evidence[key] = kind(value)
    oracle: dict[str, float] = {}
    for key in _ORACLE:
        value = raw.get("oracle", {}).get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ExpungeError(f"{source}: oracle.{key} = {value!r} is out of range", "use a number between 0 and 1")
        oracle[key] = float(value)
    checks: dict[str, CheckRule] = {}
    for name, entry in raw.get("checks", {}).items():
        where = f"{source}: checks.{name}"
        question, required = entry.get("question"), entry.get("required")
        if question not in QUESTIONS:
            raise ExpungeError(f"{where}.question = {question!r}", f"use one of {', '.join(QUESTIONS)}")
        if not isinstance(required, bool):
            raise ExpungeError(f"{where}.required must be true or false", "write required = true (or false)")
        params: dict[str, float] = {}
        for key, value in entry.items():
            if key in ("question", "required"):
                continue
            low, high = _PARAMETERS.get(key, (None, None))
            if low is None:
                raise ExpungeError(f"{where}.{key} is not a threshold", f"known: {', '.join(_PARAMETERS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ExpungeError(f"{where}.{key} = {value!r} is out of range",
                                   f"use a number between {low} and {high}")
            if key in ("ratio", "alpha") and value == 0:
                raise ExpungeError(f"{where}.{key} = 0 makes the check pass always", "use a value above 0")
            params[key] = float(value)
        checks[name] = CheckRule(name, question, required, params)
    return VerdictPolicy(source, evidence, checks, oracle)


def _with_attack_defaults(base: dict[str, Any]) -> dict[str, Any]:
    """The built-in policy plus a default entry for every registered attack it does not list (a
    plug-in attack is judged by its ``default_margin`` unless a policy file says otherwise)."""
    from expunge.verify.attacks import attacks

    merged = copy.deepcopy(base)
    for attack in attacks():
        merged["checks"].setdefault(attack.name, {"question": "forgotten", "required": True,
                                                   "margin": float(attack.default_margin)})
    return merged


def load_policy(path: str | os.PathLike[str] | None = None, *, registered_attacks: bool = True) -> VerdictPolicy:
    """The built-in policy, with the entries of the TOML file ``path`` (if given) replacing its own.

    ``registered_attacks=False`` leaves out the default entries of plug-in attacks, which needs
    no attack (nor torch) imported: how the CLI checks a policy file before any work."""
    base = _read(DEFAULT_POLICY_PATH)
    if registered_attacks:
        base = _with_attack_defaults(base)
    if path is None:
        return _parse(base, str(DEFAULT_POLICY_PATH.name))
    path = Path(path)
    return _parse(_merge(base, _read(path), path), str(path))


_DEFAULT: VerdictPolicy | None = None


def default_policy() -> VerdictPolicy:
    """The built-in policy (parsed once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_policy()
    return _DEFAULT


def override_policy(policy: VerdictPolicy, *, evidence: dict[str, float] | None = None,
                    checks: dict[str, dict[str, Any]] | None = None,
                    oracle: dict[str, float] | None = None) -> VerdictPolicy:
    """A copy of ``policy`` with some entries replaced, validated like a policy file, e.g.
    ``override_policy(p, evidence={"min_subjects": 2}, checks={"forget_exact_match": {"margin": 0.1}})``."""
    raw = {k: v for k, v in policy.to_dict().items() if k != "source"}
    changes: dict[str, Any] = {}
    if evidence:
        changes["evidence"] = evidence
    if checks:
        changes["checks"] = checks
    if oracle:
        changes["oracle"] = oracle
    return _parse(_merge(raw, changes, Path(f"{policy.source} (overridden)")), f"{policy.source} (overridden)")
