"""ModelBucket on its own: secure defaults, lifecycle, grants and validation.

Two small stacks, each synthesized once per module (one in the aws-cn partition); the
validation cases build buckets without synthesizing anything.
"""

from __future__ import annotations

import json

import pytest
from cdktf import TerraformStack

import conftest
from infra import ArtifactWriterIdentity, EncryptionKey, ModelBucket, ServingIdentity
from terraform_json import bucket_ref, matching, one, role_ref, statements_named

ACCOUNT, REGION = "123456789012", "eu-west-1"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WEIGHTS = "test-weights-123456789012"
WEIGHTS_ARN = f"arn:aws:s3:::{WEIGHTS}"
LORA = "test-lora-123456789012"


def new_stack(name: str = "test") -> TerraformStack:
    return conftest.new_stack(name, REGION)


synth = conftest.synth_stack


@pytest.fixture(scope="module")
def built():
    """Two buckets under a created key (one with its lifecycle days set, one kept from destroy with a
    scratch area), read by a serving identity and written by a writer."""
    stack = new_stack("buckets")
    key = EncryptionKey(stack, "key", alias="test-data", description="test", account_id=ACCOUNT, region=REGION)
    weights = ModelBucket(
        stack,
        "weights",
        bucket_name=WEIGHTS,
        kms_key_arn=key.key_arn,
        region=REGION,
        noncurrent_version_retention_days=45,
        abort_incomplete_uploads_days=3,
    )
    lora = ModelBucket(
        stack,
        "lora",
        bucket_name=LORA,
        kms_key_arn=key.key_arn,
        region=REGION,
        prevent_destroy=True,
        expire_prefixes={"staging/": 2},
    )
    serving = ServingIdentity(
        stack,
        "serving",
        role_name="test-serving",
        cluster_name="test",
        namespace="llm",
        service_account="ray",
        account_id=ACCOUNT,
    )
    writer = ArtifactWriterIdentity(
        stack,
        "writer",
        role_name="test-writer",
        account_id=ACCOUNT,
        github_subjects=["repo:acme/models:ref:refs/heads/main"],
    )
    weights.grant_read(serving, "models")
    weights.grant_read(serving, "models/")  # the same grant again (trailing slash): no second policy
    lora.grant_read(serving, "adapters")
    for bucket, prefix in ((weights, "models"), (lora, "adapters")):
        bucket.grant_write(writer, prefix)
        bucket.grant_delete(writer, prefix)
    return {"tf": synth(stack), "serving": serving, "writer": writer, "weights": weights}


@pytest.fixture(scope="module")
def china():
    """A bucket read by a serving identity in the aws-cn partition."""
    stack = new_stack("china")
    region = "cn-north-1"
    key = EncryptionKey(
        stack, "key", alias="cn-data", description="d", account_id=ACCOUNT, region=region, partition="aws-cn"
    )
    bucket = ModelBucket(
        stack,
        "weights",
        bucket_name="cn-weights-123456789012",
        kms_key_arn=key.key_arn,
        region=region,
        partition="aws-cn",
    )
    serving = ServingIdentity(
        stack,
        "serving",
        role_name="cn-serving",
        cluster_name="cn",
        namespace="llm",
        service_account="ray",
        account_id=ACCOUNT,
        partition="aws-cn",
    )
    bucket.grant_read(serving, "models")
    return synth(stack)


def test_bucket_is_encrypted_versioned_private_and_owner_enforced(built):
    tf = built["tf"]
    for name in (WEIGHTS, LORA):
        ref = bucket_ref(tf, name)
        sse = one(tf, "aws_s3_bucket_server_side_encryption_configuration", bucket=ref)["rule"][0]
        assert sse["bucket_key_enabled"] is True
        assert sse["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
        assert sse["apply_server_side_encryption_by_default"]["kms_master_key_id"].startswith("${aws_kms_key.")
        assert one(tf, "aws_s3_bucket_versioning", bucket=ref)["versioning_configuration"]["status"] == "Enabled"
        block = one(tf, "aws_s3_bucket_public_access_block", bucket=ref)
        assert [
            block[k]
            for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        ] == [True] * 4
        assert (
            one(tf, "aws_s3_bucket_ownership_controls", bucket=ref)["rule"]["object_ownership"] == "BucketOwnerEnforced"
        )
        assert one(tf, "aws_s3_bucket", bucket=name)["force_destroy"] is False


def test_bucket_policy_denies_plain_http_and_old_tls(built):
    tf = built["tf"]
    policy = one(tf, "aws_s3_bucket_policy", bucket=bucket_ref(tf, WEIGHTS))
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    # The rest are the SSE-KMS upload denies: tests/infra/storage/test_snapshot_rules.py.
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
    assert (
        rules["abort-incomplete-multipart-uploads"]["abort_incomplete_multipart_upload"][0]["days_after_initiation"]
        == 3
    )
    expire = rules["expire-noncurrent-versions"]
    assert expire["noncurrent_version_expiration"][0]["noncurrent_days"] == 45
    assert expire["expiration"][0]["expired_object_delete_marker"] is True
    assert all(r["status"] == "Enabled" and r["filter"] == [{"prefix": ""}] for r in rules.values())
    (dependency,) = lifecycle["depends_on"]
    assert dependency.startswith("aws_s3_bucket_versioning.weights_")
    defaults = one(tf, "aws_s3_bucket_lifecycle_configuration", bucket=bucket_ref(tf, LORA))
    days = {r["id"]: r for r in defaults["rule"]}
    assert (
        days["abort-incomplete-multipart-uploads"]["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 7
    )
    assert days["expire-noncurrent-versions"]["noncurrent_version_expiration"][0]["noncurrent_days"] == 30
    scratch = days["expire-staging"]
    assert scratch["filter"] == [{"prefix": "staging/"}] and scratch["expiration"] == [{"days": 2}]


def test_prevent_destroy_only_where_asked(built):
    tf = built["tf"]
    assert one(tf, "aws_s3_bucket", bucket=LORA)["lifecycle"] == {"prevent_destroy": True}
    assert "lifecycle" not in one(tf, "aws_s3_bucket", bucket=WEIGHTS)


def test_bucket_properties_are_known_at_synth(built):
    weights = built["weights"]
    assert weights.bucket_name == WEIGHTS
    assert weights.bucket_arn == WEIGHTS_ARN
    assert weights.objects_arn("models/") == f"{WEIGHTS_ARN}/models/*"


def test_buckets_publish_events(built):
    for name in (WEIGHTS, LORA):
        assert (
            one(built["tf"], "aws_s3_bucket_notification", bucket=bucket_ref(built["tf"], name))["eventbridge"] is True
        )


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
    assert statements["DecryptObjects"]["Condition"] == {
        "StringEquals": {
            "kms:ViaService": "s3.eu-west-1.amazonaws.com",
            "kms:EncryptionContext:aws:s3:arn": WEIGHTS_ARN,
        }
    }


def test_serving_identity_can_only_read(built):
    tf = built["tf"]
    ref = role_ref(tf, "test-serving")
    policies = matching(tf, "aws_iam_role_policy", role=ref)
    assert sorted(p["name"] for p in policies) == ["read-lora-adapters", "read-weights-models"]
    statements = [s for p in policies for s in json.loads(p["policy"])["Statement"]]
    assert {a for s in statements for a in s["Action"]} == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    assert all(s["Effect"] == "Allow" and "*" not in s["Resource"] for s in statements)
    objects = {r for s in statements if s["Action"] == ["s3:GetObject"] for r in s["Resource"]}
    assert objects == {f"{WEIGHTS_ARN}/models/*", f"arn:aws:s3:::{LORA}/adapters/*"}


def test_grant_write_and_delete_are_separate_and_exact(built):
    tf = built["tf"]
    write = statements_named(tf, "write-weights-models")
    assert set(write) == {"WriteObjects", "ListUploads", "EncryptObjects"}
    assert write["WriteObjects"]["Action"] == ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    assert write["WriteObjects"]["Resource"] == [f"{WEIGHTS_ARN}/models/*"]
    assert (write["ListUploads"]["Action"], write["ListUploads"]["Resource"]) == (
        ["s3:ListBucketMultipartUploads"],
        [WEIGHTS_ARN],
    )
    assert write["EncryptObjects"]["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert write["EncryptObjects"]["Condition"]["StringEquals"]["kms:ViaService"] == "s3.eu-west-1.amazonaws.com"
    delete = statements_named(tf, "delete-weights-models")
    assert [(s["Action"], s["Resource"]) for s in delete.values()] == [
        (["s3:DeleteObject"], [f"{WEIGHTS_ARN}/models/*"])
    ]
    writer = {a for statements in built["writer"].policies.values() for s in statements for a in s.actions}
    assert not writer & {"s3:DeleteObjectVersion", "s3:GetObject", "s3:PutBucketPolicy", "s3:*"}


def test_the_same_grant_twice_is_one_policy(built):
    assert len(matching(built["tf"], "aws_iam_role_policy", name="read-weights-models")) == 1
    assert sorted(built["serving"].policies) == ["read-lora-adapters", "read-weights-models"]


def test_policy_names_follow_bucket_verb_and_prefix_within_iam_limits():
    stack = new_stack()
    bucket = ModelBucket(stack, "weights", bucket_name="names-bucket-1", kms_key_arn=KEY, region=REGION)
    identity = ServingIdentity(
        stack, "s", role_name="r", cluster_name="c", namespace="n", service_account="a", account_id=ACCOUNT
    )
    bucket.grant_read(identity, "models/llama 3")
    bucket.grant_read(identity, "x" * 200)
    names = sorted(identity.policies)
    assert names[0] == "read-weights-models-llama-3"
    assert len(names[1]) == 128 and names[1].startswith("read-weights-xxx")


def test_grants_return_the_policy_they_attach():
    stack = new_stack()
    bucket, identity = _bucket()(stack), _serving()(stack)
    read = bucket.grant_read(identity, "models")
    assert read is bucket.grant_read(identity, "models/")  # the same grant: the same policy
    assert read.name_input == "read-b-models"
    secret = identity.grant_read_secret("hf", region=REGION, account_id=ACCOUNT)
    assert set(identity.policies) == {"read-b-models", secret.name_input}


def test_china_partition_arns_and_endpoints(china):
    read = statements_named(china, "read-weights-models")
    assert read["ReadObjects"]["Resource"] == ["arn:aws-cn:s3:::cn-weights-123456789012/models/*"]
    assert read["DecryptObjects"]["Condition"]["StringEquals"] == {
        "kms:ViaService": "s3.cn-north-1.amazonaws.com.cn",
        "kms:EncryptionContext:aws:s3:arn": "arn:aws-cn:s3:::cn-weights-123456789012",
    }
    bucket_policy = json.loads(one(china, "aws_s3_bucket_policy")["policy"])
    assert bucket_policy["Statement"][0]["Resource"][0] == "arn:aws-cn:s3:::cn-weights-123456789012"


# --- validation: every ValueError a caller can hit ----------------------------------------


def _bucket(**kw):
    props = {"bucket_name": "valid-bucket-name", "kms_key_arn": KEY, "region": REGION, **kw}
    return lambda s: ModelBucket(s, "b", **props)


def _serving(**kw):
    props = {
        "role_name": "r",
        "cluster_name": "c",
        "namespace": "n",
        "service_account": "a",
        "account_id": ACCOUNT,
        **kw,
    }
    return lambda s: ServingIdentity(s, "i", **props)


def _grant(verb: str, prefix: str):
    return lambda s: getattr(_bucket()(s), f"grant_{verb}")(_serving()(s), prefix)


INVALID = [
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
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    with pytest.raises(ValueError, match=needle):
        build(new_stack())
