"""`stacks/examples/patterns.yaml` through the real command: it synthesizes, its specs pass the vendors'
schemas, and the plan and the rendered specs serve each pattern as the README says (Llama 3.1
405B over two nodes, a mixture-of-experts model as data-parallel gangs, Llama 3.1 70B with
prefill and decode apart). Then the mistakes one makes writing such a file, each refused in one
line naming the file and the field, with nothing written."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import waits
import yaml
from cli.test_bad_input import LLMSTACKS, assert_refused

from stacks.planning.plan import plan_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FILE = ROOT / "stacks" / "examples" / "patterns.yaml"
EXAMPLE = yaml.safe_load(EXAMPLE_FILE.read_text())
BIG, MOE, PD = "llama-3.1-405b-instruct", "qwen3-30b-a3b", "llama-3.1-70b-instruct"


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("example") / "tmp"
    result = subprocess.run(
        [LLMSTACKS, "synth", "--config", "stacks/examples/patterns.yaml", "--outdir", str(out)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=waits.SLOW_START,
    )
    return result, out


@pytest.fixture(scope="module")
def plan():
    return plan_file(EXAMPLE_FILE)


def spec(out: Path, name: str) -> dict:
    return yaml.safe_load((out / "specs" / "patterns" / name).read_text())


def served(out: Path) -> dict[str, dict]:
    """The models of the rendered Ray Serve config, by id."""
    (app,) = spec(out, "serve-config.yaml")["applications"]
    return {m["id"]: m for m in app["args"]["models"]}


def test_it_synthesizes_and_its_specs_pass_the_vendors_schemas(synthesized):
    result, out = synthesized
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "EFA" not in result.stderr  # both disaggregated pools have EFA
    (checked,) = [line for line in result.stdout.splitlines() if "specs checked:" in line]
    assert "Ray ServeDeploySchema" in checked and "Anyscale ServiceConfig" in checked
    assert {p.name for p in (out / "specs" / "patterns").iterdir()} >= {
        "serve-config.yaml",
        "rayservice.yaml",
        "anyscale-service.yaml",
    }


def test_the_405b_model_takes_two_whole_nodes_per_replica(plan, synthesized):
    (part,) = plan.models[0].parts
    assert (plan.models[0].id, part.gpus_per_replica, part.nodes_per_replica, part.shape) == (BIG, 16, 2, "tp 8 x pp 2")
    model = served(synthesized[1])[BIG]
    assert (model["pattern"], model["tensor_parallel_size"], model["pipeline_parallel_size"]) == ("multi_node", 8, 2)
    # vLLM wants one single-GPU bundle per worker: 16 of them, PACKed onto the pool's whole nodes.
    assert model["placement"]["strategy"] == "PACK" and len(model["placement"]["bundles"]) == 16
    assert all(b == {"GPU": 1.0, "llmstacks-pool-h100-405b": 1.0} for b in model["placement"]["bundles"])
    summary = next(line for line in synthesized[0].stdout.splitlines() if line.strip().startswith(BIG + " "))
    assert "16 (tp 8 x pp 2)  2 " in summary


def test_the_moe_model_is_a_gang_of_four_engines_on_one_node(plan, synthesized):
    (part,) = plan.models[1].parts
    assert (plan.models[1].id, part.gpus_per_replica, part.gpus_per_engine, part.shape) == (MOE, 8, 2, "dp 4 x tp 2")
    assert part.nodes_per_replica == 1
    model = served(synthesized[1])[MOE]
    assert (model["pattern"], model["data_parallel_size"], model["expert_parallel"]) == ("data_parallel", 4, True)
    # One placement group per engine (Ray's DPServer gangs the four): 2 GPUs, all on one node.
    assert model["placement"]["strategy"] == "STRICT_PACK" and len(model["placement"]["bundles"]) == 2
    assert (model["min_replicas"], model["max_replicas"]) == (1, 2)  # gangs; DPServer multiplies by 4


def test_the_70b_model_has_prefill_and_decode_on_their_own_pools(plan, synthesized):
    prefill, decode = plan.models[2].parts
    assert (prefill.pool.name, decode.pool.name) == ("h200-prefill", "h200-decode")
    model = served(synthesized[1])[PD]
    assert (model["pattern"], model["kv_connector"]) == ("disaggregated", "nixl")
    assert {tuple(b) for b in model["placement"]["bundles"]} == {("GPU", "llmstacks-pool-h200-decode")}
    assert {tuple(b) for b in model["prefill"]["placement"]["bundles"]} == {("GPU", "llmstacks-pool-h200-prefill")}
    assert model["prefill"]["tensor_parallel_size"] == model["tensor_parallel_size"] == 4
    assert (model["prefill"]["min_replicas"], model["prefill"]["max_replicas"]) == (1, 4)
    assert (model["min_replicas"], model["max_replicas"]) == (1, 4)


def test_the_rayservice_has_one_worker_group_per_pool_sized_by_the_plan(plan, synthesized):
    cluster = spec(synthesized[1], "rayservice.yaml")["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert (
        list(groups) == [p.name for p in plan.serving_pools] == ["h100-405b", "h100-moe", "h200-prefill", "h200-decode"]
    )
    for pool in plan.serving_pools:
        group = groups[pool.name]
        assert (group["minReplicas"], group["maxReplicas"]) == (pool.nodes_at_min, pool.max_nodes), pool.name
        assert group["resources"] == {f"llmstacks-pool-{pool.name}": str(pool.gpus_per_node)}
    # The 405B model's one replica is two nodes, from the start; a rollout may add a whole replica.
    assert groups["h100-405b"]["minReplicas"] == 2 and groups["h100-405b"]["maxReplicas"] % 2 == 0
    workers = {w["name"]: w for w in spec(synthesized[1], "anyscale-service.yaml")["compute_config"]["worker_nodes"]}
    assert {n: (w["min_nodes"], w["max_nodes"]) for n, w in workers.items()} == {
        p.name: (p.nodes_at_min, p.max_nodes) for p in plan.serving_pools
    }


# ------------------------------------------------------------------ mistakes, each refused in one line


def model_named(data: dict, model_id: str) -> dict:
    return next(m for m in data["models"] if m["id"] == model_id)


def pool_named(data: dict, name: str) -> dict:
    return next(p for p in data["node_pools"] if p["name"] == name)


def changed(change) -> str:
    data = copy.deepcopy(EXAMPLE)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def _standard_with_prefill(data: dict) -> None:
    model = model_named(data, MOE)
    del model["data_parallel_size"]
    model.update(pattern="standard", prefill={"node_pool": "h200-prefill", "tensor_parallel_size": 4})


# (case id, change, field the message must name, a phrase it must contain)
MISTAKES = [
    (
        "decode-pool-without-gpus",
        lambda d: model_named(d, PD)["decode"].update(node_pool="system"),
        "models[2].decode.node_pool",
        "has no GPUs",
    ),
    (
        "gang-wider-than-a-node",
        lambda d: model_named(d, MOE).update(data_parallel_size=8),
        "models[1].data_parallel_size",
        "16 GPUs does not fit a node of pool 'h100-moe'",
    ),
    (
        "stages-beyond-the-pools-max-size",
        lambda d: pool_named(d, "h100-405b").update(max_size=1),
        "models[0].pipeline_parallel_size",
        "its max_size is 1",
    ),
    (
        "lora-with-a-deepep-expert-parallel-backend",
        lambda d: model_named(d, MOE).update(engine_kwargs={"all2all_backend": "deepep_low_latency"}),
        "models[1].lora.enabled",
        "all2all_backend allgather_reducescatter",
    ),
    (
        "data-parallel-size-in-engine-kwargs",
        lambda d: model_named(d, MOE).update(engine_kwargs={"data_parallel_size": 4}),
        "models[1].engine_kwargs.data_parallel_size",
        "pattern: data_parallel with data_parallel_size",
    ),
    (
        "kv-transfer-config-in-engine-kwargs",
        lambda d: model_named(d, PD).update(engine_kwargs={"kv_transfer_config": {"kv_connector": "NixlConnector"}}),
        "models[2].engine_kwargs.kv_transfer_config",
        "kv_transfer",
    ),
    (
        "multi-node-stage-narrower-than-a-node",
        lambda d: model_named(d, BIG).update(tensor_parallel_size=4),
        "models[0].tensor_parallel_size",
        "must be 8",
    ),
    (
        "second-model-on-the-multi-node-pool",
        lambda d: d["models"].append(
            {
                "id": "qwen3-0.6b",
                "architecture": "Qwen/Qwen3-0.6B",
                "node_pool": "h100-405b",
                "max_model_len": 4096,
                "weights": {"snapshot": "0123456789abcdef"},
            }
        ),
        "models[3].node_pool",
        "runs multi-node model 'llama-3.1-405b-instruct'",
    ),
    ("prefill-on-a-standard-model", _standard_with_prefill, "models[1].prefill", "only for pattern disaggregated"),
    (
        "disaggregated-with-a-top-level-node-pool",
        lambda d: model_named(d, PD).update(node_pool="h200-decode"),
        "models[2].node_pool",
        "per part, under prefill and decode",
    ),
]


@pytest.mark.parametrize(("change", "field", "needle"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_a_mistake_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, change, field: str, needle: str):
    assert_refused(tmp_path, "patterns", changed(change), field, needle)
