"""Argument checks that fail early with messages naming the bad value and the valid ones."""

from __future__ import annotations

from collections.abc import Iterable
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
