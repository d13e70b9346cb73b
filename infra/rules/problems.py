"""What every rule shares: matching a value whole, quoting it in a one-line message, letting
Terraform's tokens pass, finding names listed twice, and raising a problem as a construct's error."""

from __future__ import annotations

import re
from collections.abc import Iterable


def quoted(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters with the full length said: safe to put in a one-line message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    length = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[:limit]}... ({length})"


def require(prop: str, problem: str | None) -> None:
    """Raise the ValueError a construct gives for a bad prop: `<prop>: <problem>`."""
    if problem:
        raise ValueError(f"{prop}: {problem}")


def is_token(value: str) -> bool:
    """A value Terraform resolves at plan time (a cdktf token or an interpolation).

    cdktf encodes string tokens as `${TfToken[...]}` and list elements as `#{TfToken[...]}`.
    """
    return "${" in value or "#{" in value


def matches(pattern: re.Pattern[str], value: object) -> bool:
    """`value` is a string and `pattern` matches all of it."""
    # fullmatch: `$` alone would accept a trailing newline.
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def repeated(names: Iterable[str]) -> list[str]:
    """The names that appear more than once, sorted (each said once)."""
    seen: set[str] = set()
    twice: set[str] = set()
    for name in names:
        (twice if name in seen else seen).add(name)
    return sorted(twice)
