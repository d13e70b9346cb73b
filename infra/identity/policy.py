"""IAM policy documents as plain data, rendered to JSON strings at synth time.

Policy scanners cannot read a policy passed as `${data.aws_iam_policy_document...}`,
so every document here is a literal JSON string (tokens such as a created
key's ARN may appear inside it and resolve to interpolations).

ARNs carry the partition the caller passes, and service endpoints in China
end in `amazonaws.com.cn`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# What a bucket holds ("access-logs", "anyscale-storage"; data buckets have none): the policy
# checks (policies/checks) tell buckets apart by it.
PURPOSE_TAG = "llm-serving-stacks:purpose"

EFFECTS = ("Allow", "Deny")
_SID = re.compile(r"[A-Za-z0-9]*")


@dataclass(frozen=True)
class Statement:
    """One IAM policy statement. `principals` is only for resource and trust policies."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...] = ()
    effect: str = "Allow"
    conditions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    principals: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # Tuples, so the same grant made twice compares equal.
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "resources", tuple(self.resources))
        if not _SID.fullmatch(self.sid):
            raise ValueError(f"sid {self.sid!r}: IAM allows only letters and digits")
        if not self.actions:
            raise ValueError(f"actions: statement {self.sid!r} has none")
        if self.effect not in EFFECTS:
            raise ValueError(f"effect {self.effect!r}: use Allow or Deny")

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Sid": self.sid, "Effect": self.effect}
        if self.principals:
            out["Principal"] = dict(self.principals)
        out["Action"] = list(self.actions)
        if self.resources:
            out["Resource"] = list(self.resources)
        if self.conditions:
            out["Condition"] = {op: dict(values) for op, values in self.conditions.items()}
        return out


def policy_document(statements: Sequence[Statement]) -> str:
    """`{"Version": "2012-10-17", "Statement": [...]}` as a deterministic JSON string."""
    return json.dumps({"Version": "2012-10-17", "Statement": [s.to_json_dict() for s in statements]}, sort_keys=True)


def tls_only_statements(bucket_arn: str) -> list[Statement]:
    """A bucket policy's denies of plain HTTP and of TLS older than 1.2, for everyone."""
    resources = (bucket_arn, f"{bucket_arn}/*")
    return [
        Statement(
            "DenyInsecureTransport",
            ("s3:*",),
            resources,
            effect="Deny",
            principals={"AWS": "*"},
            conditions={"Bool": {"aws:SecureTransport": "false"}},
        ),
        Statement(
            "DenyOutdatedTls",
            ("s3:*",),
            resources,
            effect="Deny",
            principals={"AWS": "*"},
            conditions={"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        ),
    ]


# The request headers S3 exposes as condition keys of s3:PutObject (S3 User Guide, "Using
# server-side encryption with AWS KMS keys", "Requiring server-side encryption").
SSE_HEADER = "s3:x-amz-server-side-encryption"
SSE_KMS_KEY_HEADER = "s3:x-amz-server-side-encryption-aws-kms-key-id"
SSE_CUSTOMER_HEADER = "s3:x-amz-server-side-encryption-customer-algorithm"


def kms_upload_statements(bucket_arn: str, kms_key_arn: str) -> list[Statement]:
    """A bucket policy's denies of every upload not encrypted with SSE-KMS under `kms_key_arn`, for everyone.

    An upload that names no encryption gets the bucket's default (SSE-KMS with this key), so it is
    allowed, as is one naming `aws:kms` and this key by its ARN. Anything else is denied: SSE-S3 or
    DSSE-KMS; another key (or this one by key id or alias: the condition compares the ARN);
    `aws:kms` naming no key (S3 then uses the AWS managed key `aws/s3`, not the bucket's); a
    customer-provided key (SSE-C). CreateMultipartUpload is authorized as s3:PutObject and carries
    these headers for the whole upload (UploadPart carries only SSE-C's, denied there too).
    """
    objects = (f"{bucket_arn}/*",)

    def deny(sid: str, conditions: dict) -> Statement:
        return Statement(sid, ("s3:PutObject",), objects, effect="Deny", principals={"AWS": "*"}, conditions=conditions)

    return [
        deny("DenyOtherEncryption", {"StringNotEqualsIfExists": {SSE_HEADER: "aws:kms"}}),
        deny("DenyOtherKmsKey", {"StringNotEqualsIfExists": {SSE_KMS_KEY_HEADER: kms_key_arn}}),
        deny("DenyKmsWithoutKey", {"StringEquals": {SSE_HEADER: "aws:kms"}, "Null": {SSE_KMS_KEY_HEADER: "true"}}),
        deny("DenyCustomerKeys", {"Null": {SSE_CUSTOMER_HEADER: "false"}}),
    ]


def service_trust(service: str, actions: Sequence[str] = ("sts:AssumeRole",), conditions: Mapping | None = None) -> str:
    """Trust policy letting an AWS service principal assume a role."""
    return policy_document(
        [Statement("TrustService", tuple(actions), principals={"Service": service}, conditions=conditions or {})]
    )


def managed_policy_arn(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"


def dns_suffix(partition: str) -> str:
    return "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
