"""What node autoscaling with Cluster Autoscaler needs from the kit, as plain data: the pod
annotation, the Auto Scaling group tags node pools carry, the role's IAM statements and the
chart values. No cdktf import, so service specs can use `RAY_POD_ANNOTATIONS` at no cost; the
constructs are `ClusterAutoscalerIdentity` and `ClusterAutoscaler` (infra.platform.operators) and the
pools' `autoscaler_cluster_name` option.

Sources, github.com/kubernetes/autoscaler at the pinned tags: cluster-autoscaler/cloudprovider/aws/
README.md and aws_manager.go (IAM policy, auto-discovery and node-template tags; tag
cluster-autoscaler-1.35.0), cluster-autoscaler/FAQ.md (flags, safe-to-evict) and
cluster-autoscaler/charts/cluster-autoscaler/values.yaml (tag cluster-autoscaler-chart-9.59.0,
vendored in tests/schemas/).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.catalog import Gpu
from infra.compute.scheduling import Taint
from infra.identity.policy import Statement
from infra.rules import (
    account_id_problem,
    asg_tag_key_problem,
    cluster_name_problem,
    expander_problem,
    minutes_problem,
    node_template_taints_problem,
    partition_problem,
    region_problem,
    require,
    service_account_problem,
)

# Cluster Autoscaler never removes a node running a pod with this annotation (FAQ, "What types of
# pods can prevent CA from removing a node?"): put it on Ray pods so a replica is never evicted
# mid-request. Ray's own autoscaler removes idle workers; the autoscaler then removes empty nodes.
RAY_POD_ANNOTATIONS = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}

TAG_PREFIX = "k8s.io/cluster-autoscaler/"
ENABLED_TAG = f"{TAG_PREFIX}enabled"
NODE_TEMPLATE = f"{TAG_PREFIX}node-template/"
# Lets the autoscaler treat a new GPU node as one before the device plugin advertises its GPUs,
# instead of adding more nodes meanwhile (README, "Special note on GPU instances").
GPU_ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
# EKS puts it on every managed node; Anyscale's AWS market-type patches select on it.
CAPACITY_TYPE_LABEL = "eks.amazonaws.com/capacityType"
NAMESPACE, SERVICE_ACCOUNT = "kube-system", "cluster-autoscaler"

# The README's "Full Cluster Autoscaler Features Policy", read-only half (eks:DescribeNodegroup,
# which can be scoped, is held to the cluster's node groups below). None of these supports
# resource-level permissions, so they take "*", held to the cluster's region.
DESCRIBE_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
)
# Its write half. UpdateAutoScalingGroup is not called by the AWS provider at 1.35.0.
SCALING_ACTIONS = ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")


@dataclass(frozen=True)
class AsgTag:
    key: str
    value: str
    propagate_at_launch: bool

    @property
    def id(self) -> str:
        """A construct id that stays put when other tags come and go (no renumbering, no replacement)."""
        if self.key == ENABLED_TAG:
            return "autoscaler-enabled"
        if not self.key.startswith(NODE_TEMPLATE):
            return "autoscaler-cluster"  # its key holds the cluster name, maybe a reference
        return f"autoscaler-template-{hashlib.sha256(self.key.encode()).hexdigest()[:12]}"


def autoscaler_node_labels(gpu: Gpu | None) -> dict[str, str]:
    """Labels a pool adds to its nodes when Cluster Autoscaler scales it."""
    return {GPU_ACCELERATOR_LABEL: gpu.name} if gpu is not None else {}


def autoscaler_tags(
    cluster_name: str, *, labels: Mapping[str, str], taints: Iterable[Taint], gpus_per_node: int, capacity_type: str
) -> list[AsgTag]:
    """The tags a node group's Auto Scaling group needs: auto-discovery, and (GPU pools) its node template.

    EKS does not copy node group labels and taints to the group, so without the template the
    autoscaler cannot tell which pending pods a group with no nodes would fit.
    """
    taints = list(taints)
    require("taints", node_template_taints_problem([t.key for t in taints]))
    # The keys and values EKS itself tags managed groups with, propagated as EKS does.
    tags = [AsgTag(ENABLED_TAG, "true", True), AsgTag(f"{TAG_PREFIX}{cluster_name}", "owned", True)]
    if gpus_per_node:
        # A template describes nodes the group would launch: nothing to copy to instances.
        template = {**labels, CAPACITY_TYPE_LABEL: capacity_type}
        tags.append(AsgTag(f"{NODE_TEMPLATE}resources/nvidia.com/gpu", str(gpus_per_node), False))
        tags += [AsgTag(f"{NODE_TEMPLATE}label/{k}", v, False) for k, v in sorted(template.items())]
        tags += [AsgTag(f"{NODE_TEMPLATE}taint/{t.key}", f"{t.value}:{t.effect}", False) for t in taints]
    for tag in tags:
        require("labels/taints", asg_tag_key_problem(tag.key))
    return tags


def autoscaler_statements(
    *, cluster_name: str, account_id: str, region: str, partition: str = "aws"
) -> list[Statement]:
    """The autoscaler's permissions: describe in the region, scale only groups tagged for `cluster_name`."""
    require("partition", partition_problem(partition))
    require("account_id", account_id_problem(account_id))
    require("region", region_problem(region, partition))
    return [
        Statement(
            "DescribeScalingInputs",
            DESCRIBE_ACTIONS,
            ("*",),
            conditions={"StringEquals": {"aws:RequestedRegion": region}},
        ),
        # Labels and taints of a managed node group that has never had a node.
        Statement(
            "DescribeNodeGroups",
            ("eks:DescribeNodegroup",),
            (f"arn:{partition}:eks:{region}:{account_id}:nodegroup/{cluster_name}/*/*",),
        ),
        Statement(
            "ScaleClusterGroups",
            SCALING_ACTIONS,
            (f"arn:{partition}:autoscaling:{region}:{account_id}:autoScalingGroup:*:autoScalingGroupName/*",),
            conditions={
                "StringEquals": {
                    f"aws:ResourceTag/{TAG_PREFIX}{cluster_name}": "owned",
                    f"aws:ResourceTag/{ENABLED_TAG}": "true",
                }
            },
        ),
    ]


def autoscaler_values(
    *,
    cluster_name: str,
    region: str,
    service_account: str = SERVICE_ACCOUNT,
    expander: str = "least-waste",
    scale_down_unneeded_minutes: int = 15,
    scale_down_delay_after_add_minutes: int = 15,
    balance_similar_node_groups: bool = True,
    skip_nodes_with_local_storage: bool = False,
) -> dict[str, Any]:
    """The chart values for `ClusterAutoscaler`; every key is in the chart's values.yaml.

    expander: least-waste. Pods pick their pool by node selector and GPU taints, so the choice is
        mostly among groups that fit alike; least-waste takes the one left with the least idle CPU
        and memory, the smallest node that fits (`priority` would need a ConfigMap ranking groups).
    scale_down_unneeded_minutes, scale_down_delay_after_add_minutes: 15 (the autoscaler's default
        is 10): a short lull must not drop a GPU node that takes minutes to return and load a model.
    balance_similar_node_groups: True, so similar groups (one per zone) grow evenly.
    skip_nodes_with_local_storage: False: a scratch emptyDir should not pin a node; Ray pods are
        kept by RAY_POD_ANNOTATIONS instead.
    """
    require("cluster_name", cluster_name_problem(cluster_name))
    require("region", region_problem(region))
    require("service_account", service_account_problem(service_account))
    require("expander", expander_problem(expander))
    require("scale_down_unneeded_minutes", minutes_problem(scale_down_unneeded_minutes))
    require("scale_down_delay_after_add_minutes", minutes_problem(scale_down_delay_after_add_minutes))
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "rbac": {"serviceAccount": {"create": True, "name": service_account}},
        "extraArgs": {
            "expander": expander,
            "scale-down-unneeded-time": f"{scale_down_unneeded_minutes}m",
            "scale-down-delay-after-add": f"{scale_down_delay_after_add_minutes}m",
            "balance-similar-node-groups": balance_similar_node_groups,
            "skip-nodes-with-local-storage": skip_nodes_with_local_storage,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"memory": "600Mi"}},
        # The hardening the chart suggests in its comments (the image is distroless:nonroot).
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
