"""NodeRole, NodePool and GpuNodePool on their own: hardened launch templates, GPU labels and taints,
defaults, and validation.

Two small stacks (one in the aws-cn partition), each synthesized once per module; the validation
cases build pools without synthesizing anything.
"""

from __future__ import annotations

import pytest
from cdktf import TerraformStack

import conftest
from conftest import resources
from infra import GpuNodePool, NodePool, NodeRole, Taint
from terraform_json import one, role_ref, trust_of

ACCOUNT, REGION, CLUSTER = "123456789012", "eu-west-1", "test"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]


def new_stack(name: str = "test") -> TerraformStack:
    return conftest.new_stack(name, REGION)


synth = conftest.synth_stack


@pytest.fixture(scope="module")
def built():
    """A CPU pool, a spot AL2023 GPU pool with its own labels and taints, and a GPU pool with defaults."""
    stack = new_stack("pools")
    role = NodeRole(stack, "nodes", role_name="test-nodes", enable_ssm=True)
    system = NodePool(
        stack,
        "system",
        cluster_name=CLUSTER,
        node_group_name="test-system",
        pool_name="system",
        node_role=role,
        subnet_ids=SUBNETS,
        instance_types=["m7i.large"],
        tags={"team": "ml"},
    )
    gpu = GpuNodePool(
        stack,
        "gpu",
        cluster_name=CLUSTER,
        node_group_name="test-gpu",
        pool_name="a10g",
        node_role=role,
        subnet_ids=SUBNETS,
        instance_types=["g5.12xlarge", "g5.24xlarge"],
        capacity_type="SPOT",
        max_size=4,
        ami_type="AL2023_x86_64_NVIDIA",
        root_volume_gib=300,
        http_put_response_hop_limit=2,
        labels={"team": "ml"},
        taints=[Taint("dedicated", "llm")],
    )
    bottlerocket = GpuNodePool(
        stack,
        "l4",
        cluster_name=CLUSTER,
        node_group_name="test-l4",
        pool_name="l4",
        node_role=role,
        subnet_ids=SUBNETS,
        instance_types=["g6.xlarge"],
    )
    return {"tf": synth(stack), "gpu": gpu, "system": system, "l4": bottlerocket}


@pytest.fixture(scope="module")
def china():
    """A node role in the aws-cn partition."""
    stack = new_stack("china")
    NodeRole(stack, "nodes", role_name="cn-nodes", partition="aws-cn")
    return synth(stack)


def launch_template_of(tf: dict, group: dict) -> dict:
    rid = group["launch_template"]["id"].split(".")[1]
    assert group["launch_template"]["version"] == f"${{aws_launch_template.{rid}.latest_version}}"
    return resources(tf, "aws_launch_template")[rid]


def test_launch_templates_require_imdsv2_and_encrypt_volumes(built):
    tf = built["tf"]
    for name, hop in (("test-system", 1), ("test-gpu", 2), ("test-l4", 1)):
        template = launch_template_of(tf, one(tf, "aws_eks_node_group", node_group_name=name))
        assert template["metadata_options"] == {
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": hop,
        }
        for device in template["block_device_mappings"]:
            assert device["ebs"]["encrypted"] == "true" and device["ebs"]["volume_type"] == "gp3"
            assert "kms_key_id" not in device["ebs"]  # the AWS-managed EBS key: no Auto Scaling grants needed
        assert "image_id" not in template  # EKS picks the AMI for the AMI type
        assert {s["resource_type"] for s in template["tag_specifications"]} == {"instance", "volume"}


def test_instances_and_volumes_are_tagged(built):
    tf = built["tf"]
    group = one(tf, "aws_eks_node_group", node_group_name="test-system")
    for spec in launch_template_of(tf, group)["tag_specifications"]:
        assert spec["tags"] == {"team": "ml", "Name": "test-system"}


def test_volume_layout_follows_the_ami_family(built):
    tf = built["tf"]

    def volumes(name: str) -> dict[str, int]:
        template = launch_template_of(tf, one(tf, "aws_eks_node_group", node_group_name=name))
        return {d["device_name"]: d["ebs"]["volume_size"] for d in template["block_device_mappings"]}

    assert volumes("test-system") == {"/dev/xvda": 50}  # AL2023: one root volume
    assert volumes("test-gpu") == {"/dev/xvda": 300}
    assert volumes("test-l4") == {"/dev/xvda": 4, "/dev/xvdb": 200}  # Bottlerocket: OS + data


def test_gpu_pool_labels_taints_and_scaling(built):
    tf, gpu = built["tf"], built["gpu"]
    group = one(tf, "aws_eks_node_group", node_group_name="test-gpu")
    assert group["ami_type"] == "AL2023_x86_64_NVIDIA"
    assert group["capacity_type"] == "SPOT"
    assert group["instance_types"] == ["g5.12xlarge", "g5.24xlarge"]
    assert group["scaling_config"] == {"min_size": 0, "max_size": 4, "desired_size": 0}
    assert group["update_config"] == {"max_unavailable": 1}
    assert group["lifecycle"] == {"ignore_changes": ["scaling_config[0].desired_size"]}
    assert group["labels"] == {
        "team": "ml",
        "nvidia.com/gpu.product": "NVIDIA-A10G",
        "nvidia.com/gpu.count": "4",
        "llm-serving-stacks/node-pool": "a10g",
    }
    assert gpu.labels == group["labels"]
    assert [(t["key"], t["value"], t["effect"]) for t in group["taint"]] == [
        ("dedicated", "llm", "NO_SCHEDULE"),
        ("nvidia.com/gpu", "present", "NO_SCHEDULE"),
        ("node.anyscale.com/accelerator-type", "GPU", "NO_SCHEDULE"),
        ("node.anyscale.com/capacity-type", "SPOT", "NO_SCHEDULE"),
    ]
    assert (gpu.gpus_per_node, gpu.gpu.name, gpu.capacity_type, gpu.min_size, gpu.max_size) == (4, "A10G", "SPOT", 0, 4)
    assert gpu.tolerations() == [
        {"key": t["key"], "operator": "Equal", "value": t["value"], "effect": "NoSchedule"} for t in group["taint"]
    ]
    assert gpu.node_selector() == {"llm-serving-stacks/node-pool": "a10g", "nvidia.com/gpu.product": "NVIDIA-A10G"}


def test_gpu_pool_defaults_scale_to_zero_on_bottlerocket(built):
    group = one(built["tf"], "aws_eks_node_group", node_group_name="test-l4")
    assert group["ami_type"] == "BOTTLEROCKET_x86_64_NVIDIA"
    assert group["capacity_type"] == "ON_DEMAND"
    assert group["scaling_config"] == {"min_size": 0, "max_size": 1, "desired_size": 0}
    assert group["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert {"key": "node.anyscale.com/capacity-type", "value": "ON_DEMAND", "effect": "NO_SCHEDULE"} in group["taint"]


def test_cpu_pool_has_no_gpu_taints_and_waits_for_the_node_role(built):
    group = one(built["tf"], "aws_eks_node_group", node_group_name="test-system")
    assert group["ami_type"] == "AL2023_x86_64_STANDARD"
    assert "taint" not in group
    assert group["labels"] == {"llm-serving-stacks/node-pool": "system"}
    assert group["scaling_config"] == {"min_size": 0, "max_size": 1, "desired_size": 0}  # the defaults
    # Instances join only once the role has its policies.
    assert len(group["depends_on"]) == 4
    assert all(d.startswith("aws_iam_role_policy_attachment.nodes_") for d in group["depends_on"])
    assert group["node_role_arn"].startswith("${aws_iam_role.nodes_role")


def test_node_role_trusts_ec2_and_has_the_worker_policies(built):
    tf = built["tf"]
    assert trust_of(tf, "test-nodes")["TrustService"]["Principal"] == {"Service": "ec2.amazonaws.com"}
    ref = role_ref(tf, "test-nodes")
    attached = {a["policy_arn"] for a in resources(tf, "aws_iam_role_policy_attachment").values() if a["role"] == ref}
    assert attached == {
        f"arn:aws:iam::aws:policy/{name}"
        for name in (
            "AmazonEKSWorkerNodePolicy",
            "AmazonEC2ContainerRegistryPullOnly",
            "AmazonEKS_CNI_Policy",
            "AmazonSSMManagedInstanceCore",
        )
    }


def test_the_node_role_says_what_it_is_for(built):
    (role,) = resources(built["tf"], "aws_iam_role").values()
    assert role["tags"] == {"llm-serving-stacks:identity": "node"}


def test_china_partition_arns_and_endpoints(china):
    # EC2 uses the China DNS suffix.
    assert trust_of(china, "cn-nodes")["TrustService"]["Principal"] == {"Service": "ec2.amazonaws.com.cn"}
    attached = [a["policy_arn"] for a in resources(china, "aws_iam_role_policy_attachment").values()]
    assert len(attached) == 3 and all(arn.startswith("arn:aws-cn:iam::aws:policy/") for arn in attached)


def test_pools_leave_their_auto_scaling_groups_untagged_unless_asked(built):
    assert resources(built["tf"], "aws_autoscaling_group_tag") == {}
    assert "k8s.amazonaws.com/accelerator" not in built["gpu"].labels
    assert NodePool.DEFAULTS["autoscaler_cluster_name"] is GpuNodePool.DEFAULTS["autoscaler_cluster_name"] is None


def test_node_pools_share_one_options_type_and_refuse_unknown_options():
    from infra import NodePoolOptions

    assert set(GpuNodePool.DEFAULTS) == set(NodePool.DEFAULTS) == set(NodePoolOptions.__annotations__)
    assert (GpuNodePool.DEFAULTS["ami_type"], NodePool.DEFAULTS["ami_type"]) == (
        "BOTTLEROCKET_x86_64_NVIDIA",
        "AL2023_x86_64_STANDARD",
    )
    with pytest.raises(TypeError, match="unknown option.*max_sise"):
        _pool(GpuNodePool, max_sise=3)(new_stack())


def test_pool_defaults_are_the_environment_files():
    """A pool left at its defaults is the same in a cdktf app of one's own and from an environment file."""
    from stacks.config.schema import NodePool as PoolConfig

    schema = {name: field.default for name, field in PoolConfig.model_fields.items()}
    for cls in (NodePool, GpuNodePool):
        defaults = cls.DEFAULTS
        assert (defaults["min_size"], defaults["max_size"], defaults["desired_size"]) == (
            schema["min_size"],
            schema["max_size"],
            schema["desired_size"],
        )
        assert defaults["capacity_type"] == schema["capacity_type"].upper()
        assert (defaults["labels"], list(defaults["taints"])) == (schema["labels"], schema["taints"])
        assert (defaults["efa"] is not None) is schema["efa"]


# --- validation: every ValueError a caller can hit ----------------------------------------


def _pool(cls=NodePool, **kw):
    def build(s):
        role = NodeRole(s, "r", role_name="r")
        props = {
            "cluster_name": "c",
            "node_group_name": "g",
            "pool_name": "p",
            "node_role": role,
            "subnet_ids": SUBNETS,
            "instance_types": ["m7i.large"] if cls is NodePool else ["g5.xlarge"],
            **kw,
        }
        return cls(s, "p", **props)

    return build


INVALID = [
    ("node-role-name", lambda s: NodeRole(s, "r", role_name="a b"), "role_name"),
    ("node-role-partition", lambda s: NodeRole(s, "r", role_name="r", partition="gov"), "partition"),
    ("pool-node-group-name", _pool(node_group_name="-g"), "node_group_name"),
    ("pool-name", _pool(pool_name="has space"), "pool_name"),
    ("pool-no-instance-types", _pool(instance_types=[]), "instance_types"),
    ("pool-capacity-type", _pool(capacity_type="RESERVED"), "capacity_type"),
    ("pool-gpu-ami-on-cpu", _pool(ami_type="BOTTLEROCKET_x86_64_NVIDIA"), "ami_type"),
    ("pool-unknown-ami", _pool(ami_type="AL2_x86_64"), "ami_type"),
    ("gpu-pool-cpu-ami", _pool(GpuNodePool, ami_type="AL2023_x86_64_STANDARD"), "ami_type"),
    ("pool-min-above-max", _pool(min_size=3, max_size=2), "min_size/desired_size/max_size"),
    ("pool-desired-above-max", _pool(desired_size=9), "min_size/desired_size/max_size"),
    ("pool-desired-below-min", _pool(min_size=2, desired_size=1), "min_size/desired_size/max_size"),
    ("pool-negative-min", _pool(min_size=-1, desired_size=0), "min_size/desired_size/max_size"),
    ("pool-max-zero", _pool(GpuNodePool, max_size=0), "min_size/desired_size/max_size"),
    ("pool-hop-limit", _pool(http_put_response_hop_limit=3), "http_put_response_hop_limit"),
    ("pool-volume", _pool(root_volume_gib=8), "root_volume_gib"),
    ("pool-max-unavailable", _pool(max_unavailable=0), "max_unavailable"),
    ("pool-label-key", _pool(labels={"bad key": "x"}), "labels"),
    ("pool-label-value", _pool(labels={"team": "a b"}), "labels"),
    ("pool-label-derived", _pool(labels={"llm-serving-stacks/node-pool": "other"}), "labels"),
    ("gpu-pool-label-derived", _pool(GpuNodePool, labels={"nvidia.com/gpu.count": "8"}), "labels"),
    ("gpu-pool-duplicate-taint", _pool(GpuNodePool, taints=[Taint("nvidia.com/gpu", "true")]), "taints"),
    ("gpu-pool-cpu-type", _pool(GpuNodePool, instance_types=["m7i.large"]), "instance_types"),
    ("gpu-pool-mixed-gpus", _pool(GpuNodePool, instance_types=["g5.xlarge", "g6.xlarge"]), "instance_types.*g6.xlarge"),
    (
        "gpu-pool-mixed-counts",
        _pool(GpuNodePool, instance_types=["g5.xlarge", "g5.12xlarge"]),
        "instance_types.*g5.12xlarge",
    ),
    ("gpu-pool-no-instance-types", _pool(GpuNodePool, instance_types=[]), "instance_types"),
    ("pool-autoscaler-cluster", _pool(autoscaler_cluster_name="bad name"), "autoscaler_cluster_name"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    with pytest.raises(ValueError, match=needle):
        build(new_stack())
