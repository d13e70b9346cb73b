"""The building blocks of the environment schema: strict models, value patterns with their
help text, and field types checked by the constructs' own rules (`infra.rules`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

# Strict is the app contract's base: the file's values are checked by the same regex engine as the
# app's args they become, so nothing the file passes can fail the app's check at synth. `rule` makes a
# field validator of an `infra.rules` (or `app.spec`) function.
from app.spec import HF_ID_PATTERN, MODEL_ID_PATTERN, SERVER_CLS_PATTERN, rule
from app.spec import Strict as Strict  # the schema's base is the contract's (re-exported)
from infra import rules

# Kubernetes-safe DNS label; also safe in S3 keys, IAM names and Ray model ids.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
# AWS tag syntax; the "aws:" prefix is reserved (TagKey). Lengths are the types' max_length: a Unicode
# class repeated 256 times compiles past the Rust engine's size limit.
TAG_KEY_PATTERN = r"^[\w .:/=+\-@]+$"
TAG_VALUE_PATTERN = r"^[\w .:/=+\-@]*$"
PREFIX_PATTERN = r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$"
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"
# An engine setting's name, as vLLM's EngineArgs spell them.
ENGINE_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# Caps on what a free-form field may hold (YAML itself is capped in stacks.inputs).
MAX_FREE_KEYS, MAX_FREE_VALUES, MAX_FREE_DEPTH, MAX_FREE_STRING = 64, 1_000, 8, 4_096
MAX_LABELS = 32
# A request router: one Ray ships by name, or a class of your own.
ROUTING_PATTERN = rf"^(prefix_aware|power_of_two|{SERVER_CLS_PATTERN[1:-1]})$"

# What each pattern means, for error messages.
PATTERN_HELP = {
    NAME_PATTERN: "lowercase letters, digits and '-', 1-32 characters, starting and ending with a letter or digit",
    MODEL_ID_PATTERN: "letters, digits, '.', '_' and '-', 1-63 characters, starting with a letter or digit (no ':' or '/')",
    PREFIX_PATTERN: "lowercase letters, digits and '-', 2-20 characters, starting with a letter",
    HF_ID_PATTERN: "a Hugging Face repository id, e.g. meta-llama/Llama-3.1-8B-Instruct",
    INSTANCE_TYPE_PATTERN: "an EC2 instance type, e.g. g6e.xlarge",
    TAG_KEY_PATTERN: "an AWS tag key: up to 128 letters, digits, spaces and _.:/=+-@, not starting with 'aws:'",
    TAG_VALUE_PATTERN: "an AWS tag value: up to 256 letters, digits, spaces and _.:/=+-@",
    ROUTING_PATTERN: "prefix_aware, power_of_two or a router class as module:Class",
    SERVER_CLS_PATTERN: "a class as module:Class, importable on the cluster",
    ENGINE_KEY_PATTERN: "a vLLM engine setting: lowercase letters, digits and '_', e.g. enable_prefix_caching",
}


def _no_number(value: Any) -> Any:
    # YAML reads 012345678901 as a number and drops the leading zero.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("quote the account id (YAML reads an unquoted one as a number)")
    return value


def _printable(value: str) -> str:
    # Free-form strings end up in specs and messages: no newlines or control characters.
    if not value.isprintable():
        raise ValueError(f"{rules.quoted(value)} has a newline or other control character")
    return value


def _unreserved_tag_key(key: str) -> str:
    # AWS reserves the prefix in any case (aws:, AWS:, Aws:) for the tags it sets itself.
    if key[:4].lower() == "aws:":
        raise ValueError(f"{rules.quoted(key)} starts with 'aws:', which AWS reserves for its own tags")
    return key


def _json_like(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A free-form value (engine settings): JSON types, at most 8 levels, 1,000 values, 4 KiB strings."""
    budget = [MAX_FREE_VALUES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"more than {MAX_FREE_VALUES:,} values")
    if depth > MAX_FREE_DEPTH:
        raise ValueError(f"nested more than {MAX_FREE_DEPTH} levels deep")
    if isinstance(value, str):
        if len(value) > MAX_FREE_STRING:
            raise ValueError(f"a string of {len(value):,} characters; at most {MAX_FREE_STRING:,}")
    elif isinstance(value, list):
        for item in value:
            _json_like(item, depth + 1, budget)
    elif isinstance(value, dict):
        for key, item in value.items():
            _json_like(key, depth + 1, budget)
            _json_like(item, depth + 1, budget)
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise ValueError(f"a {type(value).__name__}; use strings, numbers, booleans, lists and mappings")
    return value


def max_items(limit: int) -> BeforeValidator:
    """A hard cap on a free-form mapping or list, checked before its items are."""

    def check(value: Any) -> Any:
        if isinstance(value, (dict, list)) and len(value) > limit:
            raise ValueError(f"{len(value):,} entries; at most {limit}")
        return value

    return BeforeValidator(check)


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
# A free-form string (an image, a cloud or project name, a path): printable, bounded.
Text = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_printable)]
JsonLike = Annotated[Any, AfterValidator(_json_like)]
TagKey = Annotated[str, Field(max_length=128, pattern=TAG_KEY_PATTERN), AfterValidator(_unreserved_tag_key)]
TagValue = Annotated[str, Field(max_length=256, pattern=TAG_VALUE_PATTERN)]
Region = Annotated[str, rule(rules.known_region_problem)]
AccountId = Annotated[str, BeforeValidator(_no_number), rule(rules.account_id_problem)]
ClusterName = Annotated[str, rule(rules.cluster_name_problem)]
SubnetId = Annotated[str, rule(rules.subnet_id_problem)]
# ARNs are checked in form here and against the environment's partition in `checks`.
RoleArn = Annotated[str, rule(rules.role_arn_problem)]
PrincipalArn = Annotated[str, rule(rules.principal_arn_problem)]
KmsKeyArn = Annotated[str, rule(rules.kms_key_arn_problem)]
LabelKey = Annotated[str, rule(rules.label_key_problem)]
LabelValue = Annotated[str, rule(rules.label_value_problem)]
