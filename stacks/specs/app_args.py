"""The serving application's args, rendered from an environment's plan.

The one place that maps the plan onto `app.spec.AppArgs`, so the service
specs, the preview and the end-to-end tests agree on what runs.
"""

from __future__ import annotations

import math
from typing import Any

from app.spec import ROUTER_CLASSES, AppArgs, LoraSpec, ModelSpec, PlacementSpec, PrefillSpec, RoutingSpec
from stacks.config.models import Routing
from stacks.planning.plan import EnvironmentPlan, ModelPlan, PartPlan
from stacks.specs.pods import pool_resource


def placement(part: PartPlan) -> PlacementSpec:
    """One bundle per GPU of an engine, each taking a unit of the pool's own Ray resource: only
    the deployment's pool advertises it, so no replica lands on another pool's nodes.

    Within a node: STRICT_PACK. A multi-node engine: PACK. vLLM starts one worker per single-GPU
    bundle, so a stage cannot be one bundle; its pool holds only this model's whole-node replicas,
    so PACK fills one free node per stage, and vLLM orders its workers by node, keeping each
    stage's tensor-parallel group on one node. A data-parallel gang: one placement group per
    engine (Ray's DPServer packs the gang itself)."""
    bundle = {"GPU": 1.0, pool_resource(part.pool): 1.0}
    strategy = "PACK" if part.nodes_per_replica > 1 else "STRICT_PACK"
    return PlacementSpec(strategy=strategy, bundles=[dict(bundle) for _ in range(part.gpus_per_engine)])


def imbalanced_threshold(target_ongoing_requests: float) -> int:
    """Prefix-aware routing balances load instead once two replicas' queues differ by a quarter of
    the load target: Ray's default (never) sent every request sharing a system prompt to one replica."""
    return max(4, math.ceil(target_ongoing_requests / 4))


def routing(policy: Routing, target_ongoing_requests: float) -> RoutingSpec:
    kwargs: dict[str, Any] = dict(policy.kwargs)
    if policy.policy == "prefix_aware":
        eviction = policy.eviction
        kwargs.update(
            imbalanced_threshold=policy.imbalanced_threshold or imbalanced_threshold(target_ongoing_requests),
            match_rate_threshold=policy.match_rate_threshold,
            # Ray keeps every prompt in its (detached) prefix tree unless told to evict.
            do_eviction=True,
            eviction_threshold_chars=eviction.threshold_chars,
            eviction_target_chars=eviction.target_chars,
            eviction_interval_secs=eviction.interval_s,
        )
    return RoutingSpec(
        request_router_class=ROUTER_CLASSES.get(policy.policy, policy.policy), request_router_kwargs=kwargs
    )


def prefill_spec(part: PartPlan) -> PrefillSpec:
    return PrefillSpec(
        accelerator_type=part.pool.gpu.name,
        tensor_parallel_size=part.deployment.tensor_parallel_size,
        min_replicas=part.replicas.min,
        max_replicas=part.replicas.max,
        target_ongoing_requests=part.load.target_ongoing_requests,
        max_ongoing_requests=part.load.max_ongoing_requests,
        placement=placement(part),
    )


def model_spec(model: ModelPlan) -> ModelSpec:
    m, part = model.config, model.serving
    d = part.deployment
    return ModelSpec(
        id=m.id,
        weights=m.weights.source,
        snapshot=m.weights.snapshot,
        hf_id=m.weights.hf_id,
        hf_token_secret=m.weights.hf_token_secret,
        load=m.weights.load_mode,
        stream_concurrency=m.weights.stream_concurrency,
        accelerator_type=part.pool.gpu.name,
        tensor_parallel_size=d.tensor_parallel_size,
        pipeline_parallel_size=d.pipeline_parallel_size,
        max_model_len=m.max_model_len,
        min_replicas=d.replicas.min,
        max_replicas=d.replicas.max,
        target_ongoing_requests=part.load.target_ongoing_requests,
        max_ongoing_requests=part.load.max_ongoing_requests,
        lora=LoraSpec(max_adapters_per_replica=m.lora.max_adapters_per_replica, max_rank=m.lora.max_rank)
        if m.lora.enabled
        else None,
        engine_kwargs=m.engine_kwargs.as_dict(),
        trust_remote_code=m.trust_remote_code,
        server_cls=m.server_cls,
        placement=placement(part),
        routing=routing(m.routing_policy, part.load.target_ongoing_requests),
        env_vars=dict(m.env_vars),
        health_check_period_s=m.health_check.period_s,
        health_check_timeout_s=m.health_check.timeout_s,
        upscale_delay_s=d.replicas.upscale_delay_s,
        downscale_delay_s=d.replicas.downscale_delay_s,
        graceful_shutdown_timeout_s=m.graceful_shutdown_s,
        pattern=m.pattern,
        data_parallel_size=d.data_parallel_size,
        expert_parallel=m.uses_expert_parallel,
        prefill=prefill_spec(model.prefill) if model.prefill else None,
        kv_connector=m.connector.connector if m.connector else None,
    )


def app_args(plan: EnvironmentPlan) -> AppArgs:
    return AppArgs(
        region=plan.env.aws.region,
        weights_bucket=plan.names.weights_bucket,
        lora_bucket=plan.names.lora_bucket,
        models=[model_spec(m) for m in plan.models],
    )
