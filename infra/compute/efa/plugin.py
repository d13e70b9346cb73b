"""What Elastic Fabric Adapter (EFA) needs from the kit, as plain data: the extended resource pods
ask for, the interfaces a node's launch template lists, and the device plugin's chart values. No
cdktf import, so service specs can use it at no cost; the constructs are `EfaNetwork`
(infra.compute.efa.network), `EfaDevicePlugin` (infra.platform.efa_device_plugin) and the node
pools' `efa` option.

Sources: Amazon EKS User Guide, "Manage EFA devices on Amazon EKS" (device-management-efa: launch
templates of managed node groups list the interfaces, never a subnet; the security group must
allow all traffic to and from itself; the AMIs carry the EFA software, not the device plugin) and
"Customize managed nodes with launch templates" (security groups in the template replace the
cluster security group, so it must be listed too); Amazon EC2 User Guide, "Maximize network
bandwidth on Amazon EC2 instances with multiple network cards" (one EFA per network card, the
primary at card 0 device 0). The interface layout is terraform-aws-modules/terraform-aws-eks'
(modules/eks-managed-node-group, `enable_efa_support`). The chart: github.com/aws/eks-charts,
stable/aws-efa-k8s-device-plugin at chart v0.5.30 (values.yaml, templates/daemonset.yaml; values
vendored in tests/schemas/).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.catalog import efa_interfaces
from infra.compute.efa.rules import efa_instance_types_problem
from infra.compute.scheduling import POOL_LABEL
from infra.rules import label_value_problem, require

# What the device plugin advertises per node, one unit per EFA device.
EFA_RESOURCE = "vpc.amazonaws.com/efa"
# Where the device plugin runs: its DaemonSet asks for the system-node-critical priority class.
DEVICE_PLUGIN_NAMESPACE = "kube-system"


@dataclass(frozen=True)
class EfaInterface:
    """One network interface of an EFA node's launch template."""

    network_card_index: int
    device_index: int
    interface_type: str = "efa"  # EFA with ENA: IP traffic and OS-bypass on every card


def pool_efa_interfaces(instance_types: Sequence[str]) -> int:
    """The EFA interfaces of each node of an EFA pool (its instance types share the count)."""
    require("instance_types", efa_instance_types_problem(instance_types))
    return efa_interfaces(instance_types[0])


def interface_layout(count: int) -> list[EfaInterface]:
    """One EFA per network card: the primary at card 0, device 0; every other card's at device 1."""
    if count < 1:
        raise ValueError(f"efa: {count} EFA interfaces; an EFA node has at least one")
    return [EfaInterface(network_card_index=card, device_index=0 if card == 0 else 1) for card in range(count)]


def pod_resources(count: int) -> dict[str, str]:
    """What a pod taking a whole EFA node requests (and limits: extended resources are never overcommitted)."""
    return {EFA_RESOURCE: str(count)} if count else {}


def device_plugin_values(pool_names: Iterable[str], tolerations: Iterable[Mapping[str, str]] = ()) -> dict[str, Any]:
    """The chart values for `EfaDevicePlugin`: the plugin runs on the named pools' nodes only.

    The chart puts its pods on nodes whose `supportedInstanceLabels.keys` label is one of
    `supportedInstanceLabels.values` (a required node affinity in templates/daemonset.yaml; by
    default the instance-type label and every EFA type). Here the key is the pool label and the
    values the EFA pools: unlike a nodeSelector, that holds any number of pools, and every
    instance type of those pools has EFA (`efa_instance_types_problem`). The pools' taints
    (NVIDIA, Anyscale and your own) are tolerated, so the plugin reaches tainted GPU nodes.
    """
    pools = sorted(set(pool_names))
    if not pools:
        raise ValueError("pool_names: name at least one EFA pool")
    for pool in pools:
        require("pool_names", label_value_problem(pool))
    unique: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for toleration in tolerations:
        unique.setdefault(tuple(sorted(toleration.items())), dict(toleration))
    return {
        "supportedInstanceLabels": {"keys": [POOL_LABEL], "values": pools},
        "tolerations": list(unique.values()),
    }
