"""EncryptionKey on its own: rotation, its key policy, and validation.

Three small stacks (a key for CloudWatch Logs kept from destroy, a key with defaults, one in the
aws-cn partition), each synthesized once per module.
"""

from __future__ import annotations

import json

import pytest
from cdktf import TerraformStack

import conftest
from infra import EncryptionKey
from terraform_json import one

ACCOUNT, REGION = "123456789012", "eu-west-1"


def new_stack(name: str = "test") -> TerraformStack:
    return conftest.new_stack(name, REGION)


def synthesized(name: str, **props) -> dict:
    stack = new_stack(name)
    EncryptionKey(stack, "key", **props)
    return conftest.synth_stack(stack)


@pytest.fixture(scope="module")
def logs_key():
    return synthesized(
        "logs-key",
        alias="test-data",
        description="test",
        account_id=ACCOUNT,
        region=REGION,
        allow_cloudwatch_logs=True,
        prevent_destroy=True,
    )


@pytest.fixture(scope="module")
def plain_key():
    return synthesized("plain-key", alias="plain", description="d", account_id=ACCOUNT, region=REGION)


@pytest.fixture(scope="module")
def china():
    return synthesized(
        "china",
        alias="cn-data",
        description="d",
        account_id=ACCOUNT,
        region="cn-north-1",
        partition="aws-cn",
        allow_cloudwatch_logs=True,
    )


def test_key_rotates_and_lets_only_this_accounts_log_groups_use_it(logs_key):
    key = one(logs_key, "aws_kms_key")
    assert key["enable_key_rotation"] is True
    assert key["deletion_window_in_days"] == 30
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    assert set(statements) == {"AccountAdministers", "CloudWatchLogs"}
    assert statements["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    logs = statements["CloudWatchLogs"]
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert logs["Action"] == ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    assert logs["Condition"] == {
        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"}
    }
    assert one(logs_key, "aws_kms_alias")["name"] == "alias/test-data"


def test_key_without_logs_has_only_the_account_statement(plain_key):
    key = one(plain_key, "aws_kms_key")
    assert [s["Sid"] for s in json.loads(key["policy"])["Statement"]] == ["AccountAdministers"]


def test_prevent_destroy_only_where_asked(logs_key, plain_key):
    assert one(logs_key, "aws_kms_key")["lifecycle"] == {"prevent_destroy": True}
    assert "lifecycle" not in one(plain_key, "aws_kms_key")


def test_china_partition_arns_and_endpoints(china):
    key = {s["Sid"]: s for s in json.loads(one(china, "aws_kms_key")["policy"])["Statement"]}
    assert key["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws-cn:iam::{ACCOUNT}:root"}
    assert key["CloudWatchLogs"]["Principal"] == {"Service": "logs.cn-north-1.amazonaws.com.cn"}
    assert key["CloudWatchLogs"]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].startswith(
        "arn:aws-cn:logs:"
    )


# --- validation: every ValueError a caller can hit ----------------------------------------


def _key(**kw):
    props = {"alias": "x", "description": "d", "account_id": ACCOUNT, "region": REGION, **kw}
    return lambda s: EncryptionKey(s, "k", **props)


INVALID = [
    ("key-alias-prefix", _key(alias="alias/x"), "alias"),
    ("key-alias-reserved", _key(alias="aws/x"), "alias"),
    ("key-alias-characters", _key(alias="my key"), "alias"),
    ("key-deletion-window", _key(deletion_window_days=3), "deletion_window_days"),
    ("key-account", _key(account_id="1234"), "account_id"),
    ("key-region", _key(region="Europe"), "region"),
    ("key-region-partition", _key(region="cn-north-1"), "partition"),
    ("key-partition", _key(partition="china"), "partition"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    with pytest.raises(ValueError, match=needle):
        build(new_stack())
