"""Checks of the rendered specs before anything is written: the vendors' own models and scheduling.

Ray's `ServeDeploySchema` and the Anyscale SDK's `ServiceConfig` come with the
`serving` extra; infrastructure-only installs still get the app contract and
the scheduling check, and are told which validators ran.
"""

from __future__ import annotations

from collections import Counter

import yaml
from pydantic import ValidationError

from app.spec import AppArgs
from infra.compute.scheduling import pod_size, schedulable
from stacks.errors import ConfigError
from stacks.planning.plan import EnvironmentPlan, PartPlan
from stacks.specs.render import ANYSCALE_FILE, RAYSERVICE_FILE, SERVE_FILE, ServiceSpecs

SCHEDULING = "scheduling"


def check_specs(plan: EnvironmentPlan, specs: ServiceSpecs) -> list[str]:
    """Raise ConfigError (the environment's `serving`) if a spec is invalid or a model's pods could
    not run on its pool; returns the names of the validators that ran."""
    problems, ran = vendor_problems(specs.documents)
    problems += scheduling_problems(plan, specs.documents)
    problems += placement_problems(plan, specs.documents)
    if problems:
        raise ConfigError(plan.source, "serving", problems[0], more=len(problems) - 1)
    return [*ran, SCHEDULING]


def scheduling_problems(plan: EnvironmentPlan, documents: dict[str, dict]) -> list[str]:
    """Models whose pods could not run on their pool's nodes, in either target."""
    problems = []
    anyscale_groups = {g["name"]: g for g in documents[ANYSCALE_FILE]["compute_config"]["worker_nodes"]}
    kuberay_groups = {
        g["groupName"]: g for g in documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    }
    for model in plan.models:
        for part in model.parts:
            pool = part.pool
            role = "" if part.role == "model" else f" {part.role}"
            where = f"models[{model.index}] ({model.id}){role} on pool {pool.name!r}"
            targets = {
                "anyscale": anyscale_groups.get(pool.name, {}).get("advanced_instance_config", {}).get("spec"),
                "kuberay": kuberay_groups.get(pool.name, {}).get("template", {}).get("spec"),
            }
            for target, pod in targets.items():
                if pod is None:
                    problems.append(f"{where}: {target} has no worker group for the pool")
                    continue
                for why in schedulable(
                    pod.get("nodeSelector", {}), pod.get("tolerations", []), pool.labels, pool.taints
                ):
                    problems.append(f"{where}: {target}: {why}")
            group = kuberay_groups.get(pool.name)
            if group is not None:
                limit = int(group["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
                per_node = part.gpus_per_replica // part.nodes_per_replica
                if limit < per_node:
                    problems.append(
                        f"{where}: kuberay: worker pods get {limit} GPUs, a replica needs {per_node} per node"
                    )
    return problems


# What a Ray Serve LLM replica adds to its first bundle (LLMServer.get_deployment_options: the
# replica actor's own CPU) and to every bundle (the accelerator type, as a fraction).
REPLICA_ACTOR = {"CPU": 1.0}
ACCELERATOR_SHARE = 0.001


def node_demand(placement: dict, accelerator_type: str | None, nodes: int = 1, engines: int = 1) -> Counter:
    """What one replica needs of its first node, as Ray will request it: its placement bundles
    split evenly over `nodes` (a multi-node replica) or repeated for `engines` (a data-parallel
    gang, which Ray packs on one node), plus each engine's replica actor."""
    total: Counter = Counter()
    bundles = placement["bundles"][: len(placement["bundles"]) // nodes]
    for _ in range(engines):
        total.update(REPLICA_ACTOR)
        for bundle in bundles:
            total.update(bundle)
            if accelerator_type:
                total[f"accelerator_type:{accelerator_type}"] += ACCELERATOR_SHARE
    return total


def worker_nodes(plan: EnvironmentPlan, documents: dict[str, dict]) -> dict[str, dict[str, Counter]]:
    """The Ray resources each target's worker nodes advertise, per pool: declared resources,
    CPUs and GPUs of the pod, and the accelerator type Ray detects on a GPU node."""
    nodes: dict[str, dict[str, Counter]] = {"anyscale": {}, "kuberay": {}}
    for group in documents[ANYSCALE_FILE]["compute_config"]["worker_nodes"]:
        pool = plan.pool(group["name"])
        cpus, _ = pod_size(pool.smallest)
        nodes["anyscale"][pool.name] = Counter({"CPU": cpus, "GPU": pool.gpus_per_node, **group.get("resources", {})})
    for group in documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        pool = plan.pool(group["groupName"])
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        declared = {name: float(value) for name, value in group.get("resources", {}).items()}
        nodes["kuberay"][pool.name] = Counter(
            {"CPU": float(limits["cpu"]), "GPU": float(limits.get("nvidia.com/gpu", 0)), **declared}
        )
    for target in nodes.values():
        for name, resources in target.items():
            gpu = plan.pool(name).gpu
            if gpu is not None and not any(k.startswith("accelerator_type:") for k in resources):
                resources[f"accelerator_type:{gpu.name}"] = 1
    return nodes


def placement_problems(plan: EnvironmentPlan, documents: dict[str, dict]) -> list[str]:
    """Each replica's share of a node must fit a node of its own pool and no node of any other,
    in both targets: otherwise Ray could start it on nodes meant for another model. Within a node
    the placement is STRICT_PACK; a multi-node replica is PACK over whole nodes."""
    problems = []
    serve_v2 = yaml.safe_load(documents[RAYSERVICE_FILE]["spec"]["serveConfigV2"])
    models = {
        "anyscale": documents[ANYSCALE_FILE]["applications"][0]["args"]["models"],
        "kuberay": serve_v2["applications"][0]["args"]["models"],
    }
    for target, pools in worker_nodes(plan, documents).items():
        for model_plan, model in zip(plan.models, models[target], strict=True):
            rendered = [(model_plan.serving, model)]
            if model_plan.prefill is not None:
                rendered.insert(0, (model_plan.prefill, model.get("prefill") or {}))
            for part, spec in rendered:
                role = "" if part.role == "model" else f" {part.role}"
                problems += _part_placement(
                    part, spec, pools, f"models[{model_plan.index}] ({model_plan.id}){role}: {target}"
                )
    return problems


def _part_placement(part: PartPlan, spec: dict, pools: dict[str, Counter], where: str) -> list[str]:
    nodes = part.nodes_per_replica
    strategy = "PACK" if nodes > 1 else "STRICT_PACK"
    placement = spec.get("placement")
    if placement is None or placement["strategy"] != strategy:
        return [
            f"{where}: a replica's placement must be {strategy} "
            f"({'whole nodes, one per pipeline stage' if nodes > 1 else 'all its GPUs on one node'})"
        ]
    need = node_demand(placement, spec.get("accelerator_type"), nodes=nodes, engines=part.deployment.data_parallel_size)
    fits = sorted(name for name, node in pools.items() if all(node[k] >= v for k, v in need.items()))
    own = part.pool.name
    problems = []
    if own not in fits:
        short = ", ".join(
            f"{k} {v:g} > {pools.get(own, Counter())[k]:g}"
            for k, v in sorted(need.items())
            if pools.get(own, Counter())[k] < v
        )
        problems.append(f"{where}: a replica's placement does not fit a node of pool {own!r} ({short})")
    if others := [name for name in fits if name != own]:
        problems.append(
            f"{where}: a replica's placement also fits pool(s) {', '.join(others)}: Ray could start it there"
        )
    return problems


def vendor_problems(documents: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Check the specs with the app's contract and, where installed, Ray's and Anyscale's own models.

    Returns (problems, names of the validators that ran).
    """
    problems, ran = [], ["app contract"]
    serve_v2 = yaml.safe_load(documents[RAYSERVICE_FILE]["spec"]["serveConfigV2"])
    for name, doc in (
        (ANYSCALE_FILE, documents[ANYSCALE_FILE]),
        (SERVE_FILE, documents[SERVE_FILE]),
        (RAYSERVICE_FILE, serve_v2),
    ):
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
