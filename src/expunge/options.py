"""One option parser for every configurable part of expunge (unlearning methods, editors).

Options reach a config dataclass from two places: the command line (``-o learning_rate=1e-4``,
always text) and Python callers (already typed values). Both go through :func:`build_config`,
which converts or checks each value against the *field's declared type hint* — never against a
guess from the text ("1" is an int only if the field says so) and never against the default's
type (a field ``int | None = None`` has no useful default type). A wrong value fails before any
model is loaded, with one line naming the option, the value and what was expected.

Supported hints: ``int``, ``float``, ``str``, ``bool``, ``X | None`` / ``Optional[X]``,
``Literal[...]``, ``tuple[X, ...]`` and ``tuple[X, Y]`` (comma-separated items), unions of these
(tried in order) and ``Any``. Text lists split on ``|`` instead of ``,`` when the value contains a
``|``, so that an item may hold a comma (``-o context_prefixes=|Hello, world.``).

Layering: this module imports nothing of expunge but :mod:`expunge.errors`, so every layer may
use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, Union

from expunge.errors import ExpungeError

__all__ = ["build_config", "describe_options", "parse_pairs", "type_text"]

T = TypeVar("T")

_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")
_NONE = ("none", "null")


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings (the CLI's ``-o/--option``) -> {key: value}, values left as text:
    :func:`build_config` converts them by the field's type. Keys are stripped of spaces, values
    are not (a text option may start with a space)."""
    options: dict[str, str] = {}
    seen: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ExpungeError(f"option {pair!r} is not key=value", "write it as e.g. -o learning_rate=1e-4")
        key, value = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ExpungeError(f"option {pair!r} has no name before '='",
                               "write it as e.g. -o learning_rate=1e-4")
        if key in options:
            raise ExpungeError(f"option {key!r} is given twice (-o {seen[key]}, -o {pair})",
                               f"give -o {key}=... once")
        options[key] = value
        seen[key] = pair
    return options


class _Mismatch(Exception):
    """A value does not fit a hint; ``expected`` is the hint in words ("an integer")."""

    def __init__(self, expected: str, detail: str = "") -> None:
        super().__init__(expected)
        self.expected = expected
        self.detail = detail


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _expected(hint: Any) -> str:
    """The hint in words, for error messages."""
    if hint is Any:
        return "anything"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "text"
    if hint is type(None):
        return "none"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if _is_union(hint):
        return " or ".join(_expected(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a comma-separated list of {_plural(args[0])}"
        return f"{len(args)} comma-separated values ({', '.join(_expected(a) for a in args)})"
    return f"a {getattr(hint, '__name__', str(hint))}"


def _plural(hint: Any) -> str:
    plurals = {int: "integers", float: "numbers", str: "texts", bool: "booleans (true/false)"}
    return plurals.get(hint, _expected(hint))


def type_text(hint: Any) -> str:
    """A hint as short text: ``int | None``, ``tuple[int, ...]``, ``'subject_last' | 'prompt_last'``."""
    if hint is type(None):
        return "None"
    if hint is Any:
        return "Any"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if _is_union(hint):
        return " | ".join(type_text(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_text(args[0])}, ...]"
        return f"tuple[{', '.join(type_text(a) for a in args)}]"
    return getattr(hint, "__name__", str(hint))


def _from_text(text: str, hint: Any) -> Any:
    """Text -> a value of ``hint``; raises :class:`_Mismatch`."""
    word = text.strip()
    if hint is Any or hint is str:
        return text
    if hint is type(None):
        if word.lower() in _NONE:
            return None
        raise _Mismatch(_expected(hint))
    if hint is bool:
        if word.lower() in _TRUE:
            return True
        if word.lower() in _FALSE:
            return False
        raise _Mismatch(_expected(hint))
    if hint is int:
        try:
            return int(word)
        except ValueError:
            raise _Mismatch(_expected(hint)) from None
    if hint is float:
        try:
            number = float(word)
        except ValueError:
            raise _Mismatch(_expected(hint)) from None
        if math.isnan(number):
            raise _Mismatch(_expected(hint))
        return number
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        for allowed in args:
            try:
                candidate = _from_text(word, type(allowed))
            except _Mismatch:
                continue
            if candidate == allowed:
                return allowed
        raise _Mismatch(_expected(hint))
    if _is_union(hint):
        # none/null first: "none" must not become the text "none" of a `str | None` field.
        if type(None) in args and word.lower() in _NONE:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _from_text(text, option)
            except _Mismatch:
                continue
        raise _Mismatch(_expected(hint))
    if origin is tuple:
        texts_only = all(a is str for a in args if a is not Ellipsis)
        separator = "|" if texts_only and "|" in text else ","
        items = [item.strip() for item in text.split(separator)]
        return _tuple(items, hint, lambda item, item_hint: _from_text(item, item_hint))
    if isinstance(hint, type):
        try:
            return hint(text)  # e.g. pathlib.Path, or an Enum by value
        except (TypeError, ValueError):
            raise _Mismatch(_expected(hint)) from None
    raise _Mismatch(_expected(hint), f"options of type {type_text(hint)} cannot be given as text")


def _tuple_item_hints(hint: Any, count: int | None) -> list[Any] | None:
    """Per-item hints of a tuple hint for ``count`` items (None: not known yet / variadic)."""
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        return [args[0]] * count if count is not None else None
    return list(args)


def _tuple(items: list[Any], hint: Any, convert: Any) -> tuple[Any, ...]:
    item_hints = _tuple_item_hints(hint, len(items))
    assert item_hints is not None
    if len(item_hints) != len(items):
        raise _Mismatch(_expected(hint), f"{len(items)} given")
    out = []
    for item, item_hint in zip(items, item_hints, strict=True):
        try:
            out.append(convert(item, item_hint))
        except _Mismatch as exc:
            raise _Mismatch(_expected(hint), f"{item!r} is not {exc.expected}") from None
    return tuple(out)


def _check_value(value: Any, hint: Any) -> Any:
    """A Python value against ``hint`` (text items inside tuples are converted); returns the value
    as the field should hold it (ints become floats for float fields, lists become tuples)."""
    if isinstance(value, str) and hint is not str and hint is not Any:
        return _from_text(value, hint)
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch(_expected(hint))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch(_expected(hint))
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch(_expected(hint))
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
            return float(value)
        raise _Mismatch(_expected(hint))
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch(_expected(hint))
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        for allowed in args:
            if type(value) is type(allowed) and value == allowed:
                return value
        raise _Mismatch(_expected(hint))
    if _is_union(hint):
        for option in args:
            try:
                return _check_value(value, option)
            except _Mismatch:
                continue
        raise _Mismatch(_expected(hint))
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise _Mismatch(_expected(hint))
        return _tuple(list(value), hint, _check_value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Mismatch(_expected(hint))
    return value


def _cli_text(value: Any) -> str:
    """A value as it would be written after ``-o name=``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        texts = [_cli_text(v) for v in value]
        return ("|" if any("," in t for t in texts) else ",").join(texts)
    return str(value)


def _example(hint: Any, default: Any) -> str:
    """A valid value for ``hint``: the default when it has one, else a typical one."""
    if default is not dataclasses.MISSING and default is not None:
        return _cli_text(default)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return _cli_text(args[0])
    if _is_union(hint):
        return _example(next(a for a in args if a is not type(None)), dataclasses.MISSING) \
            if any(a is not type(None) for a in args) else "none"
    if origin is tuple:
        item_hints = _tuple_item_hints(hint, 3) or []
        return ",".join(_example(h, dataclasses.MISSING) for h in item_hints)
    return {int: "1", float: "0.5", bool: "true", str: "text"}.get(hint, "...")


def _fix(name: str, hint: Any, default: Any) -> str:
    example = f"-o {name}={_example(hint, default)}"
    if typing.get_origin(hint) is Literal:
        return f"write one of: {', '.join(str(a) for a in typing.get_args(hint))}, e.g. {example}"
    kind = {int: "a whole number", float: "a number", bool: "true or false (or yes/no, 1/0)"}.get(hint)
    if kind is not None:
        return f"write {kind}, e.g. {example}"
    return f"write {_expected(hint)}, e.g. {example}"


def _hints(config_cls: type[Any]) -> dict[str, Any]:
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{config_cls!r} is not a dataclass")
    return typing.get_type_hints(config_cls)


def build_config(config_cls: type[T], overrides: Mapping[str, Any] | None, *, owner: str) -> T:
    """``config_cls(**overrides)`` with every value converted (text) or checked (anything else)
    against its field's type hint; ``owner`` names what is configured in errors, e.g.
    ``"method 'simnpo'"`` or ``"editor 'rome'"``.

    Raises :class:`ExpungeError` for an unknown option (listing the known ones), a value that does
    not fit its field (naming option, value and the expected type or allowed values) and for the
    ``ValueError``/``TypeError`` of the config's own ``__post_init__`` checks.
    """
    hints = _hints(config_cls)
    known = {f.name: f for f in dataclasses.fields(config_cls) if f.init}  # type: ignore[arg-type]
    overrides = dict(overrides or {})
    unknown = [key for key in overrides if key not in known]
    if unknown:
        close = [match for key in unknown for match in difflib.get_close_matches(key, list(known), n=1)]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        names = ", ".join(repr(k) for k in unknown)
        raise ExpungeError(f"{owner} has no option{'s' if len(unknown) > 1 else ''} {names}",
                           f"{hint}known options: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        field = known[key]
        hint = hints[key]
        try:
            values[key] = _check_value(value, hint)
        except _Mismatch as exc:
            detail = f" ({exc.detail})" if exc.detail else ""
            raise ExpungeError(f"option {key}={value!r} for {owner} is not {exc.expected}{detail}",
                               _fix(key, hint, _default(field))) from None
    try:
        return config_cls(**values)
    except (ValueError, TypeError) as exc:
        raise ExpungeError(f"invalid options for {owner}: {exc}",
                           "correct the -o values named there") from None


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if value is dataclasses.MISSING:
        return None
    return value


def describe_options(config_cls: type[Any]) -> list[dict[str, Any]]:
    """Every option of ``config_cls``: name, type (as text), default (JSON-ready; None when
    required), required, and the allowed values of a ``Literal`` field (else None), for listings
    such as ``expunge methods --json``."""
    hints = _hints(config_cls)
    rows = []
    for field in dataclasses.fields(config_cls):
        if not field.init:
            continue
        hint = hints[field.name]
        literal = next((h for h in (hint, *typing.get_args(hint)) if typing.get_origin(h) is Literal), None)
        default = _default(field)
        rows.append({"name": field.name, "type": type_text(hint), "default": _jsonable(default),
                     "required": default is dataclasses.MISSING,
                     "allowed": list(typing.get_args(literal)) if literal is not None else None})
    return rows
