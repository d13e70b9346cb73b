"""The capacity planner: vLLM's start-up arithmetic, ahead of time, and its use at synth."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.catalog import GPUS, Gpu
from stacks.cli import main
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.errors import ConfigError
from stacks.planning.capacity import load_targets, plan
from stacks.planning.model_catalog import CATALOG, find, from_config
from stacks.planning.plan import plan_file
from stacks.specs.app_args import app_args

LLAMA_8B, LLAMA_70B, QWEN_7B = (
    find(n)
    for n in ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen2.5-7B-Instruct")
)


# Figures vLLM logged at start-up. Older vLLM did not set memory aside for CUDA graphs; 0.29
# does, so the planner may come out lower, never much higher.
PUBLISHED = [
    # vllm-project/vllm PR #12569: Llama-3.1-70B w8a8 on an 80 GB H100, --max-model-len 2048,
    # --gpu-memory-utilization 0.98: "Loading model weights took 67.7229 GB", "# GPU blocks: 1381",
    # "Maximum concurrency for 2048 tokens per request: 10.79x".
    (
        "70B-w8a8-H100",
        LLAMA_70B,
        GPUS["H100"],
        dict(max_model_len=2048, gpu_memory_utilization=0.98, quantization="fp8"),
        67.72,
        10.79,
    ),
    # vllm-project/vllm issue #10517: Llama-3.1-8B-Instruct on an RTX 3090 (23.58 GiB), utilization 0.90,
    # max_model_len 20000 (profiled at 20000 tokens): weights 14.9888 GB, 1952 blocks, "1.56x".
    (
        "8B-3090-20k",
        LLAMA_8B,
        Gpu("RTX-3090", 24, "NVIDIA-GeForce-RTX-3090", 23.58),
        dict(max_model_len=20000, max_num_batched_tokens=20000),
        14.99,
        1.56,
    ),
    # Same issue, max_model_len 29000: 1478 blocks, "0.82x" (vLLM then refuses to start).
    (
        "8B-3090-29k",
        LLAMA_8B,
        Gpu("RTX-3090", 24, "NVIDIA-GeForce-RTX-3090", 23.58),
        dict(max_model_len=29000, max_num_batched_tokens=29000),
        14.99,
        0.82,
    ),
]


@pytest.mark.parametrize(
    ("arch", "gpu", "settings_", "weights_gib", "concurrency"),
    [p[1:] for p in PUBLISHED],
    ids=[p[0] for p in PUBLISHED],
)
def test_against_concurrency_vllm_logged(arch, gpu, settings_, weights_gib, concurrency):
    capacity = plan(arch, gpu, **settings_)
    assert capacity.weights_gib_per_gpu == pytest.approx(weights_gib, rel=0.01)
    assert 0.75 * concurrency <= capacity.max_concurrency <= 1.05 * concurrency
    assert capacity.fits == (concurrency >= 1)


def test_kv_bytes_per_token_follow_the_architecture():
    # 2 (K and V) x layers x KV heads on this GPU x head dim x bytes
    assert plan(LLAMA_8B, GPUS["L4"], max_model_len=4096).kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    assert (
        plan(LLAMA_70B, GPUS["L40S"], tensor_parallel=4, max_model_len=4096).kv_bytes_per_token == 2 * 80 * 2 * 128 * 2
    )
    assert plan(QWEN_7B, GPUS["L4"], max_model_len=4096, kv_cache_dtype="fp8").kv_bytes_per_token == 2 * 28 * 4 * 128
    # 4 KV heads on 8 ranks: replicated, one head per GPU.
    replicated = plan(QWEN_7B, GPUS["H100"], tensor_parallel=4, max_model_len=4096)
    assert replicated.kv_bytes_per_token == 2 * 28 * 1 * 128 * 2
    # Pipeline stages each hold half the layers.
    assert (
        plan(LLAMA_8B, GPUS["L4"], pipeline_parallel=2, max_model_len=4096).kv_bytes_per_token == 2 * 16 * 8 * 128 * 2
    )


def test_concurrency_is_whole_blocks_over_blocks_per_request():
    capacity = plan(LLAMA_8B, GPUS["L40S"], max_model_len=10_000)
    blocks = capacity.kv_cache_tokens // 16
    assert capacity.kv_cache_tokens % 16 == 0
    assert capacity.max_concurrency == pytest.approx(blocks / 625)  # ceil(10000 / 16)
    assert capacity.kv_cache_tokens * capacity.kv_bytes_per_token <= capacity.kv_cache_gib_per_gpu * 2**30


@pytest.mark.parametrize("arch", list(CATALOG.values()), ids=[a.hf_id for a in CATALOG.values()])
def test_catalog_parameter_counts_match_the_published_sizes(arch):
    assert arch.params / 1e9 == pytest.approx(arch.published_params_b, rel=0.02)


def test_plan_capacity_answers_for_every_catalog_model_on_every_gpu(capsys):
    for arch in CATALOG.values():
        for gpu in GPUS:
            assert (
                main(["plan-capacity", "--model", arch.hf_id, "--gpu", gpu, "--max-model-len", "4096", "--json"]) == 0
            )
            answer = json.loads(capsys.readouterr().out)
            for key in ("weights_gib_per_gpu", "kv_cache_gib_per_gpu", "kv_bytes_per_token", "max_concurrency", "fits"):
                assert key in answer
    small, large = (
        plan(find(n), GPUS["L4"], max_model_len=4096) for n in ("Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-405B-Instruct")
    )
    assert small.fits and not large.fits


def test_sliding_window_layers_hold_only_their_window():
    oss = find("openai/gpt-oss-20b")
    capacity = plan(oss, GPUS["L40S"], max_model_len=32768)
    full = plan(dataclasses.replace(oss, sliding_window=None, sliding_layers=0), GPUS["L40S"], max_model_len=32768)
    assert capacity.max_concurrency > 1.8 * full.max_concurrency
    assert any("128-token window" in n for n in capacity.notes)
    assert capacity.weights_gib_per_gpu == pytest.approx(12.8)


VALID_TP = [1, 2, 4, 8]


@settings(max_examples=300, deadline=None)
@given(
    arch=st.sampled_from(list(CATALOG.values())),
    gpu=st.sampled_from(list(GPUS.values())),
    tp=st.sampled_from(VALID_TP),
    length=st.integers(256, 131072),
    util=st.floats(0.5, 0.95),
)
def test_more_parallelism_or_memory_never_lowers_concurrency_and_longer_requests_never_raise_it(
    arch, gpu, tp, length, util
):
    if arch.heads % tp:
        return
    base = plan(arch, gpu, tensor_parallel=tp, max_model_len=length, gpu_memory_utilization=util)
    wider = next((t for t in VALID_TP if t > tp and arch.heads % t == 0), None)
    if wider:
        assert (
            plan(arch, gpu, tensor_parallel=wider, max_model_len=length, gpu_memory_utilization=util).max_concurrency
            >= base.max_concurrency
        )
    assert (
        plan(
            arch, gpu, tensor_parallel=tp, max_model_len=length, gpu_memory_utilization=min(0.99, util + 0.04)
        ).max_concurrency
        >= base.max_concurrency
    )
    # Same batch settings: vLLM's defaults grow with GPU memory (8192 batched tokens from 70 GiB),
    # which does cost KV cache; the property holds for the memory alone.
    bigger = Gpu(gpu.name, gpu.memory_gib, gpu.product_label, gpu.usable_gib + 8)
    batch = dict(max_num_batched_tokens=base.max_num_batched_tokens, max_num_seqs=base.max_num_seqs)
    assert (
        plan(
            arch, bigger, tensor_parallel=tp, max_model_len=length, gpu_memory_utilization=util, **batch
        ).max_concurrency
        >= base.max_concurrency
    )
    assert (
        plan(arch, gpu, tensor_parallel=tp, max_model_len=length * 2, gpu_memory_utilization=util).max_concurrency
        <= base.max_concurrency
    )


def test_a_config_json_describes_a_model_not_in_the_catalog(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "qwen2",
                "num_hidden_layers": 28,
                "hidden_size": 3584,
                "intermediate_size": 18944,
                "num_attention_heads": 28,
                "num_key_value_heads": 4,
                "vocab_size": 152064,
                "torch_dtype": "bfloat16",
                "attention_bias": True,
                "tie_word_embeddings": False,
            }
        )
    )
    arch = from_config(config)
    assert arch.params == QWEN_7B.params
    assert main(["plan-capacity", "--model", str(config), "--gpu", "L4", "--max-model-len", "8192", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kv_bytes_per_token"] == 2 * 28 * 4 * 128 * 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--model", "no/such-model", "--gpu", "L4", "--max-model-len", "10"],
            "--model: 'no/such-model' is not in the catalog",
        ),
        (["--model", "Qwen/Qwen3-8B", "--gpu", "T4", "--max-model-len", "10"], "--gpu: unknown GPU 'T4'"),
        (
            ["--model", "Qwen/Qwen3-8B", "--gpu", "L4", "--max-model-len", "10", "--kv-cache-dtype", "int3"],
            "--kv-cache-dtype: 'int3'",
        ),
        (["--model", "Qwen/Qwen3-8B", "--gpu", "L4"], "give --model, --gpu and --max-model-len"),
        (
            ["--model", "/nonexistent/config.json", "--gpu", "L4", "--max-model-len", "10"],
            "/nonexistent/config.json: no such file",
        ),
    ],
)
def test_bad_plan_capacity_input_is_one_line_exit_2(capsys, args, needle):
    assert main(["plan-capacity", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_a_config_json_missing_a_field_is_exit_2(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "x", "hidden_size": 8}))
    assert main(["plan-capacity", "--model", str(config), "--gpu", "L4", "--max-model-len", "10"]) == 2
    assert "no num_attention_heads" in capsys.readouterr().err


def test_human_output_says_why_it_does_not_fit_and_what_would(capsys):
    assert (
        main(
            ["plan-capacity", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L4", "--max-model-len", "131072"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "maximum concurrency for 131,072 tokens per request: 0." in out
    assert "does not fit: the KV cache holds" in out
    assert "options: tensor_parallel_size 2" in out and "max_model_len at most" in out


# ------------------------------------------------------------------ at synth


def _env(tmp_path, change) -> str:
    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    change(data)
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_synth_rejects_a_model_that_does_not_fit_with_options(tmp_path, capsys):
    def seventy_b_on_one_l4(data):
        data["models"][1].update(id="llama-3.1-70b-instruct", max_model_len=8192)

    path = _env(tmp_path, seventy_b_on_one_l4)
    assert main(["synth", "--config", path, "--outdir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        f"error: {path}: models[1]: llama-3.1-70b-instruct does not fit L4 (tp 1 x pp 1, max_model_len 8,192)"
    )
    assert "Options: tensor_parallel_size 8" in err[0]
    assert not (tmp_path / "out").exists()


def test_synth_rejects_a_context_longer_than_the_kv_cache(tmp_path):
    path = _env(tmp_path, lambda d: d["models"][0].update(max_model_len=131072))
    with pytest.raises(ConfigError, match=r"models\[0\]: qwen2.5-7b-instruct does not fit L4 .*less than one request"):
        plan_file(path)


def test_an_unknown_architecture_is_named(tmp_path):
    path = _env(tmp_path, lambda d: d["models"][1].update(id="my-private-model"))
    with pytest.raises(ConfigError, match=r"models\[1\]\.architecture: no architecture known for 'my-private-model'"):
        plan_file(path)
    path = _env(tmp_path, lambda d: d["models"][1].update(id="my-private-model", architecture="Qwen/Qwen3-0.6B"))
    assert plan_file(path).models[1].architecture.hf_id == "Qwen/Qwen3-0.6B"


def test_an_unreadable_architecture_file_is_named(tmp_path):
    path = _env(tmp_path, lambda d: d["models"][1].update(architecture=str(tmp_path / "missing" / "config.json")))
    with pytest.raises(ConfigError, match=r"models\[1\]\.architecture: cannot read .*missing/config.json"):
        plan_file(path)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"hidden_size": 8}))
    path = _env(tmp_path, lambda d: d["models"][1].update(architecture=str(broken)))
    with pytest.raises(ConfigError, match=r"models\[1\]\.architecture: cannot read .*no num_attention_heads"):
        plan_file(path)


def _qwen(path) -> object:
    return next(m for m in app_args(plan_file(path)).models if m.id == "qwen2.5-7b-instruct")


def test_load_targets_come_from_the_kv_cache_at_the_workloads_request_lengths(tmp_path):
    # dev's qwen on an L4 at 8k, the default chat workload: typical 1,000 + 250 tokens, p95 4,000 + 1,000.
    capacity = plan(QWEN_7B, GPUS["L4"], max_model_len=8192)
    held = capacity.kv_cache_tokens // 1264  # 1,250 tokens in whole 16-token blocks
    qwen = _qwen(ENVIRONMENTS_DIR / "dev.yaml")
    assert qwen.target_ongoing_requests == int(held * 0.8) == 50
    assert qwen.max_ongoing_requests == 1 + (capacity.kv_cache_tokens - 5008) // 1264 == 61
    # Far above the old derivation from full-length requests (9 requests of 8,192 tokens).
    assert qwen.target_ongoing_requests > 5 * capacity.max_concurrency
    # Longer typical requests: fewer of them fit, so lower targets.
    longer = _qwen(
        _env(
            tmp_path,
            lambda d: d["models"][0].update(
                workload={
                    "prompt_tokens": {"typical": 3000, "p95": 6000},
                    "output_tokens": {"typical": 500, "p95": 1500},
                }
            ),
        )
    )
    assert longer.target_ongoing_requests == int(capacity.kv_cache_tokens // 3504 * 0.8)
    assert longer.max_ongoing_requests == 1 + (capacity.kv_cache_tokens - 7504) // 3504
    assert longer.target_ongoing_requests < qwen.target_ongoing_requests


def test_load_targets_are_capped_by_max_num_seqs_and_max_never_below_target():
    capacity = plan(QWEN_7B, GPUS["L4"], max_model_len=8192, max_num_seqs=16)
    targets = load_targets(capacity, typical_tokens=100, p95_tokens=400)
    assert (targets.target_ongoing_requests, targets.max_ongoing_requests) == (16, 16)
    assert "max_num_seqs 16" in targets.reasoning
    # A p95 request that fills the cache leaves room for one request: both targets are 1.
    capacity = plan(QWEN_7B, GPUS["L4"], max_model_len=8192)
    tight = load_targets(capacity, typical_tokens=1000, p95_tokens=capacity.kv_cache_tokens)
    assert (tight.target_ongoing_requests, tight.max_ongoing_requests) == (1, 1)


def test_load_targets_set_in_the_file_win_and_are_checked(tmp_path):
    qwen = _qwen(_env(tmp_path, lambda d: d["models"][0].update(target_ongoing_requests=3, max_ongoing_requests=5)))
    assert (qwen.target_ongoing_requests, qwen.max_ongoing_requests) == (3, 5)
    path = _env(tmp_path, lambda d: d["models"][0].update(target_ongoing_requests=9, max_ongoing_requests=5))
    with pytest.raises(ConfigError, match=r"models\[0\]: target_ongoing_requests 9.0 exceeds max_ongoing_requests 5"):
        plan_file(path)


@pytest.mark.parametrize(
    ("workload", "field", "message"),
    [
        (
            {"prompt_tokens": {"typical": 1000, "p95": 8000}},
            "models[0].workload",
            "a p95 request (prompt 8,000 + output 1,000 tokens) is longer than max_model_len 8,192; vLLM refuses such requests",
        ),
        (
            {"output_tokens": {"typical": 900, "p95": 300}},
            "models[0].workload.output_tokens",
            "typical 900 is greater than p95 300",
        ),
        ({"ttft_p95_seconds": 0}, "models[0].workload.ttft_p95_seconds", "should be greater than 0"),
    ],
)
def test_a_workload_that_cannot_be_served_is_refused(tmp_path, workload, field, message):
    with pytest.raises(ConfigError) as error:
        plan_file(_env(tmp_path, lambda d: d["models"][0].update(workload=workload)))
    assert error.value.field == field and message in error.value.message


def test_the_default_workload_is_capped_at_max_model_len(tmp_path):
    # A 4k model cannot see the default p95 request (5,000 tokens): its requests are at most 4,096.
    qwen = _qwen(_env(tmp_path, lambda d: d["models"][0].update(max_model_len=4096)))
    capacity = plan(QWEN_7B, GPUS["L4"], max_model_len=4096)
    assert qwen.max_ongoing_requests == 1 + (capacity.kv_cache_tokens - 4096) // 1264


def test_plan_capacity_shows_the_load_targets_and_their_reasoning(capsys):
    args = ["plan-capacity", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "L4", "--max-model-len", "8192"]
    assert main(args) == 0
    assert "load targets: target_ongoing_requests 50, max_ongoing_requests 61: KV cache" in capsys.readouterr().out
    assert (
        main(
            [
                *args,
                "--json",
                "--prompt-tokens",
                "3000",
                "--prompt-tokens-p95",
                "6000",
                "--output-tokens",
                "500",
                "--output-tokens-p95",
                "1500",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["load_targets"]["target_ongoing_requests"] == int(data["kv_cache_tokens"] // 3504 * 0.8)
    assert main([*args, "--output-tokens", "2000"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: --output-tokens: the typical length is longer than --output-tokens-p95"
    )


def test_the_synth_summary_shows_concurrency_and_cost(synth_dir, shipped_plans):
    from stacks.synth.summary import summarize

    prod = shipped_plans["prod"]
    text = summarize(prod, synth_dir / "stacks" / "prod" / "cdk.tf.json")
    assert "CONCURRENCY" in text and "LOAD TARGET" in text and "ROUTING" in text
    eight_b = prod.models[0]
    assert f"    {eight_b.id}: {eight_b.load.reasoning}" in text
    assert f"stream s3://llm-prod-weights-333333333333/models/{eight_b.id}" in text
    # prod: l40s pool min_size 2 x g6e.2xlarge, l40s-x4 min_size 1 x g6e.12xlarge; at max: 8 + 2 nodes.
    assert prod.cost_per_hour("min") == pytest.approx(2 * 2.24208 + 10.49264)
    assert prod.cost_per_hour("max") == pytest.approx(8 * 2.24208 + 2 * 10.49264)
    assert (
        f"GPU cost: ${prod.cost_per_hour('min'):,.2f}/h at min replicas, ${prod.cost_per_hour('max'):,.2f}/h at max"
        in text
    )
