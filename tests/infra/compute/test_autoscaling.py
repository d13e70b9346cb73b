"""Node autoscaling: Cluster Autoscaler's role and release, and the Auto Scaling group tags of node pools.

One AWS stack and one platform stack, each synthesized once per module.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from cdktf import TerraformStack
from cdktf_cdktf_provider_helm.provider import HelmProvider

import conftest
from conftest import cdktf_app, ROOT, TESTS, resources
from infra import (
    RAY_POD_ANNOTATIONS,
    ClusterAutoscaler,
    ClusterAutoscalerIdentity,
    EksCluster,
    GpuNodePool,
    NodePool,
    NodeRole,
    Taint,
)
from infra import rules
from infra.compute.autoscaling import DESCRIBE_ACTIONS, SCALING_ACTIONS
from infra.platform.charts import CHARTS

ACCOUNT, REGION, CLUSTER = "123456789012", "eu-west-1", "ml-test"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SCHEMA = TESTS / "schemas" / "cluster-autoscaler-values.yaml"
TEMPLATE = "k8s.io/cluster-autoscaler/node-template/"
# Kubernetes objects the chart passes through verbatim, and the autoscaler's own flags.
FREE_FORM = {"extraArgs", "resources", "securityContext", "containerSecurityContext"}


def new_stack(name: str = "test") -> TerraformStack:
    return conftest.new_stack(name, REGION)


synth = conftest.synth_stack


@pytest.fixture(scope="module")
def aws():
    stack = new_stack("autoscaling")
    role = NodeRole(stack, "nodes", role_name="test-nodes")
    pools = {
        "system": NodePool(
            stack,
            "system",
            cluster_name=CLUSTER,
            node_group_name="test-system",
            pool_name="system",
            node_role=role,
            subnet_ids=SUBNETS,
            instance_types=["m7i.large"],
            autoscaler_cluster_name=CLUSTER,
        ),
        "l4": GpuNodePool(
            stack,
            "l4",
            cluster_name=CLUSTER,
            node_group_name="test-l4",
            pool_name="l4",
            node_role=role,
            subnet_ids=SUBNETS,
            instance_types=["g6.2xlarge", "g6.4xlarge"],
            capacity_type="SPOT",
            max_size=4,
            labels={"team": "ml"},
            taints=[Taint("dedicated", "llm")],
            autoscaler_cluster_name=CLUSTER,
        ),
        "h100": GpuNodePool(
            stack,
            "h100",
            cluster_name=CLUSTER,
            node_group_name="test-h100",
            pool_name="h100",
            node_role=role,
            subnet_ids=SUBNETS,
            instance_types=["p5.48xlarge"],
        ),
    }
    identity = ClusterAutoscalerIdentity(
        stack, "autoscaler", role_name="test-autoscaler", cluster_name=CLUSTER, account_id=ACCOUNT, region=REGION
    )
    return {"tf": synth(stack), "pools": pools, "identity": identity}


@pytest.fixture(scope="module")
def created():
    """A cluster created in the same stack: its name is a reference wherever it appears."""
    stack = new_stack("created")
    cluster = EksCluster(
        stack, "cluster", name=CLUSTER, version="1.35", subnet_ids=SUBNETS, kms_key_arn=KEY, account_id=ACCOUNT
    )
    role = NodeRole(stack, "nodes", role_name="test-nodes")
    GpuNodePool(
        stack,
        "l4",
        cluster_name=cluster.name,
        node_group_name="test-l4",
        pool_name="l4",
        node_role=role,
        subnet_ids=SUBNETS,
        instance_types=["g6.xlarge"],
        autoscaler_cluster_name=cluster.name,
    )
    ClusterAutoscalerIdentity(
        stack, "autoscaler", role_name="test-autoscaler", cluster_name=cluster.name, account_id=ACCOUNT, region=REGION
    )
    return synth(stack)


@pytest.fixture(scope="module")
def platform():
    stack = TerraformStack(cdktf_app(), "platform")
    HelmProvider(stack, "helm")
    ClusterAutoscaler(stack, "autoscaler", cluster_name=CLUSTER, region=REGION)
    ClusterAutoscaler(
        stack,
        "tuned",
        cluster_name=CLUSTER,
        region=REGION,
        namespace="autoscaling",
        service_account="ca",
        expander="most-pods",
        scale_down_unneeded_minutes=30,
        scale_down_delay_after_add_minutes=20,
        balance_similar_node_groups=False,
        skip_nodes_with_local_storage=True,
    )
    releases = {r["namespace"]: r for r in resources(synth(stack), "helm_release").values()}
    return {ns: (r, yaml.safe_load(r["values"][0])) for ns, r in releases.items()}


def statements(tf: dict) -> dict[str, dict]:
    (policy,) = [p for p in resources(tf, "aws_iam_role_policy").values() if p["name"] == "cluster-autoscaler"]
    return {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}


def asg_tags(tf: dict, pool_id: str) -> dict[str, tuple[str, bool]]:
    found = {}
    for rid, tag in resources(tf, "aws_autoscaling_group_tag").items():
        if rid.startswith(f"{pool_id}_"):
            (node_group,) = [n for n in resources(tf, "aws_eks_node_group") if n.startswith(f"{pool_id}_")]
            assert (
                tag["autoscaling_group_name"]
                == f"${{aws_eks_node_group.{node_group}.resources[0].autoscaling_groups[0].name}}"
            )
            found[tag["tag"]["key"]] = (tag["tag"]["value"], tag["tag"]["propagate_at_launch"])
    return found


# --- the role -----------------------------------------------------------------------


def test_describe_actions_are_read_only_and_held_to_the_region(aws):
    describe = statements(aws["tf"])["DescribeScalingInputs"]
    assert describe["Action"] == list(DESCRIBE_ACTIONS)
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in describe["Action"])
    # These actions support no resource-level permission: "*" is the only resource that works.
    assert describe["Resource"] == ["*"]
    assert describe["Condition"] == {"StringEquals": {"aws:RequestedRegion": REGION}}


def test_scaling_only_on_groups_tagged_for_this_cluster(aws):
    scale = statements(aws["tf"])["ScaleClusterGroups"]
    assert scale["Action"] == ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert scale["Resource"] == [f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/*"]
    assert scale["Condition"] == {
        "StringEquals": {
            f"aws:ResourceTag/k8s.io/cluster-autoscaler/{CLUSTER}": "owned",
            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
        }
    }


def test_no_wildcard_action_and_only_describe_on_any_resource(aws):
    found = statements(aws["tf"])
    assert set(found) == {"DescribeScalingInputs", "DescribeNodeGroups", "ScaleClusterGroups"}
    actions = [a for s in found.values() for a in s["Action"]]
    assert not [a for a in actions if "*" in a]
    assert set(actions) == {*DESCRIBE_ACTIONS, *SCALING_ACTIONS, "eks:DescribeNodegroup"}
    assert "autoscaling:UpdateAutoScalingGroup" not in actions
    for statement in found.values():
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        if "*" in statement["Resource"]:
            assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in statement["Action"])
    nodegroups = found["DescribeNodeGroups"]
    assert nodegroups["Resource"] == [f"arn:aws:eks:{REGION}:{ACCOUNT}:nodegroup/{CLUSTER}/*/*"]
    assert aws["identity"].policies["cluster-autoscaler"][0].sid == "DescribeScalingInputs"


def test_only_pod_identity_for_its_service_account_may_assume_it(aws):
    tf = aws["tf"]
    (role,) = [r for r in resources(tf, "aws_iam_role").values() if r["name"] == "test-autoscaler"]
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert trust["Condition"] == {
        "StringEquals": {
            "aws:RequestTag/eks-cluster-name": CLUSTER,
            "aws:RequestTag/kubernetes-namespace": "kube-system",
            "aws:RequestTag/kubernetes-service-account": "cluster-autoscaler",
        }
    }
    assert role["tags"] == {"llm-serving-stacks:identity": "node-autoscaler"} and role["max_session_duration"] == 3600
    (association,) = resources(tf, "aws_eks_pod_identity_association").values()
    assert (association["cluster_name"], association["namespace"], association["service_account"]) == (
        CLUSTER,
        "kube-system",
        "cluster-autoscaler",
    )
    assert association["role_arn"].startswith("${aws_iam_role.autoscaler_role_")


# --- the node pools' Auto Scaling group tags ------------------------------------------


def test_a_gpu_pool_tells_the_autoscaler_its_gpus_labels_and_taints(aws):
    assert asg_tags(aws["tf"], "l4") == {
        "k8s.io/cluster-autoscaler/enabled": ("true", True),
        f"k8s.io/cluster-autoscaler/{CLUSTER}": ("owned", True),
        f"{TEMPLATE}resources/nvidia.com/gpu": ("1", False),
        f"{TEMPLATE}label/team": ("ml", False),
        f"{TEMPLATE}label/nvidia.com/gpu.product": ("NVIDIA-L4", False),
        f"{TEMPLATE}label/nvidia.com/gpu.count": ("1", False),
        f"{TEMPLATE}label/llm-serving-stacks/node-pool": ("l4", False),
        f"{TEMPLATE}label/k8s.amazonaws.com/accelerator": ("L4", False),
        f"{TEMPLATE}label/eks.amazonaws.com/capacityType": ("SPOT", False),
        f"{TEMPLATE}taint/dedicated": ("llm:NoSchedule", False),
        f"{TEMPLATE}taint/nvidia.com/gpu": ("present:NoSchedule", False),
        f"{TEMPLATE}taint/node.anyscale.com/accelerator-type": ("GPU:NoSchedule", False),
        f"{TEMPLATE}taint/node.anyscale.com/capacity-type": ("SPOT:NoSchedule", False),
    }


def test_the_template_matches_what_the_nodes_get(aws):
    pool = aws["pools"]["l4"]
    tags = asg_tags(aws["tf"], "l4")
    labels = {k.removeprefix(f"{TEMPLATE}label/"): v for k, (v, _) in tags.items() if k.startswith(f"{TEMPLATE}label/")}
    assert labels == {**pool.labels, "eks.amazonaws.com/capacityType": "SPOT"}
    taints = {k.removeprefix(f"{TEMPLATE}taint/"): v for k, (v, _) in tags.items() if k.startswith(f"{TEMPLATE}taint/")}
    assert taints == {t.key: f"{t.value}:{t.effect}" for t in pool.taints}
    (node_group,) = [n for rid, n in resources(aws["tf"], "aws_eks_node_group").items() if rid.startswith("l4_")]
    assert node_group["labels"] == pool.labels and pool.labels["k8s.amazonaws.com/accelerator"] == "L4"


def test_a_cpu_pool_gets_auto_discovery_only(aws):
    assert asg_tags(aws["tf"], "system") == {
        "k8s.io/cluster-autoscaler/enabled": ("true", True),
        f"k8s.io/cluster-autoscaler/{CLUSTER}": ("owned", True),
    }
    assert "k8s.amazonaws.com/accelerator" not in aws["pools"]["system"].labels


def test_a_pool_without_the_option_is_left_alone(aws):
    assert asg_tags(aws["tf"], "h100") == {}
    assert aws["pools"]["h100"].autoscaling_group_tags == []
    assert "k8s.amazonaws.com/accelerator" not in aws["pools"]["h100"].labels


def test_tag_resources_keep_their_ids_when_labels_change():
    stack = new_stack("ids")
    role = NodeRole(stack, "nodes", role_name="n")
    pools = [
        GpuNodePool(
            stack,
            f"p{i}",
            cluster_name=CLUSTER,
            node_group_name=f"g{i}",
            pool_name="l4",
            node_role=role,
            subnet_ids=SUBNETS,
            instance_types=["g6.xlarge"],
            labels=labels,
            autoscaler_cluster_name=CLUSTER,
        )
        for i, labels in enumerate(({}, {"a-team": "x"}))
    ]
    ids = [{t.node.id for t in pool.autoscaling_group_tags} for pool in pools]
    assert ids[0] < ids[1] and len(ids[1] - ids[0]) == 1


def test_a_created_clusters_name_is_a_reference_in_tags_and_policy(created):
    (tag,) = [
        t["tag"] for t in resources(created, "aws_autoscaling_group_tag").values() if t["tag"]["value"] == "owned"
    ]
    assert re.fullmatch(r"k8s\.io/cluster-autoscaler/\$\{aws_eks_cluster\.cluster_[A-Z0-9_]+\.name\}", tag["key"])
    scale = statements(created)["ScaleClusterGroups"]
    (key,) = [k for k in scale["Condition"]["StringEquals"] if "enabled" not in k]
    assert key == f"aws:ResourceTag/{tag['key']}"


# --- the release --------------------------------------------------------------------


def test_the_release_finds_this_clusters_groups_and_uses_the_pod_identity_service_account(platform):
    release, values = platform["kube-system"]
    chart = CHARTS["cluster-autoscaler"]
    assert (release["name"], release["repository"], release["chart"], release["version"]) == (
        "cluster-autoscaler",
        chart.repository,
        "cluster-autoscaler",
        "9.59.0",
    )
    assert (release["atomic"], release["wait"]) == (True, True)
    assert values["cloudProvider"] == "aws" and values["awsRegion"] == REGION
    assert values["autoDiscovery"] == {"clusterName": CLUSTER}
    assert values["rbac"] == {"serviceAccount": {"create": True, "name": "cluster-autoscaler"}}


def test_defaults_suit_expensive_gpu_nodes(platform):
    _, values = platform["kube-system"]
    assert values["extraArgs"] == {
        "expander": "least-waste",
        "scale-down-unneeded-time": "15m",
        "scale-down-delay-after-add": "15m",
        "balance-similar-node-groups": True,
        "skip-nodes-with-local-storage": False,
    }
    assert values["securityContext"]["runAsNonRoot"] is True
    assert values["containerSecurityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert values["resources"]["requests"] == {"cpu": "100m", "memory": "300Mi"}


def test_settings_are_passed_through(platform):
    _, values = platform["autoscaling"]
    assert values["rbac"]["serviceAccount"]["name"] == "ca"
    assert values["extraArgs"] == {
        "expander": "most-pods",
        "scale-down-unneeded-time": "30m",
        "scale-down-delay-after-add": "20m",
        "balance-similar-node-groups": False,
        "skip-nodes-with-local-storage": True,
    }


def key_paths(values: dict, prefix: tuple[str, ...] = ()):
    for key, value in values.items():
        path = (*prefix, key)
        yield path
        if isinstance(value, dict) and ".".join(path) not in FREE_FORM:
            yield from key_paths(value, path)


def test_every_key_set_is_in_the_charts_values_file(platform):
    text = SCHEMA.read_text()
    chart = yaml.safe_load(text)
    for _, values in platform.values():
        for path in key_paths(values):
            node = chart
            for key in path:
                assert isinstance(node, dict) and key in node, f"{'.'.join(path)} is not in {SCHEMA.name}"
                node = node[key]
        # extraArgs is free-form: each flag must be one the file lists (commented out) among extraArgs.
        listed = set(
            re.findall(r"^  # ([a-z-]+):", text.split("\nextraArgs:")[1].split("\n# customArgs")[0], re.MULTILINE)
        )
        assert set(values["extraArgs"]) <= listed


def test_the_ray_pod_annotation_is_what_the_autoscaler_honors():
    assert RAY_POD_ANNOTATIONS == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}


def test_the_pure_module_loads_no_cdktf():
    """Service specs import RAY_POD_ANNOTATIONS; that must not cost the provider bindings."""
    code = (
        "import sys, infra.compute.autoscaling; "
        "sys.exit(any(m.split('.')[0] in ('cdktf', 'constructs', 'jsii') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60, check=False).returncode == 0


# --- props that are refused -----------------------------------------------------------


def _identity(**kw):
    props = {"role_name": "r", "cluster_name": CLUSTER, "account_id": ACCOUNT, "region": REGION, **kw}
    return lambda s: ClusterAutoscalerIdentity(s, "i", **props)


def _release(**kw):
    props = {"cluster_name": CLUSTER, "region": REGION, **kw}
    return lambda s: ClusterAutoscaler(s, "a", **props)


def _pool(cls=GpuNodePool, **kw):
    def build(s):
        props = {
            "cluster_name": CLUSTER,
            "node_group_name": "g",
            "pool_name": "p",
            "node_role": NodeRole(s, "r", role_name="r"),
            "subnet_ids": SUBNETS,
            "instance_types": ["g6.xlarge"],
            "autoscaler_cluster_name": CLUSTER,
            **kw,
        }
        return cls(s, "p", **props)

    return build


INVALID = [
    ("identity-role-name", _identity(role_name="a b"), "role_name"),
    ("identity-cluster", _identity(cluster_name="-x"), "cluster_name"),
    ("identity-account", _identity(account_id="123"), "account_id"),
    ("identity-region", _identity(region="Ireland"), "region"),
    ("identity-region-partition", _identity(region="cn-north-1"), "region"),
    ("identity-partition", _identity(partition="aws-eu"), "partition"),
    ("identity-namespace", _identity(namespace="Kube_System"), "namespace"),
    ("identity-service-account", _identity(service_account="a/b"), "service_account"),
    ("release-cluster", _release(cluster_name="bad name"), "cluster_name"),
    ("release-region", _release(region="moon-1"), "region"),
    ("release-namespace", _release(namespace="Kube"), "namespace"),
    ("release-service-account", _release(service_account="CA"), "service_account"),
    ("release-expander-priority", _release(expander="priority"), "expander.*least-waste"),
    ("release-unneeded-zero", _release(scale_down_unneeded_minutes=0), "scale_down_unneeded_minutes"),
    ("release-unneeded-bool", _release(scale_down_unneeded_minutes=True), "scale_down_unneeded_minutes"),
    (
        "release-delay-too-long",
        _release(scale_down_delay_after_add_minutes=24 * 60 + 1),
        "scale_down_delay_after_add_minutes",
    ),
    ("pool-autoscaler-cluster", _pool(autoscaler_cluster_name="bad name"), "autoscaler_cluster_name"),
    (
        "pool-cpu-autoscaler-cluster",
        _pool(NodePool, instance_types=["m7i.large"], autoscaler_cluster_name=""),
        "autoscaler_cluster_name",
    ),
    ("pool-accelerator-label", _pool(labels={"k8s.amazonaws.com/accelerator": "other"}), "labels"),
    (
        "pool-taint-two-effects",
        _pool(taints=[Taint("dedicated", "llm"), Taint("dedicated", "llm", "NoExecute")]),
        "taints",
    ),
    ("pool-label-too-long-for-a-tag", _pool(labels={f"{'a' * 80}.example.com/team": "ml"}), "labels/taints"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    stack = TerraformStack(cdktf_app(), "invalid")
    with pytest.raises(ValueError, match=needle):
        build(stack)


def test_two_effects_of_one_taint_are_fine_without_the_autoscaler():
    taints = [Taint("dedicated", "llm"), Taint("dedicated", "llm", "NoExecute")]
    pool = _pool(taints=taints, autoscaler_cluster_name=None)(new_stack("no-autoscaler"))
    assert pool.autoscaling_group_tags == []


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (rules.cluster_reference_problem, "${TfToken[TOKEN.12]}", ["bad name", "", "-c"]),
        (rules.expander_problem, "least-waste", ["priority", "price", "least-waste,random", ""]),
        (rules.minutes_problem, 15, [0, -1, 1441, True, 1.5]),
        (rules.asg_tag_key_problem, "k8s.io/cluster-autoscaler/" + "c" * 100, ["k" * 129]),
        (rules.node_template_taints_problem, ["a", "b"], [["a", "a"]]),
    ],
)
def test_autoscaler_rules_accept_the_good_and_name_what_is_wrong_with_the_bad(rule, good, bad):
    assert rule(good) is None
    for value in bad:
        assert rule(value), value
