"""EKS values: clusters, versions, subnets and endpoints, control plane logs, node groups (names,
AMI and capacity types, sizes, root volumes), and Cluster Autoscaler's settings and tags."""

from __future__ import annotations

import re
from collections.abc import Sequence

from infra.rules.problems import is_token, matches, quoted, repeated

CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
CPU_AMI_TYPES = ("AL2023_x86_64_STANDARD", "AL2023_ARM_64_STANDARD", "BOTTLEROCKET_x86_64", "BOTTLEROCKET_ARM_64")
GPU_AMI_TYPES = (
    "AL2023_x86_64_NVIDIA",
    "AL2023_ARM_64_NVIDIA",
    "BOTTLEROCKET_x86_64_NVIDIA",
    "BOTTLEROCKET_ARM_64_NVIDIA",
)
# The values CloudWatch Logs accepts for retention_in_days (0 would mean "never expire").
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
MIN_ROOT_VOLUME_GIB = 20
# Cluster Autoscaler's expanders that need no extra configuration (`priority` needs a ConfigMap
# ranking the groups; `price` is not implemented for AWS).
AUTOSCALER_EXPANDERS = ("least-waste", "most-pods", "random")
# Auto Scaling group tags: keys up to 128 characters (AWS Auto Scaling API, Tag).
ASG_TAG_KEY_LIMIT = 128

_CLUSTER_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
_EKS_VERSION = re.compile(r"1\.\d{2}")
_NODE_GROUP_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,62}")
# A key of the operator's instance-types ConfigMap entry, e.g. g6.2xlarge or 8CPU-32GB.
_INSTANCE_TYPE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


def cluster_name_problem(name: str) -> str | None:
    if not matches(_CLUSTER_NAME, name):
        return f"{quoted(name)} is not an EKS cluster name (1-100 letters, digits, '-' and '_', starting with a letter or digit)"
    return None


def eks_version_problem(version: str) -> str | None:
    if not matches(_EKS_VERSION, version):
        return f'{quoted(version)}: give a Kubernetes minor version in quotes, such as "1.33"'
    return None


def cluster_subnets_problem(subnet_ids: Sequence[str]) -> str | None:
    # A token list (subnets from another resource) cannot be counted at synth time.
    if len(subnet_ids) < 2 and not any(is_token(s) for s in subnet_ids):
        return "EKS needs subnets in at least two availability zones"
    return None


def public_endpoint_problem(endpoint_public_access: bool, public_access_cidrs: Sequence[str]) -> str | None:
    """Which networks may reach a public API endpoint must be listed; CIDRs without one are a mistake."""
    if endpoint_public_access and not public_access_cidrs:
        return "endpoint_public_access needs public_access_cidrs, the networks allowed to reach the API (0.0.0.0/0 only if listed)"
    if public_access_cidrs and not endpoint_public_access:
        return "public_access_cidrs apply only with endpoint_public_access: true"
    return None


def log_retention_problem(days: int) -> str | None:
    if days not in LOG_RETENTION_DAYS:
        return f"{days}: CloudWatch Logs allows {', '.join(map(str, LOG_RETENTION_DAYS))}"
    return None


def node_group_name_problem(name: str) -> str | None:
    if not matches(_NODE_GROUP_NAME, name):
        return f"{quoted(name)}: 1-63 letters, digits, '-' and '_', starting with a letter or digit"
    return None


def ami_type_problem(ami_type: str, *, gpu: bool) -> str | None:
    allowed = GPU_AMI_TYPES if gpu else CPU_AMI_TYPES
    if ami_type not in allowed:
        return f"{quoted(ami_type)} is not an AMI type for a {'GPU' if gpu else 'CPU'} pool; use one of {', '.join(allowed)}"
    return None


def capacity_type_problem(capacity_type: str) -> str | None:
    if capacity_type not in CAPACITY_TYPES:
        return f"{quoted(capacity_type)}: use {' or '.join(CAPACITY_TYPES)}"
    return None


def pool_size_problem(min_size: int, desired_size: int | None, max_size: int) -> str | None:
    desired = min_size if desired_size is None else desired_size
    if max_size < 1:
        return f"max_size {max_size} must be at least 1"
    if min_size < 0:
        return f"min_size {min_size} must be at least 0"
    if min_size > max_size:
        return f"min_size {min_size} is greater than max_size {max_size}"
    if not min_size <= desired <= max_size:
        return f"desired_size {desired} is outside min_size..max_size ({min_size}..{max_size})"
    return None


def root_volume_problem(gib: int) -> str | None:
    if gib < MIN_ROOT_VOLUME_GIB:
        return f"{gib} GiB: at least {MIN_ROOT_VOLUME_GIB}"
    return None


def instance_type_name_problem(name: str) -> str | None:
    if not matches(_INSTANCE_TYPE_NAME, name):
        return f"{quoted(name)}: 1-64 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
    return None


# --- Node autoscaling ---------------------------------------------------------------


def cluster_reference_problem(name: str) -> str | None:
    """A cluster name, or a reference to a created cluster's name (checked when Terraform resolves it)."""
    return None if is_token(name) else cluster_name_problem(name)


def expander_problem(expander: str) -> str | None:
    if expander not in AUTOSCALER_EXPANDERS:
        return f"{quoted(expander)}: use one of {', '.join(AUTOSCALER_EXPANDERS)}"
    return None


def minutes_problem(minutes: int, minimum: int = 1, maximum: int = 24 * 60) -> str | None:
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not minimum <= minutes <= maximum:
        return f"{quoted(minutes)}: give whole minutes from {minimum} to {maximum}"
    return None


def asg_tag_key_problem(key: str) -> str | None:
    """An Auto Scaling group tag key (tokens, such as a created cluster's name inside it, pass)."""
    if not is_token(key) and len(key) > ASG_TAG_KEY_LIMIT:
        return f"the Auto Scaling group tag {quoted(key)} is longer than {ASG_TAG_KEY_LIMIT} characters"
    return None


def node_template_taints_problem(taint_keys: Sequence[str]) -> str | None:
    """Cluster Autoscaler reads one node-template tag per taint key: a key may appear once."""
    if twice := repeated(taint_keys):
        return (
            f"taint {quoted(twice[0])} appears with two effects; Cluster Autoscaler's node template "
            "holds one taint per key"
        )
    return None
