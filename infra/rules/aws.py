"""AWS values: partitions, regions and zones, account ids, ARNs, IAM, S3, KMS and Secrets
Manager names, subnets, CIDR blocks and GitHub's OIDC subjects."""

from __future__ import annotations

import ipaddress
import re

# The region, bucket and secret name patterns are the serving app's contract (`app.spec`): the app
# checks its args with them on the cluster and imports nothing from infra, so they live there once
# and the rules read them from there.
from app.spec import BUCKET_PATTERN, REGION_PATTERN, SECRET_NAME_PATTERN
from infra.rules.problems import is_token, matches, quoted

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# Commercial, GovCloud and China regions, with their ARN partition.
REGIONS: dict[str, str] = {
    **{
        r: "aws"
        for r in (
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "af-south-1",
            "ap-east-1",
            "ap-east-2",
            "ap-south-1",
            "ap-south-2",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ap-southeast-4",
            "ap-southeast-5",
            "ap-southeast-6",
            "ap-southeast-7",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ca-central-1",
            "ca-west-1",
            "eu-central-1",
            "eu-central-2",
            "eu-north-1",
            "eu-south-1",
            "eu-south-2",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "il-central-1",
            "me-central-1",
            "me-south-1",
            "mx-central-1",
            "sa-east-1",
        )
    },
    "us-gov-east-1": "aws-us-gov",
    "us-gov-west-1": "aws-us-gov",
    "cn-north-1": "aws-cn",
    "cn-northwest-1": "aws-cn",
}

_ACCOUNT_ID = re.compile(r"\d{12}")
_REGION = re.compile(REGION_PATTERN)
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_BUCKET = re.compile(BUCKET_PATTERN)
_IP_LIKE = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_SUBNET = re.compile(r"subnet-[0-9a-f]{8,17}")
# repo:<owner>/<repo>:<context>. Neither the owner nor the repository may be a
# wildcard, and the context must name one branch, tag, environment or pull_request.
_GITHUB_SUBJECT = re.compile(
    r"repo:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+:"
    r"(ref:refs/(heads|tags)/[A-Za-z0-9_./-]+|environment:[A-Za-z0-9_. -]+|pull_request)"
)
# With the explicit opt-in, the context (only) may use IAM's StringLike wildcards.
_GITHUB_SUBJECT_WILDCARD_CONTEXT = re.compile(r"repo:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+:[A-Za-z0-9_./ :*?-]+")
_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)
_KMS_ALIAS = re.compile(r"[A-Za-z0-9/_-]{1,250}")
_KMS_KEY_ARN = r"kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,64}"
_ROLE_ARN = r"iam::\d{12}:role/[\w+=,.@/-]{1,512}"
# EKS access entries take IAM roles and users (not assumed-role sessions).
_PRINCIPAL_ARN = r"iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}"


def partition_problem(partition: str) -> str | None:
    if partition not in PARTITIONS:
        return f"{quoted(partition)}: use one of {', '.join(PARTITIONS)}"
    return None


def region_problem(region: str, partition: str | None = None) -> str | None:
    """A region name in form and, when the table knows it, in `partition`."""
    if is_token(region):
        return None
    if not matches(_REGION, region):
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
    """A region the table knows (its partition decides every ARN)."""
    if region not in REGIONS:
        return f"unknown AWS region {quoted(region)}"
    return None


def account_id_problem(account_id: str) -> str | None:
    if not is_token(account_id) and not matches(_ACCOUNT_ID, account_id):
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
    if not matches(_ROLE_NAME, name):
        return f"{quoted(name)} is not a valid IAM role name (1-64 of letters, digits, +=,.@_-)"
    return None


def bucket_name_problem(name: str) -> str | None:
    """Why S3 would reject `name` as a general purpose bucket name."""
    if not isinstance(name, str) or not 3 <= len(name) <= 63:
        return (
            f"bucket name {quoted(name)} is {len(name) if isinstance(name, str) else 0} characters; S3 allows 3 to 63"
        )
    if not matches(_BUCKET, name):
        return (
            f"bucket name {quoted(name)} may use only lowercase letters, digits, '.' and '-', "
            "and must start and end with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        return f"bucket name {quoted(name)} has adjacent '.'/'-' characters"
    if matches(_IP_LIKE, name):
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
    if alias.startswith("aws/") or not matches(_KMS_ALIAS, alias):
        return f"{quoted(alias)}: use letters, digits, '/', '_' and '-', not starting with 'aws/' (reserved for AWS managed keys)"
    return None


def secret_name_problem(name: str) -> str | None:
    if not matches(_SECRET_NAME, name):
        return f"{quoted(name)} is not a Secrets Manager secret name (1-512 of letters, digits and /_+=.@-)"
    return None


def github_subject_problem(subject: str, *, allow_context_wildcards: bool = False) -> str | None:
    """A GitHub Actions OIDC subject for one repository and one branch, tag, environment or PR context.

    `allow_context_wildcards` (an explicit opt-in) lets the context use `*` and `?`
    (`repo:org/repo:ref:refs/tags/v*`); the owner and repository never may.
    """
    if matches(_GITHUB_SUBJECT, subject):
        return None
    if allow_context_wildcards and matches(_GITHUB_SUBJECT_WILDCARD_CONTEXT, subject):
        return None
    if allow_context_wildcards:
        return (
            f"{quoted(subject)} must name one repository, with no wildcard in its owner or name, and a context, "
            "e.g. 'repo:org/repo:ref:refs/tags/v*'"
        )
    return (
        f"{quoted(subject)} must name one repository and one context, e.g. 'repo:org/repo:ref:refs/heads/main' "
        "or 'repo:org/repo:environment:prod' (no wildcards: they would let other repositories or branches in; "
        "wildcards in the context need writer.allow_context_wildcards)"
    )


def subnet_id_problem(subnet: str) -> str | None:
    if not is_token(subnet) and not matches(_SUBNET, subnet):
        return f"{quoted(subnet)} is not a subnet id, e.g. subnet-0123456789abcdef0"
    return None


def cidr_problem(cidr: str) -> str | None:
    try:
        ipaddress.ip_network(cidr)
    except (ValueError, TypeError):
        return f"{quoted(cidr)} is not a CIDR block such as 203.0.113.0/24"
    return None
