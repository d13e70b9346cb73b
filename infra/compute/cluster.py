"""The EKS cluster: looked up by name (`ExistingCluster`) or created (`EksCluster`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import ITerraformDependable
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

from infra.identity.policy import managed_policy_arn, service_trust
from infra.rules import (
    account_id_problem,
    cidr_problem,
    cluster_name_problem,
    cluster_subnets_problem,
    eks_version_problem,
    kms_key_arn_problem,
    log_retention_problem,
    partition_problem,
    principal_arn_problem,
    public_endpoint_problem,
    require,
)

POD_IDENTITY_AGENT = "eks-pod-identity-agent"
CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]


class Cluster(Construct):
    """What node pools and identities need of an EKS cluster, whether created here or looked up.

    `name` (a reference where the cluster is created, so dependents wait for it),
    `subnet_ids`, `arn` and `version`.
    """

    cluster: DataAwsEksCluster | EksClusterResource

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def subnet_ids(self) -> list[str]:
        raise NotImplementedError

    @property
    def arn(self) -> str:
        return self.cluster.arn

    @property
    def version(self) -> str:
        return self.cluster.version


class ExistingCluster(Cluster):
    """An EKS cluster managed elsewhere, looked up by name at plan time.

    Props:
        name: the cluster's name.
        install_pod_identity_agent: install the `eks-pod-identity-agent` add-on (needed once per
            cluster for EKS Pod Identity). Default False: the cluster's owner usually manages add-ons.
    """

    def __init__(self, scope: Construct, id: str, *, name: str, install_pod_identity_agent: bool = False):
        super().__init__(scope, id)
        require("name", cluster_name_problem(name))
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


class EksCluster(Cluster):
    """A private EKS cluster: KMS-encrypted secrets, all control-plane logs, API access entries.

    Secure by default: a private API endpoint only, Kubernetes secrets encrypted
    with `kms_key_arn`, every control-plane log type in an encrypted log group
    created first (so EKS never creates an unencrypted one), authentication by
    access entries only, and the Pod Identity agent add-on.

    Props:
        name: the cluster's name.
        version: the Kubernetes minor version, e.g. "1.34".
        subnet_ids: at least two subnets, in different availability zones.
        kms_key_arn: the key for secrets and logs (its policy must allow CloudWatch Logs:
            `EncryptionKey(allow_cloudwatch_logs=True)`).
        account_id: the owning account (12 digits).
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
        endpoint_public_access: also expose the API endpoint publicly. Default False.
        public_access_cidrs: the networks allowed to the public endpoint; required with it.
        admin_principal_arns: IAM roles or users given cluster admin through access entries.
            Default none: then the creator keeps admin access.
        log_retention_days: a value CloudWatch Logs accepts; default 365.
    """

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
        self._parse_cluster(name, version, subnet_ids, kms_key_arn, account_id, partition, log_retention_days)
        self._parse_access(partition, endpoint_public_access, public_access_cidrs, admin_principal_arns)
        self._subnet_ids = list(subnet_ids)

        attachment = self._render_role(name, partition)
        logs = self._render_logs(name, log_retention_days, kms_key_arn)
        self.cluster = self._render_cluster(
            name,
            version,
            kms_key_arn,
            endpoint_public_access,
            public_access_cidrs,
            admin_principal_arns,
            depends_on=[attachment, logs],
        )
        self._render_admins(admin_principal_arns, partition)
        self.addon = EksAddon(self, "pod-identity-agent", cluster_name=self.cluster.name, addon_name=POD_IDENTITY_AGENT)

    # --- props -------------------------------------------------------------------

    @staticmethod
    def _parse_cluster(
        name: str,
        version: str,
        subnet_ids: Sequence[str],
        kms_key_arn: str,
        account_id: str,
        partition: str,
        log_retention_days: int,
    ) -> None:
        require("name", cluster_name_problem(name))
        require("partition", partition_problem(partition))
        require("account_id", account_id_problem(account_id))
        require("version", eks_version_problem(version))
        require("subnet_ids", cluster_subnets_problem(subnet_ids))
        require("kms_key_arn", kms_key_arn_problem(kms_key_arn, partition))
        require("log_retention_days", log_retention_problem(log_retention_days))

    @staticmethod
    def _parse_access(
        partition: str,
        endpoint_public_access: bool,
        public_access_cidrs: Sequence[str],
        admin_principal_arns: Sequence[str],
    ) -> None:
        """Who reaches the API: admins by access entry, the public endpoint only from the networks listed."""
        for arn in admin_principal_arns:
            require("admin_principal_arns", principal_arn_problem(arn, partition))
        require("public_access_cidrs", public_endpoint_problem(endpoint_public_access, public_access_cidrs))
        for cidr in public_access_cidrs:
            require("public_access_cidrs", cidr_problem(cidr))

    # --- sub-resources, in the order they are created ------------------------------

    def _render_role(self, name: str, partition: str) -> IamRolePolicyAttachment:
        """The control plane's role; returns its policy attachment, which the cluster waits for."""
        self.role = IamRole(
            self,
            "role",
            name=_cluster_role_name(name),
            # eks.amazonaws.com in every partition: China rejects eks.amazonaws.com.cn.
            assume_role_policy=service_trust("eks.amazonaws.com", ("sts:AssumeRole", "sts:TagSession")),
            description=f"EKS control plane of {name}",
        )
        return IamRolePolicyAttachment(
            self,
            "cluster-policy",
            role=self.role.name,
            policy_arn=managed_policy_arn(partition, "AmazonEKSClusterPolicy"),
        )

    def _render_logs(self, name: str, log_retention_days: int, kms_key_arn: str) -> CloudwatchLogGroup:
        # Created before the cluster so EKS does not create an unencrypted one without retention.
        return CloudwatchLogGroup(
            self, "logs", name=f"/aws/eks/{name}/cluster", retention_in_days=log_retention_days, kms_key_id=kms_key_arn
        )

    def _render_cluster(
        self,
        name: str,
        version: str,
        kms_key_arn: str,
        endpoint_public_access: bool,
        public_access_cidrs: Sequence[str],
        admin_principal_arns: Sequence[str],
        depends_on: Sequence[ITerraformDependable],
    ) -> EksClusterResource:
        return EksClusterResource(
            self,
            "cluster",
            name=name,
            version=version,
            role_arn=self.role.arn,
            vpc_config=EksClusterVpcConfig(
                subnet_ids=list(self._subnet_ids),
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
            depends_on=list(depends_on),
        )

    def _render_admins(self, admin_principal_arns: Sequence[str], partition: str) -> None:
        """An access entry with the cluster admin policy for each admin principal."""
        for i, principal in enumerate(admin_principal_arns):
            entry = EksAccessEntry(self, f"admin-{i}", cluster_name=self.cluster.name, principal_arn=principal)
            EksAccessPolicyAssociation(
                self,
                f"admin-{i}-policy",
                cluster_name=self.cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=f"arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                access_scope=EksAccessPolicyAssociationAccessScope(type="cluster"),
            )

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
