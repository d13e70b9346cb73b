"""Serving patterns in one application: `build_app` puts every model, whatever its pattern, behind one
OpenAI-compatible ingress, each built by Ray Serve LLM's own builder and server classes.

- The graph (no engine, no Ray cluster): one model of each pattern (standard, multi_node tensor 8 x
  pipeline 2 on 16 PACK bundles, data_parallel 4 x tensor 2 with expert parallelism, disaggregated
  prefill tensor 2 / decode tensor 4 over NIXL) and what Ray would deploy for each: deployment names,
  server classes, replica bounds, placement groups and gang scheduling, engine settings, LoRA paths,
  the ingress's routes. The GPU placement groups are what Ray computes from vLLM's engine config,
  here on a machine without GPUs: nothing is scheduled.
- End to end on a local Ray (CPU): a data_parallel model (a gang of 2, Ray's DPServer with the echo
  engine of `tests/cpu_engine.py`) and a standard model behind the one real ingress, weights
  downloaded by Ray from a local S3, answering through the official `openai` client.
- Bad input refused at the app boundary, in one line naming the model.

Disaggregated serving does not run here: the decode server's start pre-warms a prefill whose KV
cache moves over NIXL (vLLM's `NixlConnector`), which needs GPUs and real vLLM engines on both legs.
What the graph test asserts for it is what Ray's `build_pd_openai_app` would build: the Prefill:/Decode:
deployments, decode bound to prefill, the KV connector on both legs, decode's NIXL port moved off
prefill's, LoRA on both legs, and the ingress calling decode.
"""

from __future__ import annotations

import copy
import inspect
import os
import types

import pytest
import waits

from app.serving import (
    DIRECT_STREAMING_ENV,
    InvalidAppArgs,
    build_app,
    llm_config_dict,
    parse_args,
    prefill_config_dict,
)

POOL = "llmstacks-pool-h100-x8"


def gpus(n: int, pool: str = POOL) -> list[dict]:
    return [{"GPU": 1, pool: 1}] * n


ARGS = {
    "region": "us-west-2",
    "weights_bucket": "llm-prod-weights-111111111111",
    "lora_bucket": "llm-prod-lora-111111111111",
    "models": [
        {
            "id": "qwen2.5-7b-instruct",
            "snapshot": "0123456789abcdef",
            "accelerator_type": "L4",
            "max_model_len": 8192,
            "min_replicas": 0,
            "max_replicas": 3,
            "lora": {"max_adapters_per_replica": 8, "max_rank": 32},
        },
        {
            "id": "llama-3.1-405b-instruct",
            "snapshot": "1123456789abcdef",
            "pattern": "multi_node",
            "accelerator_type": "H100",
            "max_model_len": 16384,
            "tensor_parallel_size": 8,
            "pipeline_parallel_size": 2,
            "min_replicas": 1,
            "max_replicas": 2,
            "placement": {"strategy": "PACK", "bundles": gpus(16)},
        },
        {
            "id": "deepseek-v3",
            "snapshot": "2123456789abcdef",
            "pattern": "data_parallel",
            "accelerator_type": "H100",
            "max_model_len": 32768,
            "data_parallel_size": 4,
            "tensor_parallel_size": 2,
            "expert_parallel": True,
            "min_replicas": 1,
            "max_replicas": 2,
            "placement": {"strategy": "STRICT_PACK", "bundles": gpus(2)},
        },
        {
            "id": "llama-3.3-70b-pd",
            "snapshot": "3123456789abcdef",
            "pattern": "disaggregated",
            "kv_connector": "nixl",
            "accelerator_type": "H100",
            "max_model_len": 32768,
            "tensor_parallel_size": 4,
            "min_replicas": 1,
            "max_replicas": 3,
            "target_ongoing_requests": 16,
            "max_ongoing_requests": 32,
            "lora": {},
            "placement": {"strategy": "STRICT_PACK", "bundles": gpus(4)},
            "prefill": {
                "accelerator_type": "H200",
                "tensor_parallel_size": 2,
                "min_replicas": 2,
                "max_replicas": 4,
                "target_ongoing_requests": 8,
                "max_ongoing_requests": 12,
                "placement": {"strategy": "STRICT_PACK", "bundles": gpus(2, "llmstacks-pool-h200-x8")},
            },
        },
    ],
}
STANDARD, MULTI_NODE, DATA_PARALLEL, DISAGGREGATED = (m["id"] for m in ARGS["models"])


def with_change(change) -> dict:
    args = copy.deepcopy(ARGS)
    change(args)
    return args


@pytest.fixture
def no_cluster(monkeypatch):
    """Building needs no Ray cluster but for one call: Ray's LLMServer.get_deployment_options merges the
    job's runtime env (`ray.get_runtime_context().runtime_env`) into each replica's, which would start
    a local Ray. Here the job has none, as on a fresh cluster; the test then checks no Ray was started."""
    import ray

    started = ray.is_initialized()
    monkeypatch.delenv(DIRECT_STREAMING_ENV, raising=False)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: types.SimpleNamespace(runtime_env={}))
    yield
    assert ray.is_initialized() == started


# --- The graph: what Ray would deploy for each pattern ----------------------------------------------


@pytest.fixture(scope="module")
def graph():
    """The ingress deployment `build_app(ARGS)` returns, and the deployment each model's id maps to."""
    import ray

    started, saved = ray.is_initialized(), ray.get_runtime_context
    ray.get_runtime_context = lambda: types.SimpleNamespace(runtime_env={})  # as in no_cluster
    try:
        app = build_app(ARGS)
    finally:
        ray.get_runtime_context = saved
    assert ray.is_initialized() == started
    ingress = app._bound_deployment
    return app, ingress, {mid: bound._bound_deployment for mid, bound in ingress.init_kwargs["llm_deployments"].items()}


def autoscaling(deployment) -> tuple:
    config = deployment._deployment_config.autoscaling_config
    return config.min_replicas, config.initial_replicas, config.max_replicas, config.target_ongoing_requests


def placement(deployment) -> tuple:
    return deployment._replica_config.placement_group_strategy, deployment._replica_config.placement_group_bundles


def engine(deployment) -> dict:
    return deployment.init_kwargs["llm_config"].engine_kwargs


def test_one_application_one_ingress_over_every_model(graph):
    from ray.serve import Application
    from ray.serve.llm.ingress import OpenAiIngress

    app, ingress, deployments = graph
    assert isinstance(app, Application)
    assert ingress.name == "OpenAiIngress" and issubclass(ingress.func_or_class, OpenAiIngress)
    assert set(ingress.init_kwargs) == {"llm_deployments", "model_cards", "lora_paths"}
    ids = [m["id"] for m in ARGS["models"]]
    assert list(deployments) == ids and list(ingress.init_kwargs["model_cards"]) == ids
    assert {mid: card.id for mid, card in ingress.init_kwargs["model_cards"].items()} == {i: i for i in ids}
    # Not every model scales to zero, so neither does the ingress (OpenAiIngress.get_deployment_options).
    assert ingress._deployment_config.autoscaling_config.min_replicas == 1


def test_each_pattern_is_built_by_rays_own_server_class(graph):
    from ray.serve.llm.deployment import DPServer, LLMServer, PDDecodeServer, PDPrefillServer

    _, _, deployments = graph
    prefill = deployments[DISAGGREGATED].init_kwargs["prefill_server"]._bound_deployment
    assert {mid: d.name for mid, d in deployments.items()} == {
        STANDARD: "LLMServer:qwen2_5-7b-instruct",
        MULTI_NODE: "LLMServer:llama-3_1-405b-instruct",
        DATA_PARALLEL: "DPServer:deepseek-v3",
        DISAGGREGATED: "Decode:llama-3_3-70b-pd",
    }
    assert prefill.name == "Prefill:llama-3_3-70b-pd"
    assert deployments[STANDARD].func_or_class is LLMServer and deployments[MULTI_NODE].func_or_class is LLMServer
    assert deployments[DATA_PARALLEL].func_or_class is DPServer
    assert deployments[DISAGGREGATED].func_or_class is PDDecodeServer and prefill.func_or_class is PDPrefillServer


def test_replica_bounds_data_parallel_counts_gangs_and_disaggregated_legs_scale_apart(graph):
    _, _, deployments = graph
    prefill = deployments[DISAGGREGATED].init_kwargs["prefill_server"]._bound_deployment
    assert autoscaling(deployments[STANDARD]) == (0, 1, 3, 32)
    assert autoscaling(deployments[MULTI_NODE]) == (1, 1, 2, 32)
    # DPServer multiplies the replica bounds by data_parallel_size: 1-2 gangs of 4 engines.
    assert autoscaling(deployments[DATA_PARALLEL]) == (4, 4, 8, 32)
    assert autoscaling(deployments[DISAGGREGATED]) == (1, 1, 3, 16)
    assert autoscaling(prefill) == (2, 2, 4, 8)
    assert deployments[DISAGGREGATED]._deployment_config.max_ongoing_requests == 32
    assert prefill._deployment_config.max_ongoing_requests == 12


def test_placement_groups_multi_node_packs_16_gpus_and_data_parallel_is_gang_scheduled(graph):
    _, _, deployments = graph
    strategy, bundles = placement(deployments[MULTI_NODE])
    assert strategy == "PACK" and len(bundles) == 16
    assert all(b["GPU"] == 1 and b[POOL] == 1 and b["accelerator_type:H100"] > 0 for b in bundles)
    assert bundles[0]["CPU"] == 1 and all("CPU" not in b for b in bundles[1:])  # the replica actor rides in bundle 0
    assert deployments[MULTI_NODE]._deployment_config.gang_scheduling_config is None

    dp = deployments[DATA_PARALLEL]
    strategy, bundles = placement(dp)
    assert strategy is None and len(bundles) == 2  # each engine's two GPUs; the gang packs the 4 engines
    assert all(b["GPU"] == 1 and b[POOL] == 1 for b in bundles)
    gang = dp._deployment_config.gang_scheduling_config
    assert (gang.gang_size, gang.gang_placement_strategy.value, gang.runtime_failure_policy.value) == (
        4,
        "PACK",
        "RESTART_GANG",
    )

    decode = deployments[DISAGGREGATED]
    prefill = decode.init_kwargs["prefill_server"]._bound_deployment
    strategy, bundles = placement(decode)
    assert strategy == "STRICT_PACK" and len(bundles) == 4 and all(b["accelerator_type:H100"] > 0 for b in bundles)
    strategy, bundles = placement(prefill)
    assert strategy == "STRICT_PACK" and len(bundles) == 2
    assert all(b["llmstacks-pool-h200-x8"] == 1 and b["accelerator_type:H200"] > 0 for b in bundles)


def test_engine_settings_of_each_pattern(graph):
    _, _, deployments = graph
    pick = (
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "data_parallel_size",
        "enable_expert_parallel",
        "kv_transfer_config",
    )
    settings = {mid: {k: engine(d).get(k) for k in pick} for mid, d in deployments.items()}
    prefill = deployments[DISAGGREGATED].init_kwargs["prefill_server"]._bound_deployment
    nixl = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    assert settings == {
        STANDARD: dict.fromkeys(pick) | {"tensor_parallel_size": 1, "pipeline_parallel_size": 1},
        MULTI_NODE: dict.fromkeys(pick) | {"tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        DATA_PARALLEL: dict.fromkeys(pick)
        | {
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 1,
            "data_parallel_size": 4,
            "enable_expert_parallel": True,
        },
        DISAGGREGATED: dict.fromkeys(pick)
        | {"tensor_parallel_size": 4, "pipeline_parallel_size": 1, "kv_transfer_config": nixl},
    }
    assert engine(prefill)["tensor_parallel_size"] == 2 and engine(prefill)["kv_transfer_config"] == nixl
    # Ray's PDServingArgs moves decode's NIXL side channel off prefill's default port (20000).
    assert deployments[DISAGGREGATED].init_kwargs["llm_config"].experimental_configs == {
        "NIXL_SIDE_CHANNEL_PORT_BASE": 22000
    }
    assert prefill.init_kwargs["llm_config"].experimental_configs == {}


def test_lora_paths_of_lora_models_including_both_legs_of_a_disaggregated_one(graph):
    _, ingress, deployments = graph
    lora = "s3://llm-prod-lora-111111111111/adapters"
    assert ingress.init_kwargs["lora_paths"] == {
        STANDARD: f"{lora}/{STANDARD}",
        DISAGGREGATED: f"{lora}/{DISAGGREGATED}",
    }
    decode = deployments[DISAGGREGATED]
    prefill = decode.init_kwargs["prefill_server"]._bound_deployment
    for leg in (decode, prefill):
        assert leg.init_kwargs["llm_config"].lora_config.dynamic_lora_loading_path == f"{lora}/{DISAGGREGATED}"
        assert engine(leg)["enable_lora"] is True and engine(leg)["max_loras"] == 16


def test_the_ingress_serves_the_openai_routes(graph):
    _, ingress, _ = graph
    # make_fastapi_ingress wraps the class with serve.ingress(app), which keeps the FastAPI app for the replica.
    fastapi_app = inspect.getclosurevars(ingress.func_or_class.__init__).nonlocals["frozen_app_or_func"]
    routes = {(route.path, method) for route in fastapi_app.routes for method in getattr(route, "methods", ())}
    assert {("/v1/models", "GET"), ("/v1/chat/completions", "POST"), ("/v1/completions", "POST")} <= routes


def test_the_patterns_example_as_the_stacks_render_it_builds(no_cluster):
    """stacks/examples/patterns.yaml (multi_node, data_parallel with LoRA, disaggregated on two pools): the args the
    service spec carries build, each part placed on its own pool."""
    from conftest import ROOT
    from stacks.planning.plan import plan_file
    from stacks.specs.app_args import app_args

    ingress = build_app(
        app_args(plan_file(ROOT / "stacks" / "examples" / "patterns.yaml")).model_dump()
    )._bound_deployment
    deployments = {mid: bound._bound_deployment for mid, bound in ingress.init_kwargs["llm_deployments"].items()}
    prefill = deployments["llama-3.1-70b-instruct"].init_kwargs["prefill_server"]._bound_deployment
    built = {
        d.name: (
            placement(d)[0],
            {k for b in placement(d)[1] for k in b if k.startswith("llmstacks-pool")},
            len(placement(d)[1]),
        )
        for d in (*deployments.values(), prefill)
    }
    assert built == {
        "LLMServer:llama-3_1-405b-instruct": ("PACK", {"llmstacks-pool-h100-405b"}, 16),
        "DPServer:qwen3-30b-a3b": (None, {"llmstacks-pool-h100-moe"}, 2),
        "Decode:llama-3_1-70b-instruct": ("STRICT_PACK", {"llmstacks-pool-h200-decode"}, 4),
        "Prefill:llama-3_1-70b-instruct": ("STRICT_PACK", {"llmstacks-pool-h200-prefill"}, 4),
    }
    assert set(ingress.init_kwargs["lora_paths"]) == {"qwen3-30b-a3b"}


def test_prefill_config_is_decodes_with_the_prefill_parts_fields():
    spec = parse_args(ARGS)
    model = spec.models[3]
    decode, prefill = llm_config_dict(spec, model), prefill_config_dict(spec, model)
    assert prefill["accelerator_type"] == "H200" and decode["accelerator_type"] == "H100"
    assert prefill["engine_kwargs"] == {**decode["engine_kwargs"], "tensor_parallel_size": 2}
    assert prefill["deployment_config"] == {
        "max_ongoing_requests": 12,
        "autoscaling_config": {
            "min_replicas": 2,
            "initial_replicas": 2,
            "max_replicas": 4,
            "target_ongoing_requests": 8,
        },
    }
    assert prefill["placement_group_config"] == {
        "strategy": "STRICT_PACK",
        "bundles": gpus(2, "llmstacks-pool-h200-x8"),
    }
    same = {
        k
        for k in decode
        if k not in ("accelerator_type", "engine_kwargs", "deployment_config", "placement_group_config")
    }
    assert {k: prefill[k] for k in same} == {k: decode[k] for k in same}
    with pytest.raises(ValueError, match="has no prefill part"):
        prefill_config_dict(spec, spec.models[0])


TOKEN = "hf_" + "y" * 34


def test_gated_models_fetch_their_token_in_rays_data_parallel_and_disaggregated_servers(no_cluster):
    """A gated model's replicas read the token themselves (app.gated_server), whatever the pattern: the
    token fetch is mixed into Ray's DPServer and PD servers, which Serve ships to the replicas by value."""
    import boto3
    from moto import mock_aws
    from ray import cloudpickle
    from ray.serve.llm.deployment import DPServer, PDDecodeServer, PDPrefillServer

    from app.gated_server import GatedModelServer

    def gated(args):
        for model in args["models"][2:]:
            model.update(weights="huggingface", snapshot=None, hf_id="org/gated", hf_token_secret="llm-prod/hf-token")

    with mock_aws():
        boto3.client("secretsmanager", region_name="us-west-2").create_secret(
            Name="llm-prod/hf-token", SecretString=TOKEN
        )
        ingress = build_app(with_change(gated))._bound_deployment
    deployments = {mid: bound._bound_deployment for mid, bound in ingress.init_kwargs["llm_deployments"].items()}
    dp, decode = deployments[DATA_PARALLEL], deployments[DISAGGREGATED]
    prefill = decode.init_kwargs["prefill_server"]._bound_deployment
    for deployment, ray_cls in ((dp, DPServer), (decode, PDDecodeServer), (prefill, PDPrefillServer)):
        cls = deployment.func_or_class
        assert cls.__mro__[1] is GatedModelServer and issubclass(cls, ray_cls)  # the token is stored first
        assert (
            deployment.init_kwargs["llm_config"].runtime_env["env_vars"]["LLMSTACKS_HF_TOKEN_SECRET"]
            == "llm-prod/hf-token"
        )
        assert issubclass(cloudpickle.loads(cloudpickle.dumps(cls)), ray_cls)
        assert TOKEN not in repr(deployment.init_kwargs)
    assert (dp.name, decode.name, prefill.name) == (
        "GatedDPServer:deepseek-v3",
        "Decode:llama-3_3-70b-pd",
        "Prefill:llama-3_3-70b-pd",
    )
    assert dp._deployment_config.gang_scheduling_config.gang_size == 4


# --- Bad input at the app boundary: one line naming the model --------------------------------------


def refused(args: dict) -> str:
    with pytest.raises(InvalidAppArgs) as error:
        build_app(args)
    message = str(error.value)
    assert message.startswith("invalid application args: ") and "\n" not in message
    return message


def test_a_data_parallel_server_must_be_rays_dp_server(no_cluster):
    message = refused(with_change(lambda a: a["models"][2].update(server_cls="cpu_engine:CpuLLMServer")))
    assert message == (
        "invalid application args: models[2] (deepseek-v3).server_cls: pattern data_parallel needs a "
        "subclass of Ray's DPServer (ray.serve.llm.deployment.DPServer)"
    )


def test_a_disaggregated_model_takes_no_server_cls(no_cluster):
    message = refused(with_change(lambda a: a["models"][3].update(server_cls="cpu_engine:CpuLLMServer")))
    assert message.startswith(
        "invalid application args: models[3] (llama-3.3-70b-pd).server_cls: pattern disaggregated "
        "is served by Ray's PDPrefillServer and PDDecodeServer"
    )


def test_a_prefill_placement_ray_rejects_names_the_model(no_cluster):
    # CPU-only bundles for a leg that names a GPU type: Ray's LLMConfig refuses the prefill leg.
    message = refused(
        with_change(
            lambda a: a["models"][3]["prefill"].update(placement={"strategy": "STRICT_PACK", "bundles": [{"CPU": 4}]})
        )
    )
    assert message.startswith("invalid application args: models[3] (llama-3.3-70b-pd): ")
    assert "accelerator_type='H200' cannot be used with CPU-only configurations" in message


def test_rays_pd_checks_refusing_the_legs_name_the_model(no_cluster, monkeypatch):
    """Ray's PDServingArgs refuses legs that cannot resolve the same adapters; the app never builds such
    legs (both come from one model), so the prefill leg is altered here to see Ray's refusal mapped."""
    import app.serving

    def other_lora_path(spec, model):
        config = prefill_config_dict(spec, model)
        config["lora_config"] = {**config["lora_config"], "dynamic_lora_loading_path": "s3://elsewhere/adapters"}
        return config

    monkeypatch.setattr(app.serving, "prefill_config_dict", other_lora_path)
    message = refused(ARGS)
    assert message == (
        "invalid application args: models[3] (llama-3.3-70b-pd): "
        "Value error, P/D prefill and decode LoRA loading paths must be the same"
    )


def test_what_ray_refuses_while_building_a_deployment_names_the_model(no_cluster):
    # vLLM's engine arguments are checked when Ray computes the deployment's placement (DPServer's options).
    message = refused(with_change(lambda a: a["models"][2].update(engine_kwargs={"no_such_setting": 1})))
    assert message == "invalid application args: models[2] (deepseek-v3): Unknown engine argument: no_such_setting"


def test_direct_streaming_is_refused(no_cluster, monkeypatch):
    monkeypatch.setenv(DIRECT_STREAMING_ENV, "1")
    message = refused(ARGS)
    assert message.startswith(
        f"invalid application args: {DIRECT_STREAMING_ENV}=1 is set in the environment: this app "
        "composes several models behind one OpenAI ingress"
    )
    assert "direct streaming" in message and "not supported" in message


# --- End to end on CPU: data_parallel and standard behind the one ingress ------------------------------

E2E_BUCKETS = ("patterns-weights", "patterns-lora")
E2E_REGION = "us-east-1"
E2E_STANDARD, E2E_DATA_PARALLEL = "chat-small", "moe-small"
DP_DEPLOYMENT = f"CpuDPServer:{E2E_DATA_PARALLEL}"


@pytest.fixture(scope="module")
def e2e_args(s3_endpoint, tmp_path_factory):
    """Both models' weights published in a local S3; the args serving them with the CPU test servers."""
    import boto3

    from artifact_fixtures import model_dir
    from stacks.emulator.server import TEST_CREDENTIALS
    from stacks.publishing.models import upload_model

    s3 = boto3.client(
        "s3", region_name=E2E_REGION, endpoint_url=s3_endpoint, **{k.lower(): v for k, v in TEST_CREDENTIALS.items()}
    )
    for bucket in E2E_BUCKETS:
        s3.create_bucket(Bucket=bucket)
    root = tmp_path_factory.mktemp("patterns")
    snapshots = {
        model_id: upload_model(
            s3, E2E_BUCKETS[0], model_id, model_dir(root, shards=1, model_type=f"tiny-{model_id}", name=model_id)
        ).snapshot
        for model_id in (E2E_STANDARD, E2E_DATA_PARALLEL)
    }
    cpu = {"accelerator_type": None, "max_model_len": 4096, "target_ongoing_requests": 8, "max_ongoing_requests": 16}
    return {
        "region": E2E_REGION,
        "weights_bucket": E2E_BUCKETS[0],
        "lora_bucket": E2E_BUCKETS[1],
        "s3_endpoint_url": s3_endpoint,
        "models": [
            {"id": E2E_STANDARD, "snapshot": snapshots[E2E_STANDARD], "server_cls": "cpu_engine:CpuLLMServer", **cpu},
            {
                "id": E2E_DATA_PARALLEL,
                "snapshot": snapshots[E2E_DATA_PARALLEL],
                "server_cls": "cpu_engine:CpuDPServer",
                "pattern": "data_parallel",
                "data_parallel_size": 2,
                "expert_parallel": True,
                "placement": {"strategy": "PACK", "bundles": [{"CPU": 1}]},
                **cpu,
            },
        ],
    }


@pytest.fixture(scope="module")
def served(e2e_args):
    """One local Ray for the module; the app at /; an `openai` client. The replicas (started by this
    process's Ray) inherit the local S3's test credentials from its environment."""
    import ray
    from openai import OpenAI
    from ray import serve

    from prefix_engine import deploy, start_local_serve
    from stacks.emulator.server import TEST_CREDENTIALS

    saved = {k: os.environ.get(k) for k in (*TEST_CREDENTIALS, DIRECT_STREAMING_ENV)}
    os.environ.update(TEST_CREDENTIALS)
    os.environ.pop(DIRECT_STREAMING_ENV, None)
    try:
        port = start_local_serve(num_cpus=8)
        try:
            deploy({"llm": e2e_args})
            yield OpenAI(
                base_url=f"http://127.0.0.1:{port}/llm/v1",
                api_key="not-needed",
                max_retries=0,
                timeout=waits.RAY_REQUEST,
            )
        finally:
            serve.shutdown()
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_models_lists_the_standard_and_the_data_parallel_model(served):
    assert {m.id for m in served.models.list().data} == {E2E_STANDARD, E2E_DATA_PARALLEL}


def test_each_model_answers_through_the_one_ingress(served):
    for model_id in (E2E_STANDARD, E2E_DATA_PARALLEL):
        reply = served.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hello"}])
        assert reply.choices[0].message.content == f"model={model_id} base=tiny-{model_id} rank=None echo=hello"
    stream = served.chat.completions.create(
        model=E2E_DATA_PARALLEL, messages=[{"role": "user", "content": "go"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == f"model={E2E_DATA_PARALLEL} base=tiny-{E2E_DATA_PARALLEL} rank=None echo=go"
    completion = served.completions.create(model=E2E_DATA_PARALLEL, prompt="abc")
    assert completion.choices[0].text == f"model={E2E_DATA_PARALLEL} base=tiny-{E2E_DATA_PARALLEL} rank=None echo=abc"


def test_the_data_parallel_model_runs_as_one_gang_of_two(served):
    from ray import serve

    from prefix_engine import deployment_details

    details = deployment_details("llm")
    assert set(details) == {f"CpuLLMServer:{E2E_STANDARD}", DP_DEPLOYMENT, "OpenAiIngress"}
    dp = details[DP_DEPLOYMENT]
    assert dp["status"] == "HEALTHY" and len(dp["replicas"]) == 2
    assert dp["deployment_config"]["gang_scheduling_config"]["gang_size"] == 2
    handle = serve.get_deployment_handle(DP_DEPLOYMENT, app_name="llm")
    ranks: dict[int, dict] = {}
    for _ in range(40):
        gang = handle.gang.remote().result(timeout_s=waits.RAY_REQUEST)
        ranks[gang["rank"]] = gang
        if len(ranks) == 2:
            break
    assert set(ranks) == {0, 1}, "a handle reached only one rank of the gang"
    assert {g["gang_id"] for g in ranks.values()} == {ranks[0]["gang_id"]} and {g["size"] for g in ranks.values()} == {
        2
    }
    for rank, gang in ranks.items():
        # Rank 0 published the DP master address; rank 1 read it; each engine got its rank and the gang's size.
        assert gang["master"] == ranks[0]["master"]
        assert gang["engine_kwargs"] == {
            "data_parallel_size": 2,
            "data_parallel_rank": rank,
            "data_parallel_address": ranks[0]["master"][0],
            "data_parallel_rpc_port": ranks[0]["master"][1],
        }
    assert sorted(g["bundle_indices"] for g in ranks.values()) == ["0", "1"]  # one bundle of the gang's group each
