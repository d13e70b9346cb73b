"""Where a project's files are: the project is the nearest directory upward holding `cdktf.json`
(as the cdktf CLI finds it).

- Environments: the folder `cdktf.json` names in `context.environments` (default `environments/`).
  The kit's shipped examples are never picked up implicitly: outside a project, a command that
  needs environments says so and suggests `llmstacks init`.
- The team's own policies: `policies/` (the gate's `project_policies` says what is read there).
- The kit version the project pins: `requirements.txt`, `llm-serving-stacks==<version>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stacks.errors import ConfigError
from stacks.inputs import KIB, loads_json, read_bounded

PROJECT_FILE = "cdktf.json"
DEFAULT_ENVIRONMENTS = "environments"
DEFAULT_OUTPUT = "cdktf.out"
PIN_FILE = "requirements.txt"
_MAX_BYTES = 64 * KIB
# `llm-serving-stacks==1.2.3` (any extras, spaces or comment); names compare normalized (PEP 503).
_PIN = re.compile(
    r"^\s*llm[-_.]serving[-_.]stacks\s*(?:\[[^\]]*\])?\s*==\s*([A-Za-z0-9.+!-]+)\s*(?:#.*)?$",
    re.IGNORECASE | re.MULTILINE,
)
NOT_A_PROJECT = (
    f"not in an llm-serving-stacks project (no {PROJECT_FILE} here or in any parent directory); "
    "start one with `llmstacks init`"
)


@dataclass(frozen=True)
class Project:
    root: Path
    environments: Path
    output: Path


def locate_project(start: Path | None = None) -> Project | None:
    """The project holding `start` (default: the working directory), or None outside one."""
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / PROJECT_FILE).is_file():
            return load_project(directory)
    return None


def find_project(start: Path | None = None) -> Project:
    """The project holding `start`; outside one, the one-line error that suggests `llmstacks init`."""
    project = locate_project(start)
    if project is None:
        raise ConfigError(Path(start or Path.cwd()).resolve(), "", NOT_A_PROJECT)
    return project


def load_project(root: Path) -> Project:
    path = root / PROJECT_FILE
    try:
        data = loads_json(read_bounded(path, _MAX_BYTES, "cdktf.json").decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", "expected a JSON object")
    context = data.get("context", {})
    if not isinstance(context, dict):
        raise ConfigError(path, "context", "expected an object")
    return Project(
        root=root,
        environments=_inside(root, path, "context.environments", context.get("environments", DEFAULT_ENVIRONMENTS)),
        output=_inside(root, path, "output", data.get("output", DEFAULT_OUTPUT)),
    )


def _inside(root: Path, path: Path, field: str, value: object) -> Path:
    """A folder of the project, named relative to its root (a file there cannot point elsewhere)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, field, 'expected a folder name relative to the project, e.g. "environments"')
    relative = PurePosixPath(value)
    if relative.is_absolute() or ".." in relative.parts or "\\" in value or "\0" in value:
        raise ConfigError(path, field, f"{value[:60]!r} must be a folder inside the project (relative, without ..)")
    return root / relative


def kit_pin(text: str) -> str | None:
    """The kit version a requirements file pins (`llm-serving-stacks==X`), if any."""
    found = _PIN.search(text)
    return found.group(1) if found else None
