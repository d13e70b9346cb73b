"""The capacity planner for the serving patterns, against arithmetic done by hand: Llama 3.1 405B
split over two nodes (tp 8 x pp 2), a mixture-of-experts model with its experts spread over a
data-parallel gang (expert parallelism), and `llmstacks plan-capacity` showing each pattern's
parts (from flags and from an environment file)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from infra.catalog import GPUS, INSTANCE_TYPES
from stacks.cli import main
from stacks.config.loader import parse_environment
from stacks.planning.capacity import plan
from stacks.planning.model_catalog import find
from stacks.planning.plan import plan_environment

GIB = 2**30
LLAMA_405B = find("meta-llama/Llama-3.1-405B-Instruct")
QWEN3_MOE = find("Qwen/Qwen3-30B-A3B")
GPT_OSS = find("openai/gpt-oss-120b")
EXAMPLE = Path(__file__).parents[2] / "stacks" / "examples" / "patterns.yaml"

# ------------------------------------------------------------------ Llama 3.1 405B, tp 8 x pp 2

# One decoder layer (config.json: hidden 16,384, 128 heads of 128, 8 KV heads, intermediate 53,248):
#   attention  16,384 x (16,384 + 2 x 1,024) [q, k, v] + 16,384 x 16,384 [o]  =   570,425,344
#   MLP        3 x 16,384 x 53,248 [gate, up, down]                           = 2,617,245,696
#   norms      2 x 16,384                                                      =        32,768
LAYER_405B = 570_425_344 + 2_617_245_696 + 32_768
VOCAB_MATRIX_405B = 128_256 * 16_384  # the embedding, or the LM head: 2,101,346,304
# vLLM gives each of 2 stages 63 of the 126 layers; the first holds the embedding, the last the
# LM head and the final norm (16,384). The last is the larger, by the norm.
STAGE_LAYERS_405B = 63 * LAYER_405B  # 200,825,339,904
# bf16: every parameter 2 bytes, the stage divided over 8 GPUs.
BF16_PER_GPU = (STAGE_LAYERS_405B + VOCAB_MATRIX_405B + 16_384) * 2 / 8  # 50,731,675,648 bytes = 47.25 GiB
# fp8: the layers 1 byte per parameter, the LM head kept in 16 bits.
FP8_PER_GPU = ((STAGE_LAYERS_405B + 16_384) * 1 + VOCAB_MATRIX_405B * 2) / 8  # 25,628,506,112 bytes = 23.87 GiB
# K and V of one token on one GPU: 63 layers x 1 KV head (8 over tp 8) x head dim 128 x 2 bytes.
KV_PER_TOKEN_405B = 2 * 63 * 1 * 128 * 2  # 32,256


def test_the_hand_counted_layer_is_the_catalogs():
    assert LAYER_405B == 3_187_703_808 == LLAMA_405B.layer_params
    assert STAGE_LAYERS_405B == 200_825_339_904


@pytest.mark.parametrize("gpu", ["H100", "H200"])
@pytest.mark.parametrize(
    ("quantization", "weights_bytes"), [(None, BF16_PER_GPU), ("fp8", FP8_PER_GPU)], ids=["bf16", "fp8"]
)
def test_405b_over_two_nodes_per_gpu(gpu, quantization, weights_bytes):
    c = plan(
        LLAMA_405B, GPUS[gpu], tensor_parallel=8, pipeline_parallel=2, max_model_len=32768, quantization=quantization
    )
    # Within the final norm's 2 bytes per GPU: the planner spreads it over the stages.
    assert c.weights_gib_per_gpu * GIB == pytest.approx(weights_bytes, abs=4096)
    assert c.kv_bytes_per_token == KV_PER_TOKEN_405B == 32_256
    # Whole 16-token blocks of the KV cache the plan itself reports.
    blocks = math.floor(c.kv_cache_gib_per_gpu * GIB / (16 * 32_256))
    assert c.kv_cache_tokens == blocks * 16
    assert c.max_concurrency == pytest.approx(blocks / (32768 // 16))
    usable = {"H100": 0.9 * 79.19, "H200": 0.9 * 139.81}[gpu]
    assert c.requested_gib_per_gpu == pytest.approx(usable)
    assert c.kv_cache_gib_per_gpu == pytest.approx(
        usable - c.weights_gib_per_gpu - c.activation_gib_per_gpu - c.non_torch_gib_per_gpu - c.cuda_graph_gib_per_gpu
    )
    assert c.fits and c.max_concurrency > 1


def test_405b_in_bf16_needs_a_second_h100_node():
    # tp 8 alone: every layer and both vocab matrices on one node, 811.7 GB over 8 GPUs.
    whole = (126 * LAYER_405B + 2 * VOCAB_MATRIX_405B + 16_384) * 2 / 8  # 101,463,347,200 bytes = 94.50 GiB
    one_node = plan(LLAMA_405B, GPUS["H100"], tensor_parallel=8, max_model_len=32768)
    assert one_node.weights_gib_per_gpu * GIB == pytest.approx(whole)
    assert whole / GIB > 0.9 * 79.19  # more than a GPU has, before any KV cache
    assert not one_node.fits and "no room for a KV cache" in one_node.problems[0]
    two_nodes = plan(LLAMA_405B, GPUS["H100"], tensor_parallel=8, pipeline_parallel=2, max_model_len=32768)
    assert two_nodes.fits
    # An H200 (139.81 GiB) holds it on one node.
    assert plan(LLAMA_405B, GPUS["H200"], tensor_parallel=8, max_model_len=32768).fits


# ------------------------------------------------------------------ expert parallelism

# Qwen3-30B-A3B (config.json: 48 layers, hidden 2,048, 128 experts of moe_intermediate 768):
# routed experts 48 x 128 x 3 x 2,048 x 768 = 28,991,029,248 parameters = 54 GiB in bf16.
QWEN_EXPERTS = 48 * 128 * 3 * 2048 * 768 * 2
# The rest: per layer attention 2,048 x (4,096 + 2 x 512) + 4,096 x 2,048 = 18,874,368, router
# 2,048 x 128 = 262,144, norms 4,096; embeddings 2 x 151,936 x 2,048; final norm 2,048.
QWEN_REST = (48 * (18_874_368 + 262_144 + 4_096) + 2 * 151_936 * 2048 + 2048) * 2


def test_expert_parallel_holds_a_share_of_the_experts_whole():
    assert QWEN_EXPERTS == 54 * GIB and QWEN3_MOE.expert_params * 2 == QWEN_EXPERTS
    assert (QWEN3_MOE.params * 2 - QWEN_EXPERTS) == QWEN_REST
    # dp 4 x tp 2: one engine of tp 2; with expert parallelism its experts spread over all 8 GPUs.
    split = plan(QWEN3_MOE, GPUS["H100"], tensor_parallel=2, max_model_len=32768)
    spread = plan(QWEN3_MOE, GPUS["H100"], tensor_parallel=2, max_model_len=32768, expert_parallel=8)
    # tp 2: every GPU holds half of every expert. ep 8: 16 of the 128 experts, whole.
    assert split.weights_gib_per_gpu * GIB == pytest.approx(QWEN_REST / 2 + QWEN_EXPERTS / 2)  # 28.44 GiB
    assert spread.weights_gib_per_gpu * GIB == pytest.approx(QWEN_REST / 2 + QWEN_EXPERTS * 16 / 128)  # 8.19 GiB
    assert split.weights_gib_per_gpu - spread.weights_gib_per_gpu == pytest.approx(54 * (1 / 2 - 16 / 128))  # 20.25
    assert (split.expert_parallel, spread.expert_parallel) == (1, 8)
    assert spread.kv_cache_tokens > split.kv_cache_tokens
    assert any("16 of the 128 experts" in n for n in spread.notes)
    # KV bytes per token do not change: 48 layers x 2 KV heads (4 over tp 2) x 128 x 2 bytes, K and V.
    assert spread.kv_bytes_per_token == split.kv_bytes_per_token == 2 * 48 * 2 * 128 * 2


def test_an_uneven_expert_split_counts_the_fullest_gpu():
    # 128 experts over 6 GPUs: vLLM gives the first two 22, the rest 21.
    six = plan(QWEN3_MOE, GPUS["H100"], tensor_parallel=2, max_model_len=4096, expert_parallel=6)
    assert six.weights_gib_per_gpu * GIB == pytest.approx(QWEN_REST / 2 + QWEN_EXPERTS * 22 / 128)


def test_a_checkpoint_given_by_size_keeps_all_but_its_experts_in_16_bits():
    # gpt-oss-120b: 60.8 GiB, the 114,661,785,600 expert parameters (36 x 128 x 3 x 2,880 x 2,880)
    # in MXFP4, the other 2,127,447,360 parameters in bf16.
    rest = 2_127_447_360 * 2
    experts = 60.8 * GIB - rest  # 56.8 GiB: 4.26 bits per expert parameter
    assert GPT_OSS.expert_params == 36 * 128 * 3 * 2880 * 2880
    assert experts * 8 / GPT_OSS.expert_params == pytest.approx(4.26, abs=0.01)
    one = plan(GPT_OSS, GPUS["H100"], max_model_len=32768)
    spread = plan(GPT_OSS, GPUS["H100"], max_model_len=32768, expert_parallel=8)
    assert one.weights_gib_per_gpu == pytest.approx(60.8)
    assert spread.weights_gib_per_gpu * GIB == pytest.approx(rest + experts * 16 / 128)
    assert any("experts taken as 56.8 GiB" in n for n in spread.notes)


def test_expert_parallel_does_nothing_for_a_dense_model():
    llama = find("meta-llama/Llama-3.1-70B-Instruct")
    dense = plan(llama, GPUS["H100"], tensor_parallel=4, max_model_len=8192)
    asked = plan(llama, GPUS["H100"], tensor_parallel=4, max_model_len=8192, expert_parallel=8)
    assert asked.weights_gib_per_gpu == dense.weights_gib_per_gpu
    assert asked.kv_cache_tokens == dense.kv_cache_tokens and asked.expert_parallel == 1
    assert any("not a mixture-of-experts model" in n for n in asked.notes)


def test_the_example_environment_plans_its_parts_with_these_figures():
    environment = plan_environment(parse_environment(yaml.safe_load(EXAMPLE.read_text()), "patterns.yaml"))
    by_id = {m.id: m for m in environment.models}
    multi = by_id["llama-3.1-405b-instruct"].capacity  # fp8 weights
    assert multi.weights_gib_per_gpu * GIB == pytest.approx(FP8_PER_GPU, abs=4096)
    moe = by_id["qwen3-30b-a3b"].capacity
    assert moe.expert_parallel == 8
    assert moe.weights_gib_per_gpu * GIB == pytest.approx(QWEN_REST / 2 + QWEN_EXPERTS * 16 / 128)


# ------------------------------------------------------------------ plan-capacity


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["plan-capacity", *args])
    out, err = capsys.readouterr()
    return status, out, err


QWEN_DP = [
    "--model",
    "Qwen/Qwen3-30B-A3B",
    "--instance-type",
    "p5.48xlarge",
    "--data-parallel",
    "4",
    "--tensor-parallel",
    "2",
    "--max-model-len",
    "32768",
]


def test_plan_capacity_sizes_a_data_parallel_gang_from_flags(capsys):
    status, out, _ = run(capsys, *QWEN_DP, "--expert-parallel", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["expert_parallel"] == 8 and data["gpu"] == "H100"
    assert data["weights_gib_per_gpu"] == pytest.approx((QWEN_REST / 2 + QWEN_EXPERTS * 16 / 128) / GIB, abs=0.001)
    replica = data["replica"]
    assert (replica["data_parallel"], replica["gpus_per_engine"], replica["gpus_per_replica"]) == (4, 2, 8)
    assert (replica["instance_type"], replica["nodes_per_replica"]) == ("p5.48xlarge", 1)
    assert replica["cost_per_hour"] == pytest.approx(INSTANCE_TYPES["p5.48xlarge"].price_per_hour)
    assert replica["max_concurrency"] == pytest.approx(4 * data["max_concurrency"], abs=0.01)
    assert data["load_targets"]["max_ongoing_requests"] >= data["load_targets"]["target_ongoing_requests"]
    status, out, _ = run(capsys, *QWEN_DP, "--expert-parallel")
    assert status == 0
    assert out.startswith("Qwen/Qwen3-30B-A3B on 8 x H100 (dp 4 x tp 2, experts over 8 GPUs)")
    assert "per replica of 4 engines" in out and "replica: 8 GPUs on 1 x p5.48xlarge" in out
    # Without --expert-parallel each engine's tp 2 splits every expert.
    status, out, _ = run(capsys, *QWEN_DP, "--json")
    assert json.loads(out)["expert_parallel"] == 1
    assert json.loads(out)["weights_gib_per_gpu"] == pytest.approx((QWEN_REST + QWEN_EXPERTS) / 2 / GIB, abs=0.001)


def test_plan_capacity_spans_nodes_for_a_multi_node_replica(capsys):
    args = [
        "--model",
        "meta-llama/Llama-3.1-405B-Instruct",
        "--instance-type",
        "p5.48xlarge",
        "--tensor-parallel",
        "8",
        "--max-model-len",
        "32768",
    ]
    status, out, _ = run(capsys, *args)
    assert status == 0 and "does not fit: the weights and runtime need" in out
    status, out, _ = run(capsys, *args, "--pipeline-parallel", "2", "--json")
    data = json.loads(out)
    assert data["fits"] and data["kv_bytes_per_token"] == 32_256
    assert (data["replica"]["gpus_per_replica"], data["replica"]["nodes_per_replica"]) == (16, 2)
    assert data["replica"]["cost_per_hour"] == pytest.approx(2 * INSTANCE_TYPES["p5.48xlarge"].price_per_hour)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([*QWEN_DP[:5], "0", *QWEN_DP[6:]], "error: --data-parallel: 0: a replica runs at least 1 engine"),
        (
            [*QWEN_DP[:5], "8", *QWEN_DP[6:]],
            "error: --data-parallel: data_parallel 8 x tensor_parallel 2 = 16 GPUs do not "
            "fit one p5.48xlarge (8 x H100)",
        ),
        (
            [
                "--model",
                "meta-llama/Llama-3.1-70B-Instruct",
                "--gpu",
                "H100",
                "--tensor-parallel",
                "4",
                "--max-model-len",
                "8192",
                "--expert-parallel",
            ],
            "error: --expert-parallel: meta-llama/Llama-3.1-70B-Instruct is not a mixture-of-experts model",
        ),
        (
            [
                "--model",
                "meta-llama/Llama-3.1-405B-Instruct",
                "--instance-type",
                "p5.48xlarge",
                "--tensor-parallel",
                "4",
                "--pipeline-parallel",
                "4",
                "--max-model-len",
                "8192",
            ],
            "error: --tensor-parallel: 16 GPUs per replica span",
        ),
        ([*QWEN_DP, "--gpu", "H200"], "error: --gpu: H200, but --instance-type p5.48xlarge has H100 GPUs"),
        (
            ["--model", "Qwen/Qwen3-8B", "--instance-type", "m7i.2xlarge", "--max-model-len", "10"],
            "error: --instance-type: 'm7i.2xlarge' is not a GPU instance type of the catalog",
        ),
        (["--config", str(EXAMPLE), "--gpu", "H100"], "error: --gpu: describes a model by hand"),
        (["--config", str(EXAMPLE), "--model", "nope"], "error: --model: 'nope' is not a model of"),
        (["--config", str(EXAMPLE), "--env", "dev"], "error: --env: give --env or --config, not both"),
    ],
)
def test_bad_plan_capacity_flags_are_one_line_exit_2(capsys, args, needle):
    status, out, err = run(capsys, *args)
    lines = err.strip().splitlines()
    assert status == 2 and out == "" and len(lines) == 1 and lines[0].startswith(needle), err


def test_plan_capacity_of_an_environment_shows_every_part(capsys):
    environment = plan_environment(parse_environment(yaml.safe_load(EXAMPLE.read_text()), "patterns.yaml"))
    status, out, _ = run(capsys, "--config", str(EXAMPLE), "--json")
    assert status == 0
    data = json.loads(out)
    assert data["environment"] == "patterns"
    assert data["cost_per_hour"] == {
        "min": pytest.approx(environment.cost_per_hour("min")),
        "max": pytest.approx(environment.cost_per_hour("max")),
    }
    models = {m["id"]: m for m in data["models"]}
    assert [m["pattern"] for m in data["models"]] == ["multi_node", "data_parallel", "disaggregated"]
    (multi,) = models["llama-3.1-405b-instruct"]["parts"]
    assert (multi["gpus_per_replica"], multi["nodes_per_replica"], multi["shape"]) == (16, 2, "tp 8 x pp 2")
    assert multi["cost_per_hour"] == {"min": 2 * 55.04, "max": 2 * 55.04}
    (gang,) = models["qwen3-30b-a3b"]["parts"]
    assert (gang["gpus_per_engine"], gang["gpus_per_replica"], gang["capacity"]["expert_parallel"]) == (2, 8, 8)
    assert gang["max_concurrency_per_replica"] == pytest.approx(4 * gang["capacity"]["max_concurrency"], abs=0.01)
    assert gang["cost_per_hour"] == {"min": 55.04, "max": 2 * 55.04}  # replicas 1-2, one node each
    prefill, decode = models["llama-3.1-70b-instruct"]["parts"]
    planned = {p.role: p for p in environment.models[2].parts}
    for shown in (prefill, decode):
        part = planned[shown["role"]]
        assert shown["node_pool"] == part.pool.name and shown["instance_type"] == "p5e.48xlarge"
        assert (shown["gpus_per_replica"], shown["nodes_per_replica"]) == (4, 1)
        assert shown["capacity"]["kv_cache_tokens"] == part.capacity.kv_cache_tokens
        assert shown["load_targets"]["target_ongoing_requests"] == part.load.target_ongoing_requests
        # Replicas 1-4 of 4 GPUs: two share an 8-GPU p5e node, so 1 node at min and 2 at max.
        assert shown["cost_per_hour"] == {"min": 60.0, "max": 120.0}
    assert prefill["load_targets"] != decode["load_targets"]  # prefill holds prompts only

    status, out, _ = run(capsys, "--config", str(EXAMPLE), "--model", "llama-3.1-70b-instruct")
    assert status == 0
    lines = out.splitlines()
    assert lines[1] == "llama-3.1-70b-instruct (disaggregated, meta-llama/Llama-3.1-70B-Instruct), max_model_len 32,768"
    prefill_line = next(line for line in lines if line.startswith("  prefill (models[2].prefill): pool h200-prefill"))
    assert "4 GPUs and 1 node per replica, replicas 1-4" in prefill_line
    assert any(line.startswith("  decode (models[2].decode): pool h200-decode") for line in lines)
    assert sum("load targets: target_ongoing_requests" in line for line in lines) == 2
    assert (
        sum(
            line.strip() == "cost: $60.00/h at min replicas, $120.00/h at max (the nodes its replicas take)"
            for line in lines
        )
        == 2
    )
    assert "GPU cost" not in out  # one model asked for: no environment total
