"""Sizing a model's engines: its architecture (catalog or config.json), the capacity planner on its
pool's GPU with its engine settings, and the load targets its workload gives."""

from __future__ import annotations

from pathlib import Path

from infra.catalog import GPUS
from stacks.config.checks import Problem
from stacks.config.models import Deployment, Model
from stacks.errors import ConfigError
from stacks.planning.capacity import (
    DEFAULT_UTILIZATION,
    CapacityPlan,
    LoadTargets,
    load_targets,
    options,
    plan,
)
from stacks.planning.model_catalog import CATALOG, Architecture, find, from_config
from stacks.planning.pools import PoolPlan


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


def capacity_of(model: Model, d: Deployment, architecture: Architecture, pool: PoolPlan) -> CapacityPlan:
    """The planner for one engine of `d` on the pool's GPU, with the model's engine settings."""
    engine = model.engine_kwargs
    return plan(
        architecture,
        pool.gpu,
        tensor_parallel=d.tensor_parallel_size,
        pipeline_parallel=d.pipeline_parallel_size,
        max_model_len=model.max_model_len,
        gpu_memory_utilization=engine.gpu_memory_utilization or DEFAULT_UTILIZATION,
        dtype=engine.dtype or "auto",
        kv_cache_dtype=engine.kv_cache_dtype or "auto",
        quantization=engine.quantization,
        max_num_batched_tokens=engine.max_num_batched_tokens,
        max_num_seqs=engine.max_num_seqs,
        expert_parallel=d.data_parallel_size * d.tensor_parallel_size if model.uses_expert_parallel else 1,
    )


def find_architecture(model: Model, i: int, problems: list[Problem]) -> Architecture | None:
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
        problems.append(
            Problem(
                f"{where}.architecture",
                f"no architecture known for {model.id!r}: set architecture to a catalog model "
                f"(e.g. {next(iter(CATALOG.values())).hf_id}; `llmstacks plan-capacity --list`) or a config.json path",
            )
        )
    return architecture


def fitting_capacity(
    model: Model, d: Deployment, architecture: Architecture, pool: PoolPlan, problems: list[Problem]
) -> CapacityPlan | None:
    """One engine of `d` on its pool's GPU, if it fits with room for one request of max_model_len."""
    capacity = capacity_of(model, d, architecture, pool)
    if not capacity.fits:
        problems.append(
            Problem(
                d.field,
                f"{model.id}{'' if d.role == 'model' else ' ' + d.role} does not fit {pool.gpu.name} "
                f"(tp {d.tensor_parallel_size} x pp {d.pipeline_parallel_size}, max_model_len {model.max_model_len:,}): "
                f"{capacity.problems[0]}. Options: {options(architecture, GPUS[pool.gpu.name], capacity)}",
            )
        )
        return None
    return capacity


def part_load_targets(model: Model, d: Deployment, capacity: CapacityPlan) -> LoadTargets:
    """The environment's load targets where it sets them, else the planner's from the workload.
    A prefill engine holds a request's prompt only, until decode takes its KV cache."""
    work = model.workload
    typical, p95 = (
        (work.prompt_tokens.typical, work.prompt_tokens.p95)
        if d.role == "prefill"
        else (work.typical_tokens, work.p95_tokens)
    )
    # No request is longer than max_model_len (the default workload may describe longer ones).
    derived = load_targets(
        capacity, typical_tokens=min(typical, model.max_model_len), p95_tokens=min(p95, model.max_model_len)
    )
    target, maximum = derived.target_ongoing_requests, derived.max_ongoing_requests
    if d.role == "prefill" or (model.max_ongoing_requests is None and model.target_ongoing_requests is None):
        return derived
    if model.max_ongoing_requests is not None:
        maximum = model.max_ongoing_requests
        target = min(target, maximum)
    if model.target_ongoing_requests is not None:
        target = model.target_ongoing_requests
        maximum = max(maximum, int(target + 0.999))
    return LoadTargets(
        target,
        maximum,
        f"set in the environment file (derived: target "
        f"{derived.target_ongoing_requests:g}, max {derived.max_ongoing_requests})",
    )
