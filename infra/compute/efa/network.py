"""The network an environment's EFA (Elastic Fabric Adapter) pools share (AWS stack). A pool joins
with `NodePool(..., efa=network)`; the plain data (interfaces, values, resource name) is
`infra.compute.efa.plugin`, the device plugin's release `infra.platform.efa_device_plugin`.
"""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import Fn, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.data_aws_eks_cluster import DataAwsEksCluster
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule

from infra.compute.cluster import Cluster
from infra.rules import is_token, require, subnet_id_problem

# A security group name has up to 255 characters and never starts "sg-" (EC2); the provider's unique
# suffix takes 26 of them, so a name prefix has up to 229 (its aws_security_group schema).
_MAX_NAME_PREFIX = 255 - 26


class EfaNetwork(Construct):
    """What an environment's EFA node pools share: a security group, the cluster's, and one subnet.

    Secure by default: the EFA security group lets its members send each other all traffic (EFA's
    OS-bypass needs exactly that) and admits nothing else; Terraform removes the allow-all egress
    rule EC2 gives a new group. Every EFA pool uses this one group, so a prefill pool and a decode
    pool reach each other. A launch template that lists security groups replaces the cluster
    security group EKS would attach, so `security_group_ids` holds both: nodes still reach the
    control plane and the rest of the cluster through the cluster's.

    EFA pools launch in one subnet, the first of `subnet_ids` (`subnet_ids` below): EFA traffic
    does not cross availability zones, so pools that exchange KV caches must share one. For a
    looked-up cluster's own subnets (known at plan time), the first by id.

    The group is named `<name>-<suffix>` and replaced create-before-destroy: a change that replaces
    it makes the new one first, and the old one goes once the node groups have moved off it.

    Props:
        cluster: the EKS cluster (created or looked up): its VPC and cluster security group.
        name: the start of the security group's name (it is also its Name tag).
        subnet_ids: the node subnets.
    """

    def __init__(self, scope: Construct, id: str, *, cluster: Cluster, name: str, subnet_ids: Sequence[str]):
        super().__init__(scope, id)
        if not name or len(name) >= _MAX_NAME_PREFIX or name.startswith("sg-"):
            raise ValueError(f"name: {name!r}: 1-{_MAX_NAME_PREFIX - 1} characters, not starting with 'sg-'")
        if not subnet_ids:
            raise ValueError("subnet_ids: give the node subnets (EFA pools launch in the first)")
        for subnet in subnet_ids:
            require("subnet_ids", subnet_id_problem(subnet))
        vpc = cluster.cluster.vpc_config
        vpc = vpc.get(0) if isinstance(cluster.cluster, DataAwsEksCluster) else vpc
        self.cluster_security_group_id: str = vpc.cluster_security_group_id
        self.security_group = SecurityGroup(
            self,
            "security-group",
            name_prefix=f"{name}-",
            vpc_id=vpc.vpc_id,
            tags={"Name": name},
            description="EFA: all traffic between the EFA nodes of this group, nothing else",
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        self.ingress = VpcSecurityGroupIngressRule(
            self,
            "from-members",
            security_group_id=self.security_group.id,
            ip_protocol="-1",
            referenced_security_group_id=self.security_group.id,
            description="EFA: all traffic from the group's members",
        )
        self.egress = VpcSecurityGroupEgressRule(
            self,
            "to-members",
            security_group_id=self.security_group.id,
            ip_protocol="-1",
            referenced_security_group_id=self.security_group.id,
            description="EFA: all traffic to the group's members",
        )
        listed = list(subnet_ids)
        first = Fn.element(Fn.sort(listed), 0) if any(is_token(s) for s in listed) else listed[0]
        self._subnet_ids = [first]

    @property
    def security_group_id(self) -> str:
        return self.security_group.id

    @property
    def security_group_ids(self) -> list[str]:
        """What every EFA interface is in: the EFA group, then the cluster security group."""
        return [self.security_group.id, self.cluster_security_group_id]

    @property
    def subnet_ids(self) -> list[str]:
        """The one subnet EFA pools launch in."""
        return list(self._subnet_ids)
