"""What the kit is built from: this checkout's files and pyproject's version."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "infra", "policies", "stacks")


def pyproject_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def git_files(*pathspecs: str, untracked: bool = False) -> list[str]:
    """Files git tracks, and with `untracked` those it would (not ignored); only those that exist:
    a change in progress may have deleted one."""
    others = ["--others", "--exclude-standard"] if untracked else []
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", *others, "--", *pathspecs], cwd=REPO, capture_output=True, check=True
    ).stdout
    return sorted(f for f in out.decode().split("\0") if f and (REPO / f).is_file())
