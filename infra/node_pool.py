"""EKS managed node groups: a CPU `NodePool` and a `GpuNodePool` for model replicas."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.eks_node_group import (
    EksNodeGroup,
    EksNodeGroupLaunchTemplate,
    EksNodeGroupScalingConfig,
    EksNodeGroupTaint,
    EksNodeGroupUpdateConfig,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.launch_template import (
    LaunchTemplate,
    LaunchTemplateBlockDeviceMappings,
    LaunchTemplateBlockDeviceMappingsEbs,
    LaunchTemplateMetadataOptions,
    LaunchTemplateTagSpecifications,
)

from infra.catalog import Gpu, InstanceType, gpu_instance
from infra.identity import IDENTITY_TAG
from infra.policy import check_partition, check_role_name, dns_suffix, managed_policy_arn, service_trust
from infra.scheduling import LABEL_KEY, LABEL_VALUE, POOL_LABEL, Taint, node_labels, node_selector, node_taints, tolerations

__all__ = ["POOL_LABEL", "GpuNodePool", "NodePool", "NodeRole", "Taint"]

CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
CPU_AMI_TYPES = ("AL2023_x86_64_STANDARD", "AL2023_ARM_64_STANDARD", "BOTTLEROCKET_x86_64", "BOTTLEROCKET_ARM_64")
GPU_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA", "BOTTLEROCKET_ARM_64_NVIDIA")
BOTTLEROCKET_OS_VOLUME_GIB = 4
NODE_GROUP_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,62}$")


class NodeRole(Construct):
    """The EC2 role of managed node group instances (shared by an environment's pools)."""

    def __init__(self, scope: Construct, id: str, *, role_name: str, partition: str = "aws", enable_ssm: bool = False):
        super().__init__(scope, id)
        check_partition(partition)
        check_role_name(role_name)
        # The EC2 principal follows the partition's DNS suffix (ec2.amazonaws.com.cn in China).
        self.role = IamRole(self, "role", name=role_name, assume_role_policy=service_trust(f"ec2.{dns_suffix(partition)}"),
                            description="EKS managed node group instances", tags={IDENTITY_TAG: "node"})
        policies = ["AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy"]
        if enable_ssm:
            policies.append("AmazonSSMManagedInstanceCore")
        self.attachments = [
            IamRolePolicyAttachment(self, name, role=self.role.name, policy_arn=managed_policy_arn(partition, name))
            for name in policies
        ]

    @property
    def role_arn(self) -> str:
        return self.role.arn

    @property
    def role_name(self) -> str:
        return self.role.name


class NodePool(Construct):
    """A managed node group with a hardened launch template (the CPU pool for the Ray head and ingress)."""

    ALLOWED_AMIS: tuple[str, ...] = CPU_AMI_TYPES

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster_name: str,
        node_group_name: str,
        pool_name: str,
        node_role: NodeRole,
        subnet_ids: Sequence[str],
        instance_types: Sequence[str],
        capacity_type: str = "ON_DEMAND",
        min_size: int = 1,
        max_size: int = 3,
        desired_size: int | None = None,
        ami_type: str = "AL2023_x86_64_STANDARD",
        root_volume_gib: int = 50,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Taint] = (),
        http_put_response_hop_limit: int = 1,
        max_unavailable: int = 1,
        tags: Mapping[str, str] | None = None,
    ):
        super().__init__(scope, id)
        desired_size = min_size if desired_size is None else desired_size
        if not NODE_GROUP_NAME.match(node_group_name):
            raise ValueError(f"node_group_name {node_group_name!r}: 1-63 letters, digits, '-' and '_', starting with a letter or digit")
        if not pool_name or not LABEL_VALUE.match(pool_name):
            raise ValueError(f"pool_name {pool_name!r} must be a valid Kubernetes label value (it labels the nodes)")
        if not instance_types:
            raise ValueError("instance_types: give at least one instance type")
        if capacity_type not in CAPACITY_TYPES:
            raise ValueError(f"capacity_type {capacity_type!r}: use ON_DEMAND or SPOT")
        if ami_type not in self.ALLOWED_AMIS:
            raise ValueError(f"ami_type {ami_type!r}: {type(self).__name__} allows {', '.join(self.ALLOWED_AMIS)}")
        if not (0 <= min_size <= desired_size <= max_size and max_size >= 1):
            raise ValueError(
                "min_size/desired_size/max_size must satisfy 0 <= min_size <= desired_size <= max_size and max_size >= 1 "
                f"(got {min_size}/{desired_size}/{max_size})"
            )
        if http_put_response_hop_limit not in (1, 2):
            raise ValueError("http_put_response_hop_limit must be 1 (pods cannot reach the node's credentials) or 2")
        if root_volume_gib < 20:
            raise ValueError("root_volume_gib must be at least 20")
        if max_unavailable < 1:
            raise ValueError("max_unavailable must be at least 1")
        self.pool_name, self.node_group_name = pool_name, node_group_name
        self.instance_types, self.capacity_type = list(instance_types), capacity_type
        self.min_size, self.max_size = min_size, max_size
        gpu = getattr(self, "gpu", None)
        labels = dict(labels or {})
        derived = node_labels(pool_name, None, gpu, getattr(self, "gpus_per_node", 0))
        if clash := sorted(k for k in labels if k in derived and labels[k] != derived[k]):
            raise ValueError(f"labels: {', '.join(clash)} are set by the pool itself")
        for key, value in labels.items():
            if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
                raise ValueError(f"labels: {key}={value!r} is not valid Kubernetes syntax")
        self.labels = node_labels(pool_name, labels, gpu, getattr(self, "gpus_per_node", 0))
        self.taints = node_taints(taints, gpu=gpu is not None, capacity_type=capacity_type)
        seen: set[tuple[str, str]] = set()
        for taint in self.taints:
            if (taint.key, taint.effect) in seen:
                raise ValueError(f"taints: {taint.key}:{taint.effect} appears twice (GPU pools add their own taints)")
            seen.add((taint.key, taint.effect))

        tags = dict(tags or {})
        self.launch_template = LaunchTemplate(
            self,
            "launch-template",
            name_prefix=f"{node_group_name}-",
            update_default_version=True,
            metadata_options=LaunchTemplateMetadataOptions(
                http_endpoint="enabled",
                http_tokens="required",  # IMDSv2 only
                http_put_response_hop_limit=http_put_response_hop_limit,
            ),
            block_device_mappings=self._volumes(ami_type, root_volume_gib),
            tag_specifications=[
                LaunchTemplateTagSpecifications(resource_type=kind, tags={**tags, "Name": node_group_name})
                for kind in ("instance", "volume")
            ],
        )
        self.node_group = EksNodeGroup(
            self,
            "node-group",
            cluster_name=cluster_name,
            node_group_name=node_group_name,
            node_role_arn=node_role.role_arn,
            subnet_ids=subnet_ids,
            ami_type=ami_type,
            capacity_type=capacity_type,
            instance_types=self.instance_types,
            scaling_config=EksNodeGroupScalingConfig(min_size=min_size, max_size=max_size, desired_size=desired_size),
            update_config=EksNodeGroupUpdateConfig(max_unavailable=max_unavailable),
            labels=self.labels,
            taint=[EksNodeGroupTaint(key=t.key, value=t.value or None, effect=t.eks_effect) for t in self.taints] or None,
            launch_template=EksNodeGroupLaunchTemplate(
                id=self.launch_template.id, version=str(self.launch_template.latest_version)
            ),
            tags=tags,
            # Autoscalers own the current size; Terraform must not reset it.
            lifecycle=TerraformResourceLifecycle(ignore_changes=["scaling_config[0].desired_size"]),
            depends_on=node_role.attachments,
        )

    @staticmethod
    def _volumes(ami_type: str, size_gib: int) -> list[LaunchTemplateBlockDeviceMappings]:
        # The AWS-managed EBS key: a customer key would need grants for the Auto
        # Scaling service-linked role, without which nodes silently fail to launch.
        def volume(device: str, gib: int) -> LaunchTemplateBlockDeviceMappings:
            return LaunchTemplateBlockDeviceMappings(
                device_name=device,
                ebs=LaunchTemplateBlockDeviceMappingsEbs(
                    volume_size=gib, volume_type="gp3", encrypted="true", delete_on_termination="true",
                ),
            )

        if ami_type.startswith("BOTTLEROCKET"):
            # Bottlerocket: a small OS volume; images and the model cache live on the data volume.
            return [volume("/dev/xvda", BOTTLEROCKET_OS_VOLUME_GIB), volume("/dev/xvdb", size_gib)]
        return [volume("/dev/xvda", size_gib)]


class GpuNodePool(NodePool):
    """A GPU node group for model replicas: NVIDIA AMI, GPU labels and taints, may scale to zero.

    The labels and taints are the ones both the Anyscale operator on EKS and
    KubeRay pods match; `tolerations()` and `node_selector()` give the pod side.
    """

    # The default AMI, Bottlerocket's NVIDIA variant, ships the Kubernetes device plugin.
    ALLOWED_AMIS = GPU_AMI_TYPES

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster_name: str,
        node_group_name: str,
        pool_name: str,
        node_role: NodeRole,
        subnet_ids: Sequence[str],
        instance_types: Sequence[str],
        capacity_type: str = "ON_DEMAND",
        min_size: int = 0,
        max_size: int = 1,
        desired_size: int | None = None,
        ami_type: str = "BOTTLEROCKET_x86_64_NVIDIA",
        root_volume_gib: int = 200,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Taint] = (),
        http_put_response_hop_limit: int = 1,
        max_unavailable: int = 1,
        tags: Mapping[str, str] | None = None,
    ):
        entries = [self._entry(t) for t in instance_types]
        if entries:
            first = entries[0]
            for entry in entries[1:]:
                if (entry.gpu, entry.gpus) != (first.gpu, first.gpus):
                    raise ValueError(
                        f"instance_types: {entry.name} has {entry.gpus} x {entry.gpu.name}, "
                        f"{first.name} has {first.gpus} x {first.gpu.name}; a pool needs one GPU model and count"
                    )
            self.gpu: Gpu = first.gpu
            self.gpus_per_node: int = first.gpus
        super().__init__(
            scope, id, cluster_name=cluster_name, node_group_name=node_group_name, pool_name=pool_name,
            node_role=node_role, subnet_ids=subnet_ids, instance_types=instance_types, capacity_type=capacity_type,
            min_size=min_size, max_size=max_size, desired_size=desired_size, ami_type=ami_type,
            root_volume_gib=root_volume_gib, labels=labels, taints=taints,
            http_put_response_hop_limit=http_put_response_hop_limit, max_unavailable=max_unavailable, tags=tags,
        )

    @staticmethod
    def _entry(instance_type: str) -> InstanceType:
        entry = gpu_instance(instance_type)
        if entry is None:
            raise ValueError(f"instance_types: {instance_type!r} is not a GPU instance type in infra.catalog")
        return entry

    def tolerations(self) -> list[dict[str, str]]:
        return tolerations(self.taints)

    def node_selector(self) -> dict[str, str]:
        return node_selector(self.pool_name, self.gpu)
