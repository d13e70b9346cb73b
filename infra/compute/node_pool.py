"""EKS managed node groups: a CPU `NodePool` and a `GpuNodePool` for model replicas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, TypedDict, Unpack

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.autoscaling_group_tag import AutoscalingGroupTagA, AutoscalingGroupTagTag
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
    LaunchTemplateNetworkInterfaces,
    LaunchTemplateTagSpecifications,
)

from infra.catalog import Gpu, InstanceType, gpu_instance
from infra.compute.autoscaling import NODE_TEMPLATE, AsgTag, autoscaler_node_labels, autoscaler_tags
from infra.compute.efa.plugin import EFA_RESOURCE, interface_layout, pool_efa_interfaces
from infra.compute.efa.rules import efa_subnets_problem
from infra.compute.scheduling import (
    POOL_LABEL,
    Taint,
    node_labels,
    node_selector,
    node_taints,
    pool_labels_problem,
    pool_taints_problem,
    tolerations,
)
from infra.identity.policy import dns_suffix, managed_policy_arn, service_trust
from infra.identity.roles import IDENTITY_TAG
from infra.rules import (
    ami_type_problem,
    capacity_type_problem,
    cluster_reference_problem,
    label_value_problem,
    node_group_name_problem,
    partition_problem,
    pool_size_problem,
    require,
    role_name_problem,
    root_volume_problem,
)

if TYPE_CHECKING:
    from infra.compute.efa.network import EfaNetwork

__all__ = ["POOL_LABEL", "GpuNodePool", "NodePool", "NodePoolOptions", "NodeRole", "Taint"]

BOTTLEROCKET_OS_VOLUME_GIB = 4


class NodePoolOptions(TypedDict, total=False):
    """Settings shared by `NodePool` and `GpuNodePool`, with their defaults (each class's `DEFAULTS`;
    where the environment file has the setting, its default is the file's).

    capacity_type: ON_DEMAND (default) or SPOT.
    min_size, max_size: the node group's bounds (autoscalers move within them); default 0 and 1.
    desired_size: the initial size; default min_size. Later drift is ignored, so autoscalers own it.
    ami_type: an EKS AMI type for the pool's kind (CPU or NVIDIA); default AL2023_x86_64_STANDARD
        (`NodePool`) or BOTTLEROCKET_x86_64_NVIDIA (`GpuNodePool`: it ships the device plugin).
    root_volume_gib: the data volume (Bottlerocket) or root volume (AL2023), at least 20 GiB;
        encrypted gp3 either way. Default 50 (`NodePool`) or 200 (`GpuNodePool`).
    labels: extra Kubernetes node labels (the pool sets its own: pool name, GPU product and count);
        default none.
    taints: extra taints (GPU pools add nvidia.com/gpu and node.anyscale.com taints themselves);
        default none.
    http_put_response_hop_limit: IMDSv2 hop limit: 1 (default; pods cannot reach the node's
        credentials) or 2.
    max_unavailable: nodes replaced at once during an update; default 1.
    tags: tags on the node group, its instances and volumes; default none.
    autoscaler_cluster_name: let Cluster Autoscaler scale the pool: its Auto Scaling group gets the
        auto-discovery tags for this cluster and, on GPU pools, the node template (GPUs, labels,
        taints) it needs to scale up from zero; GPU nodes also get `k8s.amazonaws.com/accelerator`.
        Default None: no tags (the pool is left to another autoscaler). Setting it back to None
        removes the discovery tags, EKS's own included.
    efa: give every node all the Elastic Fabric Adapter interfaces of its instance type (one per
        network card), in the `EfaNetwork`'s security groups, launched in its one subnet (pass its
        `subnet_ids`). The instance types must all have EFA, with one interface count (`infra.catalog`);
        with `autoscaler_cluster_name`, the node template advertises the interfaces too. Default
        None: no EFA, the launch template lists no interfaces (EKS attaches the cluster security group).
    """

    capacity_type: str
    min_size: int
    max_size: int
    desired_size: int | None
    ami_type: str
    root_volume_gib: int
    labels: Mapping[str, str]
    taints: Sequence[Taint]
    http_put_response_hop_limit: int
    max_unavailable: int
    tags: Mapping[str, str]
    autoscaler_cluster_name: str | None
    efa: EfaNetwork | None


class NodeRole(Construct):
    """The EC2 role of managed node group instances (shared by an environment's pools).

    Holds only the three policies EKS nodes need (worker node, CNI, pulling
    images); pods do not use it (node pools cap the metadata hop limit at 1).

    Props:
        role_name: the IAM role name.
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
        enable_ssm: also attach AmazonSSMManagedInstanceCore (Session Manager access). Default False.
    """

    def __init__(self, scope: Construct, id: str, *, role_name: str, partition: str = "aws", enable_ssm: bool = False):
        super().__init__(scope, id)
        require("partition", partition_problem(partition))
        require("role_name", role_name_problem(role_name))
        # The EC2 principal follows the partition's DNS suffix (ec2.amazonaws.com.cn in China).
        self.role = IamRole(
            self,
            "role",
            name=role_name,
            assume_role_policy=service_trust(f"ec2.{dns_suffix(partition)}"),
            description="EKS managed node group instances",
            tags={IDENTITY_TAG: "node"},
        )
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
    """A managed node group with a hardened launch template (the CPU pool for the Ray head and ingress).

    Secure by default: IMDSv2 required with a hop limit of 1, encrypted gp3
    volumes, and `desired_size` left to autoscalers after creation.

    Props:
        cluster_name: the EKS cluster (a reference to a created cluster is fine).
        node_group_name: the EKS node group name (1-63 letters, digits, '-', '_').
        pool_name: the pool's name, put on every node as the `llm-serving-stacks/node-pool` label.
        node_role: the instances' `NodeRole`.
        subnet_ids: where nodes launch.
        instance_types: EC2 instance types, in order of preference.
        **options: `NodePoolOptions`; defaults in `DEFAULTS`: an on-demand pool of 0 to 1 nodes
            (the environment file's `node_pools[]` defaults), AL2023 with a 50 GiB root volume.
    """

    DEFAULTS: ClassVar[NodePoolOptions] = {
        "capacity_type": "ON_DEMAND",
        "min_size": 0,
        "max_size": 1,
        "desired_size": None,
        "ami_type": "AL2023_x86_64_STANDARD",
        "root_volume_gib": 50,
        "labels": {},
        "taints": (),
        "http_put_response_hop_limit": 1,
        "max_unavailable": 1,
        "tags": {},
        "autoscaler_cluster_name": None,
        "efa": None,
    }
    gpu: Gpu | None = None
    gpus_per_node: int = 0

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
        **options: Unpack[NodePoolOptions],
    ):
        super().__init__(scope, id)
        o = self._parse_options(options)
        self._parse_shape(node_group_name, pool_name, instance_types, o)
        self.labels, self.taints = self._parse_placement(pool_name, o)
        self.efa_interfaces = self._parse_efa(o["efa"], instance_types, subnet_ids)  # EFA interfaces per node
        asg_tags = self._autoscaler_tags(o)
        self.pool_name, self.node_group_name = pool_name, node_group_name
        self.instance_types, self.capacity_type = list(instance_types), o["capacity_type"]
        self.min_size, self.max_size = o["min_size"], o["max_size"]

        self.launch_template = self._render_launch_template(node_group_name, o)
        self.node_group = self._render_node_group(cluster_name, node_role, subnet_ids, o)
        self.autoscaling_group_tags = self._render_autoscaling_group_tags(asg_tags)

    # --- props -------------------------------------------------------------------

    def _parse_options(self, options: NodePoolOptions) -> NodePoolOptions:
        """The options over this class's `DEFAULTS`; an option no pool has is a TypeError."""
        if unknown := sorted(set(options) - set(NodePoolOptions.__annotations__)):
            raise TypeError(f"{type(self).__name__}: unknown option(s) {', '.join(unknown)}")
        return {**self.DEFAULTS, **options}

    def _parse_shape(
        self, node_group_name: str, pool_name: str, instance_types: Sequence[str], o: NodePoolOptions
    ) -> None:
        """Names, instance and capacity types, AMI, sizes, volume, metadata and update settings."""
        require("node_group_name", node_group_name_problem(node_group_name))
        require("pool_name", label_value_problem(pool_name) if pool_name else "give the pool a name")
        if not instance_types:
            raise ValueError("instance_types: give at least one instance type")
        require("capacity_type", capacity_type_problem(o["capacity_type"]))
        require("ami_type", ami_type_problem(o["ami_type"], gpu=self.gpu is not None))
        require("min_size/desired_size/max_size", pool_size_problem(o["min_size"], o["desired_size"], o["max_size"]))
        if o["http_put_response_hop_limit"] not in (1, 2):
            raise ValueError("http_put_response_hop_limit must be 1 (pods cannot reach the node's credentials) or 2")
        require("root_volume_gib", root_volume_problem(o["root_volume_gib"]))
        if o["max_unavailable"] < 1:
            raise ValueError("max_unavailable must be at least 1")
        if o["autoscaler_cluster_name"] is not None:
            require("autoscaler_cluster_name", cluster_reference_problem(o["autoscaler_cluster_name"]))

    def _parse_placement(self, pool_name: str, o: NodePoolOptions) -> tuple[dict[str, str], list[Taint]]:
        """The nodes' labels and taints: the caller's, then the pool's own (which the caller's may not set)."""
        own = autoscaler_node_labels(self.gpu) if o["autoscaler_cluster_name"] is not None else {}
        derived = {**node_labels(pool_name, None, self.gpu, self.gpus_per_node), **own}
        require("labels", pool_labels_problem(dict(o["labels"]), derived))
        labels = {**node_labels(pool_name, o["labels"], self.gpu, self.gpus_per_node), **own}
        taints = node_taints(o["taints"], gpu=self.gpu is not None, capacity_type=o["capacity_type"])
        require("taints", pool_taints_problem(taints))
        return labels, taints

    @staticmethod
    def _parse_efa(efa: EfaNetwork | None, instance_types: Sequence[str], subnet_ids: Sequence[str]) -> int:
        """The EFA interfaces of each node: 0 without `efa`."""
        if efa is None:
            return 0
        interfaces = pool_efa_interfaces(instance_types)
        require("subnet_ids", efa_subnets_problem(subnet_ids))
        return interfaces

    def _autoscaler_tags(self, o: NodePoolOptions) -> list[AsgTag]:
        """Cluster Autoscaler's tags for the pool's Auto Scaling group; none without `autoscaler_cluster_name`."""
        if o["autoscaler_cluster_name"] is None:
            return []
        tags = autoscaler_tags(
            o["autoscaler_cluster_name"],
            labels=self.labels,
            taints=self.taints,
            gpus_per_node=self.gpus_per_node,
            capacity_type=o["capacity_type"],
        )
        if tags and self.efa_interfaces:
            # Pods ask for the interfaces: a pool scaled to zero must show it would have them.
            tags.append(AsgTag(f"{NODE_TEMPLATE}resources/{EFA_RESOURCE}", str(self.efa_interfaces), False))
        return tags

    # --- sub-resources, in the order they are created ------------------------------

    def _render_launch_template(self, node_group_name: str, o: NodePoolOptions) -> LaunchTemplate:
        efa = o["efa"]
        return LaunchTemplate(
            self,
            "launch-template",
            name_prefix=f"{node_group_name}-",
            update_default_version=True,
            metadata_options=LaunchTemplateMetadataOptions(
                http_endpoint="enabled",
                http_tokens="required",  # IMDSv2 only
                http_put_response_hop_limit=o["http_put_response_hop_limit"],
            ),
            block_device_mappings=self._volumes(o["ami_type"], o["root_volume_gib"]),
            network_interfaces=self._efa_interfaces(efa, self.efa_interfaces) if efa is not None else None,
            tag_specifications=[
                LaunchTemplateTagSpecifications(resource_type=kind, tags={**o["tags"], "Name": node_group_name})
                for kind in ("instance", "volume")
            ],
        )

    def _render_node_group(
        self, cluster_name: str, node_role: NodeRole, subnet_ids: Sequence[str], o: NodePoolOptions
    ) -> EksNodeGroup:
        desired_size = o["min_size"] if o["desired_size"] is None else o["desired_size"]
        return EksNodeGroup(
            self,
            "node-group",
            cluster_name=cluster_name,
            node_group_name=self.node_group_name,
            node_role_arn=node_role.role_arn,
            subnet_ids=subnet_ids,
            ami_type=o["ami_type"],
            capacity_type=o["capacity_type"],
            instance_types=self.instance_types,
            scaling_config=EksNodeGroupScalingConfig(
                min_size=o["min_size"], max_size=o["max_size"], desired_size=desired_size
            ),
            update_config=EksNodeGroupUpdateConfig(max_unavailable=o["max_unavailable"]),
            labels=self.labels,
            taint=[EksNodeGroupTaint(key=t.key, value=t.value or None, effect=t.eks_effect) for t in self.taints]
            or None,
            launch_template=EksNodeGroupLaunchTemplate(
                id=self.launch_template.id, version=str(self.launch_template.latest_version)
            ),
            tags=dict(o["tags"]),
            # Autoscalers own the current size; Terraform must not reset it.
            lifecycle=TerraformResourceLifecycle(ignore_changes=["scaling_config[0].desired_size"]),
            depends_on=node_role.attachments,
        )

    def _render_autoscaling_group_tags(self, asg_tags: Sequence[AsgTag]) -> list[AutoscalingGroupTagA]:
        # On the group EKS made for the node group (its name is known after apply).
        group = self.node_group.resources.get(0).autoscaling_groups.get(0).name if asg_tags else ""
        return [
            AutoscalingGroupTagA(
                self,
                t.id,
                autoscaling_group_name=group,
                tag=AutoscalingGroupTagTag(key=t.key, value=t.value, propagate_at_launch=t.propagate_at_launch),
            )
            for t in asg_tags
        ]

    @staticmethod
    def _efa_interfaces(efa: EfaNetwork, count: int) -> list[LaunchTemplateNetworkInterfaces]:
        # No subnet: EKS takes a managed node group's subnets from the group and rejects a template naming one.
        return [
            LaunchTemplateNetworkInterfaces(
                network_card_index=i.network_card_index,
                device_index=i.device_index,
                interface_type=i.interface_type,
                security_groups=efa.security_group_ids,
                delete_on_termination="true",
                associate_public_ip_address="false",
                description=f"EFA, network card {i.network_card_index}",
            )
            for i in interface_layout(count)
        ]

    @staticmethod
    def _volumes(ami_type: str, size_gib: int) -> list[LaunchTemplateBlockDeviceMappings]:
        # The AWS-managed EBS key: a customer key would need grants for the Auto
        # Scaling service-linked role, without which nodes silently fail to launch.
        def volume(device: str, gib: int) -> LaunchTemplateBlockDeviceMappings:
            return LaunchTemplateBlockDeviceMappings(
                device_name=device,
                ebs=LaunchTemplateBlockDeviceMappingsEbs(
                    volume_size=gib,
                    volume_type="gp3",
                    encrypted="true",
                    delete_on_termination="true",
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
    Every instance type must be in `infra.catalog` with the same GPU model and
    count, so every replica fits every node. Same props as `NodePool`, and the
    same defaults (`DEFAULTS`: 0 to 1 nodes, so it may scale to zero) but two: the
    Bottlerocket NVIDIA AMI (it ships the Kubernetes device plugin) and a 200 GiB
    data volume.
    """

    DEFAULTS: ClassVar[NodePoolOptions] = {
        **NodePool.DEFAULTS,
        "ami_type": "BOTTLEROCKET_x86_64_NVIDIA",
        "root_volume_gib": 200,
    }

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
        **options: Unpack[NodePoolOptions],
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
            scope,
            id,
            cluster_name=cluster_name,
            node_group_name=node_group_name,
            pool_name=pool_name,
            node_role=node_role,
            subnet_ids=subnet_ids,
            instance_types=instance_types,
            **options,
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
