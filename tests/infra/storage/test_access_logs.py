"""AccessLogBucket and ModelBucket.log_access_to: audit of every request to the data buckets."""

from __future__ import annotations

import json

import pytest
from conftest import new_stack, resources, synth_stack
from infra import ModelBucket
from infra.storage.access_logs import AccessLogBucket

ACCOUNT, REGION = "123456789012", "eu-west-1"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SOURCES = ["test-weights-123456789012", "test-lora-123456789012"]
LOGS = "test-logs-123456789012"


def one(tf: dict, kind: str, **match) -> dict:
    (found,) = [r for r in resources(tf, kind).values() if all(r.get(k) == v for k, v in match.items())]
    return found


@pytest.fixture(scope="module")
def logged():
    stack = new_stack("logged", REGION)
    logs = AccessLogBucket(
        stack, "logs", bucket_name=LOGS, source_buckets=SOURCES, account_id=ACCOUNT, retention_days=90
    )
    for i, name in enumerate(SOURCES):
        ModelBucket(stack, f"data{i}", bucket_name=name, kms_key_arn=KEY, region=REGION).log_access_to(logs)
    return synth_stack(stack)


def _bucket_id(tf: dict, name: str) -> str:
    (rid,) = [rid for rid, b in resources(tf, "aws_s3_bucket").items() if b["bucket"] == name]
    return rid


def test_the_log_bucket_has_the_data_buckets_defaults_but_sse_s3(logged):
    rid = _bucket_id(logged, LOGS)
    ref = f"${{aws_s3_bucket.{rid}.id}}"
    bucket = resources(logged, "aws_s3_bucket")[rid]
    assert bucket["tags"] == {"llm-serving-stacks:purpose": "access-logs"} and bucket["force_destroy"] is False
    assert "lifecycle" not in bucket  # prevent_destroy is opt-in, as for data buckets
    block = one(logged, "aws_s3_bucket_public_access_block", bucket=ref)
    assert all(
        block[k] is True
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    assert (
        one(logged, "aws_s3_bucket_ownership_controls", bucket=ref)["rule"]["object_ownership"] == "BucketOwnerEnforced"
    )
    assert one(logged, "aws_s3_bucket_versioning", bucket=ref)["versioning_configuration"]["status"] == "Enabled"
    # Log delivery supports SSE-S3 only; SSE-KMS would silently drop every log.
    sse = one(logged, "aws_s3_bucket_server_side_encryption_configuration", bucket=ref)
    assert sse["rule"] == [{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}]
    (rule,) = one(logged, "aws_s3_bucket_lifecycle_configuration", bucket=ref)["rule"]
    assert rule["expiration"] == [{"days": 90}]
    assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}]


def test_only_the_logging_service_writes_and_only_for_the_named_buckets_of_the_account(logged):
    ref = f"${{aws_s3_bucket.{_bucket_id(logged, LOGS)}.id}}"
    policy = json.loads(one(logged, "aws_s3_bucket_policy", bucket=ref)["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"DeliverAccessLogs0", "DeliverAccessLogs1", "DenyInsecureTransport", "DenyOutdatedTls"}
    for i, source in enumerate(SOURCES):
        write = by_sid[f"DeliverAccessLogs{i}"]
        assert write["Effect"] == "Allow" and write["Principal"] == {"Service": "logging.s3.amazonaws.com"}
        # Each source writes under its own prefix only.
        assert write["Action"] == ["s3:PutObject"] and write["Resource"] == [
            f"arn:aws:s3:::{LOGS}/s3-access/{source}/*"
        ]
        assert write["Condition"] == {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{source}"},
        }
    deny = by_sid["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert by_sid["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}


def test_each_data_bucket_logs_under_its_own_prefix(logged):
    target = f"${{aws_s3_bucket.{_bucket_id(logged, LOGS)}.id}}"
    logging = {r["bucket"]: r for r in resources(logged, "aws_s3_bucket_logging").values()}
    assert len(logging) == 2
    for name in SOURCES:
        entry = logging[f"${{aws_s3_bucket.{_bucket_id(logged, name)}.id}}"]
        assert entry["target_bucket"] == target and entry["target_prefix"] == f"s3-access/{name}/"


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"bucket_name": "Logs"}, "bucket_name"),
        ({"source_buckets": []}, "source_buckets"),
        ({"source_buckets": ["bad_name"]}, "source_buckets"),
        ({"account_id": "12"}, "account_id"),
        ({"retention_days": 0}, "retention_days"),
        ({"partition": "aws-mars"}, "partition"),
        ({"prevent_destroy": True, "delete_logs_on_destroy": True}, "delete_logs_on_destroy"),
    ],
)
def test_invalid_props_name_the_field(props, field):
    base = {"bucket_name": LOGS, "source_buckets": SOURCES, "account_id": ACCOUNT}
    with pytest.raises(ValueError, match=field):
        AccessLogBucket(new_stack("bad", REGION), "logs", **(base | props))
