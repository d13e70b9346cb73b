"""One typed plan per environment, computed once after the config checks.

`plan_environment` places every model on its pool (GPUs per replica, nodes at
min and max replicas, rollout surge), sizes it on its GPU with the capacity
planner, derives its load targets, and prices the pools. The stack, the specs,
the summary, the preview and publish all read this plan; none of them
recomputes a derived fact from the raw `Environment`.

It refuses an environment whose models cannot run as written: a replica
wider than a node of its pool, a pool too small for its models at max
replicas plus rollout surge, an unknown architecture, or a model that does
not fit its GPU. Each problem names the field to change.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from infra.catalog import EKS_VERSIONS, GPUS
from stacks.config.checks import Problem, check_environment
from stacks.config.loader import load_environment
from stacks.config.names import Names
from stacks.config.models import Model
from stacks.config.schema import Environment
from stacks.errors import ConfigError
from stacks.planning.capacity import DEFAULT_UTILIZATION, CapacityPlan, LoadTargets, load_targets, options, plan
from stacks.planning.model_catalog import CATALOG, Architecture, find, from_config
from stacks.planning.pools import At, PoolPlan, pool_plan, with_models


@dataclass(frozen=True)
class ModelPlan:
    """One model placed on its pool and sized on its GPU."""

    config: Model
    index: int  # its position in the environment file
    pool: PoolPlan
    gpus_per_replica: int
    architecture: Architecture
    capacity: CapacityPlan
    # Ray Serve autoscaling per replica: the environment's, else from the KV cache and the workload.
    load: LoadTargets

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def target_ongoing_requests(self) -> float:
        return self.load.target_ongoing_requests

    @property
    def max_ongoing_requests(self) -> int:
        return self.load.max_ongoing_requests


@dataclass(frozen=True)
class EnvironmentPlan:
    env: Environment
    source: str  # the environment file, for messages
    names: Names
    pools: tuple[PoolPlan, ...]  # in file order
    models: tuple[ModelPlan, ...]
    # What deserves a look but does not stop synth (a cluster past standard support, say).
    warnings: tuple[Problem, ...] = ()

    def pool(self, name: str) -> PoolPlan:
        return next(p for p in self.pools if p.name == name)

    @property
    def head_pool(self) -> PoolPlan:
        """The first CPU pool: the Ray head and ingress run there."""
        return next(p for p in self.pools if not p.has_gpus)

    @property
    def serving_pools(self) -> list[PoolPlan]:
        """GPU pools that host at least one model, in file order."""
        used = {m.pool.name for m in self.models}
        return [p for p in self.pools if p.name in used]

    def cost_per_hour(self, at: At) -> float:
        return sum(p.cost_per_hour(at) for p in self.pools)

    @property
    def gpus_at_max(self) -> int:
        return sum(m.gpus_per_replica * m.config.replicas.max for m in self.models)


def plan_file(path: Path | str) -> EnvironmentPlan:
    """Load, check and plan one environment file."""
    return plan_environment(load_environment(path), source=str(path))


def plan_files(paths: list[Path]) -> list[EnvironmentPlan]:
    """Plan several environment files; one environment defined by two files is an error."""
    plans = [plan_file(p) for p in paths]
    seen: dict[str, str] = {}
    for p in plans:
        if p.env.name in seen:
            raise ConfigError(p.source, "name", f"environment {p.env.name!r} is also defined in {seen[p.env.name]}")
        seen[p.env.name] = p.source
    return plans


def plan_environment(env: Environment, source: str = "<environment>", today: datetime.date | None = None) -> EnvironmentPlan:
    """The checked environment's plan. ConfigError naming `source` and the field if a check fails
    (`stacks.config.checks`) or a model cannot run as written."""
    problems = check_environment(env)
    if problems:
        raise ConfigError(source, problems[0].field, problems[0].message, more=len(problems) - 1)
    shapes = {p.name: pool_plan(p) for p in env.node_pools}
    gpus = {m.id: m.tensor_parallel_size * m.pipeline_parallel_size for m in env.models}
    placed = [m for i, m in enumerate(env.models) if not _replica_too_wide(m, i, shapes[m.node_pool], gpus[m.id], problems)]
    pools = {
        name: with_models(shape, [(m.replicas.min, m.replicas.max, gpus[m.id]) for m in placed if m.node_pool == name],
                          env.serving.rollout_surge_percent)
        for name, shape in shapes.items()
    }
    for i, pool in enumerate(pools.values()):
        if pool.has_gpus and pool.max_nodes > pool.config.max_size:
            detail = ", ".join(f"{m.id}: {m.replicas.max} x {gpus[m.id]} GPU" for m in placed if m.node_pool == pool.name)
            problems.append(Problem(
                f"node_pools[{i}].max_size",
                f"models on pool {pool.name!r} need up to {pool.nodes_at_max} nodes at max replicas ({detail}; "
                f"{pool.gpus_per_node} GPUs per node) plus {pool.surge_nodes} for rollouts (serving.rollout_surge_percent), "
                f"but max_size is {pool.config.max_size}",
            ))
    models = []
    for i, model in enumerate(env.models):
        if model in placed and (sized := _size(model, i, pools[model.node_pool], problems)):
            architecture, capacity = sized
            models.append(ModelPlan(model, i, pools[model.node_pool], gpus[model.id], architecture, capacity,
                                    _load_targets(model, capacity)))
    if problems:
        raise ConfigError(source, problems[0].field, problems[0].message, more=len(problems) - 1)
    warnings = _warnings(env, list(pools.values()), models, today or datetime.date.today())
    return EnvironmentPlan(env, source, Names(env), tuple(pools.values()), tuple(models), tuple(warnings))


def _warnings(env: Environment, pools: list[PoolPlan], models: list[ModelPlan], today: datetime.date) -> list[Problem]:
    warnings = []
    if env.cluster.create is not None:
        version = env.cluster.create.version
        known = EKS_VERSIONS.get(version)
        newest = max(EKS_VERSIONS.values(), key=lambda v: v.end_of_standard_support)
        if known is None:
            warnings.append(Problem("cluster.create.version", f"{version} is not in the catalog of EKS versions "
                                    f"(infra.catalog.EKS_VERSIONS); check its support dates, or use {newest.version}"))
        elif datetime.date.fromisoformat(known.end_of_standard_support) < today:
            warnings.append(Problem("cluster.create.version", f"EKS {version} left standard support on "
                                    f"{known.end_of_standard_support}: extended support costs extra per cluster hour; "
                                    f"upgrade to {newest.version} (standard support until {newest.end_of_standard_support})"))
    if env.cluster.node_autoscaler == "none":
        for model in models:
            if model.config.replicas.min > 0 and model.pool.config.min_size == 0:
                warnings.append(Problem(
                    f"models[{model.index}].replicas.min",
                    f"{model.id} needs {model.config.replicas.min} replica(s) on pool {model.pool.name!r}, which starts at "
                    "0 nodes, and cluster.node_autoscaler is none: make sure the cluster's own autoscaler scales it "
                    "(or raise the pool's min_size)"))
    if env.serving.target == "anyscale" and env.serving.anyscale.cloud_deployment_id is None:
        warnings.append(Problem("serving.anyscale.cloud_deployment_id", f"not set, so {Names(env).platform_stack} does not "
                                "install the Anyscale operator yet: deploy the AWS stack, run its output "
                                "anyscale_register_command once, and set the cloud deployment id it prints"))
    if not env.buckets.access_logs.enabled:
        warnings.append(Problem("buckets.access_logs.enabled", "access to the weights and LoRA buckets is not logged by "
                                "this stack: log it elsewhere (CloudTrail data events), and the policy gate fails "
                                "CKV_AWS_18 on both buckets until policies/baseline.yaml says where"))
    return warnings


def _replica_too_wide(model: Model, i: int, pool: PoolPlan, gpus: int, problems: list[Problem]) -> bool:
    if gpus <= pool.gpus_per_node:
        return False
    field = "tensor_parallel_size" if model.tensor_parallel_size > pool.gpus_per_node else "pipeline_parallel_size"
    problems.append(Problem(
        f"models[{i}].{field}",
        f"tensor_parallel_size {model.tensor_parallel_size} x pipeline_parallel_size {model.pipeline_parallel_size} "
        f"= {gpus} GPUs does not fit a node of pool {pool.name!r} ({pool.gpus_per_node} x {pool.config.accelerator}); "
        "lower the parallelism or use a larger instance type",
    ))
    return True


def architecture_of(model: Model) -> Architecture | None:
    """The model's architecture: `architecture` (a catalog model or a config.json), else its hf_id,
    lora.base_model or id in the catalog. None if unknown; ValueError/OSError if a config.json is unusable."""
    if model.architecture:
        if model.architecture.endswith(".json"):
            return from_config(Path(model.architecture))
        return find(model.architecture)
    for name in (model.weights.hf_id, model.lora.base_model, model.id):
        if name and (found := find(name)):
            return found
    return None


def capacity_of(model: Model, architecture: Architecture, pool: PoolPlan) -> CapacityPlan:
    """The planner on the pool's GPU, with the engine settings the model's engine_kwargs give."""
    engine = model.engine_kwargs
    return plan(
        architecture, pool.gpu, tensor_parallel=model.tensor_parallel_size, pipeline_parallel=model.pipeline_parallel_size,
        max_model_len=model.max_model_len, gpu_memory_utilization=engine.gpu_memory_utilization or DEFAULT_UTILIZATION,
        dtype=engine.dtype or "auto", kv_cache_dtype=engine.kv_cache_dtype or "auto", quantization=engine.quantization,
        max_num_batched_tokens=engine.max_num_batched_tokens, max_num_seqs=engine.max_num_seqs,
    )


def _size(model: Model, i: int, pool: PoolPlan, problems: list[Problem]) -> tuple[Architecture, CapacityPlan] | None:
    """Every model fits its GPU with room for at least one request of max_model_len."""
    where = f"models[{i}]"
    try:
        architecture = architecture_of(model)
    except ConfigError as exc:  # unreadable, not a regular file, or too large
        problems.append(Problem(f"{where}.architecture", f"cannot read {model.architecture!r}: {exc.message}"))
        return None
    except ValueError as exc:  # not a usable config.json
        problems.append(Problem(f"{where}.architecture", f"cannot read {model.architecture!r}: {exc}"))
        return None
    if architecture is None:
        problems.append(Problem(
            f"{where}.architecture",
            f"no architecture known for {model.id!r}: set architecture to a catalog model "
            f"(e.g. {next(iter(CATALOG.values())).hf_id}; `llmstacks plan-capacity --list`) or a config.json path",
        ))
        return None
    capacity = capacity_of(model, architecture, pool)
    if not capacity.fits:
        problems.append(Problem(
            where,
            f"{model.id} does not fit {pool.gpu.name} (tp {model.tensor_parallel_size} x pp {model.pipeline_parallel_size}, "
            f"max_model_len {model.max_model_len:,}): {capacity.problems[0]}. "
            f"Options: {options(architecture, GPUS[pool.gpu.name], capacity)}",
        ))
        return None
    return architecture, capacity


def _load_targets(model: Model, capacity: CapacityPlan) -> LoadTargets:
    """The environment's load targets where it sets them, else the planner's from the workload."""
    # No request is longer than max_model_len (the default workload may describe longer ones).
    derived = load_targets(capacity, typical_tokens=min(model.workload.typical_tokens, model.max_model_len),
                           p95_tokens=min(model.workload.p95_tokens, model.max_model_len))
    target, maximum = derived.target_ongoing_requests, derived.max_ongoing_requests
    if model.max_ongoing_requests is None and model.target_ongoing_requests is None:
        return derived
    if model.max_ongoing_requests is not None:
        maximum = model.max_ongoing_requests
        target = min(target, maximum)
    if model.target_ongoing_requests is not None:
        target = model.target_ongoing_requests
        maximum = max(maximum, int(target + 0.999))
    return LoadTargets(target, maximum, f"set in the environment file (derived: target "
                       f"{derived.target_ongoing_requests:g}, max {derived.max_ongoing_requests})")
