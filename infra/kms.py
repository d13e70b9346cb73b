"""EncryptionKey: a customer managed KMS key with rotation and an explicit key policy."""

from __future__ import annotations

import re

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey

from infra.policy import Statement, check_account_id, check_region, dns_suffix, policy_document

# KMS alias names: letters, digits, '/', '_' and '-'; 'alias/' is added here.
ALIAS = re.compile(r"^[A-Za-z0-9/_-]{1,250}$")


class EncryptionKey(Construct):
    """A symmetric KMS key for data at rest (buckets, cluster secrets, logs).

    The key policy delegates to IAM in the owning account (AWS's default),
    so access is granted by identity policies such as `ModelBucket.grant_read`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        alias: str,
        description: str,
        account_id: str,
        region: str,
        partition: str = "aws",
        deletion_window_days: int = 30,
        prevent_destroy: bool = False,
        allow_cloudwatch_logs: bool = False,
    ):
        super().__init__(scope, id)
        check_region(region, partition)
        check_account_id(account_id)
        if not 7 <= deletion_window_days <= 30:
            raise ValueError(f"deletion_window_days must be 7..30, got {deletion_window_days}")
        if alias.startswith("alias/"):
            raise ValueError(f"alias {alias!r}: give the name without 'alias/' (it is added for you)")
        if alias.startswith("aws/") or not ALIAS.match(alias):
            raise ValueError(
                f"alias {alias!r}: use letters, digits, '/', '_' and '-', "
                "not starting with 'aws/' (reserved for AWS managed keys)"
            )
        statements = [
            Statement(
                "AccountAdministers",
                ("kms:*",),
                ("*",),
                principals={"AWS": f"arn:{partition}:iam::{account_id}:root"},
            )
        ]
        if allow_cloudwatch_logs:
            # EKS control-plane log group encryption: CloudWatch Logs uses the key
            # only for log groups of this account and region.
            statements.append(Statement(
                "CloudWatchLogs",
                ("kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"),
                ("*",),
                principals={"Service": f"logs.{region}.{dns_suffix(partition)}"},
                conditions={"ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:log-group:*"
                }},
            ))
        self.key = KmsKey(
            self,
            "key",
            description=description,
            enable_key_rotation=True,
            deletion_window_in_days=deletion_window_days,
            policy=policy_document(statements),
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if prevent_destroy else None,
        )
        self.alias = KmsAlias(self, "alias", name=f"alias/{alias}", target_key_id=self.key.key_id)

    @property
    def key_arn(self) -> str:
        return self.key.arn

    @property
    def key_id(self) -> str:
        return self.key.key_id

    @property
    def alias_name(self) -> str:
        return self.alias.name
