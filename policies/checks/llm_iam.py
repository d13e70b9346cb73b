"""IAM: the serving identity only reads; no role of ours holds wildcard permissions."""

from __future__ import annotations

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from llm_document import IDENTITY_TAG, Entity, as_list, statements

# Verbs that only read; anything else on the serving role is a write, delete or admin action.
READ_VERBS = ("Get", "List", "Describe", "Decrypt")
# The one place the serving role may write: the Anyscale cloud's storage, which Anyscale's Ray
# pods (running as the serving service account) must read and write. Never the model buckets.
STORAGE_PURPOSE = "anyscale-storage"
STORAGE_S3_WRITES = {
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "s3:ListBucketMultipartUploads",
    "s3:DeleteObject",
}
STORAGE_KMS_WRITES = {"kms:GenerateDataKey", "kms:Decrypt"}


def _writes_only_to_storage(statement: dict, storage: set[str]) -> bool:
    """S3 writes on objects of a storage bucket, or KMS use bound to one (bucket-key encryption context)."""
    actions = set(as_list(statement.get("Action")))
    if actions <= STORAGE_S3_WRITES:
        resources = as_list(statement.get("Resource"))
        return bool(resources) and all(
            isinstance(r, str) and r.startswith("arn:") and r.split(":::", 1)[-1].split("/", 1)[0] in storage
            for r in resources
        )
    if actions <= STORAGE_KMS_WRITES:
        context = (statement.get("Condition") or {}).get("StringEquals", {}).get("kms:EncryptionContext:aws:s3:arn")
        return bool(context) and all(isinstance(c, str) and c.split(":::", 1)[-1] in storage for c in as_list(context))
    return False


class ServingIdentityReadsOnly(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="The serving identity has no write or delete permission (weights and adapters are read-only to Ray), "
            "except on the Anyscale cloud's storage bucket",
            id="CKV_LLM_1",
            categories=[CheckCategories.IAM],
            supported_resources=["aws_iam_role_policy"],
        )

    def scan_resource_conf(self, conf):
        entity = Entity(self.entity_path)
        role = entity.resolve(entity.body.get("role")) or {}
        if role.get("tags", {}).get(IDENTITY_TAG) != "serving":
            return CheckResult.PASSED
        storage = entity.buckets_for(STORAGE_PURPOSE)
        for statement in statements(entity.body.get("policy")):
            if statement.get("Effect") != "Allow":
                continue
            if "NotAction" in statement or "NotResource" in statement:
                return CheckResult.FAILED
            actions = as_list(statement.get("Action"))
            if all("*" not in a and a.split(":", 1)[-1].startswith(READ_VERBS) for a in actions):
                continue
            if not _writes_only_to_storage(statement, storage):
                return CheckResult.FAILED
        return CheckResult.PASSED


class NoWildcardPermissions(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="IAM policies grant no '*' or 'service:*' actions, no NotAction, and '*' resources only to "
            "EC2 and Auto Scaling Describe actions",
            id="CKV_LLM_2",
            categories=[CheckCategories.IAM],
            supported_resources=[
                "aws_iam_role_policy",
                "aws_iam_policy",
                "aws_iam_user_policy",
                "aws_iam_group_policy",
            ],
        )

    def scan_resource_conf(self, conf):
        entity = Entity(self.entity_path)
        policy = entity.body.get("policy")
        found = statements(policy)
        if not found:
            # A policy that is not literal JSON (a data source or reference) cannot be checked: fail it.
            return CheckResult.FAILED
        for statement in found:
            if statement.get("Effect") != "Allow":
                continue
            if "NotAction" in statement or "NotResource" in statement:
                return CheckResult.FAILED
            if any(a == "*" or a.endswith(":*") for a in as_list(statement.get("Action"))):
                return CheckResult.FAILED
            if "*" in as_list(statement.get("Resource")) and not _reads_only(statement):
                return CheckResult.FAILED
        return CheckResult.PASSED


# Reads AWS allows on no resource but "*", for EC2 and Auto Scaling metadata only (what Cluster
# Autoscaler needs): never a read of data such as s3:ListBucket or secretsmanager:GetSecretValue.
UNSCOPABLE_READS = {"ec2:GetInstanceTypesFromInstanceRequirements"}


def _reads_only(statement: dict) -> bool:
    actions = as_list(statement.get("Action"))
    return bool(actions) and all(
        isinstance(a, str)
        and "*" not in a
        and (
            a in UNSCOPABLE_READS
            or (a.split(":", 1)[0] in ("ec2", "autoscaling") and a.split(":", 1)[-1].startswith("Describe"))
        )
        for a in actions
    )


serving_reads_only = ServingIdentityReadsOnly()
no_wildcards = NoWildcardPermissions()
