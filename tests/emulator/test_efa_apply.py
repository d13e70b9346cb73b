"""EFA node pools applied with real Terraform against the local AWS, then read back.

dev with a p5.48xlarge pool on EFA is synthesized; the part of its stack EFA touches (the node
role, every node pool, the EFA network) is applied through the emulator, the same way as the
shipped environments, and read back through boto3. The rest of the stack is what
tests/emulator/test_local_deploy.py applies already; leaving it out keeps this to ~30 s.
"""

from __future__ import annotations

import json

import pytest
import yaml

from stacks.config.loader import ENVIRONMENTS_DIR
from local_apply import only, start

# The construct paths (under the stack) of what EFA touches.
KEPT = ("node-role/", "pool-", "efa/")


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    from stacks.planning.plan import plan_file
    from stacks.synth.run import synthesize

    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    data["node_pools"].append(
        {"name": "p5", "accelerator": "H100", "instance_types": ["p5.48xlarge"], "max_size": 1, "efa": True}
    )
    root = tmp_path_factory.mktemp("efa-local")
    (root / "dev.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    plan = plan_file(root / "dev.yaml")
    synthesize([plan], root / "cdktf.out", replace_all=True)
    tf = json.loads((root / "cdktf.out" / "stacks" / "dev" / "cdk.tf.json").read_text())
    deployment = start(plan, only(tf, KEPT), root)
    try:
        deployment.apply()
        yield deployment, plan
    finally:
        deployment.close()


def efa_group(deployment, plan) -> dict:
    (group,) = deployment.emulator.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:Name", "Values": [f"{plan.names.base}-efa"]}]
    )["SecurityGroups"]
    return group


def test_the_efa_group_lets_members_reach_each_other_and_nothing_else(applied):
    deployment, plan = applied
    group = efa_group(deployment, plan)
    for direction in ("IpPermissions", "IpPermissionsEgress"):  # Terraform removed EC2's allow-all egress
        (permission,) = group[direction]
        assert permission["IpProtocol"] == "-1"
        assert [pair["GroupId"] for pair in permission["UserIdGroupPairs"]] == [group["GroupId"]]
        assert permission["UserIdGroupPairs"][0]["Description"].startswith("EFA: all traffic")
        assert (permission["IpRanges"], permission["Ipv6Ranges"], permission["PrefixListIds"]) == ([], [], [])


def test_the_launch_template_holds_every_efa_interface_and_no_subnet(applied):
    deployment, plan = applied
    ec2, eks = deployment.emulator.client("ec2"), deployment.emulator.client("eks")
    group = efa_group(deployment, plan)
    node_group = eks.describe_nodegroup(clusterName="ml-dev", nodegroupName=plan.names.node_group("p5"))["nodegroup"]
    (version,) = ec2.describe_launch_template_versions(
        LaunchTemplateId=node_group["launchTemplate"]["id"], Versions=["$Latest"]
    )["LaunchTemplateVersions"]
    interfaces = version["LaunchTemplateData"]["NetworkInterfaces"]
    assert len(interfaces) == 32
    for card, interface in enumerate(sorted(interfaces, key=lambda i: i["NetworkCardIndex"])):
        assert (interface["NetworkCardIndex"], interface["DeviceIndex"], interface["InterfaceType"]) == (
            card,
            0 if card == 0 else 1,
            "efa",
        )
        # moto's EKS clusters have no cluster security group (real ones always do), so that one reads back empty.
        assert group["GroupId"] in interface["Groups"] and len(interface["Groups"]) == 2
        assert "SubnetId" not in interface and interface["AssociatePublicIpAddress"] is False
    assert version["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"


def test_efa_nodes_launch_in_the_clusters_first_subnet_others_in_all(applied):
    deployment, plan = applied
    eks = deployment.emulator.client("eks")
    subnets = eks.describe_cluster(name="ml-dev")["cluster"]["resourcesVpcConfig"]["subnetIds"]
    groups = {
        p.name: eks.describe_nodegroup(clusterName="ml-dev", nodegroupName=plan.names.node_group(p.name))["nodegroup"]
        for p in plan.pools
    }
    assert groups["p5"]["subnets"] == [sorted(subnets)[0]]
    assert sorted(groups["l4"]["subnets"]) == sorted(subnets)


def test_a_second_plan_is_clean(applied):
    deployment, _ = applied
    assert deployment.pending_changes() == []
