"""The Anyscale service config: the head on the CPU pool, one worker group per GPU pool in use."""

from __future__ import annotations

from stacks.planning.plan import EnvironmentPlan
from stacks.planning.pools import PoolPlan
from stacks.specs.pods import declared_resources, pod_patch


def instance_type_name(plan: EnvironmentPlan, pool: PoolPlan) -> str:
    """The Anyscale instance type of a pool's pods: what the compute config names and the operator offers."""
    return plan.env.serving.anyscale.instance_type_of(pool.config)


def anyscale_service(plan: EnvironmentPlan, application: dict) -> dict:
    settings = plan.env.serving.anyscale
    head = plan.head_pool
    workers = []
    for pool in plan.serving_pools:
        group = {
            "name": pool.name,
            "instance_type": instance_type_name(plan, pool),
            "min_nodes": pool.nodes_at_min,
            "max_nodes": pool.max_nodes,
            "market_type": "SPOT" if pool.config.capacity_type == "spot" else "ON_DEMAND",
            "labels": {"node-pool": pool.name},
            "advanced_instance_config": pod_patch(plan, pool),
        }
        if resources := declared_resources(pool):
            group["resources"] = resources
        workers.append(group)
    service = {
        "name": plan.names.service,
        "image_uri": settings.image_uri,
        "compute_config": {
            "head_node": {
                "instance_type": instance_type_name(plan, head),
                "advanced_instance_config": pod_patch(plan, head),
            },
            "worker_nodes": workers,
            "auto_select_worker_config": False,
        },
        # Deployed from the repository root: the SDK uploads the app package.
        "py_modules": ["app"],
        "requirements": ["boto3>=1.35"],
        "env_vars": {"AWS_REGION": plan.env.aws.region, "AWS_DEFAULT_REGION": plan.env.aws.region},
        "applications": [application],
        "query_auth_token_enabled": True,
    }
    if settings.cloud:
        service["cloud"] = settings.cloud
    if settings.project:
        service["project"] = settings.project
    return service
