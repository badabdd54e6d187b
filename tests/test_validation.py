"""The one validator: every kind of value reads the same way when it is refused."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from dreamgym.validation import KindError, Rule, check_fields, rules_of, setting


@dataclass(frozen=True)
class Shape:
    width: int = setting(4, minimum=1, maximum=64)
    rate: float = setting(0.5, above=0, below=1)
    label: str | None = None
    mode: str = setting("a", choices=("a", "b"))
    flags: dict[str, int] | None = None
    returns: list[float] | None = None
    arrays: list[np.ndarray] | None = None


def test_rules_come_from_the_dataclass_annotations_and_their_settings():
    rules = rules_of(Shape)
    assert rules["width"] == Rule("int", minimum=1, maximum=64)
    assert rules["rate"] == Rule("float", above=0, below=1)
    assert rules["label"] == Rule("str", optional=True)
    assert rules["mode"].choices == ("a", "b")
    assert rules["flags"] == Rule("dict", optional=True)
    assert rules_of(Shape, {"width": {"maximum": 8}})["width"].maximum == 8  # a bound that depends on other values


def test_the_items_of_a_list_of_plain_values_are_checked_each_by_name():
    rules = rules_of(Shape, finite=False)
    assert rules["returns"] == Rule("list", optional=True, finite=False, items="float")
    assert rules["arrays"] == Rule("list", optional=True, finite=False)  # items of no plain kind: unchecked
    rules["returns"].check("returns", [1, 2.5, np.float32(3), float("inf")])  # a record may hold infinities
    with pytest.raises(KindError, match=r"returns\[1\] must be a number, got str '2'"):
        rules["returns"].check("returns", [1.0, "2"])
    with pytest.raises(KindError, match=r"lengths\[0\] must be an integer"):
        Rule("list", items="int").check("lengths", [1.5])


@pytest.mark.parametrize(
    "rule, value, words",
    [
        (Rule("int", minimum=1, maximum=64), 0, "x must be an integer in [1, 64], got 0"),
        (Rule("int", minimum=1), 0, "x must be an integer >= 1, got 0"),
        (Rule("float", above=0, below=1), 1.0, "x must be a number in (0, 1), got 1.0"),
        (Rule("float", below=1), 2, "x must be a number < 1, got 2"),
        (Rule("float"), float("nan"), "x must be finite, got nan"),
        (Rule("str", choices=("a", "b")), "c", "x must be one of 'a', 'b', got 'c'"),
        (Rule("str"), "  ", "x must be a non-empty string"),
        (Rule("int", maximum=64), 10**400, "x must be an integer <= 64"),  # no OverflowError on a huge integer
    ],
)
def test_a_value_out_of_its_rule_is_a_value_error_that_says_what_was_expected(rule, value, words):
    with pytest.raises(ValueError) as error:
        rule.check("x", value)
    assert not isinstance(error.value, TypeError) and str(error.value).startswith(words)


@pytest.mark.parametrize(
    "rule, value",
    [(Rule("int"), 2.0), (Rule("int"), True), (Rule("float"), "0.5"), (Rule("bool"), 1), (Rule("int"), None)],
)
def test_a_value_of_the_wrong_kind_is_both_a_type_error_and_a_value_error(rule, value):
    with pytest.raises(KindError) as error:
        rule.check("x", value)
    assert isinstance(error.value, TypeError) and isinstance(error.value, ValueError)


def test_numpy_scalars_are_numbers_and_records_may_hold_infinities():
    Rule("int", minimum=1).check("x", np.int64(3))
    Rule("float", above=0).check("x", np.float32(0.5))
    Rule("float", finite=False).check("x", float("inf"))


def test_check_fields_names_unknown_and_missing_fields_and_the_bad_one():
    rules = rules_of(Shape)
    assert check_fields("shape", {"width": 3}, rules) == {"width": 3}
    with pytest.raises(ValueError, match=r"shape has unknown fields \['height'\]"):
        check_fields("shape", {"height": 3}, rules)
    with pytest.raises(ValueError, match=r"lacks the fields \['mode', 'rate', 'width'\]"):
        check_fields("shape", {}, rules, complete=True)  # optional fields may be absent
    with pytest.raises(ValueError, match=r"shape.rate must be a number in \(0, 1\)"):
        check_fields("shape", {"rate": 0}, rules)
    with pytest.raises(KindError, match="shape must be a mapping"):
        check_fields("shape", [1], rules)
