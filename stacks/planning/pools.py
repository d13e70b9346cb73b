"""Node pools as the plan sees them: GPUs per node, the nodes their models need, cost,
and the labels and taints pods must match.

Labels and taints come from `infra.compute.scheduling`, the functions the node pool
constructs put on the nodes, so what the specs select is what the nodes carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from infra.catalog import INSTANCE_TYPES, Gpu, InstanceType
from infra.compute.scheduling import Taint, node_labels, node_selector, node_taints, tolerations
from stacks.config.schema import NodePool

At = Literal["min", "max"]


@dataclass(frozen=True)
class PoolPlan:
    """One node pool with what its models need of it."""

    config: NodePool
    gpu: Gpu | None
    gpus_per_node: int
    # Pods are sized to fit the smallest instance type of the pool (None: not in the catalog).
    smallest: InstanceType | None
    # On-demand price of the first (preferred) instance type; 0 where the catalog has none.
    price_per_hour: float
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    # Nodes the pool's models need with every model at its min / max replicas, and the
    # extra nodes a rollout may add at max (serving.rollout_surge_percent).
    nodes_at_min: int = 0
    nodes_at_max: int = 0
    surge_nodes: int = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def has_gpus(self) -> bool:
        return self.gpu is not None

    @property
    def max_nodes(self) -> int:
        """Nodes needed at max replicas during a rollout: what the pool must be able to hold."""
        return self.nodes_at_max + self.surge_nodes

    def nodes(self, at: At) -> int:
        return self.nodes_at_min if at == "min" else self.nodes_at_max

    def cost_per_hour(self, at: At) -> float:
        """On-demand cost of the nodes running, with every model at its `at` replicas."""
        return max(self.nodes(at), self.config.min_size) * self.price_per_hour if self.has_gpus else 0.0

    def selector(self) -> dict[str, str]:
        return node_selector(self.name, self.gpu)

    def tolerations(self) -> list[dict[str, str]]:
        return tolerations(self.taints)


def pool_plan(pool: NodePool) -> PoolPlan:
    """The pool's shape, before any model is placed on it."""
    entries = [INSTANCE_TYPES[t] for t in pool.instance_types if t in INSTANCE_TYPES]
    gpu = entries[0].gpu if pool.has_gpus and entries else None
    gpus = entries[0].gpus if gpu else 0
    first = INSTANCE_TYPES.get(pool.instance_types[0])
    taints = [Taint(t.key, t.value, t.effect) for t in pool.taints]
    return PoolPlan(
        config=pool,
        gpu=gpu,
        gpus_per_node=gpus,
        smallest=min(entries, key=lambda e: e.vcpus, default=None),
        price_per_hour=first.price_per_hour if first else 0.0,
        labels=node_labels(pool.name, pool.labels, gpu, gpus),
        taints=tuple(node_taints(taints, gpu=gpu is not None, capacity_type=pool.capacity_type.upper())),
    )


def nodes_per_replica(gpus_per_replica: int, gpus_per_node: int) -> int:
    """Whole nodes one replica spans (more than one only for multi-node replicas)."""
    return max(1, math.ceil(gpus_per_replica / gpus_per_node)) if gpus_per_node else 1


def nodes_for(replicas: int, gpus_per_replica: int, gpus_per_node: int) -> int:
    """Whole nodes for `replicas` replicas; replicas of different models do not share a node."""
    if gpus_per_replica > gpus_per_node:
        return replicas * nodes_per_replica(gpus_per_replica, gpus_per_node)
    per_node = max(1, gpus_per_node // gpus_per_replica)
    return math.ceil(replicas / per_node)


def with_models(pool: PoolPlan, models: list[tuple[int, int, int]], surge_percent: int) -> PoolPlan:
    """`pool` holding `models`, each (min replicas, max replicas, GPUs per replica)."""
    low = sum(nodes_for(lo, gpus, pool.gpus_per_node) for lo, _, gpus in models)
    high = sum(nodes_for(hi, gpus, pool.gpus_per_node) for _, hi, gpus in models)
    surge = math.ceil(high * surge_percent / 100)
    # A rollout adds whole replicas: a multi-node one needs all its nodes (its pool holds only it).
    span = max((nodes_per_replica(gpus, pool.gpus_per_node) for _, _, gpus in models), default=1)
    return replace(pool, nodes_at_min=low, nodes_at_max=high, surge_nodes=math.ceil(surge / span) * span)
