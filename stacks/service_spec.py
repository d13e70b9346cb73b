"""Service specs rendered from an environment: Anyscale service, Ray Serve config, KubeRay RayService.

All three carry the same application (`app.serving:build_app` with the
environment's args) and place each model's replicas on the node pool the
stack creates for it: node selectors and tolerations come from the same
functions that put labels and taints on the nodes (`infra.scheduling`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import yaml

from infra.catalog import INSTANCE_TYPES, Gpu
from infra.scheduling import Taint, node_labels, node_selector, node_taints, schedulable, tolerations
from stacks.app_args import app_args
from stacks.app_package import app_zip_key
from stacks.environment import Environment, NodePool
from stacks.names import Names

RAY_VERSION = "2.60.0"
APP_NAME = "llm"
IMPORT_PATH = "app.serving:build_app"
SERVE_PORT = 8000
# Ray only auto-detects "A100" on A100 nodes; the sized names need a declared resource.
DECLARED_ACCELERATORS = {"A100-40G", "A100-80G"}
ANYSCALE_FILE, SERVE_FILE, RAYSERVICE_FILE = "anyscale-service.yaml", "serve-config.yaml", "rayservice.yaml"
# Where the stack publishes specs, in the LoRA bucket: specs/<env>/<version>/<file>.
SPECS_PREFIX = "specs"


@dataclass(frozen=True)
class PoolShape:
    """A node pool as pods see it."""

    pool: NodePool
    gpu: Gpu | None
    gpus_per_node: int
    labels: dict[str, str]
    taints: list[Taint]

    @property
    def name(self) -> str:
        return self.pool.name

    def selector(self) -> dict[str, str]:
        return node_selector(self.name, self.gpu)

    def tolerations(self) -> list[dict[str, str]]:
        return tolerations(self.taints)


def pool_shape(pool: NodePool) -> PoolShape:
    entry = INSTANCE_TYPES.get(pool.instance_types[0]) if pool.accelerator else None
    gpu = entry.gpu if entry else None
    gpus = min(INSTANCE_TYPES[t].gpus for t in pool.instance_types) if entry else 0
    taints = [Taint(t.key, t.value, t.effect) for t in pool.taints]
    return PoolShape(
        pool=pool,
        gpu=gpu,
        gpus_per_node=gpus,
        labels=node_labels(pool.name, pool.labels, gpu, gpus),
        taints=node_taints(taints, gpu=gpu is not None, capacity_type=pool.capacity_type.upper()),
    )


def head_pool(env: Environment) -> NodePool:
    return next(p for p in env.node_pools if p.accelerator is None)


def worker_node_bounds(env: Environment, shape: PoolShape) -> tuple[int, int]:
    """Nodes the pool's models need at min and at max replicas, plus rollout surge at max."""
    low = high = 0
    for model in env.models:
        if model.node_pool != shape.name:
            continue
        per_node = max(1, shape.gpus_per_node // model.gpus_per_replica)
        low += math.ceil(model.replicas.min / per_node)
        high += math.ceil(model.replicas.max / per_node)
    return low, high + math.ceil(high * env.serving.rollout_surge_percent / 100)


def application(env: Environment) -> dict:
    return {
        "name": APP_NAME,
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "args": app_args(env).model_dump(mode="json", exclude_none=True),
    }


def serve_config(env: Environment) -> dict:
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": [application(env)],
    }


def _gpu_shapes(env: Environment) -> list[PoolShape]:
    used = {m.node_pool for m in env.models}
    return [pool_shape(p) for p in env.node_pools if p.accelerator and p.name in used]


def _pod_patch(env: Environment, shape: PoolShape) -> dict:
    spec: dict = {"serviceAccountName": env.serving.service_account, "nodeSelector": shape.selector()}
    if shape.taints:
        spec["tolerations"] = shape.tolerations()
    return {"spec": spec}


def _declared_resources(shape: PoolShape) -> dict[str, float]:
    if shape.gpu is not None and shape.gpu.name in DECLARED_ACCELERATORS:
        return {f"accelerator_type:{shape.gpu.name}": 1}
    return {}


def anyscale_service(env: Environment) -> dict:
    names, settings = Names(env), env.serving.anyscale
    head = pool_shape(head_pool(env))
    workers = []
    for shape in _gpu_shapes(env):
        low, high = worker_node_bounds(env, shape)
        group = {
            "name": shape.name,
            "instance_type": settings.instance_types.get(shape.name, shape.pool.instance_types[0]),
            "min_nodes": low,
            "max_nodes": high,
            "market_type": "SPOT" if shape.pool.capacity_type == "spot" else "ON_DEMAND",
            "labels": {"node-pool": shape.name},
            "advanced_instance_config": _pod_patch(env, shape),
        }
        if resources := _declared_resources(shape):
            group["resources"] = resources
        workers.append(group)
    service = {
        "name": names.service,
        "image_uri": settings.image_uri,
        "compute_config": {
            "head_node": {
                "instance_type": settings.instance_types.get(head.name, head.pool.instance_types[0]),
                "advanced_instance_config": _pod_patch(env, head),
            },
            "worker_nodes": workers,
            "auto_select_worker_config": False,
        },
        # Deployed from the repository root: the SDK uploads the app package.
        "py_modules": ["app"],
        "requirements": ["boto3>=1.35"],
        "env_vars": {"AWS_REGION": env.aws.region, "AWS_DEFAULT_REGION": env.aws.region},
        "applications": [application(env)],
        "query_auth_token_enabled": True,
    }
    if settings.cloud:
        service["cloud"] = settings.cloud
    if settings.project:
        service["project"] = settings.project
    return service


def _container(name: str, image: str, shape: PoolShape, head: bool) -> dict:
    smallest = min((INSTANCE_TYPES.get(t) for t in shape.pool.instance_types if t in INSTANCE_TYPES),
                   key=lambda t: t.vcpus, default=None)
    # Leave room for the kubelet and daemon sets (CNI, Pod Identity agent, device plugin).
    cpu = max(1, smallest.vcpus - 2) if smallest else 2
    memory = f"{max(4, int(smallest.memory_gib * 0.8))}Gi" if smallest else "8Gi"
    limits = {"cpu": str(cpu), "memory": memory}
    if shape.gpus_per_node:
        limits["nvidia.com/gpu"] = str(shape.gpus_per_node)
    container = {"name": name, "image": image, "resources": {"requests": dict(limits), "limits": limits}}
    if head:
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": SERVE_PORT, "name": "serve"},
        ]
    return container


def _pod_template(env: Environment, shape: PoolShape, container: dict) -> dict:
    patch = _pod_patch(env, shape)["spec"]
    return {"spec": {**patch, "containers": [container]}}


def rayservice(env: Environment) -> dict:
    names, image = Names(env), env.serving.kuberay.ray_image
    head = pool_shape(head_pool(env))
    head_container = _container("ray-head", image, head, head=True)
    head_container["resources"] = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}
    groups = []
    for shape in _gpu_shapes(env):
        low, high = worker_node_bounds(env, shape)
        start = {}
        if resources := _declared_resources(shape):
            start["resources"] = yaml.safe_dump(resources, default_flow_style=True).strip().replace("'", '"')
        groups.append({
            "groupName": shape.name,
            "replicas": low,
            "minReplicas": low,
            "maxReplicas": high,
            "rayStartParams": start,
            "template": _pod_template(env, shape, _container("ray-worker", image, shape, head=False)),
        })
    # Stock Ray image: the app comes from the zip the stack publishes, boto3 from pip.
    code = f"s3://{names.lora_bucket}/{app_zip_key()}"
    serve = {"applications": [{**application(env), "runtime_env": {"py_modules": [code], "pip": ["boto3>=1.35"]}}]}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": names.service, "namespace": env.serving.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "llm-serving-stacks",
                                "llm-serving-stacks/environment": env.name}},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve, sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": True,
                # The head runs the controller and proxy, not model replicas.
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}, "template": _pod_template(env, head, head_container)},
                "workerGroupSpecs": groups,
            },
        },
    }


def render(env: Environment) -> dict[str, dict]:
    return {ANYSCALE_FILE: anyscale_service(env), SERVE_FILE: serve_config(env), RAYSERVICE_FILE: rayservice(env)}


def to_yaml(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=120)


def spec_version(texts: dict[str, str]) -> str:
    """A short content hash of all spec files: the same specs, the same version."""
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    return digest.hexdigest()[:16]


def scheduling_problems(env: Environment, documents: dict[str, dict]) -> list[str]:
    """Models whose pods could not run on their pool's nodes, in either target."""
    problems = []
    anyscale_groups = {g["name"]: g for g in documents[ANYSCALE_FILE]["compute_config"]["worker_nodes"]}
    kuberay_groups = {g["groupName"]: g for g in documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    for i, model in enumerate(env.models):
        shape = pool_shape(env.node_pool(model.node_pool))
        where = f"models[{i}] ({model.id}) on pool {shape.name!r}"
        targets = {
            "anyscale": anyscale_groups.get(shape.name, {}).get("advanced_instance_config", {}).get("spec"),
            "kuberay": kuberay_groups.get(shape.name, {}).get("template", {}).get("spec"),
        }
        for target, pod in targets.items():
            if pod is None:
                problems.append(f"{where}: {target} has no worker group for the pool")
                continue
            for why in schedulable(pod.get("nodeSelector", {}), pod.get("tolerations", []), shape.labels, shape.taints):
                problems.append(f"{where}: {target}: {why}")
        group = kuberay_groups.get(shape.name)
        if group is not None:
            limit = int(group["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
            if limit < model.gpus_per_replica:
                problems.append(f"{where}: kuberay: worker pods get {limit} GPUs, a replica needs {model.gpus_per_replica}")
    return problems


def vendor_problems(documents: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Check the specs with the app's contract and, where installed, Ray's and Anyscale's own models.

    Returns (problems, names of the validators that ran). Ray and the
    Anyscale SDK come with the `serving` extra; infrastructure-only installs
    still get the app contract and the scheduling check.
    """
    from pydantic import ValidationError

    from app.spec import AppArgs

    problems, ran = [], ["app contract"]
    serve_v2 = yaml.safe_load(documents[RAYSERVICE_FILE]["spec"]["serveConfigV2"])
    for name, doc in ((ANYSCALE_FILE, documents[ANYSCALE_FILE]), (SERVE_FILE, documents[SERVE_FILE]),
                      (RAYSERVICE_FILE, serve_v2)):
        for app in doc["applications"]:
            try:
                AppArgs.model_validate(app["args"])
            except ValidationError as exc:
                problems.append(f"{name}: application {app['name']!r} args: {exc.errors()[0]['msg']}")
    try:
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        ServeDeploySchema = None
    if ServeDeploySchema is not None:
        ran.append("Ray ServeDeploySchema")
        for name, doc in ((SERVE_FILE, documents[SERVE_FILE]), (f"{RAYSERVICE_FILE} serveConfigV2", serve_v2)):
            try:
                ServeDeploySchema.model_validate(doc)
            except ValidationError as exc:
                problems.append(f"{name}: rejected by Ray ServeDeploySchema: {exc.errors()[0]['msg']}")
    try:
        from anyscale.service.models import ServiceConfig
    except ImportError:
        ServiceConfig = None
    if ServiceConfig is not None:
        ran.append("Anyscale ServiceConfig")
        try:
            ServiceConfig(**documents[ANYSCALE_FILE])
        except (TypeError, ValueError) as exc:
            problems.append(f"{ANYSCALE_FILE}: rejected by Anyscale ServiceConfig: {exc}")
    return problems, ran
