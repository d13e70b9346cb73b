"""The EKS cluster: looked up by name (`ExistingCluster`) or created (`EksCluster`)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_eks_cluster import DataAwsEksCluster
from cdktf_cdktf_provider_aws.eks_access_entry import EksAccessEntry
from cdktf_cdktf_provider_aws.eks_access_policy_association import (
    EksAccessPolicyAssociation,
    EksAccessPolicyAssociationAccessScope,
)
from cdktf_cdktf_provider_aws.eks_addon import EksAddon
from cdktf_cdktf_provider_aws.eks_cluster import (
    EksCluster as EksClusterResource,
    EksClusterAccessConfig,
    EksClusterEncryptionConfig,
    EksClusterEncryptionConfigProvider,
    EksClusterVpcConfig,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment

from infra.policy import check_account_id, check_arn, check_partition, is_token, managed_policy_arn, service_trust

POD_IDENTITY_AGENT = "eks-pod-identity-agent"
CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
VERSION = re.compile(r"^1\.\d{2}$")
# The values CloudWatch Logs accepts for retention_in_days (0 would mean "never expire").
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)


def _check_name(name: str) -> None:
    if not CLUSTER_NAME.match(name):
        raise ValueError(f"name {name!r} is not an EKS cluster name (1-100 letters, digits, '-' and '_', starting with a letter or digit)")


class _Cluster(Construct):
    """What node pools and identities need of a cluster, created or looked up."""

    cluster: DataAwsEksCluster | EksClusterResource

    @property
    def arn(self) -> str:
        return self.cluster.arn

    @property
    def version(self) -> str:
        return self.cluster.version


class ExistingCluster(_Cluster):
    """An EKS cluster managed elsewhere, looked up by name at plan time."""

    def __init__(self, scope: Construct, id: str, *, name: str, install_pod_identity_agent: bool = False):
        super().__init__(scope, id)
        _check_name(name)
        self._name = name
        self.cluster = DataAwsEksCluster(self, "cluster", name=name)
        if install_pod_identity_agent:
            EksAddon(self, "pod-identity-agent", cluster_name=name, addon_name=POD_IDENTITY_AGENT)

    @property
    def name(self) -> str:
        return self._name

    @property
    def subnet_ids(self) -> list[str]:
        return self.cluster.vpc_config.get(0).subnet_ids


class EksCluster(_Cluster):
    """A private EKS cluster: KMS-encrypted secrets, all control-plane logs, API access entries."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        version: str,
        subnet_ids: Sequence[str],
        kms_key_arn: str,
        account_id: str,
        partition: str = "aws",
        endpoint_public_access: bool = False,
        public_access_cidrs: Sequence[str] = (),
        admin_principal_arns: Sequence[str] = (),
        log_retention_days: int = 365,
    ):
        super().__init__(scope, id)
        _check_name(name)
        check_partition(partition)
        check_account_id(account_id)
        if not VERSION.match(version):
            raise ValueError(f"version {version!r}: give a Kubernetes minor version such as '1.33'")
        # A token list (subnets from another resource) cannot be counted here.
        if len(subnet_ids) < 2 and not any(is_token(s) for s in subnet_ids):
            raise ValueError("subnet_ids: EKS needs subnets in at least two availability zones")
        check_arn("kms_key_arn", kms_key_arn, partition, r"kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+", "a KMS key ARN")
        for arn in admin_principal_arns:
            check_arn("admin_principal_arns", arn, partition, r"iam::\d{12}:(role|user)/[\w+=,.@/-]+", "an IAM role or user ARN")
        if log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"log_retention_days {log_retention_days}: CloudWatch Logs allows {', '.join(map(str, LOG_RETENTION_DAYS))}")
        if endpoint_public_access and not public_access_cidrs:
            raise ValueError("public_access_cidrs: required with endpoint_public_access (0.0.0.0/0 only if listed explicitly)")
        if public_access_cidrs and not endpoint_public_access:
            raise ValueError("public_access_cidrs: set endpoint_public_access=True to use them")
        for cidr in public_access_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ValueError(f"public_access_cidrs: {cidr!r} is not a CIDR block") from None

        self.role = IamRole(
            self, "role", name=_cluster_role_name(name),
            # eks.amazonaws.com in every partition: China rejects eks.amazonaws.com.cn.
            assume_role_policy=service_trust("eks.amazonaws.com", ("sts:AssumeRole", "sts:TagSession")),
            description=f"EKS control plane of {name}",
        )
        attachment = IamRolePolicyAttachment(
            self, "cluster-policy", role=self.role.name, policy_arn=managed_policy_arn(partition, "AmazonEKSClusterPolicy")
        )
        # Created before the cluster so EKS does not create an unencrypted one without retention.
        logs = CloudwatchLogGroup(
            self, "logs", name=f"/aws/eks/{name}/cluster", retention_in_days=log_retention_days, kms_key_id=kms_key_arn
        )
        self.cluster = EksClusterResource(
            self,
            "cluster",
            name=name,
            version=version,
            role_arn=self.role.arn,
            vpc_config=EksClusterVpcConfig(
                subnet_ids=list(subnet_ids),
                endpoint_private_access=True,
                endpoint_public_access=endpoint_public_access,
                public_access_cidrs=list(public_access_cidrs) if endpoint_public_access else None,
            ),
            encryption_config=EksClusterEncryptionConfig(
                resources=["secrets"], provider=EksClusterEncryptionConfigProvider(key_arn=kms_key_arn)
            ),
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            access_config=EksClusterAccessConfig(
                authentication_mode="API",
                # Without listed admins, whoever creates the cluster keeps access.
                bootstrap_cluster_creator_admin_permissions=not admin_principal_arns,
            ),
            depends_on=[attachment, logs],
        )
        for i, principal in enumerate(admin_principal_arns):
            entry = EksAccessEntry(self, f"admin-{i}", cluster_name=self.cluster.name, principal_arn=principal)
            EksAccessPolicyAssociation(
                self, f"admin-{i}-policy",
                cluster_name=self.cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=f"arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                access_scope=EksAccessPolicyAssociationAccessScope(type="cluster"),
            )
        self.addon = EksAddon(self, "pod-identity-agent", cluster_name=self.cluster.name, addon_name=POD_IDENTITY_AGENT)
        self._subnet_ids = list(subnet_ids)

    @property
    def name(self) -> str:
        # A reference, so node groups and associations wait for the cluster.
        return self.cluster.name

    @property
    def subnet_ids(self) -> list[str]:
        return self._subnet_ids


def _cluster_role_name(cluster: str) -> str:
    """`<cluster>-cluster`, shortened with a stable hash when IAM's 64 characters would not hold it."""
    name = f"{cluster}-cluster"
    if len(name) <= 64:
        return name
    return f"{cluster[:47]}-{hashlib.sha256(cluster.encode()).hexdigest()[:8]}-cluster"
