"""Where a model's deployments may run: each replica on its pool as its pattern places it (within
one node, or one pipeline stage per whole node), and a multi-node model's pool to itself."""

from __future__ import annotations

from stacks.config.checks import Problem
from stacks.config.models import Deployment, Model
from stacks.config.schema import Environment
from stacks.planning.pools import PoolPlan


def placement_problem(model: Model, d: Deployment, pool: PoolPlan) -> Problem | None:
    """Whether a replica of `d` can be placed on its pool as its pattern places it."""
    tp, pp, dp, per_node = d.tensor_parallel_size, d.pipeline_parallel_size, d.data_parallel_size, pool.gpus_per_node
    node = f"a node of pool {pool.name!r} ({per_node} x {pool.config.accelerator})"
    if model.pattern == "multi_node":
        # Each pipeline stage takes one whole node: tensor parallelism stays on NVLink, and the
        # pool's free GPUs always come in whole nodes, so Ray's PACK placement puts one stage per node.
        if tp != per_node:
            return Problem(
                f"{d.field}.tensor_parallel_size",
                f"pattern multi_node runs one pipeline stage per node, tensor parallel within it: "
                f"tensor_parallel_size must be {per_node}, the GPUs of {node}, not {tp}",
            )
        if pp > pool.config.max_size:
            return Problem(
                f"{d.field}.pipeline_parallel_size",
                f"{pp} pipeline stages need {pp} nodes of pool {pool.name!r} at once, but its max_size is "
                f"{pool.config.max_size}",
            )
        return None
    if tp * pp * dp <= per_node:
        return None
    if model.pattern == "data_parallel":
        return Problem(
            f"{d.field}.data_parallel_size",
            f"data_parallel_size {dp} x tensor_parallel_size {tp} = {dp * tp} GPUs does not fit {node}: "
            "a data-parallel gang runs on one node; lower either, or use a larger instance type",
        )
    field = "tensor_parallel_size" if tp > per_node else "pipeline_parallel_size"
    hint = (
        f"; or pattern: multi_node with tensor_parallel_size {per_node} to run one pipeline stage per node"
        if model.pattern == "standard" and per_node and (tp * pp) % per_node == 0 and tp * pp > per_node
        else ""
    )
    return Problem(
        f"{d.field}.{field}",
        f"tensor_parallel_size {tp} x pipeline_parallel_size {pp} = {tp * pp} GPUs does not fit {node}; "
        f"lower the parallelism or use a larger instance type{hint}",
    )


def dedicated_pool_problems(env: Environment, deployments: dict[str, tuple[Deployment, ...]]) -> list[Problem]:
    """A multi-node model has its pool to itself: then every node it may get is whole, which is
    what keeps each of its pipeline stages on one node."""
    problems = []
    for model in env.models:
        if model.pattern != "multi_node":
            continue
        own = deployments[model.id][0]
        others = [
            d.field for m in env.models if m.id != model.id for d in deployments[m.id] if d.node_pool == own.node_pool
        ]
        if others:
            problems.append(
                Problem(
                    f"{others[0]}.node_pool",
                    f"pool {own.node_pool!r} runs multi-node model {model.id!r}, whose replicas take whole "
                    f"nodes; give this deployment another pool",
                )
            )
    return problems
