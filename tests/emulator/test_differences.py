"""The one place the emulator copy differs from what users deploy, and the plan noise it names."""

from __future__ import annotations

import copy
import json

from conftest import resources
from stacks.emulator.differences import ENDPOINTS, NOT_EMULATED, for_emulator, real_changes

ENDPOINT = "https://127.0.0.1:4566"


def test_the_emulator_copy_changes_only_what_it_says_and_leaves_the_synthesized_stack_alone(synthesized):
    original = synthesized["prod"]
    pristine = copy.deepcopy(original)
    tf, differences = for_emulator(original, ENDPOINT, "5.100.0")
    assert original == pristine
    assert tf["terraform"]["required_providers"]["aws"]["version"] == "5.100.0"
    (provider,) = tf["provider"]["aws"]
    assert provider["endpoints"] == [{name: ENDPOINT for name in ENDPOINTS}] and provider["s3_use_path_style"] is True
    assert provider["allowed_account_ids"] == original["provider"]["aws"][0]["allowed_account_ids"]  # still pinned
    backend = tf["terraform"]["backend"]["s3"]
    assert (backend["encrypt"], backend["use_lockfile"], backend["endpoints"]["s3"]) == (True, True, ENDPOINT)
    assert not any(kind in tf["resource"] for kind in NOT_EMULATED)
    rewritten = ("aws_s3_bucket_policy", "aws_s3_bucket_lifecycle_configuration")
    kept = {k: v for k, v in original["resource"].items() if k not in (*NOT_EMULATED, *rewritten)}
    for kind, items in kept.items():
        for name, body in items.items():
            applied = tf["resource"][kind][name]
            assert {k: v for k, v in applied.items() if k != "depends_on"} == {
                k: v for k, v in body.items() if k != "depends_on"
            }
    # Bucket policies lose their TLS-only and SSE-KMS upload denies, and nothing else: the log bucket
    # keeps log delivery.
    policies = resources(tf, "aws_s3_bucket_policy")
    left_out = (
        "DenyInsecureTransport",
        "DenyOutdatedTls",
        "DenyOtherEncryption",
        "DenyOtherKmsKey",
        "DenyKmsWithoutKey",
        "DenyCustomerKeys",
    )
    for name, body in resources(original, "aws_s3_bucket_policy").items():
        statements = json.loads(body["policy"])["Statement"]
        kept_statements = [s for s in statements if s["Sid"] not in left_out]
        applied = json.loads(policies[name]["policy"])["Statement"] if name in policies else []
        assert applied == [{**s, "Resource": s["Resource"][0]} for s in kept_statements]
    # Lifecycle rules on a prefix and a tag go on the tag alone, and nothing else changes.
    for name, body in resources(original, "aws_s3_bucket_lifecycle_configuration").items():
        expected = copy.deepcopy(body)
        for rule in expected["rule"]:
            for f in rule["filter"]:
                if "and" in f:
                    f["tag"] = [{"key": k, "value": v} for k, v in f.pop("and")[0]["tags"].items()]
        assert resources(tf, "aws_s3_bucket_lifecycle_configuration")[name] == expected
    # prod logs three buckets: weights, LoRA and the Anyscale cloud's storage.
    assert [s["Sid"] for p in policies.values() for s in json.loads(p["policy"])["Statement"]] == [
        "DeliverAccessLogs0",
        "DeliverAccessLogs1",
        "DeliverAccessLogs2",
    ]
    assert not any(
        d.startswith(("aws_eks_addon", "aws_eks_access_entry"))
        for items in tf["resource"].values()
        for body in items.values()
        for d in body.get("depends_on", [])
    )
    assert {d.what.split(" ")[0] for d in differences} >= {"AWS", "aws_eks_addon", "TLS-only", "SSE-KMS", "lifecycle"}
    assert all(d.why for d in differences)


def change(kind: str, actions: list[str], before: dict, after: dict, unknown=None, replace_paths=None) -> dict:
    return {
        "address": f"{kind}.x",
        "type": kind,
        "change": {
            "actions": actions,
            "before": before,
            "after": after,
            "after_unknown": unknown or {},
            "replace_paths": replace_paths,
        },
    }


def test_a_node_group_replaced_only_for_the_ssh_key_moto_invents_is_noise():
    before = {"remote_access": [{"ec2_ssh_key": "eksKeypair"}], "scaling_config": [{"max_size": 4}], "arn": "a"}
    after = {"remote_access": [], "scaling_config": [{"max_size": 4}], "arn": None}
    noise = change("aws_eks_node_group", ["delete", "create"], before, after, {"arn": True}, [["remote_access"]])
    assert real_changes([noise]) == []
    resized = copy.deepcopy(noise)
    resized["change"]["after"]["scaling_config"] = [{"max_size": 6}]
    assert real_changes([resized]) == [resized]  # a real change inside the emulator's replacement


def test_partly_computed_blocks_compare_only_their_known_parts():
    before = {"vpc_config": [{"subnet_ids": ["a", "b"], "vpc_id": "vpc-1"}], "access_config": []}
    after = {
        "vpc_config": [{"subnet_ids": ["a", "b"], "vpc_id": None}],
        "access_config": [{"authentication_mode": "API"}],
    }
    unknown = {"vpc_config": [{"vpc_id": True}]}
    same = change("aws_eks_cluster", ["delete", "create"], before, after, unknown, [["access_config"]])
    assert real_changes([same]) == []
    moved = copy.deepcopy(same)
    moved["change"]["after"]["vpc_config"][0]["subnet_ids"] = ["a", "c"]
    assert real_changes([moved]) == [moved]


def test_s3_iam_kms_and_logs_stay_strict():
    eventbridge = change("aws_s3_bucket_notification", ["update"], {"eventbridge": False}, {"eventbridge": True})
    assert real_changes([eventbridge]) == []
    strict = [
        change("aws_s3_bucket_versioning", ["update"], {"status": "Suspended"}, {"status": "Enabled"}),
        change("aws_iam_role_policy", ["update"], {"policy": "{}"}, {"policy": '{"a": 1}'}),
        change("aws_kms_key", ["update"], {"enable_key_rotation": False}, {"enable_key_rotation": True}),
        change("aws_cloudwatch_log_group", ["update"], {"retention_in_days": 30}, {"retention_in_days": 365}),
        change(
            "aws_s3_bucket_notification",
            ["update"],
            {"eventbridge": True, "topic": []},
            {"eventbridge": True, "topic": [{}]},
        ),
    ]
    assert real_changes(strict) == strict


def test_every_synthesized_resource_type_is_either_applied_or_named(synthesized):
    for tf in synthesized.values():
        applied, _ = for_emulator(tf, ENDPOINT, "5.100.0")
        assert set(resources(tf, "aws_s3_bucket")) == set(resources(applied, "aws_s3_bucket"))
        assert set(tf["resource"]) - set(applied["resource"]) <= set(NOT_EMULATED)
