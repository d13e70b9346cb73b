"""The `infra` constructs on their own: secure defaults, grants, trust, validation.

Three small stacks, each synthesized once per module; the validation cases
build constructs without synthesizing anything.
"""

from __future__ import annotations

import json

import pytest
from cdktf import TerraformStack, Token

import conftest
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
    Statement,
    Taint,
)
from infra.identity.policy import policy_document

ACCOUNT, REGION = "123456789012", "eu-west-1"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WEIGHTS = "test-weights-123456789012"
WEIGHTS_ARN = f"arn:aws:s3:::{WEIGHTS}"


def new_stack(name: str = "test") -> TerraformStack:
    return conftest.new_stack(name, REGION)


synth = conftest.synth_stack


@pytest.fixture(scope="module")
def built():
    """One stack with every construct, as a platform team would compose them."""
    stack = new_stack("constructs")
    key = EncryptionKey(stack, "key", alias="test-data", description="test", account_id=ACCOUNT, region=REGION,
                        allow_cloudwatch_logs=True, prevent_destroy=True)
    weights = ModelBucket(stack, "weights", bucket_name=WEIGHTS, kms_key_arn=key.key_arn,
                          region=REGION, noncurrent_version_retention_days=45, abort_incomplete_uploads_days=3)
    lora = ModelBucket(stack, "lora", bucket_name="test-lora-123456789012", kms_key_arn=key.key_arn,
                       region=REGION, prevent_destroy=True, expire_prefixes={"staging/": 2})
    cluster = EksCluster(stack, "cluster", name="test", version="1.33", subnet_ids=SUBNETS, kms_key_arn=key.key_arn,
                         account_id=ACCOUNT, endpoint_public_access=True, public_access_cidrs=["203.0.113.0/24"],
                         admin_principal_arns=[f"arn:aws:iam::{ACCOUNT}:role/admin"])
    serving = ServingIdentity(stack, "serving", role_name="test-serving", cluster_name=cluster.name,
                              namespace="llm", service_account="ray", account_id=ACCOUNT)
    writer = ArtifactWriterIdentity(stack, "writer", role_name="test-writer", account_id=ACCOUNT,
                                    github_subjects=["repo:acme/models:ref:refs/heads/main"],
                                    trusted_role_arns=[f"arn:aws:iam::{ACCOUNT}:role/trainer"])
    weights.grant_read(serving, "models")
    weights.grant_read(serving, "models/")  # the same grant again (trailing slash): no second policy
    lora.grant_read(serving, "adapters")
    for bucket, prefix in ((weights, "models"), (lora, "adapters")):
        bucket.grant_write(writer, prefix)
        bucket.grant_delete(writer, prefix)
    role = NodeRole(stack, "nodes", role_name="test-nodes", enable_ssm=True)
    system = NodePool(stack, "system", cluster_name=cluster.name, node_group_name="test-system", pool_name="system",
                      node_role=role, subnet_ids=SUBNETS, instance_types=["m7i.large"], tags={"team": "ml"})
    gpu = GpuNodePool(stack, "gpu", cluster_name=cluster.name, node_group_name="test-gpu", pool_name="a10g",
                      node_role=role, subnet_ids=SUBNETS, instance_types=["g5.12xlarge", "g5.24xlarge"],
                      capacity_type="SPOT", max_size=4, ami_type="AL2023_x86_64_NVIDIA", root_volume_gib=300,
                      http_put_response_hop_limit=2, labels={"team": "ml"}, taints=[Taint("dedicated", "llm")])
    bottlerocket = GpuNodePool(stack, "l4", cluster_name=cluster.name, node_group_name="test-l4", pool_name="l4",
                               node_role=role, subnet_ids=SUBNETS, instance_types=["g6.xlarge"])
    return {"tf": synth(stack), "serving": serving, "writer": writer, "gpu": gpu, "system": system,
            "l4": bottlerocket, "weights": weights, "cluster": cluster}


@pytest.fixture(scope="module")
def other():
    """A private cluster without listed admins, an existing cluster, and a key and bucket with defaults."""
    stack = new_stack("other")
    EksCluster(stack, "private", name="private", version="1.33", subnet_ids=SUBNETS, kms_key_arn=KEY, account_id=ACCOUNT)
    EksCluster(stack, "long", name="c" * 100, version="1.33", subnet_ids=SUBNETS, kms_key_arn=KEY, account_id=ACCOUNT)
    existing = ExistingCluster(stack, "existing", name="other", install_pod_identity_agent=True)
    EncryptionKey(stack, "key", alias="plain", description="d", account_id=ACCOUNT, region=REGION)
    return {"tf": synth(stack), "existing": existing}


@pytest.fixture(scope="module")
def china():
    """The same constructs in the aws-cn partition."""
    stack = new_stack("china")
    region = "cn-north-1"
    key = EncryptionKey(stack, "key", alias="cn-data", description="d", account_id=ACCOUNT, region=region,
                        partition="aws-cn", allow_cloudwatch_logs=True)
    bucket = ModelBucket(stack, "weights", bucket_name="cn-weights-123456789012", kms_key_arn=key.key_arn,
                         region=region, partition="aws-cn")
    serving = ServingIdentity(stack, "serving", role_name="cn-serving", cluster_name="cn", namespace="llm",
                              service_account="ray", account_id=ACCOUNT, partition="aws-cn")
    bucket.grant_read(serving, "models")
    ArtifactWriterIdentity(stack, "writer", role_name="cn-writer", account_id=ACCOUNT, partition="aws-cn",
                           github_subjects=["repo:acme/models:ref:refs/heads/main"])
    NodeRole(stack, "nodes", role_name="cn-nodes", partition="aws-cn")
    EksCluster(stack, "cluster", name="cn", version="1.33", subnet_ids=SUBNETS, kms_key_arn=key.key_arn,
               account_id=ACCOUNT, partition="aws-cn")
    return synth(stack)


def matching(tf: dict, kind: str, **match) -> list[dict]:
    return [r for r in resources(tf, kind).values() if all(r.get(k) == v for k, v in match.items())]


def one(tf: dict, kind: str, **match) -> dict:
    found = matching(tf, kind, **match)
    assert len(found) == 1, (kind, match, len(found))
    return found[0]


def bucket_ref(tf: dict, name: str) -> str:
    (rid,) = [rid for rid, b in resources(tf, "aws_s3_bucket").items() if b["bucket"] == name]
    return f"${{aws_s3_bucket.{rid}.id}}"


def role_ref(tf: dict, name: str) -> str:
    (rid,) = [rid for rid, r in resources(tf, "aws_iam_role").items() if r["name"] == name]
    return f"${{aws_iam_role.{rid}.name}}"


def statements_named(tf: dict, name: str) -> dict[str, dict]:
    return {s["Sid"]: s for s in json.loads(one(tf, "aws_iam_role_policy", name=name)["policy"])["Statement"]}


def trust_of(tf: dict, role_name: str) -> dict[str, dict]:
    return {s["Sid"]: s for s in json.loads(one(tf, "aws_iam_role", name=role_name)["assume_role_policy"])["Statement"]}


# --- ModelBucket -------------------------------------------------------------


def test_bucket_is_encrypted_versioned_private_and_owner_enforced(built):
    tf = built["tf"]
    for name in (WEIGHTS, "test-lora-123456789012"):
        ref = bucket_ref(tf, name)
        sse = one(tf, "aws_s3_bucket_server_side_encryption_configuration", bucket=ref)["rule"][0]
        assert sse["bucket_key_enabled"] is True
        assert sse["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
        assert sse["apply_server_side_encryption_by_default"]["kms_master_key_id"].startswith("${aws_kms_key.")
        assert one(tf, "aws_s3_bucket_versioning", bucket=ref)["versioning_configuration"]["status"] == "Enabled"
        block = one(tf, "aws_s3_bucket_public_access_block", bucket=ref)
        assert [block[k] for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")] == [True] * 4
        assert one(tf, "aws_s3_bucket_ownership_controls", bucket=ref)["rule"]["object_ownership"] == "BucketOwnerEnforced"
        assert one(tf, "aws_s3_bucket", bucket=name)["force_destroy"] is False


def test_bucket_policy_denies_plain_http_and_old_tls(built):
    tf = built["tf"]
    policy = one(tf, "aws_s3_bucket_policy", bucket=bucket_ref(tf, WEIGHTS))
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    # The rest are the SSE-KMS upload denies: tests/infra/test_snapshot_rules.py.
    statements = {sid: s for sid, s in statements.items() if sid in ("DenyInsecureTransport", "DenyOutdatedTls")}
    assert len(statements) == 2
    for statement in statements.values():
        assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", {"AWS": "*"}, ["s3:*"])
        assert statement["Resource"] == [WEIGHTS_ARN, f"{WEIGHTS_ARN}/*"]
    assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statements["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}
    (dependency,) = policy["depends_on"]
    assert dependency.startswith("aws_s3_bucket_public_access_block.weights_")


def test_bucket_lifecycle_aborts_uploads_and_expires_old_versions(built):
    tf = built["tf"]
    lifecycle = one(tf, "aws_s3_bucket_lifecycle_configuration", bucket=bucket_ref(tf, WEIGHTS))
    rules = {r["id"]: r for r in lifecycle["rule"]}
    assert set(rules) == {"abort-incomplete-multipart-uploads", "expire-noncurrent-versions"}
    assert rules["abort-incomplete-multipart-uploads"]["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 3
    expire = rules["expire-noncurrent-versions"]
    assert expire["noncurrent_version_expiration"][0]["noncurrent_days"] == 45
    assert expire["expiration"][0]["expired_object_delete_marker"] is True
    assert all(r["status"] == "Enabled" and r["filter"] == [{"prefix": ""}] for r in rules.values())
    (dependency,) = lifecycle["depends_on"]
    assert dependency.startswith("aws_s3_bucket_versioning.weights_")
    defaults = one(tf, "aws_s3_bucket_lifecycle_configuration", bucket=bucket_ref(tf, "test-lora-123456789012"))
    days = {r["id"]: r for r in defaults["rule"]}
    assert days["abort-incomplete-multipart-uploads"]["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 7
    assert days["expire-noncurrent-versions"]["noncurrent_version_expiration"][0]["noncurrent_days"] == 30
    scratch = days["expire-staging"]
    assert scratch["filter"] == [{"prefix": "staging/"}] and scratch["expiration"] == [{"days": 2}]


def test_prevent_destroy_only_where_asked(built, other):
    tf = built["tf"]
    assert one(tf, "aws_s3_bucket", bucket="test-lora-123456789012")["lifecycle"] == {"prevent_destroy": True}
    assert "lifecycle" not in one(tf, "aws_s3_bucket", bucket=WEIGHTS)
    assert one(tf, "aws_kms_key")["lifecycle"] == {"prevent_destroy": True}
    assert "lifecycle" not in one(other["tf"], "aws_kms_key")


def test_bucket_properties_are_known_at_synth(built):
    weights = built["weights"]
    assert weights.bucket_name == WEIGHTS
    assert weights.bucket_arn == WEIGHTS_ARN
    assert weights.objects_arn("models/") == f"{WEIGHTS_ARN}/models/*"


# --- grants ------------------------------------------------------------------------


def test_grant_read_is_get_and_prefix_scoped_list_and_decrypt_via_s3(built):
    statements = statements_named(built["tf"], "read-weights-models")
    assert set(statements) == {"ReadObjects", "ListPrefix", "DecryptObjects"}
    assert statements["ReadObjects"]["Action"] == ["s3:GetObject"]
    assert statements["ReadObjects"]["Resource"] == [f"{WEIGHTS_ARN}/models/*"]
    assert statements["ListPrefix"]["Action"] == ["s3:ListBucket"]
    assert statements["ListPrefix"]["Resource"] == [WEIGHTS_ARN]
    assert statements["ListPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["models", "models/*"]}}
    assert statements["DecryptObjects"]["Action"] == ["kms:Decrypt"]
    assert statements["DecryptObjects"]["Resource"][0].startswith("${aws_kms_key.")
    assert statements["DecryptObjects"]["Condition"] == {"StringEquals": {
        "kms:ViaService": "s3.eu-west-1.amazonaws.com",
        "kms:EncryptionContext:aws:s3:arn": WEIGHTS_ARN,
    }}


def test_serving_identity_can_only_read(built):
    tf = built["tf"]
    ref = role_ref(tf, "test-serving")
    policies = matching(tf, "aws_iam_role_policy", role=ref)
    assert sorted(p["name"] for p in policies) == ["read-lora-adapters", "read-weights-models"]
    statements = [s for p in policies for s in json.loads(p["policy"])["Statement"]]
    assert {a for s in statements for a in s["Action"]} == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    assert all(s["Effect"] == "Allow" and "*" not in s["Resource"] for s in statements)
    objects = {r for s in statements if s["Action"] == ["s3:GetObject"] for r in s["Resource"]}
    assert objects == {f"{WEIGHTS_ARN}/models/*", "arn:aws:s3:::test-lora-123456789012/adapters/*"}


def test_grant_write_and_delete_are_separate_and_exact(built):
    tf = built["tf"]
    write = statements_named(tf, "write-weights-models")
    assert set(write) == {"WriteObjects", "ListUploads", "EncryptObjects"}
    assert write["WriteObjects"]["Action"] == ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    assert write["WriteObjects"]["Resource"] == [f"{WEIGHTS_ARN}/models/*"]
    assert (write["ListUploads"]["Action"], write["ListUploads"]["Resource"]) == (["s3:ListBucketMultipartUploads"], [WEIGHTS_ARN])
    assert write["EncryptObjects"]["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert write["EncryptObjects"]["Condition"]["StringEquals"]["kms:ViaService"] == "s3.eu-west-1.amazonaws.com"
    delete = statements_named(tf, "delete-weights-models")
    assert [(s["Action"], s["Resource"]) for s in delete.values()] == [(["s3:DeleteObject"], [f"{WEIGHTS_ARN}/models/*"])]
    writer = {a for statements in built["writer"].policies.values() for s in statements for a in s.actions}
    assert not writer & {"s3:DeleteObjectVersion", "s3:GetObject", "s3:PutBucketPolicy", "s3:*"}


def test_the_same_grant_twice_is_one_policy(built):
    assert len(matching(built["tf"], "aws_iam_role_policy", name="read-weights-models")) == 1
    assert sorted(built["serving"].policies) == ["read-lora-adapters", "read-weights-models"]


def test_a_different_policy_under_a_taken_name_is_refused():
    stack = new_stack()
    identity = ServingIdentity(stack, "s", role_name="r", cluster_name="c", namespace="n", service_account="a", account_id=ACCOUNT)
    first = identity.add_policy("p", [Statement("A", ("s3:GetObject",), ("arn:aws:s3:::b/x/*",))])
    assert identity.add_policy("p", [Statement("A", ["s3:GetObject"], ["arn:aws:s3:::b/x/*"])]) is first
    with pytest.raises(ValueError, match="already attached"):
        identity.add_policy("p", [Statement("A", ("s3:PutObject",), ("arn:aws:s3:::b/x/*",))])


def test_policy_names_follow_bucket_verb_and_prefix_within_iam_limits():
    stack = new_stack()
    bucket = ModelBucket(stack, "weights", bucket_name="names-bucket-1", kms_key_arn=KEY, region=REGION)
    identity = ServingIdentity(stack, "s", role_name="r", cluster_name="c", namespace="n", service_account="a", account_id=ACCOUNT)
    bucket.grant_read(identity, "models/llama 3")
    bucket.grant_read(identity, "x" * 200)
    names = sorted(identity.policies)
    assert names[0] == "read-weights-models-llama-3"
    assert len(names[1]) == 128 and names[1].startswith("read-weights-xxx")


def test_policy_documents_are_deterministic():
    a = Statement("A", ("s3:GetObject",), ("r",), conditions={"StringLike": {"b": "1", "a": "2"}, "Bool": {"c": "true"}})
    b = Statement("A", ("s3:GetObject",), ("r",), conditions={"Bool": {"c": "true"}, "StringLike": {"a": "2", "b": "1"}})
    assert policy_document([a]) == policy_document([b])
    assert json.loads(policy_document([a]))["Version"] == "2012-10-17"


# --- EncryptionKey -----------------------------------------------------------


def test_key_rotates_and_lets_only_this_accounts_log_groups_use_it(built):
    key = one(built["tf"], "aws_kms_key")
    assert key["enable_key_rotation"] is True
    assert key["deletion_window_in_days"] == 30
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    assert set(statements) == {"AccountAdministers", "CloudWatchLogs"}
    assert statements["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    logs = statements["CloudWatchLogs"]
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert logs["Action"] == ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    assert logs["Condition"] == {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"}}
    assert one(built["tf"], "aws_kms_alias")["name"] == "alias/test-data"


def test_key_without_logs_has_only_the_account_statement(other):
    key = one(other["tf"], "aws_kms_key")
    assert [s["Sid"] for s in json.loads(key["policy"])["Statement"]] == ["AccountAdministers"]


# --- identities ----------------------------------------------------------------


def test_serving_identity_trusts_only_its_pod_identity_association(built):
    tf = built["tf"]
    trust = trust_of(tf, "test-serving")["EksPodIdentity"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    conditions = trust["Condition"]["StringEquals"]
    assert conditions.pop("aws:RequestTag/eks-cluster-name").startswith("${aws_eks_cluster.")
    assert conditions == {
        "aws:RequestTag/kubernetes-namespace": "llm",
        "aws:RequestTag/kubernetes-service-account": "ray",
    }
    assert one(tf, "aws_iam_role", name="test-serving")["max_session_duration"] == 3600
    association = one(tf, "aws_eks_pod_identity_association")
    assert (association["namespace"], association["service_account"]) == ("llm", "ray")
    assert association["role_arn"].startswith("${aws_iam_role.")
    assert association["cluster_name"].startswith("${aws_eks_cluster.")
    assert (built["serving"].namespace, built["serving"].service_account) == ("llm", "ray")


def test_writer_identity_trusts_the_named_repository_and_roles(built):
    tf = built["tf"]
    statements = trust_of(tf, "test-writer")
    assert set(statements) == {"GitHubActions", "TrustedRoles"}
    github = statements["GitHubActions"]
    assert github["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"}
    assert github["Action"] == ["sts:AssumeRoleWithWebIdentity"]
    assert github["Condition"] == {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
        "StringLike": {"token.actions.githubusercontent.com:sub": ["repo:acme/models:ref:refs/heads/main"]},
    }
    assert statements["TrustedRoles"]["Action"] == ["sts:AssumeRole"]
    assert statements["TrustedRoles"]["Principal"] == {"AWS": [f"arn:aws:iam::{ACCOUNT}:role/trainer"]}
    assert one(tf, "aws_iam_role", name="test-writer")["max_session_duration"] == 3600


def test_china_partition_arns_and_endpoints(china):
    tf = china
    read = statements_named(tf, "read-weights-models")
    assert read["ReadObjects"]["Resource"] == ["arn:aws-cn:s3:::cn-weights-123456789012/models/*"]
    assert read["DecryptObjects"]["Condition"]["StringEquals"] == {
        "kms:ViaService": "s3.cn-north-1.amazonaws.com.cn",
        "kms:EncryptionContext:aws:s3:arn": "arn:aws-cn:s3:::cn-weights-123456789012",
    }
    bucket_policy = json.loads(one(tf, "aws_s3_bucket_policy")["policy"])
    assert bucket_policy["Statement"][0]["Resource"][0] == "arn:aws-cn:s3:::cn-weights-123456789012"
    key = {s["Sid"]: s for s in json.loads(one(tf, "aws_kms_key")["policy"])["Statement"]}
    assert key["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws-cn:iam::{ACCOUNT}:root"}
    assert key["CloudWatchLogs"]["Principal"] == {"Service": "logs.cn-north-1.amazonaws.com.cn"}
    assert key["CloudWatchLogs"]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].startswith("arn:aws-cn:logs:")
    github = trust_of(tf, "cn-writer")["GitHubActions"]
    assert github["Principal"]["Federated"].startswith(f"arn:aws-cn:iam::{ACCOUNT}:oidc-provider/")
    # EC2 uses the China DNS suffix; EKS and Pod Identity keep amazonaws.com there.
    assert trust_of(tf, "cn-nodes")["TrustService"]["Principal"] == {"Service": "ec2.amazonaws.com.cn"}
    assert trust_of(tf, "cn-cluster")["TrustService"]["Principal"] == {"Service": "eks.amazonaws.com"}
    assert trust_of(tf, "cn-serving")["EksPodIdentity"]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    attached = [a["policy_arn"] for a in resources(tf, "aws_iam_role_policy_attachment").values()]
    assert len(attached) == 4 and all(arn.startswith("arn:aws-cn:iam::aws:policy/") for arn in attached)


# --- node pools ------------------------------------------------------------------


def launch_template_of(tf: dict, group: dict) -> dict:
    rid = group["launch_template"]["id"].split(".")[1]
    assert group["launch_template"]["version"] == f"${{aws_launch_template.{rid}.latest_version}}"
    return resources(tf, "aws_launch_template")[rid]


def test_launch_templates_require_imdsv2_and_encrypt_volumes(built):
    tf = built["tf"]
    for name, hop in (("test-system", 1), ("test-gpu", 2), ("test-l4", 1)):
        template = launch_template_of(tf, one(tf, "aws_eks_node_group", node_group_name=name))
        assert template["metadata_options"] == {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": hop}
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
    assert attached == {f"arn:aws:iam::aws:policy/{name}" for name in (
        "AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy", "AmazonSSMManagedInstanceCore")}


# --- cluster -------------------------------------------------------------------------


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
    assert cluster["access_config"] == {"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": False}
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
    assert one(tf, "aws_eks_node_group", node_group_name="test-gpu")["cluster_name"].startswith("${aws_eks_cluster.")
    assert built["cluster"].subnet_ids == SUBNETS


def test_cluster_role_trusts_eks_with_the_cluster_policy(built):
    tf = built["tf"]
    trust = trust_of(tf, "test-cluster")["TrustService"]
    assert (trust["Principal"], trust["Action"]) == ({"Service": "eks.amazonaws.com"}, ["sts:AssumeRole", "sts:TagSession"])
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


# --- validation: every ValueError a caller can hit ----------------------------------------


def _key(**kw):
    props = {"alias": "x", "description": "d", "account_id": ACCOUNT, "region": REGION, **kw}
    return lambda s: EncryptionKey(s, "k", **props)


def _bucket(**kw):
    props = {"bucket_name": "valid-bucket-name", "kms_key_arn": KEY, "region": REGION, **kw}
    return lambda s: ModelBucket(s, "b", **props)


def _serving(**kw):
    props = {"role_name": "r", "cluster_name": "c", "namespace": "n", "service_account": "a", "account_id": ACCOUNT, **kw}
    return lambda s: ServingIdentity(s, "i", **props)


def _writer(**kw):
    props = {"role_name": "w", "account_id": ACCOUNT, **kw}
    return lambda s: ArtifactWriterIdentity(s, "w", **props)


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


def _grant(verb: str, prefix: str):
    return lambda s: getattr(_bucket()(s), f"grant_{verb}")(_serving()(s), prefix)


REPO = "repo:acme/models:ref:refs/heads/main"

INVALID = [
    # EncryptionKey
    ("key-alias-prefix", _key(alias="alias/x"), "alias"),
    ("key-alias-reserved", _key(alias="aws/x"), "alias"),
    ("key-alias-characters", _key(alias="my key"), "alias"),
    ("key-deletion-window", _key(deletion_window_days=3), "deletion_window_days"),
    ("key-account", _key(account_id="1234"), "account_id"),
    ("key-region", _key(region="Europe"), "region"),
    ("key-region-partition", _key(region="cn-north-1"), "partition"),
    ("key-partition", _key(partition="china"), "partition"),
    # ModelBucket
    ("bucket-uppercase", _bucket(bucket_name="Models"), "bucket_name"),
    ("bucket-too-long", _bucket(bucket_name="a" * 64), "bucket_name"),
    ("bucket-double-dot", _bucket(bucket_name="models..bucket"), "bucket_name"),
    ("bucket-ip", _bucket(bucket_name="192.168.1.1"), "bucket_name.*IP address"),
    ("bucket-xn-prefix", _bucket(bucket_name="xn--models"), "bucket_name.*reserved prefix"),
    ("bucket-s3alias-suffix", _bucket(bucket_name="models-s3alias"), "bucket_name.*reserved suffix"),
    ("bucket-ol-suffix", _bucket(bucket_name="models--ol-s3"), "bucket_name.*reserved suffix"),
    ("bucket-noncurrent-days", _bucket(noncurrent_version_retention_days=0), "noncurrent_version_retention_days"),
    ("bucket-expire-days", _bucket(expire_prefixes={"staging": 0}), "expire_prefixes"),
    ("bucket-expire-wildcard", _bucket(expire_prefixes={"st*": 1}), "expire_prefixes: prefix"),
    ("bucket-abort-days", _bucket(abort_incomplete_uploads_days=0), "abort_incomplete_uploads_days"),
    ("bucket-key-alias", _bucket(kms_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/data"), "kms_key_arn"),
    ("bucket-key-partition", _bucket(kms_key_arn=KEY.replace("arn:aws:", "arn:aws-cn:")), "kms_key_arn"),
    ("bucket-region-partition", _bucket(region="us-gov-west-1"), "partition"),
    ("object-key", lambda s: _bucket()(s).add_object("o", "/abs", "x"), "key"),
    ("grant-empty-prefix", _grant("read", ""), "prefix"),
    ("grant-slash-prefix", _grant("write", "/"), "prefix"),
    ("grant-absolute-prefix", _grant("read", "/models"), "prefix"),
    ("grant-wildcard-prefix", _grant("delete", "mod*"), "prefix"),
    ("grant-question-prefix", _grant("read", "mod?ls"), "prefix"),
    ("grant-variable-prefix", _grant("read", "${aws:username}"), "prefix"),
    ("objects-arn-empty", lambda s: _bucket()(s).objects_arn(""), "prefix"),
    # identities
    ("role-name", _serving(role_name="bad name!"), "role_name"),
    ("role-name-long", _serving(role_name="r" * 65), "role_name"),
    ("serving-namespace", _serving(namespace="Team_LLM"), "namespace"),
    ("serving-service-account", _serving(service_account="ray/head"), "service_account"),
    ("serving-account", _serving(account_id="12345678901a"), "account_id"),
    ("serving-partition", _serving(partition="aws-iso"), "partition"),
    ("policy-name", lambda s: _serving()(s).add_policy("bad name", [Statement("A", ("s3:GetObject",), ("r",))]), "policy name"),
    ("policy-empty", lambda s: _serving()(s).add_policy("p", []), "no statements"),
    ("statement-sid", lambda s: Statement("not-alnum", ("s3:GetObject",)), "sid"),
    ("statement-no-actions", lambda s: Statement("A", ()), "actions"),
    ("statement-effect", lambda s: Statement("A", ("s3:GetObject",), effect="Maybe"), "effect"),
    ("secret-name", lambda s: _serving()(s).grant_read_secret("bad name", region=REGION, account_id=ACCOUNT), "secret_name"),
    ("secret-region", lambda s: _serving()(s).grant_read_secret("hf", region="nowhere", account_id=ACCOUNT), "region"),
    ("writer-nobody", _writer(), "needs github_subjects or trusted_role_arns"),
    ("writer-any-subject", _writer(github_subjects=["*"]), "github_subjects"),
    ("writer-any-repo", _writer(github_subjects=["repo:*"]), "github_subjects"),
    ("writer-any-owner", _writer(github_subjects=["repo:*/models:ref:refs/heads/main"]), "github_subjects"),
    ("writer-no-context", _writer(github_subjects=["repo:acme/models"]), "github_subjects"),
    ("writer-not-a-subject", _writer(github_subjects=["acme/models"]), "github_subjects"),
    ("writer-oidc-provider", _writer(github_subjects=[REPO], github_oidc_provider_arn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/example.com"),
     "github_oidc_provider_arn"),
    ("writer-user-arn", _writer(trusted_role_arns=[f"arn:aws:iam::{ACCOUNT}:user/x"]), "trusted_role_arns"),
    ("writer-role-partition", _writer(trusted_role_arns=[f"arn:aws-cn:iam::{ACCOUNT}:role/x"]), "trusted_role_arns"),
    ("writer-account", _writer(github_subjects=[REPO], account_id="acme"), "account_id"),
    # node pools
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
    ("gpu-pool-mixed-counts", _pool(GpuNodePool, instance_types=["g5.xlarge", "g5.12xlarge"]), "instance_types.*g5.12xlarge"),
    ("gpu-pool-no-instance-types", _pool(GpuNodePool, instance_types=[]), "instance_types"),
    ("pool-autoscaler-cluster", _pool(autoscaler_cluster_name="bad name"), "autoscaler_cluster_name"),
    # clusters
    ("existing-cluster-name", lambda s: ExistingCluster(s, "e", name="bad name"), "name"),
    ("cluster-name", _cluster(name="-c"), "name"),
    ("cluster-version", _cluster(version="1.33.2"), "version"),
    ("cluster-one-subnet", _cluster(subnet_ids=SUBNETS[:1]), "subnet_ids"),
    ("cluster-key", _cluster(kms_key_arn="alias/eks"), "kms_key_arn"),
    ("cluster-account", _cluster(account_id="x"), "account_id"),
    ("cluster-partition", _cluster(partition="aws-eu"), "partition"),
    ("cluster-admin-arn", _cluster(admin_principal_arns=[f"arn:aws:iam::{ACCOUNT}:group/admins"]), "admin_principal_arns"),
    ("cluster-log-retention", _cluster(log_retention_days=10), "log_retention_days"),
    ("cluster-public-no-cidrs", _cluster(endpoint_public_access=True), "public_access_cidrs"),
    ("cluster-cidrs-not-public", _cluster(public_access_cidrs=["203.0.113.0/24"]), "endpoint_public_access"),
    ("cluster-bad-cidr", _cluster(endpoint_public_access=True, public_access_cidrs=["everyone"]), "public_access_cidrs"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    with pytest.raises(ValueError, match=needle):
        build(new_stack())


@pytest.mark.parametrize(("key", "value", "effect"), [("bad key", "", "NoSchedule"), ("k", "bad value!", "NoSchedule"), ("k", "", "Sometimes")])
def test_invalid_taints_are_rejected(key, value, effect):
    with pytest.raises(ValueError, match="taint"):
        Taint(key, value, effect)


def test_taints_map_to_eks_effects_and_tolerations():
    taint = Taint("example.com/dedicated", "llm", "NoExecute")
    assert taint.eks_effect == "NO_EXECUTE"
    assert taint.toleration() == {"key": "example.com/dedicated", "operator": "Equal", "value": "llm", "effect": "NoExecute"}
    assert Taint("k", "", "PreferNoSchedule").eks_effect == "PREFER_NO_SCHEDULE"


def test_tokens_pass_validation_for_plan_time_values():
    """Values from other resources (tokens) cannot be checked at synth time and must not be refused."""
    stack = new_stack()
    existing = ExistingCluster(stack, "e", name="other")
    role = NodeRole(stack, "r", role_name="r")
    key = EncryptionKey(stack, "k", alias="k", description="d", account_id=ACCOUNT, region=REGION)
    EksCluster(stack, "c", name="c", version="1.33", subnet_ids=existing.subnet_ids, kms_key_arn=key.key_arn,
               account_id=ACCOUNT, admin_principal_arns=[role.role_arn])
    ArtifactWriterIdentity(stack, "w", role_name="w", account_id=ACCOUNT, trusted_role_arns=[role.role_arn])


def test_roles_say_what_they_are_for_and_buckets_publish_events(built):
    tf = built["tf"]
    kinds = {r["name"]: r.get("tags", {}).get("llm-serving-stacks:identity") for r in resources(tf, "aws_iam_role").values()}
    assert kinds["test-serving"] == "serving" and kinds["test-writer"] == "artifact-writer"
    assert "node" in kinds.values()
    for name in (WEIGHTS, "test-lora-123456789012"):
        assert one(tf, "aws_s3_bucket_notification", bucket=bucket_ref(tf, name))["eventbridge"] is True


def test_pools_leave_their_auto_scaling_groups_untagged_unless_asked(built):
    assert resources(built["tf"], "aws_autoscaling_group_tag") == {}
    assert "k8s.amazonaws.com/accelerator" not in built["gpu"].labels
    assert NodePool.DEFAULTS["autoscaler_cluster_name"] is GpuNodePool.DEFAULTS["autoscaler_cluster_name"] is None


def test_node_pools_share_one_options_type_and_refuse_unknown_options():
    from infra import NodePoolOptions

    assert set(GpuNodePool.DEFAULTS) == set(NodePool.DEFAULTS) == set(NodePoolOptions.__annotations__)
    assert (GpuNodePool.DEFAULTS["ami_type"], NodePool.DEFAULTS["ami_type"]) == ("BOTTLEROCKET_x86_64_NVIDIA",
                                                                              "AL2023_x86_64_STANDARD")
    with pytest.raises(TypeError, match="unknown option.*max_sise"):
        _pool(GpuNodePool, max_sise=3)(new_stack())


def test_pool_defaults_are_the_environment_files():
    """A pool left at its defaults is the same in a cdktf app of one's own and from an environment file."""
    from stacks.config.schema import NodePool as PoolConfig

    schema = {name: field.default for name, field in PoolConfig.model_fields.items()}
    for cls in (NodePool, GpuNodePool):
        defaults = cls.DEFAULTS
        assert (defaults["min_size"], defaults["max_size"], defaults["desired_size"]) == (
            schema["min_size"], schema["max_size"], schema["desired_size"])
        assert defaults["capacity_type"] == schema["capacity_type"].upper()
        assert (defaults["labels"], list(defaults["taints"])) == (schema["labels"], schema["taints"])
        assert (defaults["efa"] is not None) is schema["efa"]


def test_grants_return_the_policy_they_attach():
    stack = new_stack()
    bucket, identity = _bucket()(stack), _serving()(stack)
    read = bucket.grant_read(identity, "models")
    assert read is bucket.grant_read(identity, "models/")  # the same grant: the same policy
    assert read.name_input == "read-b-models"
    secret = identity.grant_read_secret("hf", region=REGION, account_id=ACCOUNT)
    assert set(identity.policies) == {"read-b-models", secret.name_input}


def test_writer_context_wildcards_only_behind_the_opt_in():
    tags = "repo:acme/models:ref:refs/tags/v*"
    with pytest.raises(ValueError, match="github_subjects"):
        _writer(github_subjects=[tags])(new_stack())
    with pytest.raises(ValueError, match="no wildcard in its owner or name"):
        _writer(github_subjects=["repo:acme/*:ref:refs/tags/v*"], allow_context_wildcards=True)(new_stack())
    stack = new_stack()
    _writer(github_subjects=[tags], allow_context_wildcards=True)(stack)
    trust = trust_of(synth(stack), "w")
    assert trust["GitHubActions"]["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"] == [tags]
