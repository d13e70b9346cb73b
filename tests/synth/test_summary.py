"""The synth summary per serving pattern: one row per Ray Serve deployment (a disaggregated model's
prefill and decode apart), each part's GPUs, shape, nodes, replicas, KV cache and load targets,
and the GPU cost split by the nodes each model takes."""

from __future__ import annotations

import copy
import json
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from stacks.cli import main
from stacks.config.loader import parse_environment
from stacks.planning.plan import plan_environment
from stacks.synth.summary import summarize

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FILE = ROOT / "stacks" / "examples" / "patterns.yaml"
EXAMPLE = yaml.safe_load(EXAMPLE_FILE.read_text())


def planned(change=None):
    data = copy.deepcopy(EXAMPLE)
    if change:
        change(data)
    return plan_environment(parse_environment(data, "patterns.yaml"), source="patterns.yaml")


def stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "stacks" / "patterns" / "cdk.tf.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"resource": {"aws_eks_node_group": {"a": {}, "b": {}}}}))
    return path


def rows(text: str, header: str) -> dict[str, list[str]]:
    """The table under `header` (its first column's name) as {first cell: cells}; cells are split on
    two or more spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(header + " "))
    names = re.split(r"\s{2,}", lines[start].strip())
    table = {}
    for line in lines[start + 1 :]:
        if not line.startswith("    ") or line.startswith("     "):
            break
        cells = re.split(r"\s{2,}", line.strip())
        table[cells[0]] = dict(zip(names, cells, strict=False))
    return table


@pytest.fixture(scope="module")
def plan():
    return planned()


@pytest.fixture
def text(plan, tmp_path):
    return summarize(plan, stack_file(tmp_path))


def test_one_row_per_part_with_its_pattern_gpus_shape_and_replicas(plan, text):
    table = rows(text, "ID")
    assert list(table) == [
        "llama-3.1-405b-instruct",
        "qwen3-30b-a3b",
        "llama-3.1-70b-instruct (prefill)",
        "llama-3.1-70b-instruct (decode)",
    ]
    big, moe, prefill, decode = table.values()
    assert (big["PATTERN"], big["POOL"], big["GPUS/REPLICA"], big["NODES/REPLICA"], big["REPLICAS"]) == (
        "multi_node",
        "h100-405b",
        "16 (tp 8 x pp 2)",
        "2",
        "1-1",
    )
    assert (moe["PATTERN"], moe["GPUS/REPLICA"], moe["NODES/REPLICA"], moe["REPLICAS"]) == (
        "data_parallel",
        "8 (dp 4 x tp 2)",
        "1",
        "1-2",
    )
    # Each part's own pool, width and replicas: not the model-level defaults (tp 1, replicas 1-1).
    assert (prefill["PATTERN"], prefill["POOL"], prefill["GPUS/REPLICA"], prefill["REPLICAS"]) == (
        "disaggregated",
        "h200-prefill",
        "4 (tp 4)",
        "1-4",
    )
    assert (decode["POOL"], decode["GPUS/REPLICA"], decode["REPLICAS"]) == ("h200-decode", "4 (tp 4)", "1-4")


def test_kv_cache_concurrency_and_load_targets_are_each_parts(plan, text):
    table = rows(text, "ID")
    big, moe, (prefill, decode) = plan.models[0].serving, plan.models[1].serving, plan.models[2].parts
    assert table["llama-3.1-405b-instruct"]["KV CACHE"] == f"{big.capacity.kv_cache_tokens:,} tok"
    # A data-parallel replica is a gang of engines, each with its own KV cache and load target.
    row = table["qwen3-30b-a3b"]
    assert row["KV CACHE"] == f"4 x {moe.capacity.kv_cache_tokens:,} tok"
    assert row["CONCURRENCY"] == f"4 x {moe.capacity.max_concurrency:.1f}x"
    assert row["LOAD TARGET"] == f"{moe.load.target_ongoing_requests:g} / {moe.load.max_ongoing_requests} per engine"
    assert (
        table["llama-3.1-70b-instruct (prefill)"]["LOAD TARGET"]
        == f"{prefill.load.target_ongoing_requests:g} / {prefill.load.max_ongoing_requests}"
    )
    assert (
        table["llama-3.1-70b-instruct (decode)"]["LOAD TARGET"]
        == f"{decode.load.target_ongoing_requests:g} / {decode.load.max_ongoing_requests}"
    )
    assert prefill.load.target_ongoing_requests != decode.load.target_ongoing_requests
    # The reasoning, per part.
    assert f"    llama-3.1-405b-instruct: {big.load.reasoning}" in text
    assert f"    qwen3-30b-a3b (each of 4 engines): {moe.load.reasoning}" in text
    assert f"    llama-3.1-70b-instruct (prefill): {prefill.load.reasoning}" in text
    assert f"    llama-3.1-70b-instruct (decode): {decode.load.reasoning}" in text


def test_cost_per_model_is_the_nodes_it_takes_and_adds_up_to_the_pools(plan, text):
    costs = {m.id: {at: (m.nodes(at), m.cost_per_hour(at)) for at in ("min", "max")} for m in plan.models}
    price = {p.name: p.price_per_hour for p in plan.pools}
    # 405B: one replica of 2 whole nodes; MoE: one 8-GPU node per gang (1-2);
    # 70B: prefill and decode 1-4 replicas of 4 GPUs each, two to a node.
    assert costs["llama-3.1-405b-instruct"]["min"] == (2, pytest.approx(2 * price["h100-405b"]))
    assert costs["llama-3.1-405b-instruct"]["max"] == (2, pytest.approx(2 * price["h100-405b"]))
    assert costs["qwen3-30b-a3b"]["min"] == (1, pytest.approx(price["h100-moe"]))
    assert costs["qwen3-30b-a3b"]["max"] == (2, pytest.approx(2 * price["h100-moe"]))
    assert costs["llama-3.1-70b-instruct"]["min"] == (2, pytest.approx(price["h200-prefill"] + price["h200-decode"]))
    assert costs["llama-3.1-70b-instruct"]["max"] == (
        4,
        pytest.approx(2 * price["h200-prefill"] + 2 * price["h200-decode"]),
    )
    for at in ("min", "max"):
        assert sum(c[at][1] for c in costs.values()) == pytest.approx(plan.cost_per_hour(at))
        assert plan.idle(at) == (0, 0)
    table = rows(text, "MODEL")
    assert table["llama-3.1-70b-instruct"] == {
        "MODEL": "llama-3.1-70b-instruct",
        "NODES AT MIN": "2",
        "NODES AT MAX": "4",
        "COST/H AT MIN": f"${costs['llama-3.1-70b-instruct']['min'][1]:,.2f}",
        "COST/H AT MAX": f"${costs['llama-3.1-70b-instruct']['max'][1]:,.2f}",
    }
    assert "(idle: pools' min_size)" not in text
    assert (
        f"GPU cost: ${plan.cost_per_hour('min'):,.2f}/h at min replicas, ${plan.cost_per_hour('max'):,.2f}/h at max"
        in text
    )


def test_nodes_a_pool_keeps_beyond_its_models_are_shown_as_idle(tmp_path):
    plan = planned(lambda d: d["node_pools"][2].update(min_size=3))  # h100-moe: its model needs 1-2 nodes
    price = plan.pool("h100-moe").price_per_hour
    assert plan.idle("min") == (2, pytest.approx(2 * price)) and plan.idle("max") == (1, pytest.approx(price))
    for at in ("min", "max"):
        assert sum(m.cost_per_hour(at) for m in plan.models) + plan.idle(at)[1] == pytest.approx(plan.cost_per_hour(at))
    row = rows(summarize(plan, stack_file(tmp_path)), "MODEL")["(idle: pools' min_size)"]
    assert (row["NODES AT MIN"], row["NODES AT MAX"], row["COST/H AT MIN"]) == ("2", "1", f"${2 * price:,.2f}")


def test_a_single_node_environment_has_no_nodes_per_replica_column(shipped_plans, tmp_path):
    dev = shipped_plans["dev"]
    text = summarize(dev, stack_file(tmp_path))
    table = rows(text, "ID")
    assert "NODES/REPLICA" not in text
    first = dev.models[0]
    assert table[first.id]["PATTERN"] == "standard"
    assert table[first.id]["GPUS/REPLICA"] == f"{first.gpus_per_replica} ({first.serving.shape})"


def test_the_efa_warning_shows_with_the_summary(tmp_path, monkeypatch, capsys):
    """`llmstacks synth` prints the plan's warnings (here: a disaggregated model's pools without EFA)
    and the summary; the synthesis itself is stubbed (the example's real synth: tests/examples)."""
    data = copy.deepcopy(EXAMPLE)
    for pool in data["node_pools"]:
        pool.pop("efa", None)
    config = tmp_path / "patterns.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    files = {"patterns": stack_file(out), "patterns-platform": out / "stacks" / "patterns-platform" / "cdk.tf.json"}
    files["patterns-platform"].parent.mkdir(parents=True)
    files["patterns-platform"].write_text(json.dumps({"resource": {}}))
    fake = types.ModuleType("stacks.synth.run")
    fake.synthesize = lambda plans, outdir, replace_all: types.SimpleNamespace(stack_files=files, validators=["stub"])
    monkeypatch.setitem(sys.modules, "stacks.synth.run", fake)

    assert main(["synth", "--config", str(config), "--outdir", str(out)]) == 0

    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "EFA" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {config}: models[2].prefill.node_pool: ")
    assert "h200-decode, h200-prefill have no EFA" in warnings[0]
    assert "llama-3.1-70b-instruct (prefill)" in captured.out and "llama-3.1-70b-instruct (decode)" in captured.out
