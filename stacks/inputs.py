"""Reading what a user or a pull request hands us, bounded: nothing they write can make a
command hang, recurse without end, or grow without bound. (Messages quote a user's value
through `infra.rules.quoted`: a short prefix, never a whole 50 MB string.)

- YAML (environment files): a size cap, a nesting cap, and a cap on the values an
  alias/anchor graph expands to, all checked on the event stream before anything
  is built (PyYAML's composer recurses, and aliases multiply).
- JSON (config.json, adapter_config.json, safetensors headers): a size cap and a
  nesting cap checked by a flat scan before `json.loads` (which recurses in C).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from stacks.errors import ConfigError

KIB, MIB = 1024, 1024 * 1024
YAML_MAX_BYTES = 1 * MIB  # an environment file; the shipped ones are ~2 KiB
YAML_MAX_DEPTH = 32
YAML_MAX_VALUES = 100_000  # after expanding aliases
JSON_MAX_DEPTH = 64
# A JSON string (skipped whole; an unterminated one runs to the end, which keeps the scan
# linear) or a bracket: enough to measure nesting without parsing.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]')


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The file's bytes, refusing anything that is not a regular file or is over `limit` bytes."""
    try:
        if not path.is_file():  # a FIFO or device would block or never end
            raise ConfigError(
                path, "", "no such file" if not path.exists() else f"not a regular file; {what} must be one"
            )
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the file ({exc.__class__.__name__}: {exc.strerror or exc})") from None
    if len(data) > limit:
        raise ConfigError(path, "", f"over {limit:,} bytes; {what} is at most {limit // KIB:,} KiB")
    return data


def yaml_shape_problem(
    text: str, loader: type, *, max_depth: int = YAML_MAX_DEPTH, max_values: int = YAML_MAX_VALUES
) -> str | None:
    """Why a YAML document is too deep or expands to too many values, from its event stream alone.

    Aliases are counted as the size of what they point at, so a "billion laughs" is
    refused from a few hundred bytes without expanding anything.
    """
    sizes: dict[str, int] = {}  # anchor -> values in its node, aliases expanded
    stack: list[list] = [[None, 0]]  # per open collection: [anchor, values so far]
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            stack[-1][1] += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            stack[-1][1] += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([event.anchor, 1])
            if len(stack) - 1 > max_depth:
                return f"nested more than {max_depth} levels deep"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, count = stack.pop()
            if anchor:
                sizes[anchor] = count
            stack[-1][1] += count
        if stack[0][1] + sum(entry[1] for entry in stack[1:]) > max_values:
            return f"expands to more than {max_values:,} values (through YAML aliases or sheer size)"
    return None


def json_depth_problem(text: str, max_depth: int = JSON_MAX_DEPTH) -> str | None:
    """Why a JSON text nests deeper than `max_depth`, found by a flat scan (no recursion)."""
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return f"nested more than {max_depth} levels deep"
        elif char in "]}":
            depth -= 1
    return None


def loads_json(text: str, *, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """`json.loads` for untrusted text: ValueError (never RecursionError) for what it cannot take."""
    if problem := json_depth_problem(text, max_depth):
        raise ValueError(problem)
    try:
        return json.loads(text)
    except RecursionError:  # belt and braces: the scan above should have caught it
        raise ValueError(f"nested more than {max_depth} levels deep") from None
