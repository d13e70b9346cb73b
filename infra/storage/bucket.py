"""ModelBucket: an S3 bucket for model weights or LoRA checkpoints, secure by default."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_object import S3Object
from cdktf_cdktf_provider_aws.s3_bucket_notification import S3BucketNotification
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleFilterAnd,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
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
from cdktf_cdktf_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)

from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.s3_bucket_logging import S3BucketLoggingA

from infra.identity.policy import (
    PURPOSE_TAG,
    Statement,
    dns_suffix,
    kms_upload_statements,
    policy_document,
    tls_only_statements,
)
from infra.identity.roles import Identity
from infra.rules import bucket_name_problem, kms_key_arn_problem, partition_problem, region_problem, require
from infra.storage.access_logs import AccessLogBucket

POLICY_NAME_LIMIT = 128  # IAM inline policy names
# The lifecycle rules every bucket has; a TaggedExpiration may not take their ids.
BUILT_IN_RULES = ("abort-incomplete-multipart-uploads", "expire-noncurrent-versions")
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# S3 object tags: keys up to 128 characters, values up to 256 (S3 User Guide, "Object tagging").
TAG_KEY_LIMIT, TAG_VALUE_LIMIT = 128, 256


@dataclass(frozen=True)
class TaggedExpiration:
    """A lifecycle rule: objects under `prefix/` that carry the tag `tag` (key, value) expire `days`
    after they were written.

    An object whose tag is removed before `days` have passed (e.g. a model snapshot an environment
    pinned) is not expired by this rule. In a versioned bucket expiring adds a delete marker: the
    object stays recoverable until noncurrent versions expire.

    Fields:
        name: the rule's id (lowercase letters, digits and "-", at most 64), e.g. "expire-unpinned-snapshots".
        prefix: the key prefix, e.g. "models".
        tag: the (key, value) an object must carry, e.g. ("llmstacks-unpinned", "true").
        days: days after an object was written; at least 1.
    """

    name: str
    prefix: str
    tag: tuple[str, str]
    days: int

    def __post_init__(self):
        if not _RULE_ID.fullmatch(self.name) or self.name in BUILT_IN_RULES:
            raise ValueError(
                f"name {self.name!r}: use lowercase letters, digits and '-' (at most 64), "
                f"not one of {', '.join(BUILT_IN_RULES)}"
            )
        object.__setattr__(self, "prefix", _prefix(self.prefix))
        key, value = self.tag
        if not 0 < len(key) <= TAG_KEY_LIMIT or len(value) > TAG_VALUE_LIMIT:
            raise ValueError(
                f"tag {self.tag!r}: a key of 1-{TAG_KEY_LIMIT} characters and a value of at most {TAG_VALUE_LIMIT}"
            )
        object.__setattr__(self, "tag", (key, value))
        if self.days < 1:
            raise ValueError(f"days {self.days}: must be at least 1")


class ModelBucket(Construct):
    """A versioned, SSE-KMS, private, TLS-only bucket with grants scoped to key prefixes.

    Not configurable, on purpose: public access (all four blocks on), ACLs
    (`BucketOwnerEnforced`), plain-HTTP or TLS < 1.2 access (denied by the
    bucket policy), unencrypted objects (SSE-KMS with a bucket key), uploads
    encrypted any other way than SSE-KMS with `kms_key_arn` (denied by the bucket
    policy: an upload naming no encryption gets the key by default, see
    `infra.identity.policy.kms_upload_statements`) and `force_destroy` (off). Object events
    go to EventBridge.

    Props:
        bucket_name: the S3 bucket name (S3's naming rules are checked here).
        kms_key_arn: the key ARN (not an alias) every object is encrypted with.
        region: the bucket's region (grants scope KMS use to S3 in this region).
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
        noncurrent_version_retention_days: how long overwritten or deleted objects stay
            recoverable. Default 30.
        abort_incomplete_uploads_days: when an interrupted upload's parts are
            removed. Default 7.
        prevent_destroy: Terraform refuses to destroy the bucket. Default False.
        expire_prefixes: prefix -> days, for scratch areas whose objects expire
            (e.g. `{"staging": 7}`). Default none.
        purpose: what the bucket holds when it is not model data, as the tag
            `llm-serving-stacks:purpose` (e.g. "anyscale-storage"). Default none.
        expire_tagged: `TaggedExpiration` rules: objects under a prefix that carry a tag expire
            after some days (e.g. model snapshots no environment pinned). Default none.
        require_kms_uploads: deny uploads encrypted any other way than SSE-KMS with
            `kms_key_arn`. Default True; turn it off only for a bucket another vendor's
            services write with headers of their own (its default encryption still applies).

    `log_access_to(AccessLogBucket)` turns on S3 server access logging.

    Grants (`grant_read`, `grant_write`, `grant_delete`, `grant_tag`) attach one inline
    policy per intent to an `Identity` and return it.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket_name: str,
        kms_key_arn: str,
        region: str,
        partition: str = "aws",
        noncurrent_version_retention_days: int = 30,
        abort_incomplete_uploads_days: int = 7,
        prevent_destroy: bool = False,
        expire_prefixes: Mapping[str, int] | None = None,
        purpose: str | None = None,
        expire_tagged: Sequence[TaggedExpiration] = (),
        require_kms_uploads: bool = True,
    ):
        super().__init__(scope, id)
        self._parse_location(bucket_name, kms_key_arn, region, partition)
        expire_tagged = tuple(expire_tagged)
        expire_prefixes = self._parse_lifecycle(
            noncurrent_version_retention_days, abort_incomplete_uploads_days, expire_prefixes, expire_tagged
        )
        self._name, self._key_arn, self._region, self._partition = bucket_name, kms_key_arn, region, partition

        self.bucket = self._render_bucket(purpose, prevent_destroy)
        public_access = self._render_private()
        versioning = self._render_versioning()
        self._render_encryption()
        # Object events go to EventBridge (free without rules): a platform can react to a
        # newly published model or adapter (warm caches, notify, audit) without a change here.
        S3BucketNotification(self, "events", bucket=self.bucket.id, eventbridge=True)
        self._render_policy(public_access, require_kms_uploads)
        self._render_lifecycle(
            versioning, noncurrent_version_retention_days, abort_incomplete_uploads_days, expire_prefixes, expire_tagged
        )

    # --- props -------------------------------------------------------------------

    @staticmethod
    def _parse_location(bucket_name: str, kms_key_arn: str, region: str, partition: str) -> None:
        require("bucket_name", bucket_name_problem(bucket_name))
        require("partition", partition_problem(partition))
        require("region", region_problem(region, partition))
        require("kms_key_arn", kms_key_arn_problem(kms_key_arn, partition))

    @staticmethod
    def _parse_lifecycle(
        noncurrent_version_retention_days: int,
        abort_incomplete_uploads_days: int,
        expire_prefixes: Mapping[str, int] | None,
        expire_tagged: tuple[TaggedExpiration, ...],
    ) -> dict[str, int]:
        """The lifecycle props checked; returns expire_prefixes with normalized prefixes."""
        if noncurrent_version_retention_days < 1:
            raise ValueError("noncurrent_version_retention_days must be at least 1")
        if abort_incomplete_uploads_days < 1:
            raise ValueError("abort_incomplete_uploads_days must be at least 1")
        try:
            expire_prefixes = {_prefix(p): days for p, days in (expire_prefixes or {}).items()}
        except ValueError as exc:
            raise ValueError(f"expire_prefixes: {exc}") from None
        if any(days < 1 for days in expire_prefixes.values()):
            raise ValueError("expire_prefixes: days must be at least 1")
        taken = {f"expire-{prefix.replace('/', '-')}" for prefix in expire_prefixes}
        names = [rule.name for rule in expire_tagged]
        if clash := sorted({n for n in names if names.count(n) > 1 or n in taken}):
            raise ValueError(f"expire_tagged: rule name {clash[0]!r} is used by another lifecycle rule")
        return expire_prefixes

    # --- sub-resources, in the order they are created ------------------------------

    def _render_bucket(self, purpose: str | None, prevent_destroy: bool) -> S3Bucket:
        return S3Bucket(
            self,
            "bucket",
            bucket=self._name,
            force_destroy=False,
            tags={PURPOSE_TAG: purpose} if purpose else None,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if prevent_destroy else None,
        )

    def _render_private(self) -> S3BucketPublicAccessBlock:
        """Object ownership enforced (no ACLs) and all four public access blocks."""
        S3BucketOwnershipControls(
            self,
            "ownership",
            bucket=self.bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        return S3BucketPublicAccessBlock(
            self,
            "public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )

    def _render_versioning(self) -> S3BucketVersioningA:
        return S3BucketVersioningA(
            self,
            "versioning",
            bucket=self.bucket.id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )

    def _render_encryption(self) -> None:
        S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            bucket=self.bucket.id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="aws:kms",
                        kms_master_key_id=self._key_arn,
                    ),
                    # Bucket keys cut KMS requests (and cost) for many-shard models.
                    bucket_key_enabled=True,
                )
            ],
        )

    def _render_policy(self, public_access: S3BucketPublicAccessBlock, require_kms_uploads: bool) -> None:
        statements = tls_only_statements(self.bucket_arn)
        if require_kms_uploads:
            statements += kms_upload_statements(self.bucket_arn, self._key_arn)
        S3BucketPolicy(
            self, "policy", bucket=self.bucket.id, policy=policy_document(statements), depends_on=[public_access]
        )

    def _render_lifecycle(
        self,
        versioning: S3BucketVersioningA,
        noncurrent_version_retention_days: int,
        abort_incomplete_uploads_days: int,
        expire_prefixes: Mapping[str, int],
        expire_tagged: Sequence[TaggedExpiration],
    ) -> None:
        S3BucketLifecycleConfiguration(
            self,
            "lifecycle",
            bucket=self.bucket.id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="abort-incomplete-multipart-uploads",
                    status="Enabled",
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                            days_after_initiation=abort_incomplete_uploads_days,
                        )
                    ],
                ),
                S3BucketLifecycleConfigurationRule(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                            noncurrent_days=noncurrent_version_retention_days,
                        )
                    ],
                    expiration=[S3BucketLifecycleConfigurationRuleExpiration(expired_object_delete_marker=True)],
                ),
                # Scratch areas (staged uploads an interrupted publish left behind).
                *(
                    S3BucketLifecycleConfigurationRule(
                        id=f"expire-{prefix.replace('/', '-')}",
                        status="Enabled",
                        filter=[S3BucketLifecycleConfigurationRuleFilter(prefix=f"{prefix}/")],
                        expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=days)],
                    )
                    for prefix, days in sorted(expire_prefixes.items())
                ),
                *(
                    S3BucketLifecycleConfigurationRule(
                        id=rule.name,
                        status="Enabled",
                        # A prefix and a tag together: S3 takes both only inside `and`.
                        filter=[
                            S3BucketLifecycleConfigurationRuleFilter(
                                and_=[
                                    S3BucketLifecycleConfigurationRuleFilterAnd(
                                        prefix=f"{rule.prefix}/",
                                        tags=dict([rule.tag]),
                                    )
                                ]
                            )
                        ],
                        expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=rule.days)],
                    )
                    for rule in expire_tagged
                ),
            ],
            # Lifecycle rules on noncurrent versions need versioning in place first.
            depends_on=[versioning],
        )

    # --- outputs and grants ------------------------------------------------------

    @property
    def bucket_name(self) -> str:
        return self._name

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self._partition}:s3:::{self._name}"

    @property
    def kms_key_arn(self) -> str:
        return self._key_arn

    def objects_arn(self, prefix: str) -> str:
        return f"{self.bucket_arn}/{_prefix(prefix)}/*"

    def add_object(
        self, id: str, key: str, content: str, content_type: str = "text/plain", base64_content: bool = False
    ) -> S3Object:
        """An object whose content is known at synth time (e.g. a service spec), encrypted with the key.

        `content` is stored exactly as given: Terraform template sequences in it are escaped,
        never evaluated. `base64_content`: `content` is base64 (binary files such as a zip).
        """
        if not key or key.startswith("/") or key.endswith("/"):
            raise ValueError(f"key {key!r}: give an object key such as 'specs/dev/serve-config.yaml'")
        # Terraform reads "${" and "%{" in any string as a template to evaluate (file(), env
        # reads...): content is literal, so they are escaped and the object holds exactly `content`.
        body = {"content_base64": content} if base64_content else {"content": terraform_literal(content)}
        return S3Object(
            self,
            id,
            bucket=self.bucket.id,
            key=key,
            content_type=content_type,
            **body,
            server_side_encryption="aws:kms",
            kms_key_id=self._key_arn,
            bucket_key_enabled=True,
            checksum_algorithm="SHA256",
        )

    def grant_read(self, identity: Identity, prefix: str) -> IamRolePolicy:
        """GetObject under `prefix/`, listing limited to it, and decrypting through S3; returns the policy."""
        p = _prefix(prefix)
        return identity.add_policy(
            self._policy_name("read", p),
            [
                Statement("ReadObjects", ("s3:GetObject",), (self.objects_arn(p),)),
                Statement(
                    "ListPrefix",
                    ("s3:ListBucket",),
                    (self.bucket_arn,),
                    conditions={"StringLike": {"s3:prefix": [p, f"{p}/*"]}},
                ),
                self._key_statement("DecryptObjects", ("kms:Decrypt",)),
            ],
        )

    def grant_write(self, identity: Identity, prefix: str) -> IamRolePolicy:
        """PutObject (multipart included) under `prefix/`; no read, no delete. Returns the policy."""
        p = _prefix(prefix)
        return identity.add_policy(
            self._policy_name("write", p),
            [
                Statement(
                    "WriteObjects",
                    ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"),
                    (self.objects_arn(p),),
                ),
                Statement("ListUploads", ("s3:ListBucketMultipartUploads",), (self.bucket_arn,)),
                # Multipart uploads decrypt their parts to complete.
                self._key_statement("EncryptObjects", ("kms:GenerateDataKey", "kms:Decrypt")),
            ],
        )

    def grant_delete(self, identity: Identity, prefix: str) -> IamRolePolicy:
        """DeleteObject under `prefix/`: adds a delete marker; versions stay recoverable. Returns the policy."""
        p = _prefix(prefix)
        return identity.add_policy(
            self._policy_name("delete", p),
            [
                Statement("DeleteObjects", ("s3:DeleteObject",), (self.objects_arn(p),)),
            ],
        )

    def grant_tag(self, identity: Identity, prefix: str) -> IamRolePolicy:
        """Read, set and remove the tags of objects under `prefix/`; returns the policy.

        An upload that tags its object (a `Tagging` header, multipart included) needs this besides
        `grant_write`. Tags decide what `expire_tagged` rules expire, so changing them is a grant of
        its own: setting a tag can schedule an object's expiry, removing one can keep it forever.
        Current versions only (no `s3:*ObjectVersionTagging`).
        """
        p = _prefix(prefix)
        return identity.add_policy(
            self._policy_name("tag", p),
            [
                Statement(
                    "TagObjects",
                    ("s3:PutObjectTagging", "s3:GetObjectTagging", "s3:DeleteObjectTagging"),
                    (self.objects_arn(p),),
                ),
            ],
        )

    def log_access_to(self, log_bucket: AccessLogBucket) -> S3BucketLoggingA:
        """S3 server access logs of every request to this bucket, delivered to `log_bucket`
        (under `s3-access/<this bucket>/`); the log bucket must name this one among its sources."""
        # After the log bucket's policy: S3 checks that the logging service may write there.
        return S3BucketLoggingA(
            self,
            "access-logging",
            bucket=self.bucket.id,
            target_bucket=log_bucket.bucket.id,
            target_prefix=log_bucket.prefix_for(self._name),
            depends_on=[log_bucket.policy],
        )

    def _key_statement(self, sid: str, actions: tuple[str, ...]) -> Statement:
        return Statement(
            sid,
            actions,
            (self._key_arn,),
            conditions={
                "StringEquals": {
                    "kms:ViaService": f"s3.{self._region}.{dns_suffix(self._partition)}",
                    # With bucket keys, S3 uses the bucket ARN as encryption context.
                    "kms:EncryptionContext:aws:s3:arn": self.bucket_arn,
                }
            },
        )

    def _policy_name(self, verb: str, prefix: str) -> str:
        name = re.sub(r"[^\w+=,.@-]", "-", f"{verb}-{self.node.id}-{prefix}")
        if len(name) > POLICY_NAME_LIMIT:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            name = f"{name[: POLICY_NAME_LIMIT - 9]}-{digest}"
        return name


def terraform_literal(text: str) -> str:
    """`text` as a Terraform string that evaluates to exactly `text`: `${` and `%{` doubled."""
    return text.replace("${", "$${").replace("%{", "%%{")


def _prefix(prefix: str) -> str:
    """`models/` -> `models`. Wildcards and `$` would widen the grant (IAM reads `*`, `?` and `${...}`)."""
    p = prefix.rstrip("/") if prefix else ""
    if not p or p.startswith("/") or any(c in p for c in "*?$"):
        raise ValueError(f"prefix {prefix!r}: give a key prefix such as 'models' (no leading '/', no '*', '?' or '$')")
    return p
