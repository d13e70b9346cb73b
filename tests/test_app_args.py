"""Each environment renders to args the serving app accepts, with the same names as the stack."""

from __future__ import annotations

import pytest

from app.serving import llm_configs
from stacks.app_args import app_args
from stacks.names import Names


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_app_args_match_the_environment_and_its_buckets(shipped_environments, env):
    config = shipped_environments[env]
    args = app_args(config)
    names = Names(config)
    assert (args.region, args.weights_bucket, args.lora_bucket) == (config.aws.region, names.weights_bucket, names.lora_bucket)
    assert [m.id for m in args.models] == [m.id for m in config.models]
    for spec, model in zip(args.models, config.models):
        assert spec.accelerator_type == config.node_pool(model.node_pool).accelerator
        assert (spec.min_replicas, spec.max_replicas) == (model.replicas.min, model.replicas.max)
        assert (spec.lora is not None) == model.lora.enabled
        assert spec.tensor_parallel_size == model.tensor_parallel_size


def test_rendered_args_pass_ray_serve_llm(shipped_environments, monkeypatch):
    # prod has a gated model; its secret is checked at build time on the cluster, not here.
    monkeypatch.setattr("app.serving.read_secret_string", lambda name, region: "unused")
    for config in shipped_environments.values():
        configs = llm_configs(app_args(config).model_dump())
        assert [c.model_id for c in configs] == [m.id for m in config.models]
