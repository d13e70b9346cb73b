"""The `infra` constructs on their own: secure defaults, grants, validation."""

from __future__ import annotations

import json

import pytest
from cdktf import TerraformStack
from cdktf import Testing as CdktfTesting
from cdktf_cdktf_provider_aws.provider import AwsProvider

from conftest import resources
from infra import (
    ArtifactWriterIdentity,
    EksCluster,
    EncryptionKey,
    ExistingCluster,
    GpuNodePool,
    ModelBucket,
    NodePool,
    NodeRole,
    ServingIdentity,
    Taint,
)

ACCOUNT, REGION = "123456789012", "eu-west-1"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]


def new_stack(name: str = "test") -> TerraformStack:
    stack = TerraformStack(CdktfTesting.app(), name)
    AwsProvider(stack, "aws", region=REGION)
    return stack


@pytest.fixture(scope="module")
def built():
    """One stack with every construct; synthesized once."""
    stack = new_stack("constructs")
    key = EncryptionKey(stack, "key", alias="test-data", description="test", account_id=ACCOUNT, region=REGION,
                        allow_cloudwatch_logs=True)
    weights = ModelBucket(stack, "weights", bucket_name="test-weights-123456789012", kms_key_arn=key.key_arn,
                          region=REGION, noncurrent_version_expiration_days=45, abort_incomplete_multipart_upload_days=3)
    archive = ModelBucket(stack, "archive", bucket_name="test-archive-123456789012", kms_key_arn=key.key_arn,
                          region=REGION, prevent_destroy=True)
    cluster = EksCluster(stack, "cluster", name="test", version="1.33", subnet_ids=SUBNETS, kms_key_arn=key.key_arn,
                         account_id=ACCOUNT, endpoint_public_access=True, public_access_cidrs=["203.0.113.0/24"],
                         admin_principal_arns=[f"arn:aws:iam::{ACCOUNT}:role/admin"])
    serving = ServingIdentity(stack, "serving", role_name="test-serving", cluster_name=cluster.name,
                              namespace="llm", service_account="ray", account_id=ACCOUNT)
    writer = ArtifactWriterIdentity(stack, "writer", role_name="test-writer", account_id=ACCOUNT,
                                    github_subjects=["repo:acme/models:ref:refs/heads/main"],
                                    trusted_role_arns=[f"arn:aws:iam::{ACCOUNT}:role/trainer"])
    weights.grant_read(serving, "models")
    weights.grant_read(serving, "models/")  # the same grant again: no second policy
    weights.grant_write(writer, "models")
    weights.grant_delete(writer, "models")
    role = NodeRole(stack, "nodes", role_name="test-nodes", enable_ssm=True)
    system = NodePool(stack, "system", cluster_name=cluster.name, node_group_name="test-system", pool_name="system",
                      node_role=role, subnet_ids=SUBNETS, instance_types=["m7i.large"])
    gpu = GpuNodePool(stack, "gpu", cluster_name=cluster.name, node_group_name="test-gpu", pool_name="a10g",
                      node_role=role, subnet_ids=SUBNETS, instance_types=["g5.12xlarge", "g5.24xlarge"],
                      capacity_type="SPOT", max_size=4, ami_type="AL2023_x86_64_NVIDIA", root_volume_gib=300,
                      http_put_response_hop_limit=2, labels={"team": "ml"},
                      taints=[Taint("dedicated", "llm")])
    bottlerocket = GpuNodePool(stack, "l4", cluster_name=cluster.name, node_group_name="test-l4", pool_name="l4",
                               node_role=role, subnet_ids=SUBNETS, instance_types=["g6.xlarge"])
    tf = json.loads(CdktfTesting.synth(stack))
    return {"tf": tf, "serving": serving, "writer": writer, "gpu": gpu, "system": system, "l4": bottlerocket,
            "weights": weights, "archive": archive}


def one(tf: dict, kind: str, **match) -> dict:
    found = [r for r in resources(tf, kind).values() if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (kind, match, len(found))
    return found[0]


def bucket_id(tf: dict, name: str) -> str:
    (rid,) = [rid for rid, b in resources(tf, "aws_s3_bucket").items() if b["bucket"] == name]
    return f"${{aws_s3_bucket.{rid}.id}}"


def policy_named(tf: dict, name: str) -> list[dict]:
    return json.loads(one(tf, "aws_iam_role_policy", name=name)["policy"])["Statement"]


# --- ModelBucket -------------------------------------------------------------


def test_bucket_is_encrypted_versioned_private_and_owner_enforced(built):
    tf = built["tf"]
    ref = bucket_id(tf, "test-weights-123456789012")
    sse = one(tf, "aws_s3_bucket_server_side_encryption_configuration", bucket=ref)["rule"][0]
    assert sse["bucket_key_enabled"] is True
    assert sse["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    assert sse["apply_server_side_encryption_by_default"]["kms_master_key_id"].startswith("${aws_kms_key.")
    assert one(tf, "aws_s3_bucket_versioning", bucket=ref)["versioning_configuration"]["status"] == "Enabled"
    block = one(tf, "aws_s3_bucket_public_access_block", bucket=ref)
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    assert one(tf, "aws_s3_bucket_ownership_controls", bucket=ref)["rule"]["object_ownership"] == "BucketOwnerEnforced"
    assert one(tf, "aws_s3_bucket", bucket="test-weights-123456789012")["force_destroy"] is False


def test_bucket_policy_denies_plain_http_and_old_tls(built):
    tf = built["tf"]
    policy = one(tf, "aws_s3_bucket_policy", bucket=bucket_id(tf, "test-weights-123456789012"))
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    arns = ["arn:aws:s3:::test-weights-123456789012", "arn:aws:s3:::test-weights-123456789012/*"]
    http = statements["DenyInsecureTransport"]
    assert (http["Effect"], http["Principal"], http["Action"], http["Resource"]) == ("Deny", {"AWS": "*"}, ["s3:*"], arns)
    assert http["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statements["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}
    assert any("aws_s3_bucket_public_access_block" in d for d in policy["depends_on"])


def test_bucket_lifecycle_aborts_uploads_and_expires_old_versions(built):
    tf = built["tf"]
    lifecycle = one(tf, "aws_s3_bucket_lifecycle_configuration", bucket=bucket_id(tf, "test-weights-123456789012"))
    rules = {r["id"]: r for r in lifecycle["rule"]}
    assert rules["abort-incomplete-multipart-uploads"]["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 3
    expire = rules["expire-noncurrent-versions"]
    assert expire["noncurrent_version_expiration"][0]["noncurrent_days"] == 45
    assert expire["expiration"][0]["expired_object_delete_marker"] is True
    assert all(r["status"] == "Enabled" for r in rules.values())
    assert any("aws_s3_bucket_versioning" in d for d in lifecycle["depends_on"])


def test_prevent_destroy_only_where_asked(built):
    tf = built["tf"]
    assert one(tf, "aws_s3_bucket", bucket="test-archive-123456789012")["lifecycle"] == {"prevent_destroy": True}
    assert "lifecycle" not in one(tf, "aws_s3_bucket", bucket="test-weights-123456789012")


def test_grant_read_is_get_and_prefix_scoped_list_and_decrypt_via_s3(built):
    statements = {s["Sid"]: s for s in policy_named(built["tf"], "read-weights-models")}
    assert statements["ReadObjects"]["Action"] == ["s3:GetObject"]
    assert statements["ReadObjects"]["Resource"] == ["arn:aws:s3:::test-weights-123456789012/models/*"]
    assert statements["ListPrefix"]["Action"] == ["s3:ListBucket"]
    assert statements["ListPrefix"]["Resource"] == ["arn:aws:s3:::test-weights-123456789012"]
    assert statements["ListPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["models", "models/*"]}}
    assert statements["DecryptObjects"]["Action"] == ["kms:Decrypt"]
    assert statements["DecryptObjects"]["Condition"]["StringEquals"] == {
        "kms:ViaService": "s3.eu-west-1.amazonaws.com",
        "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::test-weights-123456789012",
    }
    assert set(built["serving"].policies) == {"read-weights-models"}  # granted twice, attached once


def test_grant_write_and_delete_are_separate_and_exact(built):
    tf = built["tf"]
    write = {s["Sid"]: s for s in policy_named(tf, "write-weights-models")}
    assert write["WriteObjects"]["Action"] == ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    assert write["WriteObjects"]["Resource"] == ["arn:aws:s3:::test-weights-123456789012/models/*"]
    assert write["EncryptObjects"]["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    delete = policy_named(tf, "delete-weights-models")
    assert [s["Action"] for s in delete] == [["s3:DeleteObject"]]
    assert "s3:GetObject" not in json.dumps(write)


def test_conflicting_grant_under_the_same_name_is_refused():
    stack = new_stack()
    bucket = ModelBucket(stack, "b", bucket_name="conflict-bucket-1", kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k", region=REGION)
    other = ModelBucket(stack, "c", bucket_name="conflict-bucket-2", kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k", region=REGION)
    identity = ServingIdentity(stack, "s", role_name="r", cluster_name="c", namespace="n", service_account="a", account_id=ACCOUNT)
    bucket.grant_read(identity, "models")
    with pytest.raises(ValueError, match="already attached"):
        identity.add_policy("read-b-models", other._deny_insecure_transport())


# --- EncryptionKey -----------------------------------------------------------


def test_key_rotates_and_lets_only_this_accounts_log_groups_use_it(built):
    key = one(built["tf"], "aws_kms_key")
    assert key["enable_key_rotation"] is True
    assert key["deletion_window_in_days"] == 30
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    assert statements["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    logs = statements["CloudWatchLogs"]
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"
    assert one(built["tf"], "aws_kms_alias")["name"] == "alias/test-data"


# --- identities ----------------------------------------------------------------


def test_serving_identity_trusts_only_eks_pod_identity_of_this_account(built):
    role = one(built["tf"], "aws_iam_role", name="test-serving")
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert role["max_session_duration"] == 3600
    association = one(built["tf"], "aws_eks_pod_identity_association")
    assert (association["namespace"], association["service_account"]) == ("llm", "ray")
    assert association["role_arn"].startswith("${aws_iam_role.")


def test_writer_identity_trusts_the_named_repository_and_roles(built):
    role = one(built["tf"], "aws_iam_role", name="test-writer")
    statements = {s["Sid"]: s for s in json.loads(role["assume_role_policy"])["Statement"]}
    github = statements["GitHubActions"]
    assert github["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"}
    assert github["Action"] == ["sts:AssumeRoleWithWebIdentity"]
    assert github["Condition"] == {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
        "StringLike": {"token.actions.githubusercontent.com:sub": ["repo:acme/models:ref:refs/heads/main"]},
    }
    assert statements["TrustedRoles"]["Principal"] == {"AWS": [f"arn:aws:iam::{ACCOUNT}:role/trainer"]}


# --- node pools ------------------------------------------------------------------


def launch_template_of(tf: dict, group: dict) -> dict:
    rid = group["launch_template"]["id"].split(".")[1]
    return resources(tf, "aws_launch_template")[rid]


def test_launch_templates_require_imdsv2_and_encrypt_volumes(built):
    tf = built["tf"]
    for name, hop in (("test-system", 1), ("test-gpu", 2), ("test-l4", 1)):
        template = launch_template_of(tf, one(tf, "aws_eks_node_group", node_group_name=name))
        assert template["metadata_options"] == {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": hop}
        for device in template["block_device_mappings"]:
            assert device["ebs"]["encrypted"] == "true" and device["ebs"]["volume_type"] == "gp3"
        assert "image_id" not in template  # EKS picks the AMI for the AMI type


def test_volume_layout_follows_the_ami_family(built):
    tf = built["tf"]

    def volumes(name: str) -> dict[str, int]:
        template = launch_template_of(tf, one(tf, "aws_eks_node_group", node_group_name=name))
        return {d["device_name"]: d["ebs"]["volume_size"] for d in template["block_device_mappings"]}

    assert volumes("test-gpu") == {"/dev/xvda": 300}  # AL2023: one root volume
    assert volumes("test-l4") == {"/dev/xvda": 4, "/dev/xvdb": 200}  # Bottlerocket: OS + data


def test_gpu_pool_labels_taints_and_scaling(built):
    tf, gpu = built["tf"], built["gpu"]
    group = one(tf, "aws_eks_node_group", node_group_name="test-gpu")
    assert group["ami_type"] == "AL2023_x86_64_NVIDIA"
    assert group["capacity_type"] == "SPOT"
    assert group["scaling_config"] == {"min_size": 0, "max_size": 4, "desired_size": 0}
    assert group["lifecycle"] == {"ignore_changes": ["scaling_config[0].desired_size"]}
    assert group["labels"] == {
        "team": "ml",
        "nvidia.com/gpu.product": "NVIDIA-A10G",
        "nvidia.com/gpu.count": "4",
        "llm-serving-stacks/node-pool": "a10g",
    }
    assert {(t["key"], t.get("value"), t["effect"]) for t in group["taint"]} == {
        ("dedicated", "llm", "NO_SCHEDULE"),
        ("nvidia.com/gpu", "present", "NO_SCHEDULE"),
        ("node.anyscale.com/accelerator-type", "GPU", "NO_SCHEDULE"),
        ("node.anyscale.com/capacity-type", "SPOT", "NO_SCHEDULE"),
    }
    assert gpu.gpus_per_node == 4 and gpu.gpu.name == "A10G"
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in gpu.tolerations()
    assert len(gpu.tolerations()) == len(group["taint"])
    assert gpu.node_selector() == {"llm-serving-stacks/node-pool": "a10g", "nvidia.com/gpu.product": "NVIDIA-A10G"}


def test_cpu_pool_has_no_gpu_taints_and_a_default_ami(built):
    group = one(built["tf"], "aws_eks_node_group", node_group_name="test-system")
    assert group["ami_type"] == "AL2023_x86_64_STANDARD"
    assert "taint" not in group
    assert group["scaling_config"] == {"min_size": 1, "max_size": 3, "desired_size": 1}
    assert any("AmazonEKSWorkerNodePolicy" in d for d in group["depends_on"])


def test_node_role_has_the_worker_policies(built):
    attached = {a["policy_arn"].rsplit("/", 1)[1] for a in resources(built["tf"], "aws_iam_role_policy_attachment").values()}
    assert {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy", "AmazonSSMManagedInstanceCore"} <= attached


# --- cluster -------------------------------------------------------------------------


def test_new_cluster_is_encrypted_logged_and_uses_access_entries(built):
    tf = built["tf"]
    cluster = one(tf, "aws_eks_cluster", name="test")
    assert cluster["encryption_config"]["resources"] == ["secrets"]
    assert cluster["encryption_config"]["provider"]["key_arn"].startswith("${aws_kms_key.")
    assert cluster["enabled_cluster_log_types"] == ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    assert cluster["vpc_config"]["endpoint_private_access"] is True
    assert cluster["vpc_config"]["public_access_cidrs"] == ["203.0.113.0/24"]
    assert cluster["access_config"] == {"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": False}
    logs = one(tf, "aws_cloudwatch_log_group", name="/aws/eks/test/cluster")
    assert logs["retention_in_days"] == 365 and logs["kms_key_id"].startswith("${aws_kms_key.")
    assert one(tf, "aws_eks_access_entry")["principal_arn"] == f"arn:aws:iam::{ACCOUNT}:role/admin"
    assert one(tf, "aws_eks_access_policy_association")["policy_arn"].endswith("AmazonEKSClusterAdminPolicy")
    assert one(tf, "aws_eks_addon")["addon_name"] == "eks-pod-identity-agent"
    # Node groups reference the cluster resource, so Terraform creates it first.
    assert one(tf, "aws_eks_node_group", node_group_name="test-gpu")["cluster_name"].startswith("${aws_eks_cluster.")


def test_private_cluster_without_admins_keeps_the_creator_as_admin():
    stack = new_stack()
    EksCluster(stack, "c", name="private", version="1.33", subnet_ids=SUBNETS,
               kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k", account_id=ACCOUNT)
    ExistingCluster(stack, "e", name="other", install_pod_identity_agent=True)
    tf = json.loads(CdktfTesting.synth(stack))
    cluster = one(tf, "aws_eks_cluster", name="private")
    assert cluster["vpc_config"]["endpoint_public_access"] is False
    assert "public_access_cidrs" not in cluster["vpc_config"]
    assert cluster["access_config"]["bootstrap_cluster_creator_admin_permissions"] is True
    assert "aws_eks_access_entry" not in tf["resource"]
    assert tf["data"]["aws_eks_cluster"]
    addon_clusters = sorted(a["cluster_name"] for a in resources(tf, "aws_eks_addon").values())
    assert addon_clusters[1] == "other" and addon_clusters[0].startswith("${aws_eks_cluster.")


# --- validation: every ValueError a caller can hit ----------------------------------------

KEY = "arn:aws:kms:eu-west-1:123456789012:key/k"


def _bucket(**kw):
    props = {"bucket_name": "valid-bucket-name", "kms_key_arn": KEY, "region": REGION, **kw}
    return lambda s: ModelBucket(s, "b", **props)


def _pool(cls=NodePool, **kw):
    def build(s):
        role = NodeRole(s, "r", role_name="r")
        props = {"cluster_name": "c", "node_group_name": "g", "pool_name": "p", "node_role": role,
                 "subnet_ids": SUBNETS, "instance_types": ["m7i.large"] if cls is NodePool else ["g5.xlarge"], **kw}
        return cls(s, "p", **props)

    return build


def _cluster(**kw):
    props = {"name": "c", "version": "1.33", "subnet_ids": SUBNETS, "kms_key_arn": KEY, "account_id": ACCOUNT, **kw}
    return lambda s: EksCluster(s, "c", **props)


def _writer(**kw):
    return lambda s: ArtifactWriterIdentity(s, "w", role_name="w", account_id=ACCOUNT, **kw)


INVALID = [
    ("bucket-uppercase", _bucket(bucket_name="Models"), "bucket_name"),
    ("bucket-too-long", _bucket(bucket_name="a" * 64), "bucket_name"),
    ("bucket-ip", _bucket(bucket_name="192.168.1.1"), "IP address"),
    ("bucket-reserved-suffix", _bucket(bucket_name="models-s3alias"), "reserved suffix"),
    ("bucket-noncurrent-days", _bucket(noncurrent_version_expiration_days=0), "noncurrent_version_expiration_days"),
    ("bucket-abort-days", _bucket(abort_incomplete_multipart_upload_days=0), "abort_incomplete_multipart_upload_days"),
    ("key-alias-prefix", lambda s: EncryptionKey(s, "k", alias="alias/x", description="d", account_id=ACCOUNT, region=REGION), "alias"),
    ("key-deletion-window", lambda s: EncryptionKey(s, "k", alias="x", description="d", account_id=ACCOUNT, region=REGION, deletion_window_days=3), "deletion_window_days"),
    ("role-name", lambda s: ServingIdentity(s, "i", role_name="bad name!", cluster_name="c", namespace="n", service_account="a", account_id=ACCOUNT), "role_name"),
    ("secret-name", lambda s: ServingIdentity(s, "i", role_name="r", cluster_name="c", namespace="n", service_account="a", account_id=ACCOUNT).grant_read_secret("bad name", region=REGION, account_id=ACCOUNT), "secret_name"),
    ("writer-nobody", _writer(), "needs github_subjects or trusted_role_arns"),
    ("writer-any-repo", _writer(github_subjects=["repo:*"]), "must name a repository"),
    ("writer-not-a-subject", _writer(github_subjects=["acme/models"]), "must name a repository"),
    ("writer-bad-role-arn", _writer(trusted_role_arns=["arn:aws:iam::123:user/x"]), "not an IAM role ARN"),
    ("pool-no-instance-types", _pool(instance_types=[]), "instance_types"),
    ("pool-capacity-type", _pool(capacity_type="RESERVED"), "capacity_type"),
    ("pool-gpu-ami-on-cpu", _pool(ami_type="BOTTLEROCKET_x86_64_NVIDIA"), "ami_type"),
    ("gpu-pool-cpu-ami", _pool(GpuNodePool, ami_type="AL2023_x86_64_STANDARD"), "ami_type"),
    ("pool-sizes", _pool(min_size=3, max_size=2), "sizes"),
    ("pool-desired-above-max", _pool(desired_size=9), "sizes"),
    ("pool-hop-limit", _pool(http_put_response_hop_limit=3), "http_put_response_hop_limit"),
    ("pool-volume", _pool(root_volume_gib=8), "root_volume_gib"),
    ("pool-max-unavailable", _pool(max_unavailable=0), "max_unavailable"),
    ("pool-label", _pool(labels={"bad key": "x"}), "label"),
    ("gpu-pool-cpu-type", _pool(GpuNodePool, instance_types=["m7i.large"]), "not a GPU instance type"),
    ("gpu-pool-mixed-gpus", _pool(GpuNodePool, instance_types=["g5.xlarge", "g6.xlarge"]), "one GPU model and count"),
    ("gpu-pool-mixed-counts", _pool(GpuNodePool, instance_types=["g5.xlarge", "g5.12xlarge"]), "one GPU model and count"),
    ("cluster-one-subnet", _cluster(subnet_ids=SUBNETS[:1]), "subnet_ids"),
    ("cluster-public-no-cidrs", _cluster(endpoint_public_access=True), "public_access_cidrs"),
    ("cluster-cidrs-not-public", _cluster(public_access_cidrs=["203.0.113.0/24"]), "endpoint_public_access"),
    ("cluster-bad-cidr", _cluster(endpoint_public_access=True, public_access_cidrs=["everyone"]), "not a CIDR"),
    ("object-key", lambda s: _bucket()(s).add_object("o", "/abs", "x"), "key"),
    ("grant-empty-prefix", lambda s: _bucket()(s).grant_read(None, ""), "prefix"),
    ("grant-absolute-prefix", lambda s: _bucket()(s).grant_read(None, "/models"), "prefix"),
    ("grant-wildcard-prefix", lambda s: _bucket()(s).grant_read(None, "mod*"), "prefix"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    with pytest.raises(ValueError, match=needle):
        build(new_stack())


@pytest.mark.parametrize(("key", "value", "effect"), [("bad key", "", "NoSchedule"), ("k", "bad value!", "NoSchedule"), ("k", "", "Sometimes")])
def test_invalid_taints_are_rejected(key, value, effect):
    with pytest.raises(ValueError, match="taint"):
        Taint(key, value, effect)
