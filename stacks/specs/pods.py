"""The pod side of a node pool, shared by the Anyscale and KubeRay specs: which nodes a
pod may run on (node selector, tolerations), its identity, and its size."""

from __future__ import annotations

from infra.compute.autoscaling import RAY_POD_ANNOTATIONS
from infra.compute.efa.plugin import pod_resources, pool_efa_interfaces
from infra.compute.scheduling import pod_size
from stacks.planning.plan import EnvironmentPlan
from stacks.planning.pools import PoolPlan

# Ray only auto-detects "A100" on A100 nodes; the sized names need a declared resource.
DECLARED_ACCELERATORS = {"A100-40G", "A100-80G"}


def pod_patch(plan: EnvironmentPlan, pool: PoolPlan) -> dict:
    """Pods on `pool` run as the serving service account (Pod Identity) on that pool's nodes only,
    and a node autoscaler never evicts one mid-request (Ray's autoscaler removes idle pods)."""
    spec: dict = {"serviceAccountName": plan.env.serving.service_account, "nodeSelector": pool.selector()}
    if pool.taints:
        spec["tolerations"] = pool.tolerations()
    return {"metadata": {"annotations": dict(RAY_POD_ANNOTATIONS)}, "spec": spec}


def pool_resource(pool: PoolPlan) -> str:
    """The Ray resource a GPU pool's nodes advertise, one unit per GPU; a model's placement bundles
    ask for it, so Ray puts its replicas on that pool only."""
    return f"llmstacks-pool-{pool.name}"


def declared_resources(pool: PoolPlan) -> dict[str, float]:
    """The custom Ray resources a worker of `pool` declares at start."""
    resources: dict[str, float] = {}
    if pool.gpu is not None:
        resources[pool_resource(pool)] = pool.gpus_per_node
        if pool.gpu.name in DECLARED_ACCELERATORS:
            resources[f"accelerator_type:{pool.gpu.name}"] = 1
    return resources


def container(name: str, image: str, pool: PoolPlan) -> dict:
    """A Ray container taking a whole node of the pool, minus room for the kubelet and daemon sets;
    on an EFA pool, every EFA interface of the node too (`vpc.amazonaws.com/efa`)."""
    cpu, memory_gib = pod_size(pool.smallest)
    limits = {"cpu": str(cpu), "memory": f"{memory_gib}Gi"}
    if pool.gpus_per_node:
        limits["nvidia.com/gpu"] = str(pool.gpus_per_node)
    if pool.config.efa:
        limits |= pod_resources(pool_efa_interfaces(pool.config.instance_types))
    return {"name": name, "image": image, "resources": {"requests": dict(limits), "limits": limits}}


def pod_template(plan: EnvironmentPlan, pool: PoolPlan, pod_container: dict) -> dict:
    patch = pod_patch(plan, pool)
    return {"metadata": patch["metadata"], "spec": {**patch["spec"], "containers": [pod_container]}}
