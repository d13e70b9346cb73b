"""The two snapshot rules applied with real Terraform against the local AWS, and what moto can and
cannot show of them.

moto does not evaluate the SSE-KMS upload denies (it has no value for their condition keys and
treats such a Deny as holding, so it refuses every upload, compliant or not: shown below), so
the emulator copy leaves them out (stacks/emulator/differences.py) and the shipped environments
apply without them. Here dev's buckets and key (without objects, which moto would refuse) are
applied with the policies exactly as synthesized, and read back. The lifecycle rule is read back
from the shipped environments' apply in test_local_deploy.py (before dev is destroyed there), on
its tag alone (moto cannot hold the `and` filter the provider sends: another difference of the
emulator copy). And our uploader is shown to send no
encryption header, so S3 encrypts with the bucket's default (the environment's key) and the
denies never apply to it.
"""

from __future__ import annotations

import json
import re
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import resources
from local_apply import only, start

# The construct paths (under the stack) applied here; objects go out (moto would refuse them under
# these policies), as do access logging (to a bucket not applied) and lifecycle (read back from
# the shipped apply: S3 lifecycle is what the provider waits ~55 s on).
KEPT = ("data-key/", "weights/", "lora/")
LEFT_OUT = ("aws_s3_object", "aws_s3_bucket_logging", "aws_s3_bucket_lifecycle_configuration")
SSE_DENIES = ["DenyOtherEncryption", "DenyOtherKmsKey", "DenyKmsWithoutKey", "DenyCustomerKeys"]
_REFERENCE = re.compile(r"\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}")


def resolve(text: str, state: dict[str, dict]) -> str:
    """A synthesized string with its `${type.name.attr}` references replaced by what Terraform applied."""
    return _REFERENCE.sub(lambda m: str(state[f"{m[1]}.{m[2]}"][m[3]]), text)


@pytest.fixture(scope="module")
def applied(synth_dir, shipped_plans, tmp_path_factory):
    plan = shipped_plans["dev"]
    tf = json.loads((synth_dir / "stacks" / "dev" / "cdk.tf.json").read_text())
    subset = only(tf, KEPT, LEFT_OUT)
    deployment = start(plan, subset, tmp_path_factory.mktemp("snapshot-rules"))
    try:
        # The emulator copy left the policies out (they held only denies moto cannot evaluate):
        # with no object to upload, they can go back exactly as synthesized.
        emulated = json.loads((deployment.workdir / "cdk.tf.json").read_text())
        emulated["resource"]["aws_s3_bucket_policy"] = subset["resource"]["aws_s3_bucket_policy"]
        deployment.write(emulated)
        deployment.apply()
        yield deployment, plan, subset, deployment.terraform.state()
    finally:
        deployment.close()


def test_the_upload_denies_are_applied_exactly_as_synthesized(applied):
    deployment, plan, subset, state = applied
    s3 = deployment.emulator.client("s3")
    (key_address,) = [a for a in state if a.startswith("aws_kms_key.")]
    key_arn = state[key_address]["arn"]
    synthesized = {b["bucket"]: b["policy"] for b in resources(subset, "aws_s3_bucket_policy").values()}
    assert len(synthesized) == 2
    for bucket in (plan.names.weights_bucket, plan.names.lora_bucket):
        ref = next(ref for ref in synthesized if bucket in resolve(ref, state))
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        assert policy == json.loads(resolve(synthesized[ref], state))
        denies = {s["Sid"]: s for s in policy["Statement"]}
        assert [s["Sid"] for s in policy["Statement"]][2:] == SSE_DENIES
        for sid in SSE_DENIES:
            assert (denies[sid]["Action"], denies[sid]["Resource"]) == (["s3:PutObject"], [f"arn:aws:s3:::{bucket}/*"])
        # The one key the policy allows is the one the bucket encrypts with by default.
        allowed = denies["DenyOtherKmsKey"]["Condition"]["StringNotEqualsIfExists"]
        assert allowed == {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}
        (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}


# --- against moto as a plain S3 server ------------------------------------------------------------


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def encrypted_bucket(s3, s3_endpoint):
    """A bucket encrypting with a KMS key by default, as a ModelBucket does; (name, key ARN)."""
    key_arn = boto3.client("kms", endpoint_url=s3_endpoint, region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    bucket = f"snapshot-rules-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    return bucket, key_arn


def test_moto_cannot_evaluate_the_upload_denies_so_the_emulator_leaves_them_out(s3, encrypted_bucket):
    """moto refuses even an upload S3 accepts (no encryption header, or this key by ARN). If this
    fails, moto evaluates these conditions now: keep the denies in the emulator copy
    (stacks/emulator/differences.py) and test the refused uploads against it instead."""
    from infra.identity.policy import kms_upload_statements, policy_document

    bucket, key_arn = encrypted_bucket
    s3.put_object(Bucket=bucket, Key="models/m/0123456789abcdef/hash", Body=b"0")  # no policy yet: accepted
    s3.put_bucket_policy(
        Bucket=bucket, Policy=policy_document(kms_upload_statements(f"arn:aws:s3:::{bucket}", key_arn))
    )
    for accepted_by_s3 in ({}, {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_arn}):
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket, Key="models/m/0123456789abcdef/config.json", Body=b"{}", **accepted_by_s3)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("size", (1024, 6 * 1024 * 1024), ids=("single-part", "multipart"))
def test_our_uploads_name_no_encryption_so_s3_uses_the_buckets_key(s3, encrypted_bucket, tmp_path, size):
    """Every request of a publish (PutObject, or CreateMultipartUpload, UploadPart and Complete)
    carries none of the headers the denies test: S3 encrypts with the bucket's default key."""
    from boto3.s3.transfer import TransferConfig

    from stacks.publishing.files import with_digests
    from stacks.publishing.objects import upload_missing
    from stacks.publishing.scan import local_files

    bucket, key_arn = encrypted_bucket
    (tmp_path / "model.safetensors").write_bytes(b"\0" * size)
    config = TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, preferred_transfer_client="classic"
    )
    files = with_digests(local_files(tmp_path), config)
    sent: list[tuple[str, dict]] = []
    s3.meta.events.register("before-send.s3", lambda request, **_: sent.append((request.url, dict(request.headers))))
    uploaded, _ = upload_missing(s3, bucket, "models/m/0123456789abcdef/", files, transfer_config=config)
    assert uploaded == ["model.safetensors"]
    assert sent and len([url for url, _ in sent if "partNumber=" in url]) == (
        2 if size > config.multipart_threshold else 0
    )
    assert not [
        (url, name)
        for url, headers in sent
        for name in headers
        if name.lower().startswith("x-amz-server-side-encryption")
    ]
    head = s3.head_object(Bucket=bucket, Key="models/m/0123456789abcdef/model.safetensors")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)
