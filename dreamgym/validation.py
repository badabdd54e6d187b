"""The one validator: every value dreamgym takes from Python, the command line, a settings file,
a model's config.json, a run's records or a game's env spec is checked here, against a
:class:`Rule` declared once beside the field it guards (a settings dataclass, a model's shape, a
record, the spec of a game made from an env id). A bad value therefore always reads the same
way: which field, what it must be, what it was.

This module imports nothing from dreamgym, so any module may use it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class KindError(TypeError, ValueError):
    """A value of the wrong kind (a string for a number, ...): a TypeError, as Python's own checks
    raise, and a ValueError, as every other bad setting is."""


KINDS = ("int", "float", "str", "bool", "dict", "list", "any")
"""What a value may be: ``float`` takes integers too; ``list`` takes a tuple; ``any`` is unchecked."""


_PLAIN_KINDS: dict[str, tuple[Any, str]] = {
    "dict": (Mapping, "a mapping"),
    "list": ((list, tuple), "a list"),
    "bool": (bool, "true or false"),
}
"""The kinds checked by type alone, and how an error names them."""

_ITEM_KINDS = ("int", "float", "str", "bool")
"""The kinds a list's items may be declared as (``list[float]``) and checked against."""


@dataclass(frozen=True)
class Rule:
    """What one field may hold: its kind, whether None is allowed, and its bounds
    (``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive) or ``choices``."""

    kind: str = "any"
    optional: bool = False
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[str, ...] | None = None
    finite: bool = True
    """Refuse NaN and infinities (records may hold them: a ratio over zero is infinite)."""
    items: str | None = None
    """For a list: the kind of every item (``int``, ``float``, ``str`` or ``bool``), or None: unchecked."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Rule kind must be one of {KINDS}, got {self.kind!r}")

    def check(self, name: str, value: Any) -> None:
        """ValueError naming ``name`` unless ``value`` keeps this rule (:class:`KindError` for a
        value of the wrong kind). Numbers may be NumPy scalars."""
        if value is None:
            if not self.optional:
                raise KindError(f"{name} must be set, got None")
            return
        if self.kind == "any":
            return
        if self.kind in _PLAIN_KINDS:
            types, what = _PLAIN_KINDS[self.kind]
            if not isinstance(value, types):
                raise KindError(f"{name} must be {what}, got {value!r}")
            if self.items is not None:
                item = Rule(self.items, finite=self.finite)
                for index, element in enumerate(value):
                    item.check(f"{name}[{index}]", element)
            return
        if self.kind == "str":
            if self.choices is not None and value not in self.choices:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, self.choices))}, got {value!r}")
            if not isinstance(value, str):
                raise KindError(f"{name} must be a string, got {value!r}")
            if not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
            return
        integer = self.kind == "int"
        what = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
            raise KindError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
        if self.finite and not isinstance(value, numbers.Integral) and not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        if not self._in_bounds(value):
            raise ValueError(f"{name} must be {what} {self.bounds()}, got {value!r}")

    def _in_bounds(self, value: Any) -> bool:
        return not (
            (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
            or (self.above is not None and value <= self.above)
            or (self.below is not None and value >= self.below)
        )

    def bounds(self) -> str:
        """The allowed range in words: ``>= 1``, ``< 1``, ``in [1, 4096]``, ``in (0, 1)``."""
        low = (f"[{self.minimum:g}", f">= {self.minimum:g}") if self.minimum is not None else None
        low = (f"({self.above:g}", f"> {self.above:g}") if self.above is not None else low
        high = (f"{self.maximum:g}]", f"<= {self.maximum:g}") if self.maximum is not None else None
        high = (f"{self.below:g})", f"< {self.below:g}") if self.below is not None else high
        if low and high:
            return f"in {low[0]}, {high[0]}"
        return (low or high or ("", ""))[1]


LIMITS = ("minimum", "maximum", "above", "below", "choices")
"""The keywords of :func:`setting`, kept in a field's metadata."""


def setting(
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its allowed values; :func:`rule_of` reads them back with its type."""
    return field(
        default=default,
        metadata=dict(zip(LIMITS, (minimum, maximum, above, below, choices), strict=True)),
    )


def rule_of(spec: dataclasses.Field, finite: bool = True, **bounds: Any) -> Rule:
    """The rule of a dataclass field: the kind and optionality of its annotation (``int``,
    ``float | None``, ``dict[str, int]``, ...; the items of ``list[float]`` and the like too), the
    bounds :func:`setting` gave it, and ``bounds`` on top (limits that depend on other values,
    like M's z_dim equal to V's)."""
    annotation = spec.type.__name__ if isinstance(spec.type, type) else str(spec.type)
    parts = [part.strip() for part in annotation.split("|")]
    base, _, inner = next((part for part in parts if part != "None"), "any").partition("[")
    kind = {"tuple": "list", "Any": "any"}.get(base, base)
    items = inner.removesuffix("]") if kind == "list" and inner.removesuffix("]") in _ITEM_KINDS else None
    declared = {key: spec.metadata[key] for key in LIMITS if key in spec.metadata}
    return Rule(kind if kind in KINDS else "any", "None" in parts, finite=finite, items=items, **{**declared, **bounds})


def rules_of(cls: Any, bounds: Mapping[str, dict[str, Any]] | None = None, finite: bool = True) -> dict[str, Rule]:
    """:func:`rule_of` for every field of the dataclass ``cls``; ``bounds`` by field name."""
    bounds = bounds or {}
    return {spec.name: rule_of(spec, finite, **bounds.get(spec.name, {})) for spec in dataclasses.fields(cls)}


def check_fields(where: str, data: Any, rules: Mapping[str, Rule], complete: bool = False) -> dict[str, Any]:
    """``data`` as a dict after checking that it is a mapping, that it names only fields of
    ``rules`` (and, when ``complete``, every one whose rule refuses None), and that each value
    keeps its rule. Errors name ``where.field`` (``field`` alone when ``where`` is empty)."""
    if not isinstance(data, Mapping):
        raise KindError(f"{where or 'the record'} must be a mapping, got {data!r}")
    unknown = sorted(set(data) - set(rules))
    if unknown:
        raise ValueError(f"{where or 'the record'} has unknown fields {unknown}; expected some of {sorted(rules)}")
    missing = sorted(name for name, rule in rules.items() if complete and not rule.optional and name not in data)
    if missing:
        raise ValueError(f"{where or 'the record'} lacks the fields {missing}")
    for name, value in data.items():
        rules[name].check(f"{where}.{name}" if where else name, value)
    return dict(data)


def check_settings(settings: Any) -> None:
    """Every field of a settings dataclass instance against its rule (called from its ``__post_init__``)."""
    section = type(settings).__name__
    for spec in dataclasses.fields(settings):
        rule_of(spec).check(f"{section}.{spec.name}", getattr(settings, spec.name))
