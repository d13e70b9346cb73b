"""The pod side of a node pool, shared by the Anyscale and KubeRay specs: which nodes a
pod may run on (node selector, tolerations), its identity, and its size."""

from __future__ import annotations

from stacks.planning.plan import EnvironmentPlan
from stacks.planning.pools import PoolPlan

# Ray only auto-detects "A100" on A100 nodes; the sized names need a declared resource.
DECLARED_ACCELERATORS = {"A100-40G", "A100-80G"}


def pod_patch(plan: EnvironmentPlan, pool: PoolPlan) -> dict:
    """Pods on `pool` run as the serving service account (Pod Identity) on that pool's nodes only."""
    spec: dict = {"serviceAccountName": plan.env.serving.service_account, "nodeSelector": pool.selector()}
    if pool.taints:
        spec["tolerations"] = pool.tolerations()
    return {"spec": spec}


def declared_resources(pool: PoolPlan) -> dict[str, float]:
    if pool.gpu is not None and pool.gpu.name in DECLARED_ACCELERATORS:
        return {f"accelerator_type:{pool.gpu.name}": 1}
    return {}


def container(name: str, image: str, pool: PoolPlan) -> dict:
    """A Ray container taking a whole node of the pool, minus room for the kubelet and daemon sets."""
    smallest = pool.smallest
    # Leave room for the kubelet and daemon sets (CNI, Pod Identity agent, device plugin).
    cpu = max(1, smallest.vcpus - 2) if smallest else 2
    memory = f"{max(4, int(smallest.memory_gib * 0.8))}Gi" if smallest else "8Gi"
    limits = {"cpu": str(cpu), "memory": memory}
    if pool.gpus_per_node:
        limits["nvidia.com/gpu"] = str(pool.gpus_per_node)
    return {"name": name, "image": image, "resources": {"requests": dict(limits), "limits": limits}}


def pod_template(plan: EnvironmentPlan, pool: PoolPlan, pod_container: dict) -> dict:
    return {"spec": {**pod_patch(plan, pool)["spec"], "containers": [pod_container]}}
