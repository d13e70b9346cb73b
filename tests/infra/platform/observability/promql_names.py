"""The metric names a PromQL expression (or a Grafana panel or variable query) reads, with a real PromQL parser.

`promql_parser` (the Rust promql-parser crate's Python binding) parses the
expression, so a syntax error fails too. Every vector selector contributes its
name; `{__name__="x"}` names `x` and `{__name__=~"re"}` is returned as a pattern
(`re:<regex>`). Grafana queries are made PromQL first: a `$variable` used as a
range or step becomes `5m`, and `label_values(<query>, <label>)` reads `<query>`
(`label_values(<label>)` reads nothing).
"""

from __future__ import annotations

import re

import promql_parser

_GRAFANA_DURATION = re.compile(r"\$\{\w+\}|\$\w+")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.DOTALL)
_LABEL_ONLY = re.compile(r"^\s*label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")


def grafana_to_promql(query: str) -> str | None:
    """The PromQL in a Grafana query, with its duration variables made concrete; None if it reads no metric."""
    if _LABEL_ONLY.match(query):
        return None
    if match := _LABEL_VALUES.match(query):
        query = match.group(1)
    return _BRACKETS.sub(lambda m: _GRAFANA_DURATION.sub("5m", m.group()), query)


def metric_names(expr: str) -> list[str]:
    """Every metric name the expression reads, in order (patterns as `re:<regex>`). Raises ValueError on bad PromQL."""
    names: list[str] = []

    def visit(node) -> None:
        if not isinstance(node, promql_parser.VectorSelector):
            return
        if node.name:
            names.append(node.name)
        groups = [node.matchers.matchers, *node.matchers.or_matchers]
        for matcher in (m for group in groups for m in group):
            if matcher.name != "__name__":
                continue
            if matcher.op == promql_parser.MatchOp.Equal:
                names.append(matcher.value)
            elif matcher.op == promql_parser.MatchOp.Re:
                names.append("re:" + matcher.value)
            else:
                raise ValueError(f"a negative __name__ matcher selects names no check can list: {expr!r}")

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


class _OpenEnded(Exception):
    pass


def expand(regex: str, limit: int = 64) -> list[str] | None:
    """The names a `__name__=~` regex made only of literals and `(a|b)` groups selects; None if it is open-ended."""
    pos = 0

    def alternation() -> list[str]:
        nonlocal pos
        options = sequence()
        while pos < len(regex) and regex[pos] == "|":
            pos += 1
            options += sequence()
        return options

    def sequence() -> list[str]:
        nonlocal pos
        out = [""]
        while pos < len(regex) and regex[pos] not in "|)":
            char = regex[pos]
            if char == "(":
                pos += 3 if regex.startswith("(?:", pos) else 1
                part = alternation()
                if pos >= len(regex) or regex[pos] != ")":
                    raise _OpenEnded
                pos += 1
            elif char == "\\" and pos + 1 < len(regex) and not regex[pos + 1].isalnum():
                part, pos = [regex[pos + 1]], pos + 2
            elif char.isalnum() or char in "_:":
                part, pos = [char], pos + 1
            else:
                raise _OpenEnded
            out = [a + b for a in out for b in part]
            if len(out) > limit:
                raise _OpenEnded
        return out

    try:
        names = alternation()
    except _OpenEnded:
        return None
    return names if pos == len(regex) else None
