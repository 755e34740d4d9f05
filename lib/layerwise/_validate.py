"""Argument checks that fail early with messages naming the bad value and the valid ones."""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real
from typing import Any


def check_choice(what: str, value: Any, valid: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``valid``; otherwise raise ``ValueError`` listing them."""
    valid = list(valid)
    if value not in valid:
        listed = ", ".join(repr(v) for v in sorted(valid, key=str))
        raise ValueError(f"unknown {what} {value!r}; valid: {listed}")
    return value


def check_positive(what: str, value: Any) -> Any:
    """Return ``value`` if it is a number > 0; otherwise raise ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return value


def check_options(what: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """Raise ``ValueError`` if ``given`` holds a keyword that is not in ``valid``."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        listed = ", ".join(sorted(valid)) or "(none)"
        raise ValueError(
            f"unknown {what} option(s) {', '.join(map(repr, unknown))}; valid: {listed}"
        )


def check_int(what: str, value: int, minimum: int) -> int:
    """Return ``value`` if it is an integer >= ``minimum``; otherwise raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(
    what: str,
    value: float,
    low: float,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """Return ``value`` if it is a real number between ``low`` and ``high`` (each end included
    unless ``open_low`` / ``open_high``); otherwise raise ``ValueError``."""
    ok = isinstance(value, Real) and not isinstance(value, bool)
    ok = ok and (low < value if open_low else low <= value)
    ok = ok and (value < high if open_high else value <= high)
    if not ok:
        if high == math.inf:
            bound = f"{'>' if open_low else '>='} {low:g}"
        else:
            bound = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{what} must be a number {bound}, got {value!r}")
    return value
