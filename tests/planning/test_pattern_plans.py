"""Serving patterns as the plan sizes and places them: every place a GPU is counted (GPUs and
nodes per replica, pool nodes with rollout surge, GPUs at max, cost) knows multi-node,
data-parallel and disaggregated models, and the rendered placement matches what each pattern
needs (checked again by the placement check, which must catch a wrong one)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stacks.config.loader import parse_environment
from stacks.errors import ConfigError
from stacks.planning.plan import plan_environment
from stacks.specs.app_args import app_args
from stacks.specs.render import ANYSCALE_FILE, RAYSERVICE_FILE, SERVE_FILE, render_specs
from stacks.specs.validate import placement_problems

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "stacks" / "examples" / "patterns.yaml").read_text())


def planned(change=None):
    data = copy.deepcopy(EXAMPLE)
    if change:
        change(data)
    return plan_environment(parse_environment(data, "patterns.yaml"), source="patterns.yaml")


def refused(change) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        planned(change)
    return caught.value


def model(data: dict, model_id: str) -> dict:
    return next(m for m in data["models"] if m["id"] == model_id)


def pool(data: dict, name: str) -> dict:
    return next(p for p in data["node_pools"] if p["name"] == name)


@pytest.fixture(scope="module")
def plan():
    return planned()


def test_a_multi_node_replica_takes_one_whole_node_per_pipeline_stage(plan):
    (part,) = plan.models[0].parts
    assert (part.gpus_per_engine, part.gpus_per_replica, part.nodes_per_replica) == (16, 16, 2)
    assert part.shape == "tp 8 x pp 2"
    pool = plan.pool("h100-405b")
    # 1 replica x 2 nodes; a rollout surge of 25% of 2 nodes is a whole replica: 2 more nodes.
    assert (pool.nodes_at_min, pool.nodes_at_max, pool.surge_nodes, pool.max_nodes) == (2, 2, 2, 4)
    spec = app_args(plan).models[0]
    assert spec.pattern == "multi_node" and spec.pipeline_parallel_size == 2
    assert spec.placement.strategy == "PACK" and len(spec.placement.bundles) == 16
    assert all(b == {"GPU": 1.0, "llmstacks-pool-h100-405b": 1.0} for b in spec.placement.bundles)


def test_a_data_parallel_replica_is_a_gang_of_engines_on_one_node(plan):
    (part,) = plan.models[1].parts
    assert (part.gpus_per_engine, part.gpus_per_replica, part.nodes_per_replica) == (2, 8, 1)
    assert part.shape == "dp 4 x tp 2"
    # Replicas 1-2 are gangs of 8 GPUs: one 8-GPU node each.
    pool = plan.pool("h100-moe")
    assert (pool.nodes_at_min, pool.nodes_at_max) == (1, 2)
    spec = app_args(plan).models[1]
    assert (spec.data_parallel_size, spec.expert_parallel, spec.tensor_parallel_size) == (4, True, 2)
    # One placement group per engine; Ray's DPServer packs the gang.
    assert spec.placement.strategy == "STRICT_PACK" and len(spec.placement.bundles) == 2


def test_a_disaggregated_model_plans_prefill_and_decode_on_their_own_pools(plan):
    m = plan.models[2]
    prefill, decode = m.parts
    assert (prefill.role, prefill.pool.name, prefill.field) == ("prefill", "h200-prefill", "models[2].prefill")
    assert (decode.role, decode.pool.name, m.serving) == ("decode", "h200-decode", decode)
    assert prefill.gpus_per_replica == decode.gpus_per_replica == 4
    # A prefill engine holds prompts only until decode takes them: it is sized on prompt tokens
    # (typical 6,000), decode on whole requests (6,000 + 300).
    assert "(6,000 tokens)" in prefill.load.reasoning and "(6,300 tokens)" in decode.load.reasoning
    assert prefill.load.target_ongoing_requests > decode.load.target_ongoing_requests
    # Both parts count: 4 replicas x 4 GPUs each at max.
    assert m.gpus_at_max == 4 * 4 + 4 * 4
    spec = app_args(plan).models[2]
    assert spec.pattern == "disaggregated" and spec.kv_connector == "nixl"
    assert spec.prefill.accelerator_type == "H200" and spec.prefill.tensor_parallel_size == 4
    assert spec.prefill.placement.bundles[0] == {"GPU": 1.0, "llmstacks-pool-h200-prefill": 1.0}
    assert spec.placement.bundles[0] == {"GPU": 1.0, "llmstacks-pool-h200-decode": 1.0}
    assert (spec.prefill.min_replicas, spec.prefill.max_replicas) == (1, 4)


def test_every_gpu_is_counted_at_max_and_priced(plan):
    # 405B 16, MoE 2 x 8, 70B prefill 4 x 4 + decode 4 x 4.
    assert plan.gpus_at_max == 16 + 16 + 32
    by_pool = {p.name: p.nodes_at_max for p in plan.pools if p.has_gpus}
    # Two 4-GPU replicas share an 8-GPU node.
    assert by_pool == {"h100-405b": 2, "h100-moe": 2, "h200-prefill": 2, "h200-decode": 2}
    price = {p.name: p.price_per_hour for p in plan.pools}
    assert plan.cost_per_hour("max") == pytest.approx(sum(by_pool[n] * price[n] for n in by_pool))


def test_the_specs_place_each_part_on_its_own_pool():
    plan = planned()
    documents = render_specs(plan).documents
    assert placement_problems(plan, documents) == []
    groups = {
        g["groupName"]: (g["minReplicas"], g["maxReplicas"])
        for g in documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    }
    assert groups == {"h100-405b": (2, 4), "h100-moe": (1, 3), "h200-prefill": (1, 3), "h200-decode": (1, 3)}


@pytest.mark.parametrize(
    "index, key, strategy, expected",
    [
        (
            0,
            None,
            "STRICT_PACK",
            "models[0] (llama-3.1-405b-instruct): anyscale: a replica's placement must be PACK "
            "(whole nodes, one per pipeline stage)",
        ),
        (
            1,
            None,
            "PACK",
            "models[1] (qwen3-30b-a3b): anyscale: a replica's placement must be STRICT_PACK (all its GPUs on one node)",
        ),
        (
            2,
            "prefill",
            "PACK",
            "models[2] (llama-3.1-70b-instruct) prefill: anyscale: a replica's placement must be "
            "STRICT_PACK (all its GPUs on one node)",
        ),
    ],
)
def test_the_placement_check_catches_a_pattern_placed_wrongly(index, key, strategy, expected):
    plan = planned()
    documents = copy.deepcopy(render_specs(plan).documents)
    spec = documents[ANYSCALE_FILE]["applications"][0]["args"]["models"][index]
    (spec[key] if key else spec)["placement"]["strategy"] = strategy
    assert placement_problems(plan, documents)[0] == expected


def test_the_placement_check_catches_a_gang_wider_than_its_node():
    plan = planned()
    documents = copy.deepcopy(render_specs(plan).documents)
    spec = documents[ANYSCALE_FILE]["applications"][0]["args"]["models"][1]
    spec["placement"]["bundles"] *= 2  # 4 engines x 4 GPUs: 16 on an 8-GPU node
    problem = placement_problems(plan, documents)[0]
    assert problem.startswith(
        "models[1] (qwen3-30b-a3b): anyscale: a replica's placement does not fit a node of pool 'h100-moe' (GPU 16 > 8"
    )


def test_the_serve_config_carries_each_pattern(plan):
    models = yaml.safe_load(render_specs(plan).texts[SERVE_FILE])["applications"][0]["args"]["models"]
    assert [m["pattern"] for m in models] == ["multi_node", "data_parallel", "disaggregated"]


@pytest.mark.parametrize(
    "change, field, says",
    [
        (
            lambda d: model(d, "llama-3.1-405b-instruct").update(tensor_parallel_size=4, pipeline_parallel_size=4),
            "models[0].tensor_parallel_size",
            "tensor_parallel_size must be 8",
        ),
        (
            lambda d: pool(d, "h100-405b").update(max_size=1),
            "models[0].pipeline_parallel_size",
            "2 pipeline stages need 2 nodes of pool 'h100-405b' at once, but its max_size is 1",
        ),
        (
            lambda d: pool(d, "h100-405b").update(max_size=3),
            "node_pools[1].max_size",
            "need up to 2 nodes at max replicas (models[0]: 1 x 16 GPU; 8 GPUs per node) plus 2 for rollouts",
        ),
        (
            lambda d: model(d, "qwen3-30b-a3b").update(data_parallel_size=8),
            "models[1].data_parallel_size",
            "data_parallel_size 8 x tensor_parallel_size 2 = 16 GPUs does not fit a node of pool 'h100-moe'",
        ),
        (
            lambda d: model(d, "qwen3-30b-a3b").update(architecture="meta-llama/Llama-3.1-8B-Instruct", lora={}),
            "models[1].pattern",
            "meta-llama/Llama-3.1-8B-Instruct is dense: serve it standard",
        ),
        (
            lambda d: model(d, "qwen3-30b-a3b").update(node_pool="h100-405b"),
            "models[1].node_pool",
            "pool 'h100-405b' runs multi-node model 'llama-3.1-405b-instruct'",
        ),
        (
            lambda d: model(d, "llama-3.1-70b-instruct")["decode"].update(node_pool="system"),
            "models[2].decode.node_pool",
            "node pool 'system' has no GPUs",
        ),
        (
            lambda d: model(d, "llama-3.1-70b-instruct")["decode"].update(node_pool="h200"),
            "models[2].decode.node_pool",
            "node pool 'h200' is not defined",
        ),
        (
            lambda d: model(d, "llama-3.1-70b-instruct")["prefill"].update(tensor_parallel_size=16),
            "models[2].prefill.tensor_parallel_size",
            "16 GPUs does not fit a node of pool 'h200-prefill'",
        ),
        (
            lambda d: model(d, "llama-3.1-405b-instruct").update(pattern="standard"),
            "models[0].pipeline_parallel_size",
            "or pattern: multi_node with tensor_parallel_size 8",
        ),
        (
            lambda d: model(d, "llama-3.1-405b-instruct").update(pipeline_parallel_size=1),
            "models[0].pipeline_parallel_size",
            "pattern multi_node needs at least 2",
        ),
        (
            lambda d: model(d, "qwen3-30b-a3b").update(pattern="standard"),
            "models[1].data_parallel_size",
            "applies to pattern data_parallel",
        ),
        (
            lambda d: model(d, "llama-3.1-70b-instruct").update(node_pool="h200-decode"),
            "models[2].node_pool",
            "a disaggregated model sets its pool, parallelism and replicas per part",
        ),
        (
            lambda d: model(d, "llama-3.1-70b-instruct").pop("prefill"),
            "models[2].prefill",
            "pattern disaggregated needs both prefill and decode",
        ),
        (
            lambda d: model(d, "qwen3-30b-a3b").update(kv_transfer={"connector": "nixl"}),
            "models[1].kv_transfer",
            "only for pattern disaggregated",
        ),
        (
            lambda d: model(d, "llama-3.1-70b-instruct").update(
                weights={
                    "source": "huggingface",
                    "hf_id": "meta-llama/Llama-3.1-70B-Instruct",
                    "hf_token_secret": "x/hf",
                }
            ),
            "models[2].weights.hf_token_secret",
            "pattern disaggregated runs Ray's own servers",
        ),
        (
            lambda d: model(d, "qwen3-30b-a3b").update(engine_kwargs={"all2all_backend": "deepep_low_latency"}),
            "models[1].lora.enabled",
            "works only with all2all_backend allgather_reducescatter",
        ),
        (
            lambda d: model(d, "qwen3-30b-a3b").update(engine_kwargs={"data_parallel_size": 2}),
            "models[1].engine_kwargs.data_parallel_size",
            "pattern: data_parallel with data_parallel_size",
        ),
        (
            lambda d: model(d, "llama-3.1-70b-instruct").update(
                engine_kwargs={"kv_transfer_config": {"kv_connector": "x"}}
            ),
            "models[2].engine_kwargs.kv_transfer_config",
            "set from the model's 'kv_transfer' field",
        ),
    ],
)
def test_a_pattern_that_cannot_run_as_written_is_refused_naming_its_field(change, field, says):
    error = refused(change)
    assert error.field == field, error.message
    assert says in error.message


def test_lora_with_expert_parallelism_is_allowed_on_the_default_all_to_all(plan):
    assert plan.models[1].config.lora.enabled and plan.models[1].config.uses_expert_parallel


def test_a_disaggregated_model_without_efa_is_planned_with_a_warning():
    def no_efa(d):
        for name in ("h200-prefill", "h200-decode"):
            pool(d, name).pop("efa")

    assert not [w for w in planned().warnings if "EFA" in w.message]
    (warning,) = [w for w in planned(no_efa).warnings if "EFA" in w.message]
    assert warning.field == "models[2].prefill.node_pool"
    assert "pool(s) h200-decode, h200-prefill have no EFA, so the transfer runs over TCP" in warning.message
