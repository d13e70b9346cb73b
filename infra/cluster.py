"""The EKS cluster: looked up by name (`ExistingCluster`) or created (`EksCluster`)."""

from __future__ import annotations

import ipaddress
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

from infra.policy import managed_policy_arn, service_trust

POD_IDENTITY_AGENT = "eks-pod-identity-agent"
CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]


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
        if len(subnet_ids) < 2:
            raise ValueError("subnet_ids: EKS needs subnets in at least two availability zones")
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
            self, "role", name=f"{name}-cluster",
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
