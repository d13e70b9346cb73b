"""The serving choices an environment file makes, as Ray Serve LLM receives them: placement on the
model's pool, request routing, streamed weights and the Serve settings, checked through Ray's own
`LLMConfig` and `LLMServer.get_deployment_options` (what Ray asks the cluster for)."""

from __future__ import annotations

import copy

import pytest
import yaml

from app.serving import llm_configs
from stacks.config.loader import ENVIRONMENTS_DIR, parse_environment
from stacks.errors import ConfigError
from stacks.planning.plan import plan_environment
from app.spec import ROUTER_CLASSES
from stacks.specs.app_args import app_args
from stacks.specs.render import ANYSCALE_FILE, RAYSERVICE_FILE, render_specs
from stacks.specs.validate import placement_problems

PROD = yaml.safe_load((ENVIRONMENTS_DIR / "prod.yaml").read_text())
DEV = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())


def planned(data: dict, change=None, name: str = "dev"):
    data = copy.deepcopy(data)
    if change:
        change(data)
    return plan_environment(parse_environment(data, f"{name}.yaml"), source=f"{name}.yaml")


def configs(plan, monkeypatch) -> dict:
    monkeypatch.setattr("app.serving.read_secret_string", lambda name, region: "unused")
    return {c.model_id: c for c in llm_configs(app_args(plan).model_dump())}


def ray_request(config) -> tuple[list[dict], str]:
    """The placement group Ray Serve asks the cluster for, one per replica."""
    from ray.serve.llm import LLMServer

    options = LLMServer.get_deployment_options(config)
    return options["placement_group_bundles"], options["placement_group_strategy"]


def test_prod_replicas_are_packed_on_one_node_of_their_own_pool(monkeypatch):
    plan = planned(PROD, name="prod")
    by_id = configs(plan, monkeypatch)
    bundles, strategy = ray_request(by_id["llama-3.1-70b-instruct"])
    assert strategy == "STRICT_PACK"
    assert len(bundles) == 4 and all(b["GPU"] == 1 and b["llmstacks-pool-l40s-x4"] == 1 for b in bundles)
    assert bundles[0]["CPU"] == 1  # the replica actor rides in the first bundle
    bundles, strategy = ray_request(by_id["llama-3.1-8b-instruct"])
    assert strategy == "STRICT_PACK" and [b["llmstacks-pool-l40s"] for b in bundles] == [1]
    # Only the pool's own workers advertise its resource, one unit per GPU, in both targets.
    documents = render_specs(plan).documents
    anyscale = {g["name"]: g["resources"] for g in documents[ANYSCALE_FILE]["compute_config"]["worker_nodes"]}
    kuberay = {
        g["groupName"]: g["resources"]
        for g in documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    }
    assert anyscale == {"l40s": {"llmstacks-pool-l40s": 1}, "l40s-x4": {"llmstacks-pool-l40s-x4": 4}}
    assert kuberay == {"l40s": {"llmstacks-pool-l40s": "1"}, "l40s-x4": {"llmstacks-pool-l40s-x4": "4"}}
    assert placement_problems(plan, documents) == []


def _bundles(documents, change) -> None:
    serve = yaml.safe_load(documents[RAYSERVICE_FILE]["spec"]["serveConfigV2"])
    for args in (documents[ANYSCALE_FILE]["applications"][0]["args"], serve["applications"][0]["args"]):
        for model in args["models"]:
            change(model)
    documents[RAYSERVICE_FILE]["spec"]["serveConfigV2"] = yaml.safe_dump(serve)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Without the pool resource the 8B replica could take a GPU of the 4-GPU nodes meant for the 70B.
        (
            lambda m: [b.pop(k) for b in m["placement"]["bundles"] for k in list(b) if k.startswith("llmstacks-pool")],
            "models[0] (llama-3.1-8b-instruct): anyscale: a replica's placement also fits pool(s) l40s-x4: Ray could start it there",
        ),
        (
            lambda m: m["placement"].update(strategy="PACK"),
            "models[0] (llama-3.1-8b-instruct): anyscale: a replica's placement must be STRICT_PACK (all its GPUs on one node)",
        ),
        (
            lambda m: (
                m["placement"]["bundles"].append(dict(m["placement"]["bundles"][0]))
                if m["id"] == "llama-3.1-8b-instruct"
                else None
            ),
            "models[0] (llama-3.1-8b-instruct): anyscale: a replica's placement does not fit a node of pool 'l40s' (GPU 2 > 1, "
            "llmstacks-pool-l40s 2 > 1)",
        ),
    ],
)
def test_the_placement_check_catches_a_replica_that_could_land_elsewhere_or_nowhere(change, expected):
    plan = planned(PROD, name="prod")
    documents = copy.deepcopy(render_specs(plan).documents)
    _bundles(documents, change)
    problems = placement_problems(plan, documents)
    assert problems[0] == expected
    assert any(p.startswith("models[0] (llama-3.1-8b-instruct): kuberay:") for p in problems)


def test_a_worker_group_that_stops_advertising_its_pool_leaves_the_model_nowhere():
    plan = planned(PROD, name="prod")
    documents = copy.deepcopy(render_specs(plan).documents)
    for group in documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        group.pop("resources")
    problems = placement_problems(plan, documents)
    assert problems == [
        "models[0] (llama-3.1-8b-instruct): kuberay: a replica's placement does not fit a node of pool 'l40s' "
        "(llmstacks-pool-l40s 1 > 0)",
        "models[1] (llama-3.1-70b-instruct): kuberay: a replica's placement does not fit a node of pool 'l40s-x4' "
        "(llmstacks-pool-l40s-x4 4 > 0)",
    ]


def test_routing_defaults_to_prefix_aware_where_prefix_caching_is_on(monkeypatch):
    def caching_off(data):
        data["models"][1]["engine_kwargs"] = {"enable_prefix_caching": False}

    by_id = configs(planned(DEV, caching_off), monkeypatch)
    qwen = by_id["qwen2.5-7b-instruct"].deployment_config["request_router_config"]
    llama = by_id["llama-3.2-1b-instruct"].deployment_config["request_router_config"]
    assert qwen["request_router_class"] == ROUTER_CLASSES["prefix_aware"]
    # Load is balanced once queues differ by a quarter of the load target (50), and the prefix tree is bounded.
    assert qwen["request_router_kwargs"] == {
        "imbalanced_threshold": 13,
        "match_rate_threshold": 0.1,
        "do_eviction": True,
        "eviction_threshold_chars": 1_000_000,
        "eviction_target_chars": 900_000,
        "eviction_interval_secs": 10,
    }
    assert llama["request_router_kwargs"] == {}
    assert llama["request_router_class"] == ROUTER_CLASSES["power_of_two"]
    # Both name classes Ray can import.
    from ray._common.utils import import_attr

    from ray.serve.llm.request_router import PrefixCacheAffinityRouter

    prefix_aware, power_of_two = (
        import_attr(ROUTER_CLASSES[name].replace(":", ".")) for name in ("prefix_aware", "power_of_two")
    )
    assert (
        issubclass(prefix_aware, PrefixCacheAffinityRouter)
        and power_of_two.__name__ == "PowerOfTwoChoicesRequestRouter"
    )


try:
    from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter
except ImportError:  # infrastructure-only install
    PowerOfTwoChoicesRequestRouter = object


class StickyRouter(PowerOfTwoChoicesRequestRouter):
    """A router of a team's own: Ray imports it when the LLMConfig is built."""


def test_prefix_aware_knobs_and_a_router_of_your_own_reach_ray(monkeypatch):
    def routing(data):
        data["models"][0]["routing"] = {
            "policy": "prefix_aware",
            "imbalanced_threshold": 8,
            "match_rate_threshold": 0.2,
            "eviction": {"threshold_chars": 200_000, "target_chars": 150_000, "interval_s": 30},
        }
        data["models"][1]["routing"] = {"policy": f"{__name__}:StickyRouter", "kwargs": {"ttl_s": 60}}

    by_id = configs(planned(DEV, routing), monkeypatch)
    assert by_id["qwen2.5-7b-instruct"].deployment_config["request_router_config"]["request_router_kwargs"] == {
        "imbalanced_threshold": 8,
        "match_rate_threshold": 0.2,
        "do_eviction": True,
        "eviction_threshold_chars": 200_000,
        "eviction_target_chars": 150_000,
        "eviction_interval_secs": 30,
    }
    assert by_id["llama-3.2-1b-instruct"].deployment_config["request_router_config"] == {
        "request_router_class": f"{__name__}:StickyRouter",
        "request_router_kwargs": {"ttl_s": 60},
    }


def test_bucket_weights_stream_from_s3_and_hugging_face_weights_download(monkeypatch):
    by_id = configs(planned(PROD, name="prod"), monkeypatch)
    streamed, downloaded = by_id["llama-3.1-8b-instruct"], by_id["llama-3.1-70b-instruct"]
    assert streamed.engine_kwargs["load_format"] == "runai_streamer"
    snapshot = PROD["models"][0]["weights"]["snapshot"]
    assert (
        streamed.model_loading_config.model_source
        == f"s3://llm-prod-weights-333333333333/models/llama-3.1-8b-instruct/{snapshot}"
    )
    assert streamed.runtime_env["env_vars"]["AWS_REGION"] == "us-east-1"
    assert downloaded.engine_kwargs["load_format"] == "auto"

    def download(data):
        data["models"][0]["weights"]["load"] = "download"
        data["models"][1]["weights"]["stream_concurrency"] = 32

    by_id = configs(planned(DEV, download), monkeypatch)
    assert by_id["qwen2.5-7b-instruct"].engine_kwargs["load_format"] == "auto"
    assert by_id["llama-3.2-1b-instruct"].runtime_env["env_vars"]["RUNAI_STREAMER_CONCURRENCY"] == "32"


def test_serve_settings_and_replica_environment_reach_the_deployment(monkeypatch):
    def settings(data):
        data["models"][0].update(
            env_vars={"VLLM_LOGGING_LEVEL": "DEBUG"},
            health_check={"period_s": 20, "timeout_s": 120},
            graceful_shutdown_s=300,
            replicas={"min": 0, "max": 2, "upscale_delay_s": 15, "downscale_delay_s": 900},
        )

    config = configs(planned(DEV, settings), monkeypatch)["qwen2.5-7b-instruct"]
    deployment = config.deployment_config
    assert (deployment["health_check_period_s"], deployment["health_check_timeout_s"]) == (20, 120)
    assert deployment["graceful_shutdown_timeout_s"] == 300
    assert (
        deployment["autoscaling_config"]["upscale_delay_s"],
        deployment["autoscaling_config"]["downscale_delay_s"],
    ) == (15, 900)
    assert config.runtime_env["env_vars"]["VLLM_LOGGING_LEVEL"] == "DEBUG"
    # Ray Serve accepts them as deployment options.
    from ray.serve.llm import LLMServer
    from ray.serve.schema import DeploymentSchema

    options = LLMServer.get_deployment_options(config)
    DeploymentSchema.model_validate({"name": "x", **{k: v for k, v in options.items() if k != "request_router_config"}})


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda m: m.update(env_vars={"HF_TOKEN": "x"}), "models[0].env_vars", "looks like a credential"),
        (lambda m: m.update(env_vars={"AWS_SECRET_ACCESS_KEY": "x"}), "models[0].env_vars", "looks like a credential"),
        (lambda m: m.update(env_vars={"OPENAI_API_KEY": "x"}), "models[0].env_vars", "looks like a credential"),
        (lambda m: m.update(env_vars={"DB_PASSWORD": "x"}), "models[0].env_vars", "looks like a credential"),
        (
            lambda m: m.update(env_vars={"EXTRA": "AKIAABCDEFGHIJKLMNOP"}),
            "models[0].env_vars",
            "value of EXTRA looks like a credential",
        ),
        (lambda m: m.update(env_vars={"AWS_REGION": "eu-west-1"}), "models[0].env_vars", "set by the app"),
        (lambda m: m.update(env_vars={"RUNAI_STREAMER_CONCURRENCY": "4"}), "models[0].env_vars", "set by the app"),
        (lambda m: m.update(env_vars={"1BAD": "x"}), "models[0].env_vars", "not an environment variable name"),
        (
            lambda m: m.update(routing="round_robin"),
            "models[0].routing.policy",
            "prefix_aware, power_of_two or a router class",
        ),
        (
            lambda m: m.update(routing={"policy": "power_of_two", "match_rate_threshold": 0.5}),
            "models[0].routing",
            "tune prefix_aware routing",
        ),
        (
            lambda m: m.update(routing={"policy": "prefix_aware", "kwargs": {"x": 1}}),
            "models[0].routing",
            "router class of your own",
        ),
        (
            lambda m: m.update(routing="ray.serve.llm.request_router:KVAwareRouter"),
            "models[0].routing",
            "behind this app's shared ingress it picks replicas at random",
        ),
        (
            lambda m: m.update(routing="prefix_aware", engine_kwargs={"enable_prefix_caching": False}),
            "models[0].routing",
            "enable_prefix_caching is false",
        ),
        (
            lambda m: m.update(
                routing={"policy": "prefix_aware", "eviction": {"threshold_chars": 5000, "target_chars": 9000}}
            ),
            "models[0].routing.eviction",
            "greater than threshold_chars",
        ),
        (
            lambda m: m.update(weights={"stream_concurrency": 8, "load": "download"}),
            "models[0].weights",
            "only to streamed weights",
        ),
        (
            lambda m: m.update(engine_kwargs={"load_format": "safetensors"}),
            "models[0].engine_kwargs.load_format",
            "weights.load",
        ),
        (lambda m: m.update(server_cls="not a class"), "models[0].server_cls", "module:Class"),
        (lambda m: m.update(health_check={"period_s": 0}), "models[0].health_check.period_s", "greater than 0"),
    ],
)
def test_bad_serving_choices_name_the_field(change, field, words):
    with pytest.raises(ConfigError) as error:
        planned(DEV, lambda d: change(d["models"][0]))
    assert error.value.field == field and words in error.value.message


def test_hugging_face_weights_cannot_stream_and_gated_models_keep_their_server():
    def stream_hf(data):
        data["models"][1]["weights"]["load"] = "stream"

    with pytest.raises(ConfigError, match="Hugging Face weights are downloaded") as error:
        planned(PROD, stream_hf, name="prod")
    assert error.value.field == "models[1].weights"

    def own_server(data):
        data["models"][1]["server_cls"] = "my.servers:Server"

    with pytest.raises(ConfigError, match="must subclass it") as error:
        planned(PROD, own_server, name="prod")
    assert error.value.field == "models[1].server_cls"
