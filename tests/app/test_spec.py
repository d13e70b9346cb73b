"""The app contract's own rules: names a request can address, engine settings it refuses."""

from __future__ import annotations

import pytest

from pydantic import ValidationError

from app.spec import AppArgs, ModelSpec, PrefillSpec, adapter_name_problem, engine_kwarg_problem


@pytest.mark.parametrize("name", ["ok", "support-v2", "A.b_c-1"])
def test_good_adapter_names(name):
    assert adapter_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "a:b", "a/b", "-lead", "x" * 64, "sp ace", "../up", "ok\n"])
def test_bad_adapter_names(name):
    assert "adapter name" in adapter_name_problem(name)


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("max_model_len", "set from the model's 'max_model_len' field"),
        ("enable_lora", "set from the model's 'lora' field"),
        ("data_parallel_size", "changes the GPUs or nodes a replica uses"),
        ("prefill_context_parallel_size", "changes the GPUs or nodes a replica uses"),
        ("kv_transfer_config", "set from the model's 'kv_transfer' field"),
        ("enable_expert_parallel", "set from the model's 'expert_parallel' field"),
    ],
)
def test_engine_settings_the_kit_owns_or_that_change_the_gpu_count_are_refused(key, needle):
    assert needle in engine_kwarg_problem(key)


@pytest.mark.parametrize(
    "key", ["enable_prefix_caching", "quantization", "decode_context_parallel_size", "all2all_backend"]
)
def test_other_engine_settings_pass_through(key):
    assert engine_kwarg_problem(key) is None


BASE = {"id": "m", "max_model_len": 4096, "snapshot": "0123456789abcdef"}


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"pattern": "data_parallel"}, "pattern data_parallel needs data_parallel_size of at least 2"),
        (
            {"data_parallel_size": 2},
            "data_parallel_size: applies to pattern data_parallel (this model's pattern is standard)",
        ),
        (
            {"expert_parallel": True},
            "expert_parallel: applies to pattern data_parallel (this model's pattern is standard)",
        ),
        (
            {"pattern": "disaggregated", "kv_connector": "nixl"},
            "prefill: pattern disaggregated needs a prefill part and a KV connector",
        ),
        ({"prefill": {}}, "prefill: only for pattern disaggregated (this model's pattern is standard)"),
        ({"kv_connector": "nixl"}, "kv_connector: only for pattern disaggregated (this model's pattern is standard)"),
        (
            {"pattern": "disaggregated", "prefill": {}},
            "kv_connector: pattern disaggregated needs a prefill part and a KV connector",
        ),
        ({"pattern": "multi_node"}, "pipeline_parallel_size: pattern multi_node needs at least 2"),
        (
            {"pattern": "data_parallel", "data_parallel_size": 2, "pipeline_parallel_size": 2},
            "pattern data_parallel runs each engine on one node",
        ),
        (
            {"pattern": "disaggregated", "prefill": {}, "kv_connector": "nixl", "pipeline_parallel_size": 2},
            "pattern disaggregated runs each engine on one node",
        ),
        (
            {"pattern": "disaggregated", "prefill": {"min_replicas": 3, "max_replicas": 2}, "kv_connector": "nixl"},
            "prefill min_replicas 3 is greater than max_replicas 2",
        ),
        (
            {
                "pattern": "disaggregated",
                "prefill": {"target_ongoing_requests": 100, "max_ongoing_requests": 10},
                "kv_connector": "nixl",
            },
            "prefill target_ongoing_requests 100",
        ),
    ],
)
def test_the_contract_refuses_settings_that_do_not_make_their_pattern(fields, needle):
    with pytest.raises(ValidationError) as caught:
        ModelSpec.model_validate({**BASE, **fields})
    assert needle in str(caught.value)


def test_each_pattern_is_a_valid_contract():
    assert (
        ModelSpec.model_validate(
            {**BASE, "pattern": "multi_node", "tensor_parallel_size": 8, "pipeline_parallel_size": 2}
        ).pattern
        == "multi_node"
    )
    assert (
        ModelSpec.model_validate(
            {**BASE, "pattern": "data_parallel", "data_parallel_size": 4, "expert_parallel": True}
        ).data_parallel_size
        == 4
    )
    spec = ModelSpec.model_validate(
        {**BASE, "pattern": "disaggregated", "kv_connector": "nixl", "prefill": {"tensor_parallel_size": 2}}
    )
    assert spec.prefill == PrefillSpec(tensor_parallel_size=2)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"snapshot": None}, "bucket weights are served from a pinned snapshot"),
        ({"weights": "huggingface", "hf_id": "org/model"}, "Hugging Face weights have none"),
        ({"snapshot": "../other-model00"}, "String should match pattern"),
    ],
)
def test_the_contract_serves_bucket_weights_from_one_pinned_snapshot(fields, needle):
    with pytest.raises(ValidationError) as caught:
        ModelSpec.model_validate({**BASE, **fields})
    assert needle in str(caught.value)


ARGS = {"region": "us-west-2", "weights_bucket": "llm-dev-weights-1", "lora_bucket": "llm-dev-lora-1", "models": [BASE]}


@pytest.mark.parametrize(
    ("fields", "valid"),
    [
        ({"routing": {"request_router_class": "app.routing:PrefixAwareRouter"}}, True),
        ({"routing": {"request_router_class": "app.routing:PrefixAwareRouter\n"}}, False),
        ({"routing": {"request_router_class": "app.routing:Router", "request_router_kwargs": {"k" * 64: 1}}}, True),
        ({"routing": {"request_router_class": "app.routing:Router", "request_router_kwargs": {"k" * 65: 1}}}, False),
        ({"routing": {"request_router_class": "app.routing:Router", "request_router_kwargs": {"k\n": 1}}}, False),
        ({"placement": {"bundles": [{"GPU": 1, "x" * 128: 1}]}}, True),
        ({"placement": {"bundles": [{"GPU": 1, "x" * 129: 1}]}}, False),
        ({"placement": {"bundles": [{"GPU\n": 1}]}}, False),
        ({"env_vars": {"A" * 128: "v"}}, True),
        ({"env_vars": {"A" * 129: "v"}}, False),
        ({"env_vars": {"LOG_LEVEL\n": "v"}}, False),
        ({"env_vars": {"9LOG": "v"}}, False),
    ],
)
def test_the_contracts_own_patterns_refuse_a_trailing_newline_and_keep_their_lengths(fields, valid):
    try:
        ModelSpec.model_validate({**BASE, **fields})
    except ValidationError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("http://127.0.0.1:9000", True),
        ("https://s3.us-west-2.amazonaws.com", True),
        ("http://x\n", False),
        ("ftp://x", False),
        ("http://", False),
        ("http://a b", False),
    ],
)
def test_an_s3_endpoint_is_one_http_url(url, valid):
    try:
        AppArgs.model_validate({**ARGS, "s3_endpoint_url": url})
    except ValidationError:
        assert not valid
    else:
        assert valid
