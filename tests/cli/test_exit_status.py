"""The named exit statuses: the README's table is the same list, and the commands return them by name."""

from __future__ import annotations

import re

from conftest import ROOT
from stacks.cli import status_codes
from stacks.cli.status_codes import CHECK_FAILED, SUCCESS, TOOL_ERROR, USER_ERROR


def statuses() -> dict[str, int]:
    return {name: value for name, value in vars(status_codes).items() if name.isupper() and isinstance(value, int)}


# ---------------------------------------------------------------- the statuses themselves

def test_the_readme_table_lists_every_status_by_name():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The command line"):]
    section = section[:section.index("\n## ")]
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", section, re.MULTILINE)
    assert {name: int(value) for value, name in rows} == statuses()
    assert len(rows) == len(statuses())


def test_the_statuses_are_distinct_and_keep_their_numbers():
    assert len(set(statuses().values())) == len(statuses())
    assert (SUCCESS, CHECK_FAILED, USER_ERROR, TOOL_ERROR) == (0, 1, 2, 3)


def test_the_commands_return_named_statuses_only():
    bare = re.compile(r"\breturn (\d+|.* else \d+)\b|\bexit\(\d|SystemExit\(\d")
    for path in sorted((ROOT / "stacks" / "cli").glob("*.py")):
        if path.name == "status_codes.py":
            continue
        found = [line.strip() for line in path.read_text().splitlines() if bare.search(line)]
        assert not found, (path.name, found)
