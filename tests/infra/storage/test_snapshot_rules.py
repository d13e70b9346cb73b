"""Two bucket rules for model weight snapshots, as synthesized.

Uploads into a `ModelBucket` must be SSE-KMS with the bucket's key (bucket policy denies), and
the weights bucket expires objects under `models/` that still carry the unpinned tag
(`expire_tagged`); the writer may tag objects there (`grant_tag`), the serving identity may not.
The statements are asserted exactly: the local AWS cannot evaluate them
(tests/emulator/test_snapshot_rules_apply.py applies and reads them back).
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml

import conftest
from app.spec import UNPINNED_TAG
from conftest import policies_of, resources

ACCOUNT, REGION = "123456789012", "eu-west-1"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WEIGHTS, LORA = "snap-weights-123456789012", "snap-lora-123456789012"
ENVS = ("dev", "staging", "prod")


def sse_denies(bucket: str, key_arn: str) -> list[dict]:
    """The four statements every ModelBucket's policy ends with, as AWS reads them."""
    base = {
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": ["s3:PutObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/*"],
    }
    return [
        {
            "Sid": "DenyOtherEncryption",
            **base,
            "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}},
        },
        {
            "Sid": "DenyOtherKmsKey",
            **base,
            "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}},
        },
        {
            "Sid": "DenyKmsWithoutKey",
            **base,
            "Condition": {
                "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "true"},
            },
        },
        {
            "Sid": "DenyCustomerKeys",
            **base,
            "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}},
        },
    ]


@pytest.fixture(scope="module")
def built():
    from infra import ArtifactWriterIdentity, EncryptionKey, ModelBucket, ServingIdentity
    from infra.storage.bucket import TaggedExpiration

    stack = conftest.new_stack("snapshots", REGION)
    weights = ModelBucket(
        stack,
        "weights",
        bucket_name=WEIGHTS,
        kms_key_arn=KEY,
        region=REGION,
        expire_tagged=[TaggedExpiration("expire-unpinned-snapshots", "models/", UNPINNED_TAG, 30)],
    )
    created = EncryptionKey(stack, "key", alias="snap", description="d", account_id=ACCOUNT, region=REGION)
    lora = ModelBucket(
        stack, "lora", bucket_name=LORA, kms_key_arn=created.key_arn, region=REGION, expire_prefixes={"staging": 7}
    )
    serving = ServingIdentity(
        stack,
        "serving",
        role_name="snap-serving",
        cluster_name="c",
        namespace="llm",
        service_account="ray",
        account_id=ACCOUNT,
    )
    writer = ArtifactWriterIdentity(
        stack,
        "writer",
        role_name="snap-writer",
        account_id=ACCOUNT,
        github_subjects=["repo:acme/models:ref:refs/heads/main"],
    )
    weights.grant_read(serving, "models")
    for grant in (weights.grant_write, weights.grant_delete, weights.grant_tag):
        grant(writer, "models")
    weights.grant_tag(writer, "models/")  # the same grant again: still one policy
    lora.add_object("spec", "specs/dev/serve-config.yaml", "applications: []\n")
    return {"tf": conftest.synth_stack(stack), "writer": writer, "serving": serving}


def bucket_resource(tf: dict, kind: str, bucket: str) -> dict:
    (rid,) = [rid for rid, b in resources(tf, "aws_s3_bucket").items() if b["bucket"] == bucket]
    (found,) = [r for r in resources(tf, kind).values() if r["bucket"] == f"${{aws_s3_bucket.{rid}.id}}"]
    return found


def statements(tf: dict, bucket: str) -> list[dict]:
    return json.loads(bucket_resource(tf, "aws_s3_bucket_policy", bucket)["policy"])["Statement"]


# --- uploads must be SSE-KMS with the bucket's key ----------------------------------------


def test_the_bucket_policy_denies_every_upload_not_encrypted_with_the_key(built):
    tf = built["tf"]
    policy = statements(tf, WEIGHTS)
    assert [s["Sid"] for s in policy[:2]] == ["DenyInsecureTransport", "DenyOutdatedTls"]
    assert policy[2:] == sse_denies(WEIGHTS, KEY)


def test_the_key_in_the_policy_is_the_one_the_bucket_and_its_own_objects_encrypt_with(built):
    """A created key's ARN is known at apply: the policy, the default encryption and `add_object`
    all name the same reference, so a synthesized object satisfies the policy by construction."""
    tf = built["tf"]
    (key_id,) = resources(tf, "aws_kms_key")
    arn = f"${{aws_kms_key.{key_id}.arn}}"
    assert statements(tf, LORA)[2:] == sse_denies(LORA, arn)
    (rule,) = bucket_resource(tf, "aws_s3_bucket_server_side_encryption_configuration", LORA)["rule"]
    assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "aws:kms", "kms_master_key_id": arn}
    (spec,) = resources(tf, "aws_s3_object").values()
    assert (spec["server_side_encryption"], spec["kms_key_id"], spec["bucket_key_enabled"]) == ("aws:kms", arn, True)


def test_the_access_log_bucket_keeps_its_sse_s3_uploads(synthesized, shipped_plans):
    """S3 delivers access logs only to SSE-S3 buckets: the log bucket gets none of these denies."""
    tf = synthesized["prod"]
    logs = statements(tf, shipped_plans["prod"].names.access_log_bucket)
    assert not [s for s in logs if "s3:PutObject" in s["Action"] and s["Effect"] == "Deny"]


@pytest.mark.parametrize("env", ENVS)
def test_every_data_bucket_of_an_environment_requires_its_key(synthesized, shipped_plans, env):
    tf, names = synthesized[env], shipped_plans[env].names
    (key_id,) = resources(tf, "aws_kms_key")
    for bucket in (names.weights_bucket, names.lora_bucket):
        assert statements(tf, bucket)[2:] == sse_denies(bucket, f"${{aws_kms_key.{key_id}.arn}}")
    if shipped_plans[env].env.serving.target == "anyscale":
        # Anyscale's services choose their own upload headers: only TLS is enforced there.
        assert len(statements(tf, names.anyscale_bucket)) == 2


# --- never-pinned snapshots expire ------------------------------------------------------------


def rules(tf: dict, bucket: str) -> dict[str, dict]:
    return {r["id"]: r for r in bucket_resource(tf, "aws_s3_bucket_lifecycle_configuration", bucket)["rule"]}


def unpinned_rule(days: int) -> dict:
    return {
        "id": "expire-unpinned-snapshots",
        "status": "Enabled",
        "filter": [{"and": [{"prefix": "models/", "tags": {UNPINNED_TAG[0]: UNPINNED_TAG[1]}}]}],
        "expiration": [{"days": days}],
    }


def test_objects_under_a_prefix_carrying_the_tag_expire_after_the_days(built):
    weights = rules(built["tf"], WEIGHTS)
    assert weights["expire-unpinned-snapshots"] == unpinned_rule(30)
    # Noncurrent versions (what expiring leaves behind) still go after their own retention.
    assert set(weights) == {
        "abort-incomplete-multipart-uploads",
        "expire-noncurrent-versions",
        "expire-unpinned-snapshots",
    }
    assert set(rules(built["tf"], LORA)) == {
        "abort-incomplete-multipart-uploads",
        "expire-noncurrent-versions",
        "expire-staging",
    }


@pytest.mark.parametrize("env", ENVS)
def test_the_weights_bucket_expires_unpinned_snapshots_after_the_environments_days(synthesized, shipped_plans, env):
    tf, plan = synthesized[env], shipped_plans[env]
    days = plan.env.buckets.weights.unpinned_snapshot_days
    assert rules(tf, plan.names.weights_bucket)["expire-unpinned-snapshots"] == unpinned_rule(days)
    assert "expire-unpinned-snapshots" not in rules(tf, plan.names.lora_bucket)
    if plan.env.serving.target == "anyscale":
        assert "expire-unpinned-snapshots" not in rules(tf, plan.names.anyscale_bucket)


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    """dev with `buckets.weights.unpinned_snapshot_days` set to 14, and to null (no rule)."""
    from stacks.config.loader import ENVIRONMENTS_DIR
    from stacks.planning.plan import plan_file
    from stacks.synth.run import synthesize

    dev = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    out = {}
    for days in (14, None):
        data = copy.deepcopy(dev)
        weights = data.setdefault("buckets", {}).setdefault("weights", {})
        weights["unpinned_snapshot_days"] = days
        root = tmp_path_factory.mktemp(f"unpinned-{days}")
        (root / "dev.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        plan = plan_file(root / "dev.yaml")
        synthesize([plan], root / "cdktf.out", replace_all=True)
        out[days] = (plan, json.loads((root / "cdktf.out" / "stacks" / "dev" / "cdk.tf.json").read_text()))
    return out


def test_the_environment_sets_the_days_or_turns_the_rule_off(configured):
    plan, tf = configured[14]
    assert rules(tf, plan.names.weights_bucket)["expire-unpinned-snapshots"] == unpinned_rule(14)
    plan, tf = configured[None]
    assert "expire-unpinned-snapshots" not in rules(tf, plan.names.weights_bucket)
    # Without the rule, the writer still tags: publishing does not depend on the setting.
    assert "tag-weights-models" in {p["name"] for p in resources(tf, "aws_iam_role_policy").values()}


# --- tagging: the writer, never the serving identity --------------------------------------------


def test_grant_tag_is_one_policy_of_exactly_the_three_tagging_actions_on_the_prefix(built):
    tf = built["tf"]
    (policy,) = [p for p in resources(tf, "aws_iam_role_policy").values() if p["name"] == "tag-weights-models"]
    assert json.loads(policy["policy"])["Statement"] == [
        {
            "Sid": "TagObjects",
            "Effect": "Allow",
            "Action": ["s3:PutObjectTagging", "s3:GetObjectTagging", "s3:DeleteObjectTagging"],
            "Resource": [f"arn:aws:s3:::{WEIGHTS}/models/*"],
        }
    ]
    assert sorted(built["writer"].policies) == ["delete-weights-models", "tag-weights-models", "write-weights-models"]
    assert sorted(built["serving"].policies) == ["read-weights-models"]


@pytest.mark.parametrize("env", ENVS)
def test_the_environments_writer_tags_snapshots_and_the_serving_role_gets_nothing_new(synthesized, shipped_plans, env):
    tf, names = synthesized[env], shipped_plans[env].names
    roles = {r["name"]: rid for rid, r in resources(tf, "aws_iam_role").items()}
    writer = policies_of(tf, roles[names.writer_role])
    tagging = [s for s in writer if any("Tagging" in a for a in s["Action"])]
    assert tagging == [
        {
            "Sid": "TagObjects",
            "Effect": "Allow",
            "Action": ["s3:PutObjectTagging", "s3:GetObjectTagging", "s3:DeleteObjectTagging"],
            "Resource": [f"arn:aws:s3:::{names.weights_bucket}/models/*"],
        }
    ]
    serving = policies_of(tf, roles[names.serving_role])
    assert not [a for s in serving for a in s["Action"] if "Tagging" in a]


# --- what TaggedExpiration and ModelBucket refuse -------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Expire"}, "lowercase letters"),
        ({"name": "expire-noncurrent-versions"}, "not one of"),
        ({"prefix": "models/*"}, "no leading '/'"),
        ({"prefix": ""}, "give a key prefix"),
        ({"tag": ("", "true")}, "a key of 1-128"),
        ({"tag": ("k" * 129, "true")}, "a key of 1-128"),
        ({"tag": ("k", "v" * 257)}, "a value of at most 256"),
        ({"days": 0}, "at least 1"),
    ],
)
def test_a_tagged_expiration_refuses_what_s3_would(kwargs, message):
    from infra.storage.bucket import TaggedExpiration

    rule = {"name": "expire-unpinned-snapshots", "prefix": "models", "tag": UNPINNED_TAG, "days": 30, **kwargs}
    with pytest.raises(ValueError, match=message):
        TaggedExpiration(**rule)


def test_a_rule_name_is_used_once_per_bucket():
    from infra import ModelBucket
    from infra.storage.bucket import TaggedExpiration

    rule = TaggedExpiration("expire-staging", "staging", ("k", "v"), 3)
    for kwargs in ({"expire_tagged": [rule, rule]}, {"expire_tagged": [rule], "expire_prefixes": {"staging": 7}}):
        stack = conftest.new_stack("clash", REGION)
        with pytest.raises(ValueError, match="'expire-staging' is used by another lifecycle rule"):
            ModelBucket(stack, "b", bucket_name=WEIGHTS, kms_key_arn=KEY, region=REGION, **kwargs)
