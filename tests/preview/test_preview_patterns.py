"""Serving-pattern changes in the preview: the pattern before -> after, each part's GPUs per replica
and shape, nodes per replica, replicas and pool, the KV connector, and capacity per part. The diff
functions on plans of the patterns example, then `llmstacks preview` on a planted repository whose
base serves the example's 70B model the standard way and whose working tree disaggregates it."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stacks.config.loader import parse_environment
from stacks.planning.plan import plan_environment
from stacks.preview import preview, to_json, to_markdown
from stacks.preview.diff import capacity_rows, compare, model_facts

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "stacks" / "examples" / "patterns.yaml").read_text())


def planned(change=None):
    data = copy.deepcopy(EXAMPLE)
    if change:
        change(data)
    return plan_environment(parse_environment(data, "patterns.yaml"), source="patterns.yaml")


def standard_70b(data: dict) -> None:
    """The example's 70B model served the standard way: 4 GPUs of the decode pool per replica."""
    model = data["models"][2]
    for key in ("prefill", "decode", "kv_transfer"):
        del model[key]
    model.update(pattern="standard", node_pool="h200-decode", tensor_parallel_size=4, replicas={"min": 1, "max": 4})


def standard_405b(data: dict) -> None:
    """The example's 405B model on one 8-GPU node, with a shorter context to fit."""
    data["models"][0].update(pattern="standard", pipeline_parallel_size=1, max_model_len=8192)


def changes(base, head) -> dict[str, str]:
    lines = compare("model", model_facts(base), model_facts(head))
    return {line.split("`")[1]: line for line in lines}


def test_standard_to_disaggregated_shows_prefill_decode_and_the_connector():
    line = changes(planned(standard_70b), planned())["llama-3.1-70b-instruct"]
    head = planned().models[2]
    prefill, decode = head.parts
    assert line.startswith(
        "model `llama-3.1-70b-instruct`: pattern standard -> disaggregated; KV connector none -> nixl; "
        "now prefill node pool h200-prefill, prefill GPUs per replica 4 x H200, prefill replicas 1-4, "
        "decode node pool h200-decode, decode GPUs per replica 4 x H200, decode replicas 1-4, "
    )
    assert (
        f"prefill load target {prefill.load.target_ongoing_requests:g} / {prefill.load.max_ongoing_requests}, "
        f"decode load target {decode.load.target_ongoing_requests:g} / {decode.load.max_ongoing_requests}; "
    ) in line
    assert "; was node pool h200-decode, GPUs per replica 4 x H200, replicas 1-4, load target " in line
    # And back: the parts go, the single deployment comes.
    back = changes(planned(), planned(standard_70b))["llama-3.1-70b-instruct"]
    assert "pattern disaggregated -> standard; KV connector nixl -> none; now node pool h200-decode" in back
    assert (
        "; was prefill node pool h200-prefill, prefill GPUs per replica 4 x H200, prefill replicas 1-4, decode" in back
    )


def test_standard_to_multi_node_shows_the_shape_and_nodes_per_replica():
    line = changes(planned(standard_405b), planned())["llama-3.1-405b-instruct"]
    assert line.startswith(
        "model `llama-3.1-405b-instruct`: pattern standard -> multi_node; "
        "GPUs per replica 8 x H100 -> 16 x H100 (tp 8 x pp 2); nodes per replica 1 -> 2; "
    )


def test_a_wider_gang_or_more_stages_shows_the_shape():
    line = changes(planned(), planned(lambda d: d["models"][1].update(data_parallel_size=2)))["qwen3-30b-a3b"]
    assert "GPUs per replica 8 x H100 (dp 4 x tp 2) -> 4 x H100 (dp 2 x tp 2)" in line and "per engine" in line

    def three_stages(data):
        data["models"][0]["pipeline_parallel_size"] = 3
        data["node_pools"][1]["max_size"] = 6

    line = changes(planned(), planned(three_stages))["llama-3.1-405b-instruct"]
    assert "GPUs per replica 16 x H100 (tp 8 x pp 2) -> 24 x H100 (tp 8 x pp 3); nodes per replica 2 -> 3" in line


def test_per_part_replicas_and_pools_and_expert_parallel():
    def moved(data):
        data["models"][2]["prefill"]["replicas"] = {"min": 0, "max": 2}
        data["models"][1]["expert_parallel"] = False
        data["models"][1]["lora"] = {"enabled": False}

    line = changes(planned(), planned(moved))
    assert "prefill replicas 1-4 -> 0-2" in line["llama-3.1-70b-instruct"]
    assert "decode replicas" not in line["llama-3.1-70b-instruct"]
    assert "expert parallel on -> off" in line["qwen3-30b-a3b"]


def test_added_models_list_their_pattern_and_parts():
    added = compare("model", {}, model_facts(planned()))
    by_model = {line.split("`")[1]: line for line in added}
    assert (
        "added: pattern multi_node, node pool h100-405b, GPUs per replica 16 x H100 (tp 8 x pp 2), nodes per replica 2, "
        "replicas 1-1," in by_model["llama-3.1-405b-instruct"]
    )
    assert (
        "added: pattern disaggregated, prefill node pool h200-prefill, prefill GPUs per replica 4 x H200, "
        "prefill replicas 1-4, decode node pool h200-decode" in by_model["llama-3.1-70b-instruct"]
    )
    assert "KV connector nixl" in by_model["llama-3.1-70b-instruct"]
    assert "expert parallel on" in by_model["qwen3-30b-a3b"]


def test_capacity_rows_are_per_part_and_per_replica():
    base, head = planned(standard_70b), planned(lambda d: d["models"][1].update(data_parallel_size=2))
    rows = {(r["model"], r["part"]): r for r in capacity_rows(base, head)}
    assert [k for k in rows if k[0] == "llama-3.1-70b-instruct"] == [
        ("llama-3.1-70b-instruct", "model"),
        ("llama-3.1-70b-instruct", "prefill"),
        ("llama-3.1-70b-instruct", "decode"),
    ]
    assert rows[("llama-3.1-70b-instruct", "model")]["concurrency_after"] is None
    assert rows[("llama-3.1-70b-instruct", "prefill")]["concurrency_before"] is None
    # A data-parallel replica holds what all its engines hold.
    engine = head.models[1].serving.capacity
    assert rows[("qwen3-30b-a3b", "model")]["kv_tokens_after"] == 2 * engine.kv_cache_tokens
    assert rows[("qwen3-30b-a3b", "model")]["concurrency_after"] == round(2 * engine.max_concurrency, 2)


# ------------------------------------------------------------------ the command, on a planted repository


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project's files with one environment, the patterns example: at the base commit its 70B
    model is standard; the working tree disaggregates it as the example does."""
    repo = tmp_path_factory.mktemp("repo")
    for name in git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard").splitlines():
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    envs = repo / "stacks" / "environments"
    for path in envs.glob("*.yaml"):
        path.unlink()
    base = copy.deepcopy(EXAMPLE)
    standard_70b(base)
    (envs / "patterns.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    git(repo, "init", "--quiet", "--initial-branch", "base")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "--all")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "base")
    shutil.copy2(ROOT / "stacks" / "examples" / "patterns.yaml", envs / "patterns.yaml")
    return repo


@pytest.fixture(scope="module")
def result(repo):
    return preview("base", repo=repo, env_dir=repo / "stacks" / "environments", policy=False)


def test_the_preview_shows_a_model_disaggregated(result):
    assert result.base_error is None
    (env,) = result.environments
    assert env.name == "patterns" and env.status == "changed"
    serving = "\n".join(env.serving)
    assert (
        "model `llama-3.1-70b-instruct`: pattern standard -> disaggregated; KV connector none -> nixl; now prefill "
        "node pool h200-prefill, prefill GPUs per replica 4 x H200, prefill replicas 1-4, decode node pool " in serving
    )
    assert "node pool `h200-prefill`" not in serving  # the pool was there; what changes is what runs on it
    # 4 prefill replicas of 4 GPUs join the decode side's 16 at max.
    assert env.gpus == {"before": 16 + 16 + 16, "after": 16 + 16 + 32}
    assert env.cost["max"]["after"] > env.cost["max"]["before"]
    rows = {(r["model"], r["part"]): r for r in env.capacity}
    text = to_markdown(result)
    for part, label in (("model", ""), ("prefill", " (prefill)"), ("decode", " (decode)")):
        row = rows[("llama-3.1-70b-instruct", part)]
        before, after = (
            f"{v}x" if v is not None else "-" for v in (row["concurrency_before"], row["concurrency_after"])
        )
        assert f"| llama-3.1-70b-instruct{label} | {before} | {after} |" in text
    assert "+      kv_connector: nixl" in env.spec_diff and "+      prefill:" in env.spec_diff


def test_the_json_names_each_part(result):
    (env,) = json.loads(to_json(result))["environments"]
    parts = {(r["model"], r["part"]) for r in env["capacity"]}
    assert {
        ("llama-3.1-70b-instruct", "model"),
        ("llama-3.1-70b-instruct", "prefill"),
        ("llama-3.1-70b-instruct", "decode"),
    } <= parts
