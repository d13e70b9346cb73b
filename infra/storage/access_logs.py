"""AccessLogBucket: where S3 server access logs of the data buckets go, with the same secure defaults.

Every request to the weights and LoRA buckets (who read which model, who wrote
which adapter) is logged here by the S3 logging service. S3 delivers server
access logs only to a bucket whose default encryption is SSE-S3 (AES256), never
SSE-KMS (S3 user guide, "Enabling Amazon S3 server access logging"), so that is
the one way this bucket differs from a `ModelBucket`; everything else holds:
versioning, all four public access blocks, BucketOwnerEnforced, TLS-only, and a
policy that lets only the logging service write, only for the named source
buckets of this account.
"""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_notification import S3BucketNotification
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import S3BucketVersioningA, S3BucketVersioningVersioningConfiguration

from infra.identity.policy import PURPOSE_TAG, Statement, policy_document, tls_only_statements
from infra.rules import account_id_problem, bucket_name_problem, partition_problem, require

LOG_PREFIX = "s3-access"


class AccessLogBucket(Construct):
    """A private, versioned, TLS-only bucket receiving S3 server access logs from `source_buckets`.

    Props:
        bucket_name: the log bucket's name.
        source_buckets: names of the buckets (of `account_id`) whose access is logged here.
        account_id: the owning account; only its buckets may deliver logs.
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
        retention_days: how long logs are kept; default 365.
        prevent_destroy: Terraform refuses to destroy the bucket. Default False.
        delete_logs_on_destroy: `terraform destroy` deletes the logs with the bucket
            (`force_destroy`). S3 keeps delivering logs for a while after the last request,
            so a torn-down environment's log bucket is never reliably empty; without this,
            destroying it fails until someone empties it. Default False; not with prevent_destroy.

    `prefix_for(bucket_name)` is where one source bucket's logs land (`s3-access/<bucket>/`).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket_name: str,
        source_buckets: Sequence[str],
        account_id: str,
        partition: str = "aws",
        retention_days: int = 365,
        prevent_destroy: bool = False,
        delete_logs_on_destroy: bool = False,
    ):
        super().__init__(scope, id)
        require("bucket_name", bucket_name_problem(bucket_name))
        require("account_id", account_id_problem(account_id))
        require("partition", partition_problem(partition))
        if not source_buckets:
            raise ValueError("source_buckets: name at least one bucket whose access is logged here")
        for source in source_buckets:
            require("source_buckets", bucket_name_problem(source))
        if prevent_destroy and delete_logs_on_destroy:
            raise ValueError("delete_logs_on_destroy: a bucket Terraform may not destroy keeps its logs")
        if not 1 <= retention_days <= 3650:
            raise ValueError(f"retention_days {retention_days}: 1 to 3650")
        self._name, self._partition = bucket_name, partition
        self.bucket = S3Bucket(
            self,
            "bucket",
            bucket=bucket_name,
            force_destroy=delete_logs_on_destroy,
            tags={PURPOSE_TAG: "access-logs"},
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if prevent_destroy else None,
        )
        S3BucketOwnershipControls(
            self,
            "ownership",
            bucket=self.bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        public_access = S3BucketPublicAccessBlock(
            self,
            "public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        versioning = S3BucketVersioningA(
            self,
            "versioning",
            bucket=self.bucket.id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            bucket=self.bucket.id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="AES256"
                    ),  # the only encryption log delivery supports
                )
            ],
        )
        S3BucketNotification(self, "events", bucket=self.bucket.id, eventbridge=True)
        self.policy = S3BucketPolicy(
            self,
            "policy",
            bucket=self.bucket.id,
            depends_on=[public_access],
            policy=policy_document(
                [
                    # One statement per source: each bucket's logs go under its own prefix only.
                    *(
                        Statement(
                            f"DeliverAccessLogs{i}",
                            ("s3:PutObject",),
                            (f"{self.bucket_arn}/{self.prefix_for(source)}*",),
                            principals={"Service": "logging.s3.amazonaws.com"},
                            conditions={
                                "StringEquals": {"aws:SourceAccount": account_id},
                                "ArnLike": {"aws:SourceArn": f"arn:{partition}:s3:::{source}"},
                            },
                        )
                        for i, source in enumerate(source_buckets)
                    ),
                    *tls_only_statements(self.bucket_arn),
                ]
            ),
        )
        S3BucketLifecycleConfiguration(
            self,
            "lifecycle",
            bucket=self.bucket.id,
            depends_on=[versioning],
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="expire-access-logs",
                    status="Enabled",
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=retention_days)],
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(noncurrent_days=30)
                    ],
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=7)
                    ],
                ),
            ],
        )

    @property
    def bucket_name(self) -> str:
        return self._name

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self._partition}:s3:::{self._name}"

    @staticmethod
    def prefix_for(bucket_name: str) -> str:
        return f"{LOG_PREFIX}/{bucket_name}/"
