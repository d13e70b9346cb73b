"""The environment plan: derived facts computed once, and every later step reading them."""

from __future__ import annotations

import copy

import pytest
import yaml

import stacks.planning.plan as plan_module
import stacks.synth.run as run_module
from stacks.cli import main
from stacks.config.loader import ENVIRONMENTS_DIR, parse_environment
from stacks.errors import ConfigError
from stacks.planning.plan import plan_environment
from stacks.specs.render import ANYSCALE_FILE, RAYSERVICE_FILE

DEV = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())


def planned(change=None):
    data = copy.deepcopy(DEV)
    if change:
        change(data)
    return plan_environment(parse_environment(data, "dev.yaml"), "dev.yaml")


def test_pools_hold_what_their_models_need(shipped_plans):
    l4 = shipped_plans["dev"].pool("l4")
    # qwen 0..2 and llama 0..1 replicas of one GPU on one-GPU nodes; 20% rollout surge of 3 nodes is 1.
    assert (l4.gpus_per_node, l4.nodes_at_min, l4.nodes_at_max, l4.surge_nodes, l4.max_nodes) == (1, 0, 3, 1, 4)
    x4 = shipped_plans["prod"].pool("l40s-x4")
    assert (x4.gpus_per_node, x4.nodes_at_min, x4.nodes_at_max) == (4, 1, 2)  # one tp=4 replica per node
    assert shipped_plans["prod"].head_pool.name == "system"
    assert [p.name for p in shipped_plans["prod"].serving_pools] == ["l40s", "l40s-x4"]


def test_the_specs_size_worker_groups_from_the_plan(shipped_plans):
    from stacks.specs.render import render_specs

    for plan in shipped_plans.values():
        documents = render_specs(plan).documents
        anyscale = {
            g["name"]: (g["min_nodes"], g["max_nodes"])
            for g in documents[ANYSCALE_FILE]["compute_config"]["worker_nodes"]
        }
        kuberay = {
            g["groupName"]: (g["minReplicas"], g["maxReplicas"])
            for g in documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        }
        expected = {p.name: (p.nodes_at_min, p.max_nodes) for p in plan.serving_pools}
        assert anyscale == kuberay == expected


def test_gpus_per_replica_and_cost_come_from_the_typed_fields():
    plan = planned(
        lambda d: (
            d["node_pools"][1].update(instance_types=["g6.12xlarge"], max_size=8),
            d["models"][0].update(tensor_parallel_size=2, pipeline_parallel_size=2),
        )
    )
    qwen = plan.models[0]
    assert qwen.gpus_per_replica == 4
    assert plan.gpus_at_max == 4 * 2 + 1 * 1
    # Two qwen replicas take a 4-GPU node each; llama takes a third node.
    assert plan.pool("l4").nodes_at_max == 3
    assert plan.cost_per_hour("max") == pytest.approx(3 * 4.6016)


def test_the_planner_reads_the_typed_engine_settings():
    default = planned().models[0].capacity
    tighter = planned(
        lambda d: d["models"][0]["engine_kwargs"].update(gpu_memory_utilization=0.8, kv_cache_dtype="fp8")
    )
    capacity = tighter.models[0].capacity
    assert (capacity.gpu_memory_utilization, capacity.kv_cache_dtype) == (0.8, "fp8")
    assert capacity.kv_cache_tokens != default.kv_cache_tokens
    # What the user wrote reaches vLLM unchanged; nothing the schema defaulted is added.
    assert tighter.models[0].config.engine_kwargs.as_dict() == {
        "enable_prefix_caching": True,
        "gpu_memory_utilization": 0.8,
        "kv_cache_dtype": "fp8",
    }


def test_config_problems_come_before_planning_ones():
    # A missing pool (config) and a pool too small (planning): the config problem is named first.
    with pytest.raises(ConfigError) as error:
        planned(lambda d: (d["models"][1].update(node_pool="nowhere"), d["node_pools"][1].update(max_size=1)))
    assert error.value.field == "models[1].node_pool"


def test_two_files_for_one_environment_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    first, second = tmp_path / "dev.yaml", tmp_path / "a" / "dev.yaml"
    for path in (first, second):
        path.write_text((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    with pytest.raises(ConfigError, match="environment 'dev' is also defined in"):
        plan_module.plan_files([first, second])


def test_synth_plans_and_renders_each_environment_once(tmp_path, monkeypatch):
    """The stack, the summary and the spec checks read the one plan and the one rendering."""
    calls = {"plan": 0, "render": 0}
    plan_environment_, render_specs_ = plan_module.plan_environment, run_module.render_specs

    def counting_plan(*args, **kwargs):
        calls["plan"] += 1
        return plan_environment_(*args, **kwargs)

    def counting_render(*args, **kwargs):
        calls["render"] += 1
        return render_specs_(*args, **kwargs)

    monkeypatch.setattr(plan_module, "plan_environment", counting_plan)
    monkeypatch.setattr(run_module, "render_specs", counting_render)
    import stacks.specs.render as render_module

    monkeypatch.setattr(render_module, "render_specs", counting_render)
    assert main(["synth", "--outdir", str(tmp_path / "out")]) == 0
    assert calls == {"plan": 3, "render": 3}


def _warnings(plan) -> dict[str, str]:
    return {w.field: w.message for w in plan.warnings}


def test_a_created_cluster_past_standard_support_or_unknown_is_warned_about():
    import datetime

    from infra.catalog import EKS_VERSIONS

    staging = yaml.safe_load((ENVIRONMENTS_DIR / "staging.yaml").read_text())
    oldest = min(EKS_VERSIONS.values(), key=lambda v: v.end_of_standard_support)
    staging["cluster"]["create"]["version"] = oldest.version
    env = parse_environment(staging, "staging.yaml")
    after = datetime.date.fromisoformat(oldest.end_of_standard_support) + datetime.timedelta(days=1)
    message = _warnings(plan_environment(env, "staging.yaml", today=after))["cluster.create.version"]
    assert f"EKS {oldest.version} left standard support on {oldest.end_of_standard_support}" in message
    before = datetime.date.fromisoformat(oldest.end_of_standard_support)
    assert "cluster.create.version" not in _warnings(plan_environment(env, "staging.yaml", today=before))
    staging["cluster"]["create"]["version"] = "1.99"
    unknown = plan_environment(parse_environment(staging, "staging.yaml"), "staging.yaml")
    assert "1.99 is not in the catalog of EKS versions" in _warnings(unknown)["cluster.create.version"]


def test_without_our_autoscaler_a_minimum_replica_on_a_pool_starting_at_zero_is_warned_about():
    def own_autoscaler(data):
        data["cluster"]["node_autoscaler"] = "none"
        data["models"][0]["replicas"]["min"] = 1

    warnings = _warnings(planned(own_autoscaler))
    assert (
        "qwen2.5-7b-instruct needs 1 replica(s) on pool 'l4', which starts at 0 nodes"
        in warnings["models[0].replicas.min"]
    )
    # With ours, or with nodes already there, nothing to say.
    assert "models[0].replicas.min" not in _warnings(planned(lambda d: d["models"][0]["replicas"].update(min=1)))
    raised = planned(lambda d: (own_autoscaler(d), d["node_pools"][1].update(min_size=1)))
    assert "models[0].replicas.min" not in _warnings(raised)
