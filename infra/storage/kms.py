"""EncryptionKey: a customer managed KMS key with rotation and an explicit key policy."""

from __future__ import annotations

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey

from infra.identity.policy import Statement, dns_suffix, policy_document
from infra.rules import account_id_problem, kms_alias_problem, partition_problem, region_problem, require


class EncryptionKey(Construct):
    """A symmetric KMS key for data at rest (buckets, cluster secrets, logs).

    Secure by default: automatic yearly rotation, the longest deletion window,
    and a key policy that delegates to IAM in the owning account only (AWS's
    default), so access is granted by identity policies such as
    `ModelBucket.grant_read`, never by the key policy.

    Props:
        alias: the alias name without `alias/` (letters, digits, `/`, `_`, `-`; not `aws/...`).
        description: shown in the KMS console.
        account_id: the owning account (12 digits), the only principal of the key policy.
        region: the key's region; with `allow_cloudwatch_logs` the logs service of this region may use it.
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
        deletion_window_days: 7-30; default 30 (the longest undo window after a scheduled deletion).
        prevent_destroy: Terraform refuses to destroy the key. Default False.
        allow_cloudwatch_logs: let CloudWatch Logs encrypt this account's log groups in `region`
            (EKS control-plane logs). Default False.
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
        require("partition", partition_problem(partition))
        require("region", region_problem(region, partition))
        require("account_id", account_id_problem(account_id))
        require("alias", kms_alias_problem(alias))
        if not 7 <= deletion_window_days <= 30:
            raise ValueError(f"deletion_window_days must be 7..30, got {deletion_window_days}")
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
            statements.append(
                Statement(
                    "CloudWatchLogs",
                    ("kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"),
                    ("*",),
                    principals={"Service": f"logs.{region}.{dns_suffix(partition)}"},
                    conditions={
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:log-group:*"
                        }
                    },
                )
            )
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
