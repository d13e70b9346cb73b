"""Load environment files into `Environment`, with errors in the file's terms.

Every failure becomes one `ConfigError` line: `<file>: <field>: <what is
wrong and what is allowed>`. Nothing here imports cdktf, so bad input is
rejected in well under a second.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from infra.rules import quoted
from stacks.config.fields import PATTERN_HELP
from stacks.config.schema import Environment
from stacks.errors import ConfigError
from stacks.inputs import YAML_MAX_BYTES, read_bounded, yaml_shape_problem

# The kit's shipped environment files: examples (`llmstacks init --example`) and, in the kit's own
# repository, its environments. Never a default: commands find a project's own (stacks.config.project).
ENVIRONMENTS_DIR = Path(__file__).resolve().parents[1] / "environments"
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {quoted(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """An environment file's mapping: at most 1 MiB, 32 levels deep and 100,000 values with
    aliases expanded (`stacks.inputs`), so no file can make the loader hang or blow up."""
    try:
        text = read_bounded(path, YAML_MAX_BYTES, "an environment file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        if problem := yaml_shape_problem(text, _UniqueKeyLoader):
            raise ConfigError(path, "", problem)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, "", f"invalid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            path, "", f"invalid YAML: character {exc.character!r} at position {exc.position} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"invalid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        raise ConfigError(
            path, "", "the file is empty; expected a mapping with name, aws, state, cluster, node_pools, writer"
        )
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a mapping at the top level, found a {_yaml_type(data)}")
    return data


def parse_environment(data: dict[str, Any], path: Path | str) -> Environment:
    """The file's content as an `Environment` (structure and per-value rules; cross-field
    checks and planning follow in `stacks.planning.plan_environment`)."""
    try:
        return Environment.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        raise ConfigError(path, field_path(first["loc"]), _message(first), more=len(errors) - 1) from None


def load_environment(path: Path | str) -> Environment:
    path = Path(path)
    env = parse_environment(read_yaml(path), path)
    if path.suffix in (".yaml", ".yml") and env.name != path.stem:
        raise ConfigError(path, "name", f"{env.name!r} does not match the file name; name the file {env.name}.yaml")
    return env


def environment_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def find_environment(name: str, directory: Path) -> Path:
    files = environment_files(directory)
    for path in files:
        if path.stem == name:
            return path
    known = ", ".join(p.stem for p in files) or "none"
    raise ConfigError(directory, "--env", f"no environment {quoted(name)} (known: {known})")


def select_environments(names: list[str], files: list[str], directory: Path) -> tuple[list[Path], bool]:
    """The environment files named (`names` in `directory`, plus `files`); with none named, every
    file in `directory`. Also returns whether that is all of them."""
    paths = [find_environment(name, directory) for name in names] + [Path(p) for p in files]
    if paths:
        return paths, False
    paths = environment_files(directory)
    if not paths:
        raise ConfigError(directory, "", "no environment files (*.yaml) in this folder")
    return paths, True


def shipped_examples() -> dict[str, Path]:
    """Name -> file of every environment file the kit ships (`llmstacks init --example NAME`)."""
    return {p.stem: p for p in [*environment_files(ENVIRONMENTS_DIR), *environment_files(EXAMPLES_DIR)]}


def field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{quoted(part, 40)}]"
    return out


def _message(error: dict[str, Any]) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1])
        return f"unknown key{'; allowed: ' + ', '.join(allowed) if allowed else ''}"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = error["ctx"]["pattern"]
        return f"{quoted(error['input'])} is not valid: expected {PATTERN_HELP.get(pattern, 'a value matching ' + pattern)}"
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "model_type":
        return f"expected a mapping, found a {_yaml_type(error['input'])}"
    if kind == "list_type":
        return f"expected a list, found a {_yaml_type(error['input'])}"
    if kind == "dict_type":
        return f"expected a mapping, found a {_yaml_type(error['input'])}"
    return (
        f"{msg} (got {quoted(error['input'])})"
        if "input" in error and not isinstance(error["input"], (dict, list))
        else msg
    )


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping at `loc` accepts, by walking the schema's annotations."""
    model: Any = Environment
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _inner_model(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if _is_model(model) else []


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if _is_model(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    if isinstance(annotation, types.UnionType):
        for arg in annotation.__args__:
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _yaml_type(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )
