"""The network EFA (Elastic Fabric Adapter) pools share, and those pools' launch templates and node
groups.

One construct stack (a created cluster) and one with a looked-up cluster, each synthesized once
per module.
"""

from __future__ import annotations

import pytest

import conftest
from conftest import resources
from infra import EfaNetwork, EksCluster, ExistingCluster, GpuNodePool, NodePool, NodeRole
from infra.compute.efa.plugin import EFA_RESOURCE

ACCOUNT, REGION = "123456789012", "eu-west-1"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def body(resource: dict) -> dict:
    """A resource without cdktf's metadata (its construct path names the stack)."""
    return {k: v for k, v in resource.items() if k != "//"}


def pool(stack, cluster, role, name: str, instance_types: list[str], **options) -> GpuNodePool:
    return GpuNodePool(
        stack,
        name,
        cluster_name=cluster.name,
        node_group_name=f"test-{name}",
        pool_name=name,
        node_role=role,
        instance_types=instance_types,
        **{"subnet_ids": SUBNETS, **options},
    )


def _cluster_stack(name: str, *, with_efa: bool) -> dict:
    stack = conftest.new_stack(name, REGION)
    cluster = EksCluster(
        stack, "cluster", name="test", version="1.35", subnet_ids=SUBNETS, kms_key_arn=KEY, account_id=ACCOUNT
    )
    role = NodeRole(stack, "nodes", role_name="test-nodes")
    built = {"cluster": cluster}
    if with_efa:
        network = EfaNetwork(stack, "efa", cluster=cluster, name="test-efa", subnet_ids=SUBNETS)
        built["network"] = network
        built["p5"] = pool(
            stack,
            cluster,
            role,
            "p5",
            ["p5.48xlarge"],
            subnet_ids=network.subnet_ids,
            efa=network,
            autoscaler_cluster_name="test",
        )
        built["g6e"] = pool(
            stack, cluster, role, "g6e", ["g6e.8xlarge", "g6e.16xlarge"], subnet_ids=network.subnet_ids, efa=network
        )
    built["plain"] = pool(stack, cluster, role, "plain", ["g6e.12xlarge"], autoscaler_cluster_name="test")
    built["tf"] = conftest.synth_stack(stack)
    return built


@pytest.fixture(scope="module")
def built():
    """Two EFA pools (32 and 1 interfaces) on one network, and a pool without EFA, on a created cluster."""
    return _cluster_stack("efa", with_efa=True)


@pytest.fixture(scope="module")
def without_efa():
    """The same stack without the EFA network and pools."""
    return _cluster_stack("no-efa", with_efa=False)


@pytest.fixture(scope="module")
def looked_up():
    """An EFA pool on a looked-up cluster whose subnets are known only at plan time."""
    stack = conftest.new_stack("efa-existing", REGION)
    cluster = ExistingCluster(stack, "cluster", name="ml")
    role = NodeRole(stack, "nodes", role_name="ml-nodes")
    network = EfaNetwork(stack, "efa", cluster=cluster, name="ml-efa", subnet_ids=cluster.subnet_ids)
    pool(stack, cluster, role, "p5", ["p5.48xlarge"], subnet_ids=network.subnet_ids, efa=network)
    return conftest.synth_stack(stack)


def launch_template(tf: dict, pool_name: str) -> dict:
    (template,) = [t for t in resources(tf, "aws_launch_template").values() if t["name_prefix"] == f"test-{pool_name}-"]
    return template


def node_group(tf: dict, pool_name: str) -> dict:
    (group,) = [g for g in resources(tf, "aws_eks_node_group").values() if g["node_group_name"] == f"test-{pool_name}"]
    return group


def group_ref(tf: dict) -> str:
    (sid,) = resources(tf, "aws_security_group")
    return f"${{aws_security_group.{sid}.id}}"


def test_the_security_group_admits_only_its_members_and_sends_only_to_them(built):
    tf = built["tf"]
    (group,) = resources(tf, "aws_security_group").values()
    assert (group["name_prefix"], group["tags"]) == ("test-efa-", {"Name": "test-efa"})
    assert group["lifecycle"] == {"create_before_destroy": True}  # replaced only once the pools moved off it
    assert group["vpc_id"].endswith(".vpc_config[0].vpc_id}")
    assert "ingress" not in group and "egress" not in group  # Terraform also removes EC2's allow-all egress
    ref = group_ref(tf)
    (ingress,) = resources(tf, "aws_vpc_security_group_ingress_rule").values()
    (egress,) = resources(tf, "aws_vpc_security_group_egress_rule").values()
    for rule in (ingress, egress):
        assert body(rule) == {
            "security_group_id": ref,
            "referenced_security_group_id": ref,
            "ip_protocol": "-1",
            "description": rule["description"],
        }
        assert rule["description"].startswith("EFA: all traffic")
    assert not resources(tf, "aws_security_group_rule")


def test_efa_interfaces_are_in_the_efa_and_the_cluster_security_groups_without_a_subnet(built):
    tf = built["tf"]
    interfaces = launch_template(tf, "p5")["network_interfaces"]
    assert len(interfaces) == 32
    cluster_group = "${aws_eks_cluster.cluster_A4C38409.vpc_config[0].cluster_security_group_id}"
    for card, interface in enumerate(interfaces):
        assert interface == {
            "network_card_index": card,
            "device_index": 0 if card == 0 else 1,
            "interface_type": "efa",
            "security_groups": [group_ref(tf), cluster_group],
            "delete_on_termination": "true",
            "associate_public_ip_address": "false",
            "description": f"EFA, network card {card}",
        }
        assert "subnet_id" not in interface  # EKS takes subnets from the node group only
    assert len(launch_template(tf, "g6e")["network_interfaces"]) == 1
    assert (built["p5"].efa_interfaces, built["g6e"].efa_interfaces, built["plain"].efa_interfaces) == (32, 1, 0)


def test_efa_pools_keep_imdsv2_encryption_and_tags(built):
    for name in ("p5", "g6e"):
        template = launch_template(built["tf"], name)
        assert template["metadata_options"] == {
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
        }
        assert all(
            d["ebs"]["encrypted"] == "true" and d["ebs"]["volume_type"] == "gp3"
            for d in template["block_device_mappings"]
        )
        assert [s["resource_type"] for s in template["tag_specifications"]] == ["instance", "volume"]
        assert "vpc_security_group_ids" not in template


def test_efa_pools_launch_in_one_subnet_and_share_the_security_group(built):
    tf = built["tf"]
    assert node_group(tf, "p5")["subnet_ids"] == node_group(tf, "g6e")["subnet_ids"] == [SUBNETS[0]]
    assert node_group(tf, "plain")["subnet_ids"] == SUBNETS
    groups = {
        tuple(i["security_groups"]) for name in ("p5", "g6e") for i in launch_template(tf, name)["network_interfaces"]
    }
    assert len(groups) == 1  # prefill and decode pools reach each other


def test_a_looked_up_clusters_first_subnet_by_id_and_its_security_group(looked_up):
    (group,) = resources(looked_up, "aws_eks_node_group").values()
    assert group["subnet_ids"] == [
        "${element(sort(tolist(data.aws_eks_cluster.cluster_A4C38409.vpc_config[0].subnet_ids)), 0)}"
    ]
    (interface,) = launch_template(looked_up, "p5")["network_interfaces"][:1]
    assert (
        interface["security_groups"][1]
        == "${data.aws_eks_cluster.cluster_A4C38409.vpc_config[0].cluster_security_group_id}"
    )
    (sg,) = resources(looked_up, "aws_security_group").values()
    assert sg["vpc_id"] == "${data.aws_eks_cluster.cluster_A4C38409.vpc_config[0].vpc_id}"


def test_a_pool_scaled_to_zero_shows_the_autoscaler_its_efa_interfaces(built):
    tags = {t["tag"]["key"]: t["tag"] for t in resources(built["tf"], "aws_autoscaling_group_tag").values()}
    efa = tags[f"k8s.io/cluster-autoscaler/node-template/resources/{EFA_RESOURCE}"]
    assert (efa["value"], efa["propagate_at_launch"]) == ("32", False)
    assert sum(EFA_RESOURCE in key for key in tags) == 1  # the plain pool's template has none


def test_a_pool_without_efa_synthesizes_as_before(built, without_efa):
    """The plain pool is the same Terraform with or without EFA pools beside it, and lists no interfaces."""
    for kind in ("aws_launch_template", "aws_eks_node_group", "aws_autoscaling_group_tag"):
        mine = {k: body(v) for k, v in resources(built["tf"], kind).items() if k.startswith("plain_")}
        alone = {k: body(v) for k, v in resources(without_efa["tf"], kind).items() if k.startswith("plain_")}
        assert mine and mine == alone, kind
    assert "network_interfaces" not in launch_template(built["tf"], "plain")
    assert not any(
        k in without_efa["tf"]["resource"] for k in ("aws_security_group", "aws_vpc_security_group_ingress_rule")
    )


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"instance_types": ["g6e.xlarge"]}, "instance_types: 'g6e.xlarge' has no EFA"),
        ({"instance_types": ["g6e.12xlarge", "g6e.24xlarge"]}, "instance_types: 'g6e.24xlarge' has 2 EFA interfaces"),
        ({"subnet_ids": SUBNETS[:2]}, "subnet_ids: 2 subnets: an EFA pool launches in one subnet"),
    ],
)
def test_an_efa_pool_refuses_what_efa_cannot_do(options, needle):
    stack = conftest.new_stack("bad", REGION)
    cluster = ExistingCluster(stack, "cluster", name="ml")
    network = EfaNetwork(stack, "efa", cluster=cluster, name="ml-efa", subnet_ids=SUBNETS)
    role = NodeRole(stack, "nodes", role_name="ml-nodes")
    settings = {"instance_types": ["p5.48xlarge"], "subnet_ids": network.subnet_ids, **options}
    with pytest.raises(ValueError, match=needle):
        pool(stack, cluster, role, "p5", settings.pop("instance_types"), efa=network, **settings)
    with pytest.raises(ValueError, match="'m7i.large' is not in the catalog"):
        NodePool(
            stack,
            "cpu",
            cluster_name="ml",
            node_group_name="ml-cpu",
            pool_name="cpu",
            node_role=role,
            subnet_ids=network.subnet_ids,
            instance_types=["m7i.large"],
            efa=network,
        )
    with pytest.raises(ValueError, match="name: 'sg-efa'"):
        EfaNetwork(stack, "efa2", cluster=cluster, name="sg-efa", subnet_ids=SUBNETS)
    with pytest.raises(ValueError, match="subnet_ids"):
        EfaNetwork(stack, "efa3", cluster=cluster, name="ml-efa", subnet_ids=["subnet-1"])
