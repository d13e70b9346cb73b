"""The serving application's args, rendered from an environment file.

The one place that maps the environment schema onto `app.spec.AppArgs`, so
the service spec, the capacity planner and the preview agree on what runs.
"""

from __future__ import annotations

from app.spec import AppArgs, LoraSpec, ModelSpec
from stacks.capacity import CapacityPlan, load_targets, plan_for
from stacks.environment import Environment, Model
from stacks.names import Names

# The app's own defaults, for a model the planner cannot size.
DEFAULT_TARGETS = (ModelSpec.model_fields["target_ongoing_requests"].default, ModelSpec.model_fields["max_ongoing_requests"].default)


def model_load_targets(model: Model, capacity: CapacityPlan | None) -> tuple[float, int]:
    """(target_ongoing_requests, max_ongoing_requests): the environment's, else from the planner."""
    target, maximum = load_targets(capacity) if capacity and capacity.fits else DEFAULT_TARGETS
    if model.max_ongoing_requests is not None:
        maximum = model.max_ongoing_requests
        target = min(target, maximum)
    if model.target_ongoing_requests is not None:
        target = model.target_ongoing_requests
        maximum = max(maximum, int(target + 0.999))
    return target, maximum


def app_args(env: Environment) -> AppArgs:
    names = Names(env)
    models = []
    for model in env.models:
        pool = env.node_pool(model.node_pool)
        target, maximum = model_load_targets(model, plan_for(env, model))
        models.append(ModelSpec(
            id=model.id,
            weights=model.weights.source,
            hf_id=model.weights.hf_id,
            hf_token_secret=model.weights.hf_token_secret,
            accelerator_type=pool.accelerator if pool else None,
            tensor_parallel_size=model.tensor_parallel_size,
            pipeline_parallel_size=model.pipeline_parallel_size,
            max_model_len=model.max_model_len,
            min_replicas=model.replicas.min,
            max_replicas=model.replicas.max,
            target_ongoing_requests=target,
            max_ongoing_requests=maximum,
            lora=LoraSpec(max_adapters_per_replica=model.lora.max_adapters_per_replica, max_rank=model.lora.max_rank)
            if model.lora.enabled else None,
            engine_kwargs=model.engine_kwargs,
        ))
    return AppArgs(
        region=env.aws.region,
        weights_bucket=names.weights_bucket,
        lora_bucket=names.lora_bucket,
        models=models,
    )
