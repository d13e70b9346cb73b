"""Every shipped environment applied with real Terraform against a local AWS, then read back.

The applies happen once, in parallel (`local_deployments` in conftest). What the stack
promised is read back through boto3 and compared with the synthesized JSON; a second
plan must be clean apart from the fields the emulator invents; prod refuses to be
destroyed and dev destroys cleanly (last: the serving test publishes into dev first).
"""

from __future__ import annotations

import json
import re

import pytest

from app.spec import UNPINNED_TAG
from conftest import resources
from stacks.config.schema import Bucket
from stacks.emulator.differences import EMULATOR_NOISE, NOT_EMULATED
from stacks.errors import ToolError
from stacks.specs.render import SPEC_FILES

ENVS = ("dev", "staging", "prod")
_REFERENCE = re.compile(r"\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}")


def resolve(value, state: dict[str, dict]):
    """A synthesized value with its `${type.name.attr}` references replaced by what Terraform applied."""
    if isinstance(value, str):
        return _REFERENCE.sub(lambda m: str(state[f"{m[1]}.{m[2]}"][m[3]]), value)
    if isinstance(value, list):
        return [resolve(v, state) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, state) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def states(local_deployments):
    return {name: d.terraform.state() for name, d in local_deployments.items()}


@pytest.mark.parametrize("env", ENVS)
def test_applied_outputs_name_what_the_plan_named(local_deployments, shipped_plans, env):
    outputs, names = local_deployments[env].outputs, shipped_plans[env].names
    assert (outputs["weights_bucket"], outputs["lora_bucket"], outputs["cluster_name"]) == (
        names.weights_bucket,
        names.lora_bucket,
        names.cluster,
    )
    account = shipped_plans[env].env.aws.account_id
    assert outputs["serving_role_arn"] == f"arn:aws:iam::{account}:role/{names.serving_role}"
    assert outputs["writer_role_arn"] == f"arn:aws:iam::{account}:role/{names.writer_role}"
    assert json.loads(outputs["node_groups"]) == {p.name: names.node_group(p.name) for p in shipped_plans[env].pools}


@pytest.mark.parametrize("env", ENVS)
def test_buckets_are_versioned_encrypted_private_and_expire_what_they_promised(local_deployments, shipped_plans, env):
    deployment, plan = local_deployments[env], shipped_plans[env]
    s3 = deployment.emulator.client("s3")
    key = deployment.outputs["kms_key_arn"]
    buckets = [(plan.names.weights_bucket, plan.env.buckets.weights), (plan.names.lora_bucket, plan.env.buckets.lora)]
    if plan.env.serving.target == "anyscale":
        buckets.append((plan.names.anyscale_bucket, Bucket()))  # the cloud's storage: the same defaults
    for bucket, settings in buckets:
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
        assert rule["BucketKeyEnabled"] is True
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        (ownership,) = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
        assert ownership["ObjectOwnership"] == "BucketOwnerEnforced"
        rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
        assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
            "DaysAfterInitiation": settings.abort_incomplete_uploads_days
        }
        assert (
            rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"]
            == settings.noncurrent_version_retention_days
        )
        assert all(r["Status"] == "Enabled" for r in rules.values())
        if bucket == plan.names.lora_bucket:
            assert rules["expire-staging"]["Expiration"] == {"Days": 7}
            assert rules["expire-staging"]["Filter"] == {"Prefix": "staging/"}
        else:
            assert "expire-staging" not in rules
        # Every request to it is logged, under a prefix of its own in the access log bucket.
        assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"] == {
            "TargetBucket": plan.names.access_log_bucket,
            "TargetPrefix": f"s3-access/{bucket}/",
        }
    logs = plan.names.access_log_bucket
    assert deployment.outputs["access_log_bucket"] == logs
    assert s3.get_bucket_versioning(Bucket=logs)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=logs)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert all(s3.get_public_access_block(Bucket=logs)["PublicAccessBlockConfiguration"].values())
    (log_rule,) = s3.get_bucket_lifecycle_configuration(Bucket=logs)["Rules"]
    assert log_rule["Expiration"] == {"Days": plan.env.buckets.access_logs.retention_days}
    delivery = json.loads(s3.get_bucket_policy(Bucket=logs)["Policy"])["Statement"]
    assert {s["Resource"] for s in delivery} == {f"arn:aws:s3:::{logs}/s3-access/{b}/*" for b, _ in buckets}
    # Bucket notifications are applied (EventBridge) but moto does not return them: see EMULATOR_NOISE.
    assert "eventbridge" in EMULATOR_NOISE["aws_s3_bucket_notification"][0]


def test_requests_to_the_data_buckets_are_logged_in_the_log_bucket(local_deployments):
    """The audit trail works end to end: the emulator delivers access logs as S3 does."""
    deployment = local_deployments["staging"]
    s3 = deployment.emulator.client("s3")
    weights, logs = deployment.outputs["weights_bucket"], deployment.outputs["access_log_bucket"]
    before = s3.list_objects_v2(Bucket=logs, Prefix=f"s3-access/{weights}/").get("KeyCount", 0)
    s3.list_objects_v2(Bucket=weights, Prefix="models/")
    after = s3.list_objects_v2(Bucket=logs, Prefix=f"s3-access/{weights}/")
    assert after["KeyCount"] > before
    entry = s3.get_object(Bucket=logs, Key=after["Contents"][-1]["Key"])["Body"].read().decode()
    assert f"/{weights}" in entry and "GET" in entry


@pytest.mark.parametrize("env", ENVS)
def test_the_key_rotates_and_its_alias_and_policy_are_the_synthesized_ones(
    local_deployments, synthesized, states, shipped_plans, env
):
    deployment, tf = local_deployments[env], synthesized[env]
    kms = deployment.emulator.client("kms")
    key_arn = deployment.outputs["kms_key_arn"]
    key_id = key_arn.rsplit("/", 1)[1]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases(KeyId=key_id)["Aliases"]}
    assert aliases == {f"alias/{shipped_plans[env].names.kms_alias}": key_id}
    (synthesized_key,) = resources(tf, "aws_kms_key").values()
    applied = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert applied == json.loads(resolve(synthesized_key["policy"], states[env]))


@pytest.mark.parametrize("env", ENVS)
def test_every_role_has_the_synthesized_trust_and_inline_policies(local_deployments, synthesized, states, env):
    iam = local_deployments[env].emulator.client("iam")
    tf = synthesized[env]
    roles = resources(tf, "aws_iam_role")
    assert roles
    for rid, role in roles.items():
        applied = iam.get_role(RoleName=role["name"])["Role"]
        assert applied["AssumeRolePolicyDocument"] == json.loads(resolve(role["assume_role_policy"], states[env]))
        for key, value in (role.get("tags") or {}).items():
            assert {"Key": key, "Value": value} in applied.get("Tags", [])
        synthesized_policies = {
            p["name"]: p["policy"]
            for p in resources(tf, "aws_iam_role_policy").values()
            if p["role"] == f"${{aws_iam_role.{rid}.name}}"
        }
        assert sorted(iam.list_role_policies(RoleName=role["name"])["PolicyNames"]) == sorted(synthesized_policies)
        for name, document in synthesized_policies.items():
            applied_document = iam.get_role_policy(RoleName=role["name"], PolicyName=name)["PolicyDocument"]
            assert applied_document == json.loads(resolve(document, states[env]))
        attached = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role["name"])["AttachedPolicies"]}
        expected = {
            a["policy_arn"]
            for a in resources(tf, "aws_iam_role_policy_attachment").values()
            if a["role"] == f"${{aws_iam_role.{rid}.name}}"
        }
        assert attached == expected


@pytest.mark.parametrize("env", ENVS)
def test_the_specs_are_published_exactly_at_their_content_addressed_prefix(local_deployments, synth_dir, env):
    deployment = local_deployments[env]
    s3 = deployment.emulator.client("s3")
    bucket, prefix = deployment.outputs["spec_prefix"].removeprefix("s3://").split("/", 1)
    for name in SPEC_FILES:
        obj = s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")
        assert obj["Body"].read().decode() == (synth_dir / "specs" / env / name).read_text()
        assert obj["ServerSideEncryption"] == "aws:kms"
        assert obj["SSEKMSKeyId"] == deployment.outputs["kms_key_arn"]
    code = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="code/")["Contents"]]
    assert len(code) == 1 and code[0].endswith(".zip")


@pytest.mark.parametrize("env", ENVS)
def test_a_second_plan_changes_nothing_but_what_the_emulator_invents(local_deployments, env):
    changes = local_deployments[env].pending_changes()
    assert [(c["address"], c["change"]["actions"]) for c in changes] == []


@pytest.mark.parametrize("env", ENVS)
def test_what_the_emulator_leaves_out_is_only_what_it_cannot_run(local_deployments, synthesized, env):
    applied = json.loads((local_deployments[env].workdir / "cdk.tf.json").read_text())
    gone = {kind for kind in synthesized[env]["resource"] if kind not in applied["resource"]}
    assert gone <= set(NOT_EMULATED)
    assert all(d.why for d in local_deployments[env].differences)


@pytest.mark.parametrize("env", ("dev", "staging", "prod"))
def test_the_weights_bucket_expires_only_tagged_snapshot_objects_after_the_environments_days(
    local_deployments, shipped_plans, env
):
    deployment, plan = local_deployments[env], shipped_plans[env]
    s3 = deployment.emulator.client("s3")
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=plan.names.weights_bucket)["Rules"]}
    rule = rules["expire-unpinned-snapshots"]
    assert rule["Status"] == "Enabled"
    assert rule["Expiration"] == {"Days": plan.env.buckets.weights.unpinned_snapshot_days}
    # On the tag alone here: moto cannot hold the `and` filter the provider sends
    # (stacks/emulator/differences.py); tests/infra/storage/test_snapshot_rules.py asserts the prefix too.
    assert rule["Filter"] == {"Tag": {"Key": UNPINNED_TAG[0], "Value": UNPINNED_TAG[1]}}
    assert any(d.what.startswith("lifecycle rules that filter on a prefix and a tag") for d in deployment.differences)
    lora = s3.get_bucket_lifecycle_configuration(Bucket=plan.names.lora_bucket)["Rules"]
    assert "expire-unpinned-snapshots" not in {r["ID"] for r in lora}


def test_prod_refuses_to_be_destroyed(local_deployments):
    with pytest.raises(ToolError, match="Instance cannot be destroyed"):
        local_deployments["prod"].terraform.destroy()
    s3 = local_deployments["prod"].emulator.client("s3")
    s3.head_bucket(Bucket=local_deployments["prod"].outputs["weights_bucket"])  # still there


def test_dev_destroys_cleanly_once_its_buckets_are_emptied(local_deployments):
    """Last: buckets keep force_destroy off, so an operator empties them (every version) first."""
    deployment = local_deployments["dev"]
    s3 = deployment.emulator.client("s3")
    # The log bucket is not emptied: S3 keeps delivering logs, so dev's goes with its logs (force_destroy).
    for bucket in (
        deployment.outputs["weights_bucket"],
        deployment.outputs["lora_bucket"],
        deployment.plan.names.anyscale_bucket,
    ):
        versions = s3.list_object_versions(Bucket=bucket)
        stale = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
            if not v["Key"].startswith(("specs/", "code/"))
        ]  # Terraform removes its own objects
        if stale:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": stale})
    logs = deployment.outputs["access_log_bucket"]
    assert s3.list_objects_v2(Bucket=logs)["KeyCount"] > 0  # the emptying itself was logged
    deployment.terraform.destroy()
    assert deployment.terraform.state() == {}
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert not buckets & {deployment.outputs["weights_bucket"], deployment.outputs["lora_bucket"], logs}
