"""Input rules for AWS, EKS and Kubernetes values, each written once as a plain function.

A `*_problem` function returns why a value is not allowed, or None. The
constructs call them through `require` (a ValueError naming the prop); the
environment schema calls the same functions, so a bad value in an
environment file is reported with its file and field before anything is
built. Values Terraform resolves at plan time (cdktf tokens) cannot be
checked at synth time and pass. Nothing here imports cdktf.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from app.spec import SECRET_NAME_PATTERN
from infra.catalog import REGIONS

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
CPU_AMI_TYPES = ("AL2023_x86_64_STANDARD", "AL2023_ARM_64_STANDARD", "BOTTLEROCKET_x86_64", "BOTTLEROCKET_ARM_64")
GPU_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA", "BOTTLEROCKET_ARM_64_NVIDIA")
# The values CloudWatch Logs accepts for retention_in_days (0 would mean "never expire").
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
MIN_ROOT_VOLUME_GIB = 20
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"

_ACCOUNT_ID = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_LIKE = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_CLUSTER_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
_EKS_VERSION = re.compile(r"1\.\d{2}")
_NODE_GROUP_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,62}")
_SUBNET = re.compile(r"subnet-[0-9a-f]{8,17}")
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")
# A namespace is a DNS label; a service account a DNS subdomain.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SERVICE_ACCOUNT = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# repo:<owner>/<repo>:<context>. Neither the owner nor the repository may be a
# wildcard, and the context must name one branch, tag, environment or pull_request.
_GITHUB_SUBJECT = re.compile(
    r"repo:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+:"
    r"(ref:refs/(heads|tags)/[A-Za-z0-9_./-]+|environment:[A-Za-z0-9_. -]+|pull_request)"
)
# With the explicit opt-in, the context (only) may use IAM's StringLike wildcards.
_GITHUB_SUBJECT_WILDCARD_CONTEXT = re.compile(r"repo:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+:[A-Za-z0-9_./ :*?-]+")
_SECRET_NAME = re.compile(SECRET_NAME_PATTERN.removeprefix("^").removesuffix("$"))
_KMS_ALIAS = re.compile(r"[A-Za-z0-9/_-]{1,250}")
_KMS_KEY_ARN = r"kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,64}"
_ROLE_ARN = r"iam::\d{12}:role/[\w+=,.@/-]{1,512}"
# EKS access entries take IAM roles and users (not assumed-role sessions).
_PRINCIPAL_ARN = r"iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}"


def quoted(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters with the full length said: safe to put in a one-line message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    length = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[:limit]}... ({length})"


def require(prop: str, problem: str | None) -> None:
    """Raise the ValueError a construct gives for a bad prop: `<prop>: <problem>`."""
    if problem:
        raise ValueError(f"{prop}: {problem}")


def is_token(value: str) -> bool:
    """A value Terraform resolves at plan time (a cdktf token or an interpolation).

    cdktf encodes string tokens as `${TfToken[...]}` and list elements as `#{TfToken[...]}`.
    """
    return "${" in value or "#{" in value


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    # fullmatch: `$` alone would accept a trailing newline.
    return isinstance(value, str) and pattern.fullmatch(value) is not None


# --- AWS: accounts, partitions, regions, ARNs, names ------------------------------------


def partition_problem(partition: str) -> str | None:
    if partition not in PARTITIONS:
        return f"{quoted(partition)}: use one of {', '.join(PARTITIONS)}"
    return None


def region_problem(region: str, partition: str | None = None) -> str | None:
    """A region name in form and, when the catalog knows it, in `partition`."""
    if is_token(region):
        return None
    if not _matches(_REGION, region):
        return f"{quoted(region)} is not an AWS region name such as 'us-west-2'"
    if partition is not None and region in REGIONS and REGIONS[region] != partition:
        return f"{quoted(region)} is in partition {REGIONS[region]!r}, not partition {quoted(partition)}"
    return None


def availability_zone_problem(zone: str, region: str) -> str | None:
    """An availability zone name of `region` (us-west-2a), not a zone id (usw2-az1)."""
    if not re.fullmatch(re.escape(region) + r"[a-z]", zone):
        return f"{quoted(zone)} is not an availability zone of {quoted(region)} (such as {region}a)"
    return None


def known_region_problem(region: str) -> str | None:
    """A region the catalog knows (its partition decides every ARN)."""
    if region not in REGIONS:
        return f"unknown AWS region {quoted(region)}"
    return None


def account_id_problem(account_id: str) -> str | None:
    if not is_token(account_id) and not _matches(_ACCOUNT_ID, account_id):
        return f"{quoted(account_id)} must be a 12-digit AWS account id"
    return None


def arn_problem(arn: str, partition: str | None, pattern: str, what: str) -> str | None:
    """A literal ARN matches `pattern` after `arn:<partition>:` (any partition when None); tokens pass."""
    if is_token(arn):
        return None
    partitions = PARTITIONS if partition is None else (partition,)
    if not isinstance(arn, str) or not any(re.fullmatch(rf"arn:{re.escape(p)}:{pattern}", arn) for p in partitions):
        where = f" in partition {quoted(partition)}" if partition else ""
        return f"{quoted(arn)} is not {what}{where}"
    return None


def kms_key_arn_problem(arn: str, partition: str | None = None) -> str | None:
    # A key ARN, not an alias: IAM grants on an alias ARN do not cover the key.
    return arn_problem(arn, partition, _KMS_KEY_ARN, "a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>)")


def role_arn_problem(arn: str, partition: str | None = None) -> str | None:
    return arn_problem(arn, partition, _ROLE_ARN, "an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)")


def principal_arn_problem(arn: str, partition: str | None = None) -> str | None:
    return arn_problem(arn, partition, _PRINCIPAL_ARN, "an IAM role or user ARN")


def role_name_problem(name: str) -> str | None:
    if not _matches(_ROLE_NAME, name):
        return f"{quoted(name)} is not a valid IAM role name (1-64 of letters, digits, +=,.@_-)"
    return None


def bucket_name_problem(name: str) -> str | None:
    """Why S3 would reject `name` as a general purpose bucket name."""
    if not isinstance(name, str) or not 3 <= len(name) <= 63:
        return f"bucket name {quoted(name)} is {len(name) if isinstance(name, str) else 0} characters; S3 allows 3 to 63"
    if not _matches(_BUCKET, name):
        return (f"bucket name {quoted(name)} may use only lowercase letters, digits, '.' and '-', "
                "and must start and end with a letter or digit")
    if ".." in name or ".-" in name or "-." in name:
        return f"bucket name {quoted(name)} has adjacent '.'/'-' characters"
    if _matches(_IP_LIKE, name):
        return f"bucket name {quoted(name)} looks like an IP address"
    for prefix in _BUCKET_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"bucket name {quoted(name)} starts with the reserved prefix {prefix!r}"
    for suffix in _BUCKET_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"bucket name {quoted(name)} ends with the reserved suffix {suffix!r}"
    return None


def kms_alias_problem(alias: str) -> str | None:
    if alias.startswith("alias/"):
        return f"{quoted(alias)}: give the name without 'alias/' (it is added for you)"
    if alias.startswith("aws/") or not _matches(_KMS_ALIAS, alias):
        return f"{quoted(alias)}: use letters, digits, '/', '_' and '-', not starting with 'aws/' (reserved for AWS managed keys)"
    return None


def secret_name_problem(name: str) -> str | None:
    if not _matches(_SECRET_NAME, name):
        return f"{quoted(name)} is not a Secrets Manager secret name (1-512 of letters, digits and /_+=.@-)"
    return None


def github_subject_problem(subject: str, *, allow_context_wildcards: bool = False) -> str | None:
    """A GitHub Actions OIDC subject for one repository and one branch, tag, environment or PR context.

    `allow_context_wildcards` (an explicit opt-in) lets the context use `*` and `?`
    (`repo:org/repo:ref:refs/tags/v*`); the owner and repository never may.
    """
    if _matches(_GITHUB_SUBJECT, subject):
        return None
    if allow_context_wildcards and _matches(_GITHUB_SUBJECT_WILDCARD_CONTEXT, subject):
        return None
    if allow_context_wildcards:
        return (f"{quoted(subject)} must name one repository, with no wildcard in its owner or name, and a context, "
                "e.g. 'repo:org/repo:ref:refs/tags/v*'")
    return (f"{quoted(subject)} must name one repository and one context, e.g. 'repo:org/repo:ref:refs/heads/main' "
            "or 'repo:org/repo:environment:prod' (no wildcards: they would let other repositories or branches in; "
            "wildcards in the context need writer.allow_context_wildcards)")


def subnet_id_problem(subnet: str) -> str | None:
    if not is_token(subnet) and not _matches(_SUBNET, subnet):
        return f"{quoted(subnet)} is not a subnet id, e.g. subnet-0123456789abcdef0"
    return None


def cidr_problem(cidr: str) -> str | None:
    try:
        ipaddress.ip_network(cidr)
    except (ValueError, TypeError):
        return f"{quoted(cidr)} is not a CIDR block such as 203.0.113.0/24"
    return None


# --- EKS ----------------------------------------------------------------------------


def cluster_name_problem(name: str) -> str | None:
    if not _matches(_CLUSTER_NAME, name):
        return f"{quoted(name)} is not an EKS cluster name (1-100 letters, digits, '-' and '_', starting with a letter or digit)"
    return None


def eks_version_problem(version: str) -> str | None:
    if not _matches(_EKS_VERSION, version):
        return f"{quoted(version)}: give a Kubernetes minor version in quotes, such as \"1.33\""
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
    if not _matches(_NODE_GROUP_NAME, name):
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


# --- Kubernetes -------------------------------------------------------------------------


def label_key_problem(key: str) -> str | None:
    if not _matches(_LABEL_KEY, key):
        return f"{quoted(key)} is not a Kubernetes label key, e.g. example.com/team"
    return None


def label_value_problem(value: str) -> str | None:
    if not _matches(_LABEL_VALUE, value):
        return f"{quoted(value)} is not a Kubernetes label value (up to 63 letters, digits, '-', '_' or '.')"
    return None


def labels_problem(labels: Mapping[str, str]) -> str | None:
    for key, value in labels.items():
        if problem := label_key_problem(key) or label_value_problem(value):
            return problem
    return None


def taint_effect_problem(effect: str) -> str | None:
    if effect not in TAINT_EFFECTS:
        return f"{quoted(effect)}: use one of {', '.join(TAINT_EFFECTS)}"
    return None


def namespace_problem(namespace: str) -> str | None:
    if not _matches(_NAMESPACE, namespace):
        return f"{quoted(namespace)} is not a Kubernetes namespace name (a lowercase DNS label)"
    return None


def service_account_problem(name: str) -> str | None:
    if not _matches(_SERVICE_ACCOUNT, name):
        return f"{quoted(name)} is not a Kubernetes service account name (a lowercase DNS subdomain)"
    return None


# --- Node autoscaling and serving operators -----------------------------------------

# Cluster Autoscaler's expanders that need no extra configuration (`priority` needs a ConfigMap
# ranking the groups; `price` is not implemented for AWS).
AUTOSCALER_EXPANDERS = ("least-waste", "most-pods", "random")
# Auto Scaling group tags: keys up to 128 characters (AWS Auto Scaling API, Tag).
ASG_TAG_KEY_LIMIT = 128
# The ids Anyscale gives: `anyscale cloud register` prints the cloud deployment id (cldrsrc_...),
# the console shows the organization id (org_...).
_CLOUD_DEPLOYMENT_ID = re.compile(r"cldrsrc_[A-Za-z0-9]{1,64}")
_ORGANIZATION_ID = re.compile(r"org_[A-Za-z0-9]{1,64}")
# A key of the operator's instance-types ConfigMap entry, e.g. g6.2xlarge or 8CPU-32GB.
_INSTANCE_TYPE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


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
    seen: set[str] = set()
    for key in taint_keys:
        if key in seen:
            return (f"taint {quoted(key)} appears with two effects; Cluster Autoscaler's node template "
                    "holds one taint per key")
        seen.add(key)
    return None


def cloud_deployment_id_problem(value: str) -> str | None:
    if not _matches(_CLOUD_DEPLOYMENT_ID, value):
        return (f"{quoted(value)} is not an Anyscale cloud deployment id (cldrsrc_..., printed by "
                "`anyscale cloud register`, or `anyscale cloud config get --name <cloud>`)")
    return None


def organization_id_problem(value: str) -> str | None:
    if not _matches(_ORGANIZATION_ID, value):
        return f"{quoted(value)} is not an Anyscale organization id (org_..., shown in the Anyscale console)"
    return None


def instance_type_name_problem(name: str) -> str | None:
    if not _matches(_INSTANCE_TYPE_NAME, name):
        return f"{quoted(name)}: 1-64 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
    return None


def ingress_class_problem(name: str) -> str | None:
    if not _matches(_SERVICE_ACCOUNT, name):  # an object name: a DNS subdomain
        return f"{quoted(name)} is not an IngressClass name (a lowercase DNS subdomain)"
    return None


def watch_namespaces_problem(namespaces: Sequence[str]) -> str | None:
    """At least one namespace, each a DNS label, none twice."""
    if not namespaces:
        return "list at least one namespace (the operator then watches only those)"
    if len(set(namespaces)) != len(namespaces):
        return f"{', '.join(sorted({n for n in namespaces if list(namespaces).count(n) > 1}))} appears twice"
    for namespace in namespaces:
        if problem := namespace_problem(namespace):
            return problem
    return None
