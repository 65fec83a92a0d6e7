"""The one option parser: text converted by the field's type hint, Python values checked against
it, and every error naming the option, the value and what was expected."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from expunge.errors import ExpungeError
from expunge.options import build_config, describe_options, parse_pairs, type_text


@dataclass(frozen=True)
class Demo:
    """https://example.org/paper — every supported kind of field."""

    steps: int = 40
    learning_rate: float = 7e-4
    name: str = "x"
    early_stop: bool = True
    layer: int | None = None
    ratio: Optional[float] = None  # noqa: UP045 - the typing spelling must work too
    token: Literal["subject_last", "prompt_last"] = "subject_last"
    layers: tuple[int, ...] = (0, 1)
    pair: tuple[int, float] = (1, 0.5)
    prefixes: tuple[str, ...] = ("", "The company.")
    either: int | str = 0
    maybe_layers: tuple[int, ...] | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1 (e.g. 40)")


def build(**options: object) -> Demo:
    return build_config(Demo, options, owner="method 'demo'")


def test_text_is_converted_by_the_field_type_not_guessed() -> None:
    config = build(steps="5", learning_rate="1e-4", name="42", layer="3", ratio="0.25", token="prompt_last",
                   layers="0,1,2", pair="2,3", either="7")
    assert config.steps == 5 and config.learning_rate == 1e-4 and config.name == "42"  # "42" stays text
    assert config.layer == 3 and config.ratio == 0.25 and config.token == "prompt_last"
    assert config.layers == (0, 1, 2) and config.pair == (2, 3.0) and isinstance(config.pair[1], float)
    assert config.either == 7  # union members are tried in order
    assert build(either="seven").either == "seven"
    three = build(learning_rate="3").learning_rate
    assert three == 3.0 and isinstance(three, float)
    assert build(layers=" 4 , 5 ").layers == (4, 5)
    assert build(layers="6").layers == (6,)


@pytest.mark.parametrize(("text", "value"), [("true", True), ("False", False), ("YES", True), ("no", False),
                                              ("1", True), ("0", False)])
def test_booleans(text: str, value: bool) -> None:
    assert build(early_stop=text).early_stop is value


def test_bad_boolean_names_the_allowed_spellings() -> None:
    with pytest.raises(ExpungeError, match=r"early_stop='maybe' .* is not true or false") as info:
        build(early_stop="maybe")
    assert "yes/no" in info.value.fix


@pytest.mark.parametrize("text", ["none", "None", "NULL", "null"])
def test_optional_fields_accept_none(text: str) -> None:
    config = build(layer=text, ratio=text, maybe_layers=text)
    assert config.layer is None and config.ratio is None and config.maybe_layers is None
    assert build(maybe_layers="2,3").maybe_layers == (2, 3)


def test_number_errors_name_option_value_and_an_example() -> None:
    with pytest.raises(ExpungeError) as info:
        build(learning_rate="abc")
    assert info.value.problem == "option learning_rate='abc' for method 'demo' is not a number"
    assert info.value.fix == "write a number, e.g. -o learning_rate=0.0007"
    with pytest.raises(ExpungeError, match=r"option steps='2.5' for method 'demo' is not an integer"):
        build(steps="2.5")
    with pytest.raises(ExpungeError, match="is not a number"):
        build(learning_rate="nan")
    with pytest.raises(ExpungeError, match=r"layer='x' .* is not an integer or none") as info:
        build(layer="x")
    assert "-o layer=1" in info.value.fix


def test_literal_errors_list_the_allowed_values() -> None:
    with pytest.raises(ExpungeError) as info:
        build(token="middle")
    assert info.value.problem == ("option token='middle' for method 'demo' is not one of: "
                                  "subject_last, prompt_last")
    assert "subject_last, prompt_last" in info.value.fix and "-o token=subject_last" in info.value.fix
    with pytest.raises(ExpungeError, match="is not one of"):
        build(token=3)


def test_tuples() -> None:
    with pytest.raises(ExpungeError, match=r"layers='0,x' .* list of integers \('x' is not an integer\)"):
        build(layers="0,x")
    with pytest.raises(ExpungeError, match=r"pair='1,2,3' .* not 2 comma-separated values .*3 given") as info:
        build(pair="1,2,3")
    assert "-o pair=1,0.5" in info.value.fix
    with pytest.raises(ExpungeError, match="comma-separated list of integers"):
        build(layers="")  # an empty item is not an integer
    # Text items: commas, or | when an item holds a comma; the empty item is kept.
    assert build(prefixes=",The company.").prefixes == ("", "The company.")
    assert build(prefixes="|Hello, world.|Question:").prefixes == ("", "Hello, world.", "Question:")


def test_python_values_are_checked_against_the_hint() -> None:
    config = build(steps=5, learning_rate=1, layers=[2, 3], pair=(1, 2), layer=None, token="prompt_last",
                   prefixes=("", "a"), early_stop=False)
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)  # an int fits a float
    assert config.layers == (2, 3) and config.pair == (1, 2.0) and config.early_stop is False
    assert build(layers=("4", "5")).layers == (4, 5)  # text items inside a Python tuple are converted
    with pytest.raises(ExpungeError, match=r"steps=True .* is not an integer"):
        build(steps=True)  # a bool is not an int
    with pytest.raises(ExpungeError, match=r"steps=2.0 .* is not an integer"):
        build(steps=2.0)
    with pytest.raises(ExpungeError, match=r"early_stop=1 .* is not true or false"):
        build(early_stop=1)
    with pytest.raises(ExpungeError, match=r"learning_rate=True .* is not a number"):
        build(learning_rate=True)
    with pytest.raises(ExpungeError, match=r"name=3 .* is not text"):
        build(name=3)
    with pytest.raises(ExpungeError, match="comma-separated list of integers"):
        build(layers=5)


def test_unknown_options_list_the_known_ones() -> None:
    with pytest.raises(ExpungeError) as info:
        build(lr="1e-4")
    assert info.value.problem == "method 'demo' has no option 'lr'"
    assert "learning_rate" in info.value.fix and "steps" in info.value.fix
    with pytest.raises(ExpungeError, match=r"has no options 'stpes', 'zzz'") as info:
        build(stpes=1, zzz=2)
    assert "did you mean steps?" in info.value.fix


def test_post_init_errors_become_expunge_errors() -> None:
    with pytest.raises(ExpungeError, match=r"invalid options for method 'demo': steps must be at least 1"):
        build(steps="0")


def test_types_without_a_text_form_are_refused_as_text() -> None:
    with pytest.raises(ExpungeError, match="cannot be given as text"):
        build(tags="a,b")
    assert build(tags=["a"]).tags == ["a"]


def test_defaults_and_no_overrides() -> None:
    assert build_config(Demo, None, owner="x") == Demo()
    assert build_config(Demo, {}, owner="x") == Demo()


def test_parse_pairs() -> None:
    assert parse_pairs(["steps=5", " layers = 0,1", "prefixes=a=b", "name="]) == {
        "steps": "5", "layers": " 0,1", "prefixes": "a=b", "name": ""}
    assert parse_pairs([]) == {}
    with pytest.raises(ExpungeError) as info:
        parse_pairs(["steps5"])
    assert "'steps5'" in info.value.problem and "-o learning_rate=1e-4" in info.value.fix
    with pytest.raises(ExpungeError, match="no name"):
        parse_pairs(["=5"])
    with pytest.raises(ExpungeError, match=r"option 'steps' is given twice"):
        parse_pairs(["steps=5", "steps=6"])


def test_describe_options() -> None:
    rows = {row["name"]: row for row in describe_options(Demo)}
    assert rows["token"] == {"name": "token", "type": "'subject_last' | 'prompt_last'",
                             "default": "subject_last", "required": False,
                             "allowed": ["subject_last", "prompt_last"]}
    assert rows["layer"]["type"] == "int | None" and rows["layer"]["default"] is None
    assert rows["layers"]["type"] == "tuple[int, ...]" and rows["layers"]["default"] == [0, 1]
    assert rows["tags"]["default"] == [] and rows["steps"]["allowed"] is None
    assert type_text(tuple[int, float]) == "tuple[int, float]"


def test_not_a_dataclass() -> None:
    with pytest.raises(TypeError):
        build_config(dict, {}, owner="x")
