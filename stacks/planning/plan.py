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

from infra.catalog import EKS_VERSIONS
from stacks.config.checks import Problem, check_environment
from stacks.config.loader import load_environment
from stacks.config.models import Deployment, Model, Replicas
from stacks.config.names import Names
from stacks.config.schema import Environment
from stacks.errors import ConfigError
from stacks.planning.capacity import CapacityPlan, LoadTargets
from stacks.planning.model_catalog import Architecture
from stacks.planning.placement import dedicated_pool_problems, placement_problem
from stacks.planning.pools import (
    At,
    PoolPlan,
    nodes_for,
    nodes_per_replica,
    pool_plan,
    with_models,
)
from stacks.planning.sizing import (
    find_architecture,
    fitting_capacity,
    part_load_targets,
)


@dataclass(frozen=True)
class PartPlan:
    """One Ray Serve deployment of a model (the model itself, or its prefill or decode side),
    placed on its pool and sized on its GPU."""

    deployment: Deployment
    pool: PoolPlan
    capacity: CapacityPlan  # one engine: tensor x pipeline parallel GPUs
    # Ray Serve autoscaling per engine: the environment's, else from the KV cache and the workload.
    load: LoadTargets

    @property
    def role(self) -> str:
        return self.deployment.role

    @property
    def field(self) -> str:
        return self.deployment.field

    @property
    def replicas(self) -> Replicas:
        """Replica bounds as written: a data-parallel replica is a gang of engines."""
        return self.deployment.replicas

    @property
    def gpus_per_engine(self) -> int:
        return self.deployment.tensor_parallel_size * self.deployment.pipeline_parallel_size

    @property
    def gpus_per_replica(self) -> int:
        return self.gpus_per_engine * self.deployment.data_parallel_size

    @property
    def nodes_per_replica(self) -> int:
        """Whole nodes a replica spans: one per pipeline stage when it is wider than a node."""
        return nodes_per_replica(self.gpus_per_replica, self.pool.gpus_per_node)

    def nodes(self, at: At) -> int:
        """Nodes its replicas take at their `at` bound, counted as the pool's nodes are."""
        replicas = self.replicas.min if at == "min" else self.replicas.max
        return nodes_for(replicas, self.gpus_per_replica, self.pool.gpus_per_node)

    def cost_per_hour(self, at: At) -> float:
        """On-demand cost of those nodes."""
        return self.nodes(at) * self.pool.price_per_hour

    @property
    def shape(self) -> str:
        """The replica's parallelism, e.g. "tp 8 x pp 2" or "dp 4 x tp 2"."""
        d = self.deployment
        shape = f"tp {d.tensor_parallel_size}"
        if d.pipeline_parallel_size > 1:
            shape += f" x pp {d.pipeline_parallel_size}"
        return f"dp {d.data_parallel_size} x {shape}" if d.data_parallel_size > 1 else shape


@dataclass(frozen=True)
class ModelPlan:
    """One model: its deployments placed and sized. Most models have one; a disaggregated model
    has prefill and decode, and decode (the one the ingress calls) is `serving`."""

    config: Model
    index: int  # its position in the environment file
    architecture: Architecture
    parts: tuple[PartPlan, ...]

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def pattern(self) -> str:
        return self.config.pattern

    @property
    def serving(self) -> PartPlan:
        return self.parts[-1]

    @property
    def prefill(self) -> PartPlan | None:
        return self.parts[0] if len(self.parts) > 1 else None

    @property
    def pool(self) -> PoolPlan:
        return self.serving.pool

    @property
    def capacity(self) -> CapacityPlan:
        return self.serving.capacity

    @property
    def load(self) -> LoadTargets:
        return self.serving.load

    @property
    def gpus_per_replica(self) -> int:
        return self.serving.gpus_per_replica

    @property
    def target_ongoing_requests(self) -> float:
        return self.load.target_ongoing_requests

    @property
    def max_ongoing_requests(self) -> int:
        return self.load.max_ongoing_requests

    @property
    def gpus_at_max(self) -> int:
        return sum(p.gpus_per_replica * p.replicas.max for p in self.parts)

    def nodes(self, at: At) -> int:
        return sum(p.nodes(at) for p in self.parts)

    def cost_per_hour(self, at: At) -> float:
        """On-demand cost of the nodes its parts take at their `at` replicas."""
        return sum(p.cost_per_hour(at) for p in self.parts)


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
    def parts(self) -> list[PartPlan]:
        """Every deployment of every model, in file order."""
        return [part for m in self.models for part in m.parts]

    @property
    def serving_pools(self) -> list[PoolPlan]:
        """GPU pools that host at least one model's deployment, in file order."""
        used = {p.pool.name for p in self.parts}
        return [p for p in self.pools if p.name in used]

    def cost_per_hour(self, at: At) -> float:
        return sum(p.cost_per_hour(at) for p in self.pools)

    def idle(self, at: At) -> tuple[int, float]:
        """(nodes, cost per hour) of the GPU nodes the pools' min_size keeps beyond what their models take."""
        nodes = {p.name: max(p.config.min_size - p.nodes(at), 0) for p in self.pools if p.has_gpus}
        return sum(nodes.values()), sum(n * self.pool(name).price_per_hour for name, n in nodes.items())

    @property
    def gpus_at_max(self) -> int:
        return sum(m.gpus_at_max for m in self.models)


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


def plan_environment(
    env: Environment, source: str = "<environment>", today: datetime.date | None = None
) -> EnvironmentPlan:
    """The checked environment's plan. ConfigError naming `source` and the field if a check fails
    (`stacks.config.checks`) or a model cannot run as written."""
    problems = check_environment(env)
    if problems:
        raise ConfigError(source, problems[0].field, problems[0].message, more=len(problems) - 1)
    shapes = {p.name: pool_plan(p) for p in env.node_pools}
    deployments = {m.id: m.deployments(i) for i, m in enumerate(env.models)}
    for model in env.models:
        for d in deployments[model.id]:
            if problem := placement_problem(model, d, shapes[d.node_pool]):
                problems.append(problem)
    problems += dedicated_pool_problems(env, deployments)
    if problems:
        raise ConfigError(source, problems[0].field, problems[0].message, more=len(problems) - 1)
    every = [d for ds in deployments.values() for d in ds]
    pools = {
        name: with_models(
            shape,
            [(d.replicas.min, d.replicas.max, _gpus(d)) for d in every if d.node_pool == name],
            env.serving.rollout_surge_percent,
        )
        for name, shape in shapes.items()
    }
    for i, pool in enumerate(pools.values()):
        if pool.has_gpus and pool.max_nodes > pool.config.max_size:
            detail = ", ".join(
                f"{d.field}: {d.replicas.max} x {_gpus(d)} GPU" for d in every if d.node_pool == pool.name
            )
            problems.append(
                Problem(
                    f"node_pools[{i}].max_size",
                    f"models on pool {pool.name!r} need up to {pool.nodes_at_max} nodes at max replicas ({detail}; "
                    f"{pool.gpus_per_node} GPUs per node) plus {pool.surge_nodes} for rollouts (serving.rollout_surge_percent), "
                    f"but max_size is {pool.config.max_size}",
                )
            )
    models = []
    for i, model in enumerate(env.models):
        if (architecture := find_architecture(model, i, problems)) is None:
            continue
        if model.pattern == "data_parallel" and not architecture.experts:
            problems.append(
                Problem(
                    f"models[{i}].pattern",
                    f"data_parallel spreads a mixture-of-experts model's experts "
                    f"over a gang of engines; {architecture.hf_id} is dense: serve it standard and "
                    "raise replicas instead",
                )
            )
            continue
        parts = []
        for d in deployments[model.id]:
            if capacity := fitting_capacity(model, d, architecture, pools[d.node_pool], problems):
                parts.append(PartPlan(d, pools[d.node_pool], capacity, part_load_targets(model, d, capacity)))
        if len(parts) == len(deployments[model.id]):
            models.append(ModelPlan(model, i, architecture, tuple(parts)))
    if problems:
        raise ConfigError(source, problems[0].field, problems[0].message, more=len(problems) - 1)
    warnings = _warnings(env, list(pools.values()), models, today or datetime.date.today())
    return EnvironmentPlan(env, source, Names(env), tuple(pools.values()), tuple(models), tuple(warnings))


def _gpus(d: Deployment) -> int:
    return d.tensor_parallel_size * d.pipeline_parallel_size * d.data_parallel_size


def _warnings(env: Environment, pools: list[PoolPlan], models: list[ModelPlan], today: datetime.date) -> list[Problem]:
    warnings = []
    if env.cluster.create is not None:
        version = env.cluster.create.version
        known = EKS_VERSIONS.get(version)
        newest = max(EKS_VERSIONS.values(), key=lambda v: v.end_of_standard_support)
        if known is None:
            warnings.append(
                Problem(
                    "cluster.create.version",
                    f"{version} is not in the catalog of EKS versions "
                    f"(infra.catalog.EKS_VERSIONS); check its support dates, or use {newest.version}",
                )
            )
        elif datetime.date.fromisoformat(known.end_of_standard_support) < today:
            warnings.append(
                Problem(
                    "cluster.create.version",
                    f"EKS {version} left standard support on "
                    f"{known.end_of_standard_support}: extended support costs extra per cluster hour; "
                    f"upgrade to {newest.version} (standard support until {newest.end_of_standard_support})",
                )
            )
    if env.cluster.node_autoscaler == "none":
        for model in models:
            for part in model.parts:
                if part.replicas.min > 0 and part.pool.config.min_size == 0:
                    warnings.append(
                        Problem(
                            f"{part.field}.replicas.min",
                            f"{model.id} needs {part.replicas.min} replica(s) on pool {part.pool.name!r}, which starts at "
                            "0 nodes, and cluster.node_autoscaler is none: make sure the cluster's own autoscaler scales it "
                            "(or raise the pool's min_size)",
                        )
                    )
    if env.serving.target == "anyscale" and env.serving.anyscale.cloud_deployment_id is None:
        warnings.append(
            Problem(
                "serving.anyscale.cloud_deployment_id",
                f"not set, so {Names(env).platform_stack} does not "
                "install the Anyscale operator yet: deploy the AWS stack, run its output "
                "anyscale_register_command once, and set the cloud deployment id it prints",
            )
        )
    for model in models:
        if model.prefill is not None:
            # NIXL moves each request's KV cache from prefill to decode; over TCP that is slow.
            lacking = sorted({p.pool.name for p in model.parts if not p.pool.config.efa})
            if lacking:
                warnings.append(
                    Problem(
                        f"{model.prefill.field}.node_pool",
                        f"{model.id} moves KV caches from prefill to decode between nodes, and pool(s) {', '.join(lacking)} "
                        "have no EFA, so the transfer runs over TCP: set efa: true on both pools (instance types with EFA)",
                    )
                )
    if not env.buckets.access_logs.enabled:
        warnings.append(
            Problem(
                "buckets.access_logs.enabled",
                "access to the weights and LoRA buckets is not logged by "
                "this stack: log it elsewhere (CloudTrail data events), and the policy gate fails "
                "CKV_AWS_18 on both buckets until policies/baseline.yaml says where",
            )
        )
    return warnings
