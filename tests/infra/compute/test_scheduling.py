"""Taints, and pods built from a pool's own selector and tolerations: they land on it; broken ones are caught."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.catalog import GPUS
from infra.compute.scheduling import Taint, node_labels, node_selector, node_taints, schedulable, tolerations

L4 = GPUS["L4"]
name = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
extra_labels = st.dictionaries(st.from_regex(r"example\.com/[a-z]{1,8}", fullmatch=True), name, max_size=3)
extra_taints = st.lists(
    st.builds(
        Taint,
        st.from_regex(r"team\.io/[a-z]{1,8}", fullmatch=True),
        name,
        st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
    ),
    max_size=3,
)


@given(
    pool=name,
    labels=extra_labels,
    taints=extra_taints,
    gpu=st.sampled_from([None, *GPUS.values()]),
    count=st.sampled_from([1, 4, 8]),
    capacity=st.sampled_from(["ON_DEMAND", "SPOT"]),
)
def test_a_pools_own_pod_spec_always_schedules_on_it(pool, labels, taints, gpu, count, capacity):
    node = node_labels(pool, labels, gpu, count)
    node_taint_list = node_taints(taints, gpu=gpu is not None, capacity_type=capacity)
    assert schedulable(node_selector(pool, gpu), tolerations(node_taint_list), node, node_taint_list) == []


def gpu_pool(capacity="SPOT"):
    return node_labels("l4", {}, L4, 1), node_taints(gpu=True, capacity_type=capacity)


def test_missing_gpu_toleration_is_caught():
    labels, taints = gpu_pool()
    pod = [t for t in tolerations(taints) if t["key"] != "nvidia.com/gpu"]
    assert schedulable(node_selector("l4", L4), pod, labels, taints) == [
        "taint nvidia.com/gpu=present:NoSchedule is not tolerated"
    ]


def test_capacity_type_mismatch_is_caught():
    labels, spot_taints = gpu_pool("SPOT")
    on_demand_pod = tolerations(node_taints(gpu=True, capacity_type="ON_DEMAND"))
    assert schedulable(node_selector("l4", L4), on_demand_pod, labels, spot_taints) == [
        "taint node.anyscale.com/capacity-type=SPOT:NoSchedule is not tolerated"
    ]


def test_selector_for_another_pool_or_gpu_is_caught():
    labels, taints = gpu_pool()
    problems = schedulable(node_selector("a10g", GPUS["A10G"]), tolerations(taints), labels, taints)
    assert problems == [
        "node selector llm-serving-stacks/node-pool=a10g does not match the node label ('l4')",
        "node selector nvidia.com/gpu.product=NVIDIA-A10G does not match the node label ('NVIDIA-L4')",
    ]


def test_exists_tolerations_and_soft_taints():
    labels, taints = gpu_pool()
    taints = [*taints, Taint("team.io/prefer", "x", "PreferNoSchedule")]
    assert schedulable(node_selector("l4", L4), [{"operator": "Exists"}], labels, taints) == []
    assert schedulable(
        {},
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}],
        labels,
        [Taint("nvidia.com/gpu", "present")],
    ) == ["taint nvidia.com/gpu=present:NoSchedule is not tolerated"]


def test_cpu_pool_has_no_gpu_labels_or_taints():
    assert node_labels("system") == {"llm-serving-stacks/node-pool": "system"}
    assert node_taints() == []


@pytest.mark.parametrize(
    ("key", "value", "effect"),
    [("bad key", "", "NoSchedule"), ("k", "bad value!", "NoSchedule"), ("k", "", "Sometimes")],
)
def test_invalid_taints_are_rejected(key, value, effect):
    with pytest.raises(ValueError, match="taint"):
        Taint(key, value, effect)


def test_taints_map_to_eks_effects_and_tolerations():
    taint = Taint("example.com/dedicated", "llm", "NoExecute")
    assert taint.eks_effect == "NO_EXECUTE"
    assert taint.toleration() == {
        "key": "example.com/dedicated",
        "operator": "Equal",
        "value": "llm",
        "effect": "NoExecute",
    }
    assert Taint("k", "", "PreferNoSchedule").eks_effect == "PREFER_NO_SCHEDULE"
