"""EksCluster and ExistingCluster on their own: encryption, logs, access entries, the Pod Identity
agent, and validation.

Three small stacks (a public cluster with an admin and a node pool, private and looked-up
clusters, one in the aws-cn partition), each synthesized once per module; the validation cases
build clusters without synthesizing anything.
"""

from __future__ import annotations

import pytest
from cdktf import TerraformStack, Token

import conftest
from conftest import resources
from infra import EksCluster, EncryptionKey, ExistingCluster, NodePool, NodeRole
from terraform_json import one, role_ref, trust_of

ACCOUNT, REGION = "123456789012", "eu-west-1"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def new_stack(name: str = "test") -> TerraformStack:
    return conftest.new_stack(name, REGION)


synth = conftest.synth_stack


@pytest.fixture(scope="module")
def built():
    """A cluster with a public endpoint and one admin, under a created key, with a node pool on it."""
    stack = new_stack("cluster")
    key = EncryptionKey(
        stack,
        "key",
        alias="test-data",
        description="test",
        account_id=ACCOUNT,
        region=REGION,
        allow_cloudwatch_logs=True,
    )
    cluster = EksCluster(
        stack,
        "cluster",
        name="test",
        version="1.33",
        subnet_ids=SUBNETS,
        kms_key_arn=key.key_arn,
        account_id=ACCOUNT,
        endpoint_public_access=True,
        public_access_cidrs=["203.0.113.0/24"],
        admin_principal_arns=[f"arn:aws:iam::{ACCOUNT}:role/admin"],
    )
    NodePool(
        stack,
        "system",
        cluster_name=cluster.name,
        node_group_name="test-system",
        pool_name="system",
        node_role=NodeRole(stack, "nodes", role_name="test-nodes"),
        subnet_ids=SUBNETS,
        instance_types=["m7i.large"],
    )
    return {"tf": synth(stack), "cluster": cluster}


@pytest.fixture(scope="module")
def other():
    """A private cluster without listed admins, one with a name too long for its role's, and an existing cluster."""
    stack = new_stack("other")
    EksCluster(
        stack, "private", name="private", version="1.33", subnet_ids=SUBNETS, kms_key_arn=KEY, account_id=ACCOUNT
    )
    EksCluster(stack, "long", name="c" * 100, version="1.33", subnet_ids=SUBNETS, kms_key_arn=KEY, account_id=ACCOUNT)
    existing = ExistingCluster(stack, "existing", name="other", install_pod_identity_agent=True)
    return {"tf": synth(stack), "existing": existing}


@pytest.fixture(scope="module")
def china():
    """A cluster in the aws-cn partition."""
    stack = new_stack("china")
    EksCluster(
        stack,
        "cluster",
        name="cn",
        version="1.33",
        subnet_ids=SUBNETS,
        kms_key_arn=KEY.replace("arn:aws:", "arn:aws-cn:").replace(REGION, "cn-north-1"),
        account_id=ACCOUNT,
        partition="aws-cn",
    )
    return synth(stack)


def test_new_cluster_is_encrypted_logged_and_uses_access_entries(built):
    tf = built["tf"]
    cluster = one(tf, "aws_eks_cluster", name="test")
    assert cluster["version"] == "1.33"
    assert cluster["encryption_config"]["resources"] == ["secrets"]
    assert cluster["encryption_config"]["provider"]["key_arn"].startswith("${aws_kms_key.")
    assert cluster["enabled_cluster_log_types"] == ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    assert cluster["vpc_config"]["endpoint_private_access"] is True
    assert cluster["vpc_config"]["endpoint_public_access"] is True
    assert cluster["vpc_config"]["public_access_cidrs"] == ["203.0.113.0/24"]
    assert cluster["access_config"] == {
        "authentication_mode": "API",
        "bootstrap_cluster_creator_admin_permissions": False,
    }
    logs = one(tf, "aws_cloudwatch_log_group", name="/aws/eks/test/cluster")
    assert logs["retention_in_days"] == 365 and logs["kms_key_id"].startswith("${aws_kms_key.")
    # The log group exists before EKS would create an unencrypted one.
    assert any(d.startswith("aws_cloudwatch_log_group.") for d in cluster["depends_on"])
    assert one(tf, "aws_eks_access_entry")["principal_arn"] == f"arn:aws:iam::{ACCOUNT}:role/admin"
    association = one(tf, "aws_eks_access_policy_association")
    assert association["policy_arn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert association["access_scope"] == {"type": "cluster"}
    assert association["principal_arn"].startswith("${aws_eks_access_entry.")
    assert one(tf, "aws_eks_addon")["addon_name"] == "eks-pod-identity-agent"
    # Node groups reference the cluster resource, so Terraform creates it first.
    assert one(tf, "aws_eks_node_group", node_group_name="test-system")["cluster_name"].startswith("${aws_eks_cluster.")
    assert built["cluster"].subnet_ids == SUBNETS


def test_cluster_role_trusts_eks_with_the_cluster_policy(built):
    tf = built["tf"]
    trust = trust_of(tf, "test-cluster")["TrustService"]
    assert (trust["Principal"], trust["Action"]) == (
        {"Service": "eks.amazonaws.com"},
        ["sts:AssumeRole", "sts:TagSession"],
    )
    ref = role_ref(tf, "test-cluster")
    (attachment,) = [a for a in resources(tf, "aws_iam_role_policy_attachment").values() if a["role"] == ref]
    assert attachment["policy_arn"] == "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"


def test_private_cluster_without_admins_keeps_the_creator_as_admin(other):
    tf = other["tf"]
    cluster = one(tf, "aws_eks_cluster", name="private")
    assert cluster["vpc_config"]["endpoint_public_access"] is False
    assert "public_access_cidrs" not in cluster["vpc_config"]
    assert cluster["access_config"]["bootstrap_cluster_creator_admin_permissions"] is True
    assert "aws_eks_access_entry" not in tf["resource"]


def test_long_cluster_names_get_a_stable_role_name_within_iam_limits(other):
    names = [r["name"] for r in resources(other["tf"], "aws_iam_role").values()]
    (long_name,) = [n for n in names if n.startswith("ccc")]
    assert len(long_name) == 64 and long_name.endswith("-cluster")


def test_existing_cluster_is_looked_up_and_can_get_the_agent(other):
    tf, existing = other["tf"], other["existing"]
    (lookup,) = tf["data"]["aws_eks_cluster"].values()
    assert lookup["name"] == "other"
    assert existing.name == "other"
    assert Token.is_unresolved(existing.subnet_ids)  # read from the cluster at plan time
    addon_clusters = sorted(a["cluster_name"] for a in resources(tf, "aws_eks_addon").values())
    assert addon_clusters[-1] == "other"


def test_china_partition_arns_and_endpoints(china):
    # EKS keeps amazonaws.com in China.
    assert trust_of(china, "cn-cluster")["TrustService"]["Principal"] == {"Service": "eks.amazonaws.com"}
    (attached,) = [a["policy_arn"] for a in resources(china, "aws_iam_role_policy_attachment").values()]
    assert attached.startswith("arn:aws-cn:iam::aws:policy/")


def test_tokens_pass_validation_for_plan_time_values():
    """Values from other resources (tokens) cannot be checked at synth time and must not be refused."""
    stack = new_stack()
    existing = ExistingCluster(stack, "e", name="other")
    role = NodeRole(stack, "r", role_name="r")
    key = EncryptionKey(stack, "k", alias="k", description="d", account_id=ACCOUNT, region=REGION)
    EksCluster(
        stack,
        "c",
        name="c",
        version="1.33",
        subnet_ids=existing.subnet_ids,
        kms_key_arn=key.key_arn,
        account_id=ACCOUNT,
        admin_principal_arns=[role.role_arn],
    )


# --- validation: every ValueError a caller can hit ----------------------------------------


def _cluster(**kw):
    props = {"name": "c", "version": "1.33", "subnet_ids": SUBNETS, "kms_key_arn": KEY, "account_id": ACCOUNT, **kw}
    return lambda s: EksCluster(s, "c", **props)


INVALID = [
    ("existing-cluster-name", lambda s: ExistingCluster(s, "e", name="bad name"), "name"),
    ("cluster-name", _cluster(name="-c"), "name"),
    ("cluster-version", _cluster(version="1.33.2"), "version"),
    ("cluster-one-subnet", _cluster(subnet_ids=SUBNETS[:1]), "subnet_ids"),
    ("cluster-key", _cluster(kms_key_arn="alias/eks"), "kms_key_arn"),
    ("cluster-account", _cluster(account_id="x"), "account_id"),
    ("cluster-partition", _cluster(partition="aws-eu"), "partition"),
    (
        "cluster-admin-arn",
        _cluster(admin_principal_arns=[f"arn:aws:iam::{ACCOUNT}:group/admins"]),
        "admin_principal_arns",
    ),
    ("cluster-log-retention", _cluster(log_retention_days=10), "log_retention_days"),
    ("cluster-public-no-cidrs", _cluster(endpoint_public_access=True), "public_access_cidrs"),
    ("cluster-cidrs-not-public", _cluster(public_access_cidrs=["203.0.113.0/24"]), "endpoint_public_access"),
    (
        "cluster-bad-cidr",
        _cluster(endpoint_public_access=True, public_access_cidrs=["everyone"]),
        "public_access_cidrs",
    ),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    with pytest.raises(ValueError, match=needle):
        build(new_stack())
