"""The KubeRay RayService: the application as `serveConfigV2`, the head on the CPU pool, one
worker group per GPU pool in use. Pods run a stock Ray image; the application's code
comes from the zip the stack publishes, through `runtime_env.py_modules`."""

from __future__ import annotations

import yaml

from stacks.planning.plan import EnvironmentPlan
from stacks.specs.app_package import app_zip_key
from stacks.specs.application import RAY_VERSION, SERVE_PORT
from stacks.specs.pods import container, declared_resources, pod_template

# Ray's metrics (8080) on every pod, and on the head the autoscaler's and dashboard's own
# (44217, 44227): named as KubeRay's PodMonitor example scrapes them (infra.platform.observability).
METRICS_PORTS = [{"containerPort": 8080, "name": "metrics"}]
HEAD_PORTS = [
    {"containerPort": 6379, "name": "gcs-server"},
    {"containerPort": 8265, "name": "dashboard"},
    {"containerPort": 10001, "name": "client"},
    {"containerPort": SERVE_PORT, "name": "serve"},
    *METRICS_PORTS,
    {"containerPort": 44217, "name": "as-metrics"},
    {"containerPort": 44227, "name": "dash-metrics"},
]
HEAD_RESOURCES = {"cpu": "2", "memory": "8Gi"}


def with_shared_memory(template: dict) -> dict:
    """A GPU worker's /dev/shm in memory, not the container runtime's 64 MiB: NCCL passes tensors
    between a node's GPUs through it (tensor parallelism fails or crawls without)."""
    spec = template["spec"]
    (worker,) = spec["containers"]
    return {
        **template,
        "spec": {
            **spec,
            "containers": [{**worker, "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}],
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        },
    }


def rayservice(plan: EnvironmentPlan, application: dict) -> dict:
    names, image = plan.names, plan.env.serving.kuberay.ray_image
    head = {
        **container("ray-head", image, plan.head_pool),
        "ports": HEAD_PORTS,
        "resources": {"requests": dict(HEAD_RESOURCES), "limits": dict(HEAD_RESOURCES)},
    }
    groups = []
    for pool in plan.serving_pools:
        group = {
            "groupName": pool.name,
            "replicas": pool.nodes_at_min,
            "minReplicas": pool.nodes_at_min,
            "maxReplicas": pool.max_nodes,
            "rayStartParams": {},
            "template": with_shared_memory(
                pod_template(plan, pool, {**container("ray-worker", image, pool), "ports": METRICS_PORTS})
            ),
        }
        if resources := declared_resources(pool):
            # KubeRay (1.4+) passes these to `ray start --resources` and tells its autoscaler.
            group["resources"] = {name: f"{value:g}" for name, value in resources.items()}
        groups.append(group)
    # Stock Ray image: the app comes from the zip the stack publishes, boto3 from pip.
    code = f"s3://{names.lora_bucket}/{app_zip_key()}"
    serve = {"applications": [{**application, "runtime_env": {"py_modules": [code], "pip": ["boto3>=1.35"]}}]}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {
            "name": names.service,
            "namespace": plan.env.serving.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "llm-serving-stacks",
                "llm-serving-stacks/environment": plan.env.name,
            },
        },
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve, sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": True,
                # The head runs the controller and proxy, not model replicas.
                "headGroupSpec": {
                    "rayStartParams": {"num-cpus": "0"},
                    "template": pod_template(plan, plan.head_pool, head),
                },
                "workerGroupSpecs": groups,
            },
        },
    }
