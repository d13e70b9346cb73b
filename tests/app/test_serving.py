"""`app.serving`: the LLMConfigs `build_app` produces and every way its args can be wrong."""

from __future__ import annotations

import copy
import logging

import boto3
import pytest
from moto import mock_aws

from app.serving import InvalidAppArgs, llm_config_dict, llm_configs, parse_args

ARGS = {
    "region": "us-west-2",
    "weights_bucket": "llm-dev-weights-111111111111",
    "lora_bucket": "llm-dev-lora-111111111111",
    "models": [
        {
            "id": "qwen2.5-7b-instruct",
            "snapshot": "0123456789abcdef",
            "accelerator_type": "L4",
            "max_model_len": 8192,
            "min_replicas": 0,
            "max_replicas": 3,
            "target_ongoing_requests": 24,
            "max_ongoing_requests": 48,
            "lora": {"max_adapters_per_replica": 8, "max_rank": 32},
            "engine_kwargs": {
                "enable_prefix_caching": True,
                "quantization": "fp8",
                "reasoning_parser": "deepseek_r1",
                "limit_mm_per_prompt": {"image": 2},
            },
        },
        {
            "id": "llama-3.1-70b-instruct",
            "weights": "huggingface",
            "hf_id": "meta-llama/Llama-3.1-70B-Instruct",
            "accelerator_type": "L40S",
            "tensor_parallel_size": 4,
            "max_model_len": 16384,
        },
    ],
}


def with_change(change) -> dict:
    args = copy.deepcopy(ARGS)
    change(args)
    return args


def test_bucket_model_reads_weights_and_adapters_from_their_prefixes():
    config = llm_config_dict(parse_args(ARGS), parse_args(ARGS).models[0])
    assert config["model_loading_config"] == {
        "model_id": "qwen2.5-7b-instruct",
        "model_source": "s3://llm-dev-weights-111111111111/models/qwen2.5-7b-instruct/0123456789abcdef",
    }
    assert config["lora_config"] == {
        "dynamic_lora_loading_path": "s3://llm-dev-lora-111111111111/adapters/qwen2.5-7b-instruct",
        "max_num_adapters_per_replica": 8,
    }


def test_engine_gets_the_lora_switches_ray_does_not_set_and_passthrough_kwargs():
    config = llm_config_dict(parse_args(ARGS), parse_args(ARGS).models[0])
    assert config["engine_kwargs"] == {
        "enable_prefix_caching": True,
        "quantization": "fp8",
        "reasoning_parser": "deepseek_r1",
        "limit_mm_per_prompt": {"image": 2},
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "max_model_len": 8192,
        "load_format": "auto",
        "enable_lora": True,
        "max_lora_rank": 32,
        "max_loras": 8,
    }
    assert config["accelerator_type"] == "L4"
    assert config["log_engine_metrics"] is True


def test_autoscaling_has_explicit_load_targets_and_may_scale_to_zero():
    config = llm_config_dict(parse_args(ARGS), parse_args(ARGS).models[0])
    assert config["deployment_config"] == {
        "max_ongoing_requests": 48,
        "autoscaling_config": {
            "min_replicas": 0,
            "initial_replicas": 1,
            "max_replicas": 3,
            "target_ongoing_requests": 24,
        },
    }


def test_every_replica_knows_the_region_and_the_s3_endpoint():
    spec = parse_args({**ARGS, "s3_endpoint_url": "http://127.0.0.1:5000"})
    for model in spec.models:
        env = llm_config_dict(spec, model)["runtime_env"]["env_vars"]
        assert env["AWS_REGION"] == "us-west-2" and env["AWS_DEFAULT_REGION"] == "us-west-2"
        assert env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:5000"
    assert (
        "AWS_ENDPOINT_URL_S3"
        not in llm_config_dict(parse_args(ARGS), parse_args(ARGS).models[0])["runtime_env"]["env_vars"]
    )


def test_ray_accepts_the_configs():
    configs = llm_configs(ARGS)
    assert [c.model_id for c in configs] == ["qwen2.5-7b-instruct", "llama-3.1-70b-instruct"]
    assert (
        configs[0].lora_config.dynamic_lora_loading_path
        == "s3://llm-dev-lora-111111111111/adapters/qwen2.5-7b-instruct"
    )
    assert configs[0].deployment_config["autoscaling_config"]["target_ongoing_requests"] == 24
    assert configs[1].model_loading_config.model_source == "meta-llama/Llama-3.1-70B-Instruct"
    assert configs[1].lora_config is None
    assert configs[1].engine_kwargs["tensor_parallel_size"] == 4


TOKEN = "hf_" + "x" * 34


@pytest.fixture
def token_secret():
    with mock_aws():
        boto3.client("secretsmanager", region_name="us-west-2").create_secret(
            Name="llm-dev/hf-token", SecretString=TOKEN
        )
        yield "llm-dev/hf-token"


def test_gated_model_config_names_the_secret_and_never_holds_the_token(token_secret, caplog):
    from app.gated_server import GatedModelServer

    args = with_change(lambda a: a["models"][1].update(hf_token_secret=token_secret))
    with caplog.at_level(logging.DEBUG):
        configs = llm_configs(args)
    gated = configs[1]
    assert gated.runtime_env["env_vars"]["LLMSTACKS_HF_TOKEN_SECRET"] == "llm-dev/hf-token"
    assert gated.server_cls is GatedModelServer
    assert configs[0].server_cls is None and "LLMSTACKS_HF_TOKEN_SECRET" not in configs[0].runtime_env["env_vars"]
    assert TOKEN not in repr(gated) and TOKEN not in repr(args)
    assert TOKEN not in caplog.text


def test_replica_side_token_lands_in_a_private_token_file(token_secret, tmp_path, monkeypatch):
    from app.gated_server import store_hf_token

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    path = store_hf_token(token_secret, "us-west-2")
    assert path == tmp_path / "hf" / "token"
    assert path.read_text() == TOKEN
    assert path.stat().st_mode & 0o777 == 0o600
    assert huggingface_hub.get_token() == TOKEN  # where vLLM's download looks


@mock_aws
def test_unreadable_token_secret_fails_the_build_naming_the_secret():
    args = with_change(lambda a: a["models"][1].update(hf_token_secret="llm-dev/absent"))
    with pytest.raises(RuntimeError, match=r"^cannot read secret 'llm-dev/absent': ResourceNotFoundException$"):
        llm_configs(args)


def test_custom_server_for_a_gated_model_must_keep_the_token_fetch(token_secret):
    args = with_change(
        lambda a: a["models"][1].update(hf_token_secret=token_secret, server_cls="ray.serve.llm:LLMServer")
    )
    with pytest.raises(InvalidAppArgs, match=r"models\[1\] \(llama-3.1-70b-instruct\).server_cls: .*GatedModelServer"):
        llm_configs(args)


INVALID = [
    ("unknown-top-key", lambda a: a.update(colour="blue"), "colour: unknown key"),
    ("missing-region", lambda a: a.pop("region"), "region: required field is missing"),
    ("no-models", lambda a: a.update(models=[]), "models: List should have at least 1 item"),
    (
        "unknown-model-key",
        lambda a: a["models"][0].update(replicas=2),
        "models[0] (qwen2.5-7b-instruct).replicas: unknown key",
    ),
    ("colon-in-id", lambda a: a["models"][1].update(id="llama:70b"), "models[1] (llama:70b).id"),
    (
        "replica-bounds",
        lambda a: a["models"][0].update(min_replicas=4),
        "models[0] (qwen2.5-7b-instruct): min_replicas 4 is greater than max_replicas 3",
    ),
    (
        "target-above-max-ongoing",
        lambda a: a["models"][0].update(target_ongoing_requests=100),
        "could never reach the scale-up target",
    ),
    (
        "reserved-engine-kwarg",
        lambda a: a["models"][0]["engine_kwargs"].update(max_loras=4),
        "engine_kwargs.max_loras: set from the model's",
    ),
    (
        "gpu-count-engine-kwarg",
        lambda a: a["models"][0]["engine_kwargs"].update(data_parallel_size=2),
        "engine_kwargs.data_parallel_size: changes the GPUs or nodes a replica uses",
    ),
    (
        "hf-without-id",
        lambda a: a["models"][1].pop("hf_id"),
        "models[1] (llama-3.1-70b-instruct): 'huggingface' weights need hf_id",
    ),
    (
        "secret-on-bucket-model",
        lambda a: a["models"][0].update(hf_token_secret="s"),
        "apply only to 'huggingface' weights",
    ),
    (
        "lora-rank",
        lambda a: a["models"][0]["lora"].update(max_rank=48),
        "models[0] (qwen2.5-7b-instruct).lora.max_rank",
    ),
    (
        "server-cls-format",
        lambda a: a["models"][0].update(server_cls="not a class"),
        "models[0] (qwen2.5-7b-instruct).server_cls",
    ),
    ("duplicate-id", lambda a: a["models"][1].update(id="qwen2.5-7b-instruct"), "appears more than once"),
    ("bad-bucket", lambda a: a.update(weights_bucket="Weights_Bucket"), "weights_bucket"),
    ("bad-region", lambda a: a.update(region="mars"), "region"),
    (
        "server-cls-missing",
        lambda a: a["models"][0].update(server_cls="app.nowhere:Server"),
        "models[0] (qwen2.5-7b-instruct): ",
    ),
    (
        "credential-env-var",
        lambda a: a["models"][0].update(env_vars={"HF_TOKEN": "hf_x"}),
        "models[0] (qwen2.5-7b-instruct): env_vars.HF_TOKEN: HF_TOKEN looks like a credential",
    ),
    (
        "secret-looking-value",
        lambda a: a["models"][0].update(env_vars={"NOTE": "ASIAABCDEFGHIJKLMNOP"}),
        "env_vars.NOTE: the value of NOTE looks like a credential",
    ),
    (
        "stream-from-hugging-face",
        lambda a: a["models"][1].update(load="stream"),
        "models[1] (llama-3.1-70b-instruct): load 'stream' reads the weights bucket",
    ),
    (
        "placement-without-bundles",
        lambda a: a["models"][0].update(placement={"strategy": "STRICT_PACK", "bundles": []}),
        "models[0] (qwen2.5-7b-instruct).placement.bundles: List should have at least 1 item",
    ),
    (
        "router-not-a-class-path",
        lambda a: a["models"][0].update(routing={"request_router_class": "not a class"}),
        "models[0] (qwen2.5-7b-instruct).routing.request_router_class",
    ),
    (
        "router-not-importable",
        lambda a: a["models"][0].update(routing={"request_router_class": "no_such_module:Router"}),
        "models[0] (qwen2.5-7b-instruct): Value error, Invalid deployment config",
    ),
]


@pytest.mark.parametrize(("change", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_args_name_the_model_and_field(change, needle):
    with pytest.raises(InvalidAppArgs) as error:
        llm_configs(with_change(change))
    assert needle in str(error.value)
    assert str(error.value).startswith("invalid application args: ")


def test_ray_rejections_name_the_model():
    args = with_change(lambda a: a["models"][0].update(accelerator_type="NOT-A-GPU"))
    with pytest.raises(InvalidAppArgs, match=r"models\[0\] \(qwen2.5-7b-instruct\)"):
        llm_configs(args)
