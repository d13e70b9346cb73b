"""Each environment renders to args the serving app accepts, with the same names as the stack."""

from __future__ import annotations

import pytest

from app.serving import llm_configs
from stacks.specs.app_args import app_args


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_app_args_match_the_plan_and_its_buckets(shipped_plans, env):
    plan = shipped_plans[env]
    args = app_args(plan)
    assert (args.region, args.weights_bucket, args.lora_bucket) == (
        plan.env.aws.region,
        plan.names.weights_bucket,
        plan.names.lora_bucket,
    )
    assert [m.id for m in args.models] == [m.id for m in plan.env.models]
    for spec, model in zip(args.models, plan.models, strict=True):
        config = model.config
        assert spec.accelerator_type == plan.env.node_pool(config.node_pool).accelerator
        assert (spec.min_replicas, spec.max_replicas) == (config.replicas.min, config.replicas.max)
        assert (spec.lora is not None) == config.lora.enabled
        assert spec.tensor_parallel_size == config.tensor_parallel_size
        assert (spec.target_ongoing_requests, spec.max_ongoing_requests) == (
            model.target_ongoing_requests,
            model.max_ongoing_requests,
        )
        assert spec.engine_kwargs == config.engine_kwargs.as_dict()


def test_rendered_args_pass_ray_serve_llm(shipped_plans, monkeypatch):
    # prod has a gated model; its secret is checked at build time on the cluster, not here.
    monkeypatch.setattr("app.serving.read_secret_string", lambda name, region: "unused")
    for plan in shipped_plans.values():
        configs = llm_configs(app_args(plan).model_dump())
        assert [c.model_id for c in configs] == [m.id for m in plan.env.models]
