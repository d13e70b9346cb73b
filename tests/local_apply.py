"""Apply part of a synthesized stack to the local AWS: the resources under some construct paths."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from stacks.errors import ToolError


def only(tf: dict, kept: tuple[str, ...], left_out: tuple[str, ...] = ()) -> dict:
    """`tf` with only the resources whose construct path (below the stack) starts with one of `kept`,
    none of the kinds in `left_out`, and no outputs."""
    subset = copy.deepcopy(tf)
    subset["resource"] = {
        kind: chosen
        for kind, items in tf["resource"].items()
        if kind not in left_out
        if (
            chosen := {
                name: b for name, b in items.items() if b["//"]["metadata"]["path"].split("/", 1)[1].startswith(kept)
            }
        )
    }
    subset.pop("output", None)
    return subset


def start(plan, subset: dict, root: Path):
    """A `LocalDeployment` of `subset` (not applied yet); a missing Terraform or provider mirror fails the test in one line."""
    from stacks.emulator.deploy import LocalDeployment

    (root / "subset.json").write_text(json.dumps(subset))
    try:
        return LocalDeployment.start(plan, root / "subset.json", root / "work")
    except ToolError as exc:
        pytest.fail(str(exc), pytrace=False)
