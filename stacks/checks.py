"""Cross-field checks, run before any construct is built.

Each problem names the field a user has to change, in the file's own terms
(`models[1].tensor_parallel_size`), and says what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.catalog import GPUS, INSTANCE_TYPES, gpu_instance
from infra.s3_names import bucket_name_problem
from stacks.environment import RESERVED_ENGINE_KWARGS, Environment, NodePool
from stacks.names import Names

IAM_ROLE_NAME_MAX = 64
NODE_GROUP_NAME_MAX = 63
# AWS allows 50 tags per resource; the stack adds a few of its own.
USER_TAGS_MAX = 40


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


def gpus_per_node(pool: NodePool) -> int:
    """GPUs on the smallest node the pool may launch (0 for a CPU pool)."""
    if pool.accelerator is None:
        return 0
    return min(INSTANCE_TYPES[t].gpus for t in pool.instance_types if t in INSTANCE_TYPES)


def pool_models(env: Environment, pool: NodePool) -> list:
    """The models on `pool` whose replicas fit one of its nodes."""
    per_node = gpus_per_node(pool)
    return [m for m in env.models if m.node_pool == pool.name and per_node and m.gpus_per_replica <= per_node]


def nodes_needed(env: Environment, pool: NodePool, at: str = "max") -> int:
    """Nodes of `pool` its models need with each at its `min` or `max` replicas.

    Replicas of one model do not share GPUs; count whole nodes per model.
    """
    per_node = gpus_per_node(pool)
    return sum(math.ceil(getattr(m.replicas, at) / (per_node // m.gpus_per_replica)) for m in pool_models(env, pool))


def check_environment(env: Environment) -> list[Problem]:
    problems: list[Problem] = []
    problems += _unique(env)
    problems += _node_pools(env)
    problems += _models(env)
    problems += _pool_capacity(env)
    problems += _capacity(env)
    problems += _names(env)
    if len(env.tags) > USER_TAGS_MAX:
        problems.append(Problem("tags", f"{len(env.tags)} tags; at most {USER_TAGS_MAX} (AWS allows 50 per resource, the stack adds its own)"))
    return problems


def _unique(env: Environment) -> list[Problem]:
    problems = []
    for collection, key in (("node_pools", "name"), ("models", "id")):
        first: dict[str, int] = {}
        for i, item in enumerate(getattr(env, collection)):
            value = getattr(item, key)
            if value in first:
                problems.append(Problem(
                    f"{collection}[{i}].{key}",
                    f"{value!r} is used more than once (also {collection}[{first[value]}]); {key}s must be unique",
                ))
            first.setdefault(value, i)
    return problems


def _node_pools(env: Environment) -> list[Problem]:
    problems = []
    for i, pool in enumerate(env.node_pools):
        where = f"node_pools[{i}]"
        gpu_types = {t: gpu_instance(t) for t in pool.instance_types}
        if pool.accelerator is None:
            for j, (name, entry) in enumerate(gpu_types.items()):
                if entry is not None:
                    problems.append(Problem(
                        f"{where}.instance_types[{j}]",
                        f"{name} has {entry.gpus} {entry.gpu.name} GPU(s); set accelerator: {entry.gpu.name} or use a CPU instance type",
                    ))
            continue
        counts = set()
        for j, (name, entry) in enumerate(gpu_types.items()):
            if entry is None:
                problems.append(Problem(
                    f"{where}.instance_types[{j}]",
                    f"{name} is not a GPU instance type in the catalog; known types with {pool.accelerator}: "
                    + ", ".join(t for t, e in INSTANCE_TYPES.items() if e.gpu.name == pool.accelerator),
                ))
            elif entry.gpu.name != pool.accelerator:
                problems.append(Problem(
                    f"{where}.instance_types[{j}]",
                    f"{name} has {entry.gpu.name} GPUs, not the pool's accelerator {pool.accelerator}",
                ))
            else:
                counts.add(entry.gpus)
        if len(counts) > 1:
            problems.append(Problem(
                f"{where}.instance_types",
                f"instance types have different GPU counts per node ({', '.join(map(str, sorted(counts)))}); "
                "use types with the same count so every replica fits every node",
            ))
    if env.models and not any(p.accelerator is None for p in env.node_pools):
        problems.append(Problem("node_pools", "no CPU pool (a pool without accelerator) for the Ray head and ingress; add one"))
    return problems


def _models(env: Environment) -> list[Problem]:
    problems = []
    pools = [p.name for p in env.node_pools]
    for i, model in enumerate(env.models):
        where = f"models[{i}]"
        for key in model.engine_kwargs:
            if key in RESERVED_ENGINE_KWARGS:
                problems.append(Problem(
                    f"{where}.engine_kwargs.{key}",
                    f"set from the model's {RESERVED_ENGINE_KWARGS[key]!r} field; remove it from engine_kwargs",
                ))
        pool = env.node_pool(model.node_pool)
        if pool is None:
            problems.append(Problem(f"{where}.node_pool", f"node pool {model.node_pool!r} is not defined (defined: {', '.join(pools)})"))
            continue
        if pool.accelerator is None:
            problems.append(Problem(f"{where}.node_pool", f"node pool {pool.name!r} has no GPUs; models need a pool with an accelerator"))
            continue
        per_node = gpus_per_node(pool)
        if per_node and model.gpus_per_replica > per_node:
            field = "tensor_parallel_size" if model.tensor_parallel_size > per_node else "pipeline_parallel_size"
            problems.append(Problem(
                f"{where}.{field}",
                f"tensor_parallel_size {model.tensor_parallel_size} x pipeline_parallel_size {model.pipeline_parallel_size} "
                f"= {model.gpus_per_replica} GPUs does not fit a node of pool {pool.name!r} ({per_node} x {pool.accelerator}); "
                "lower the parallelism or use a larger instance type",
            ))
    return problems


def _capacity(env: Environment) -> list[Problem]:
    """Every model fits its GPU with room for at least one request of max_model_len (the planner)."""
    from stacks.capacity import architecture_of, options, plan_for  # noqa: PLC0415
    from stacks.model_catalog import CATALOG  # noqa: PLC0415

    problems = []
    for i, model in enumerate(env.models):
        pool = env.node_pool(model.node_pool)
        if pool is None or pool.accelerator is None:
            continue  # reported by _models
        where = f"models[{i}]"
        try:
            capacity = plan_for(env, model)
        except (OSError, ValueError) as exc:
            problems.append(Problem(f"{where}.architecture", f"cannot read {model.architecture}: {exc}"))
            continue
        if capacity is None:
            problems.append(Problem(
                f"{where}.architecture",
                f"no architecture known for {model.id!r}: set architecture to a catalog model "
                f"(e.g. {next(iter(CATALOG.values())).hf_id}; `llmstacks plan-capacity --list`) or a config.json path",
            ))
            continue
        if not capacity.fits:
            arch = architecture_of(model)
            problems.append(Problem(
                where,
                f"{model.id} does not fit {pool.accelerator} (tp {model.tensor_parallel_size} x pp {model.pipeline_parallel_size}, "
                f"max_model_len {model.max_model_len:,}): {capacity.problems[0]}. Options: {options(arch, GPUS[pool.accelerator], capacity)}",
            ))
    return problems


def _pool_capacity(env: Environment) -> list[Problem]:
    """Every model at max replicas, plus rollout surge, must fit its pool at max size."""
    problems = []
    for i, pool in enumerate(env.node_pools):
        per_node = gpus_per_node(pool)
        if not per_node:
            continue
        users = pool_models(env, pool)
        nodes = nodes_needed(env, pool, "max")
        surge = math.ceil(nodes * env.serving.rollout_surge_percent / 100)
        if nodes + surge > pool.max_size:
            detail = ", ".join(f"{m.id}: {m.replicas.max} x {m.gpus_per_replica} GPU" for m in users)
            problems.append(Problem(
                f"node_pools[{i}].max_size",
                f"models on pool {pool.name!r} need up to {nodes} nodes at max replicas ({detail}; "
                f"{per_node} GPUs per node) plus {surge} for rollouts (serving.rollout_surge_percent), "
                f"but max_size is {pool.max_size}",
            ))
    return problems


def _names(env: Environment) -> list[Problem]:
    names = Names(env)
    problems = []
    for bucket in (names.weights_bucket, names.lora_bucket):
        problem = bucket_name_problem(bucket)
        if problem:
            problems.append(Problem("prefix", f"derived {problem}; shorten prefix or name"))
    if problem := bucket_name_problem(env.state.bucket):
        problems.append(Problem("state.bucket", problem))
    for role in (names.serving_role, names.writer_role, names.node_role):
        if len(role) > IAM_ROLE_NAME_MAX:
            problems.append(Problem("prefix", f"derived IAM role name {role!r} is {len(role)} characters; IAM allows {IAM_ROLE_NAME_MAX}; shorten prefix or name"))
    for i, pool in enumerate(env.node_pools):
        group = names.node_group(pool.name)
        if len(group) > NODE_GROUP_NAME_MAX:
            problems.append(Problem(f"node_pools[{i}].name", f"derived node group name {group!r} is {len(group)} characters; EKS allows {NODE_GROUP_NAME_MAX}"))
    return problems

