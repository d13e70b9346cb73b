"""Node autoscaling as Cluster Autoscaler would see the synthesized stacks.

For every model with `replicas.min > 0`, a pending replica must reach a node: some node
group the autoscaler may scale (discovery tags, its role's tag conditions) whose node
template (the ASG's node-template tags, all it has for a group at zero nodes) fits the
replica's pod as the service spec renders it: node selector, tolerations, GPUs, and
enough room under the group's max size.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import resources
from infra.compute.scheduling import Taint, schedulable

ENVS = ("dev", "staging", "prod")
PREFIX = "k8s.io/cluster-autoscaler/"
TEMPLATE = f"{PREFIX}node-template/"
_REFERENCE = re.compile(r"\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}")


def literal(tf: dict, value: str) -> str:
    """A value with references to attributes the stack sets itself (a created cluster's name) resolved."""
    return _REFERENCE.sub(lambda m: resources(tf, m[1])[m[2]][m[3]], value)


def groups(tf: dict) -> dict[str, dict]:
    """Node group resource id -> the group, its ASG tags, and the node template they describe."""
    out = {}
    for rid, group in resources(tf, "aws_eks_node_group").items():
        tags = {
            literal(tf, t["tag"]["key"]): t["tag"]["value"]
            for t in resources(tf, "aws_autoscaling_group_tag").values()
            if t["autoscaling_group_name"] == f"${{aws_eks_node_group.{rid}.resources[0].autoscaling_groups[0].name}}"
        }
        labels = {k.removeprefix(f"{TEMPLATE}label/"): v for k, v in tags.items() if k.startswith(f"{TEMPLATE}label/")}
        taints = [
            Taint(k.removeprefix(f"{TEMPLATE}taint/"), *v.rsplit(":", 1))
            for k, v in tags.items()
            if k.startswith(f"{TEMPLATE}taint/")
        ]
        gpus = int(tags.get(f"{TEMPLATE}resources/nvidia.com/gpu", "0"))
        out[rid] = {"group": group, "tags": tags, "labels": labels, "taints": taints, "gpus": gpus}
    return out


def scaling_conditions(tf: dict, role_name: str) -> dict[str, str]:
    """The tag conditions under which the autoscaler's role may change a group's size."""
    (role_id,) = [rid for rid, r in resources(tf, "aws_iam_role").items() if r["name"] == role_name]
    for policy in resources(tf, "aws_iam_role_policy").values():
        if policy["role"] == f"${{aws_iam_role.{role_id}.name}}":
            for statement in json.loads(policy["policy"])["Statement"]:
                if "autoscaling:SetDesiredCapacity" in statement["Action"]:
                    return {
                        literal(tf, k.removeprefix("aws:ResourceTag/")): v
                        for k, v in statement["Condition"]["StringEquals"].items()
                    }
    raise AssertionError(f"{role_name} may not scale any group")


def replica_pods(synth_dir, plan) -> dict[str, dict]:
    """Pool name -> the pod its worker group runs, as the environment's target renders it."""
    specs = synth_dir / "specs" / plan.env.name
    if plan.env.serving.target == "kuberay":
        rayservice = yaml.safe_load((specs / "rayservice.yaml").read_text())
        return {
            g["groupName"]: {
                "spec": g["template"]["spec"],
                "gpus": int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)),
            }
            for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        }
    service = yaml.safe_load((specs / "anyscale-service.yaml").read_text())
    platform = list(yaml.safe_load_all((specs / "platform.yaml").read_text()))
    assert platform  # the operator's instance types are checked in test_platform
    pools = {p.name: p for p in plan.pools}
    return {
        w["name"]: {"spec": w["advanced_instance_config"]["spec"], "gpus": pools[w["name"]].gpus_per_node}
        for w in service["compute_config"]["worker_nodes"]
    }


@pytest.mark.parametrize("env", ENVS)
def test_every_model_with_a_minimum_replica_reaches_a_node_the_autoscaler_can_add(
    synth_dir, synthesized, shipped_plans, env
):
    plan, tf = shipped_plans[env], synthesized[env]
    conditions = scaling_conditions(tf, plan.names.autoscaler_role)
    pods = replica_pods(synth_dir, plan)
    node_groups = groups(tf)
    checked = 0
    for model in plan.models:
        if model.config.replicas.min == 0:
            continue
        pod = pods[model.pool.name]
        assert pod["gpus"] >= model.gpus_per_replica  # the Ray pod holds the replica's GPUs
        reachable = []
        for found in node_groups.values():
            group = found["group"]
            why = schedulable(
                pod["spec"]["nodeSelector"], pod["spec"].get("tolerations", []), found["labels"], found["taints"]
            )
            if why or found["gpus"] < pod["gpus"]:
                continue
            # The autoscaler discovers the group and its role may resize it.
            assert found["tags"].get(f"{PREFIX}enabled") == "true"
            assert all(found["tags"].get(key) == value for key, value in conditions.items()), (
                conditions,
                found["tags"],
            )
            # Enough nodes under max for every model's minimum on the pool.
            assert group["scaling_config"]["max_size"] >= model.pool.nodes_at_min >= 1
            reachable.append(group["node_group_name"])
        assert reachable == [plan.names.node_group(model.pool.name)], (model.id, reachable)
        checked += 1
    assert checked == sum(1 for m in plan.models if m.config.replicas.min > 0)


def test_staging_has_a_minimum_replica_to_reach():
    """The scheduling test means something: staging's Llama 3.1 8B keeps one replica on a pool starting at zero."""
    from stacks.planning.plan import plan_environment
    from stacks.config.loader import ENVIRONMENTS_DIR, parse_environment

    plan = plan_environment(
        parse_environment(yaml.safe_load((ENVIRONMENTS_DIR / "staging.yaml").read_text()), "staging.yaml")
    )
    (model,) = [m for m in plan.models if m.id == "llama-3.1-8b-instruct"]
    assert model.config.replicas.min == 1 and model.pool.config.min_size == 0


@pytest.mark.parametrize("env", ENVS)
def test_each_gpu_pool_carries_its_scale_from_zero_template(synthesized, shipped_plans, env):
    plan, tf = shipped_plans[env], synthesized[env]
    by_name = {g["group"]["node_group_name"]: g for g in groups(tf).values()}
    for pool in plan.pools:
        found = by_name[plan.names.node_group(pool.name)]
        assert found["tags"][f"{PREFIX}{plan.names.cluster}"] == "owned"
        if not pool.has_gpus:
            assert found["gpus"] == 0 and not found["labels"]  # CPU pools scale from their running nodes
            continue
        assert found["gpus"] == pool.gpus_per_node
        # Every label and taint the nodes get, as the node group sets them.
        group = found["group"]
        assert {k: v for k, v in found["labels"].items() if k in group["labels"]} == group["labels"]
        assert found["labels"]["eks.amazonaws.com/capacityType"] == pool.config.capacity_type.upper()
        assert found["labels"]["k8s.amazonaws.com/accelerator"] == pool.gpu.name
        assert sorted((t.key, t.value, t.effect) for t in found["taints"]) == sorted(
            (
                t["key"],
                t["value"],
                {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}[
                    t["effect"]
                ],
            )
            for t in group["taint"]
        )


def test_the_autoscaler_role_scales_only_this_clusters_groups_and_reads_only_metadata(synthesized, shipped_plans):
    plan, tf = shipped_plans["prod"], synthesized["prod"]
    (role_id,) = [rid for rid, r in resources(tf, "aws_iam_role").items() if r["name"] == plan.names.autoscaler_role]
    statements = [
        s
        for p in resources(tf, "aws_iam_role_policy").values()
        if p["role"] == f"${{aws_iam_role.{role_id}.name}}"
        for s in json.loads(p["policy"])["Statement"]
    ]
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {"DescribeScalingInputs", "DescribeNodeGroups", "ScaleClusterGroups"}
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in by_sid["DescribeScalingInputs"]["Action"])
    assert by_sid["DescribeScalingInputs"]["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": plan.env.aws.region}
    }
    assert by_sid["ScaleClusterGroups"]["Action"] == [
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    assert scaling_conditions(tf, plan.names.autoscaler_role) == {
        f"{PREFIX}{plan.names.cluster}": "owned",
        f"{PREFIX}enabled": "true",
    }
    (nodegroups,) = by_sid["DescribeNodeGroups"]["Resource"]
    assert (
        literal(tf, nodegroups)
        == f"arn:aws:eks:{plan.env.aws.region}:{plan.env.aws.account_id}:nodegroup/{plan.names.cluster}/*/*"
    )
