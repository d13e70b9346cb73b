"""S3 general purpose bucket naming rules, as a pure function (no cdktf import)."""

from __future__ import annotations

import re

_ALLOWED = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why S3 would reject `name` as a bucket name, or None if it is valid."""
    if not 3 <= len(name) <= 63:
        return f"bucket name {name!r} is {len(name)} characters; S3 allows 3 to 63"
    if not _ALLOWED.match(name):
        return (
            f"bucket name {name!r} may use only lowercase letters, digits, '.' and '-', "
            "and must start and end with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        return f"bucket name {name!r} has adjacent '.'/'-' characters"
    if _IP_LIKE.match(name):
        return f"bucket name {name!r} looks like an IP address"
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"bucket name {name!r} starts with the reserved prefix {prefix!r}"
    for suffix in _RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"bucket name {name!r} ends with the reserved suffix {suffix!r}"
    return None
