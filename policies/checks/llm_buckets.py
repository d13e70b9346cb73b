"""S3: every bucket encrypted with KMS, versioned, private, TLS-only, owner-enforced, tidy."""

from __future__ import annotations

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from llm_document import PURPOSE_TAG, Entity, as_list, statements, truthy


class BucketCheck(BaseResourceCheck):
    """A rule about one aws_s3_bucket and the configuration resources that refer to it."""

    def __init__(self, *, name: str, id: str, category: CheckCategories = CheckCategories.GENERAL_SECURITY):
        super().__init__(name=name, id=id, categories=[category], supported_resources=["aws_s3_bucket"])

    def scan_resource_conf(self, conf):
        return CheckResult.PASSED if self.holds(Entity(self.entity_path)) else CheckResult.FAILED

    def holds(self, bucket: Entity) -> bool:
        raise NotImplementedError


class KmsWithBucketKey(BucketCheck):
    def __init__(self) -> None:
        super().__init__(
            name="S3 bucket encrypts with SSE-KMS under a named key, with an S3 bucket key",
            id="CKV_LLM_3",
            category=CheckCategories.ENCRYPTION,
        )

    def holds(self, bucket: Entity) -> bool:
        configs = bucket.referencing("aws_s3_bucket_server_side_encryption_configuration")
        if self.is_access_log_bucket(bucket):
            # S3 delivers server access logs only to SSE-S3 (AES256) buckets: that is the one allowed.
            return any(
                d.get("sse_algorithm") == "AES256"
                for c in configs
                for r in as_list(c.get("rule"))
                for d in as_list(r.get("apply_server_side_encryption_by_default"))
            )
        for config in configs:
            rules = as_list(config.get("rule"))
            if rules and all(
                truthy(rule.get("bucket_key_enabled"))
                and all(
                    d.get("sse_algorithm") in ("aws:kms", "aws:kms:dsse") and d.get("kms_master_key_id")
                    for d in as_list(rule.get("apply_server_side_encryption_by_default")) or [{}]
                )
                for rule in rules
            ):
                return True
        return False

    @staticmethod
    def is_access_log_bucket(bucket: Entity) -> bool:
        """Tagged as one, receiving some bucket's access logs, and logging nowhere itself (data buckets all do)."""
        return (
            (bucket.body.get("tags") or {}).get(PURPOSE_TAG) == "access-logs"
            and bool(bucket.referencing("aws_s3_bucket_logging", "target_bucket"))
            and not bucket.referencing("aws_s3_bucket_logging")
        )


class Versioned(BucketCheck):
    def __init__(self) -> None:
        super().__init__(
            name="S3 bucket has versioning enabled (overwrites and deletes stay recoverable)",
            id="CKV_LLM_4",
            category=CheckCategories.BACKUP_AND_RECOVERY,
        )

    def holds(self, bucket: Entity) -> bool:
        return any(
            c.get("status") == "Enabled"
            for v in bucket.referencing("aws_s3_bucket_versioning")
            for c in as_list(v.get("versioning_configuration"))
        )


class PublicAccessBlocked(BucketCheck):
    FLAGS = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")

    def __init__(self) -> None:
        super().__init__(name="S3 bucket has all four public access blocks on", id="CKV_LLM_5")

    def holds(self, bucket: Entity) -> bool:
        return any(
            all(truthy(block.get(flag)) for flag in self.FLAGS)
            for block in bucket.referencing("aws_s3_bucket_public_access_block")
        )


class TlsOnly(BucketCheck):
    def __init__(self) -> None:
        super().__init__(
            name="S3 bucket policy denies every request not made over TLS",
            id="CKV_LLM_6",
            category=CheckCategories.NETWORKING,
        )

    def holds(self, bucket: Entity) -> bool:
        for policy in bucket.referencing("aws_s3_bucket_policy"):
            for statement in statements(policy.get("policy")):
                insecure = statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
                principal = statement.get("Principal")
                if (
                    statement.get("Effect") == "Deny"
                    and str(insecure).lower() == "false"
                    and "s3:*" in as_list(statement.get("Action"))
                    and (principal == "*" or as_list((principal or {}).get("AWS")) == ["*"])
                    and len(as_list(statement.get("Resource"))) >= 2
                ):  # the bucket and its objects
                    return True
        return False


class OwnerEnforced(BucketCheck):
    def __init__(self) -> None:
        super().__init__(
            name="S3 bucket disables ACLs (object ownership BucketOwnerEnforced)",
            id="CKV_LLM_7",
            category=CheckCategories.IAM,
        )

    def holds(self, bucket: Entity) -> bool:
        return any(
            r.get("object_ownership") == "BucketOwnerEnforced"
            for c in bucket.referencing("aws_s3_bucket_ownership_controls")
            for r in as_list(c.get("rule"))
        )


class AbortsIncompleteUploads(BucketCheck):
    def __init__(self) -> None:
        super().__init__(name="S3 bucket lifecycle aborts incomplete multipart uploads bucket-wide", id="CKV_LLM_8")

    def holds(self, bucket: Entity) -> bool:
        for lifecycle in bucket.referencing("aws_s3_bucket_lifecycle_configuration"):
            for rule in as_list(lifecycle.get("rule")):
                filters = as_list(rule.get("filter"))
                whole_bucket = not filters or all(not f.get("prefix") and len(f) <= 1 for f in filters)
                if (
                    rule.get("status") == "Enabled"
                    and whole_bucket
                    and as_list(rule.get("abort_incomplete_multipart_upload"))
                ):
                    return True
        return False


class ProductionKeepsData(BucketCheck):
    def __init__(self) -> None:
        super().__init__(
            name="S3 buckets of a production environment are protected by prevent_destroy",
            id="CKV_LLM_11",
            category=CheckCategories.BACKUP_AND_RECOVERY,
        )

    def holds(self, bucket: Entity) -> bool:
        return not bucket.is_production or truthy(bucket.body.get("lifecycle", {}).get("prevent_destroy"))


kms = KmsWithBucketKey()
versioned = Versioned()
public_access = PublicAccessBlocked()
tls_only = TlsOnly()
owner_enforced = OwnerEnforced()
aborts_uploads = AbortsIncompleteUploads()
production = ProductionKeepsData()
