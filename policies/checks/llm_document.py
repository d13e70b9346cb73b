"""What the llm-serving-stacks checks share: the whole synthesized stack a resource is in.

checkov hands a check one resource; rules such as "every bucket has versioning"
or "the serving role cannot write" need the resources around it. The gate sets
LLMSTACKS_POLICY_ROOT to the directory checkov scans, and a check reads the
stack's cdk.tf.json from there (as raw JSON, once per file).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT_ENV = "LLMSTACKS_POLICY_ROOT"
TAG_PREFIX = "llm-serving-stacks:"
IDENTITY_TAG = f"{TAG_PREFIX}identity"
ENVIRONMENT_TAG = f"{TAG_PREFIX}environment"
# What a bucket holds when it is not model data: "access-logs", "anyscale-storage".
PURPOSE_TAG = f"{TAG_PREFIX}purpose"
PRODUCTION_NAMES = ("prod", "production")
_REFERENCE = re.compile(r"^\$\{([a-z0-9_]+)\.([^.}]+)\.[a-z_]+\}$")


class Entity:
    """One resource (or the provider) of a synthesized stack, with its whole document."""

    def __init__(self, entity_path: str):
        file, self.type, self.name = entity_path.rsplit(":", 2)
        self.document = _load(str(_locate(file)))

    @property
    def body(self) -> dict[str, Any]:
        return self.resources(self.type).get(self.name, {})

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return self.document.get("resource", {}).get(type_, {})

    def buckets_for(self, purpose: str) -> set[str]:
        """Names of the stack's buckets tagged with `purpose`."""
        return {
            b["bucket"]
            for b in self.resources("aws_s3_bucket").values()
            if isinstance(b.get("bucket"), str) and (b.get("tags") or {}).get(PURPOSE_TAG) == purpose
        }

    def referencing(self, type_: str, attribute: str = "bucket") -> list[dict[str, Any]]:
        """Resources of `type_` whose `attribute` refers to this resource (e.g. a bucket's versioning)."""
        return [
            body for body in self.resources(type_).values() if reference(body.get(attribute)) == (self.type, self.name)
        ]

    def resolve(self, value: Any) -> dict[str, Any] | None:
        """The resource a "${type.name.attr}" reference points at."""
        target = reference(value)
        return self.resources(target[0]).get(target[1]) if target else None

    @property
    def provider(self) -> dict[str, Any]:
        providers = self.document.get("provider", {}).get("aws", [{}])
        return providers[0] if isinstance(providers, list) else providers

    @property
    def environment(self) -> str | None:
        for block in self.provider.get("default_tags", []):
            if ENVIRONMENT_TAG in block.get("tags", {}):
                return block["tags"][ENVIRONMENT_TAG]
        return None

    @property
    def is_production(self) -> bool:
        env = (self.environment or "").lower()
        return env in PRODUCTION_NAMES or env.startswith(tuple(f"{n}-" for n in PRODUCTION_NAMES))


def reference(value: Any) -> tuple[str, str] | None:
    match = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
    return (match.group(1), match.group(2)) if match else None


def statements(policy: Any) -> list[dict[str, Any]]:
    """The statements of a policy given as a JSON string (a reference or data source: none)."""
    try:
        document = json.loads(policy) if isinstance(policy, str) else policy
    except ValueError:
        return []
    found = document.get("Statement", []) if isinstance(document, dict) else []
    return [found] if isinstance(found, dict) else list(found)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _locate(file: str) -> Path:
    relative = file.lstrip("/")
    for candidate in (Path(os.environ.get(ROOT_ENV, ".")) / relative, Path(file), Path.cwd() / relative):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"{file}: not found under ${ROOT_ENV} ({os.environ.get(ROOT_ENV)!r}) or the working directory"
    )


@lru_cache(maxsize=64)
def _load(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
