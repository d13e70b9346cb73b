"""The serving application's args, rendered from an environment's plan.

The one place that maps the plan onto `app.spec.AppArgs`, so the service
specs, the preview and the end-to-end tests agree on what runs.
"""

from __future__ import annotations

from app.spec import AppArgs, LoraSpec, ModelSpec
from stacks.planning.plan import EnvironmentPlan, ModelPlan


def model_spec(model: ModelPlan) -> ModelSpec:
    m = model.config
    return ModelSpec(
        id=m.id,
        weights=m.weights.source,
        hf_id=m.weights.hf_id,
        hf_token_secret=m.weights.hf_token_secret,
        accelerator_type=model.pool.gpu.name,
        tensor_parallel_size=m.tensor_parallel_size,
        pipeline_parallel_size=m.pipeline_parallel_size,
        max_model_len=m.max_model_len,
        min_replicas=m.replicas.min,
        max_replicas=m.replicas.max,
        target_ongoing_requests=model.target_ongoing_requests,
        max_ongoing_requests=model.max_ongoing_requests,
        lora=LoraSpec(max_adapters_per_replica=m.lora.max_adapters_per_replica, max_rank=m.lora.max_rank)
        if m.lora.enabled else None,
        engine_kwargs=m.engine_kwargs.as_dict(),
        trust_remote_code=m.trust_remote_code,
    )


def app_args(plan: EnvironmentPlan) -> AppArgs:
    return AppArgs(
        region=plan.env.aws.region,
        weights_bucket=plan.names.weights_bucket,
        lora_bucket=plan.names.lora_bucket,
        models=[model_spec(m) for m in plan.models],
    )
