"""Every way the stack applied against the local AWS differs from the one users deploy: here
and nowhere else, each with its reason. The harness prints them; the README lists them.

What users get is never weakened to suit the emulator: these changes are made to a
copy of the synthesized `cdk.tf.json`, in the emulator's working directory only.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

# AWS services the stacks call; the provider and the S3 backend reach them at the emulator.
ENDPOINTS = ("eks", "ec2", "iam", "kms", "logs", "s3", "sts", "events", "autoscaling")
# Resources moto does not implement (its EKS backend has no add-ons, pod identity
# associations or access entries; creating them fails with "not yet implemented"), or
# cannot hold: its EKS node groups name an Auto Scaling group its autoscaling backend lacks.
NOT_EMULATED = (
    "aws_eks_addon",
    "aws_eks_pod_identity_association",
    "aws_eks_access_entry",
    "aws_eks_access_policy_association",
    "aws_autoscaling_group_tag",
)
# What moto invents or does not return, so that a second plan shows changes real AWS would not:
# resource type -> (attributes whose difference is the emulator's, why). Only these are set aside.
EMULATOR_NOISE = {
    # moto does not return access_config, which forces a replacement.
    "aws_eks_cluster": (("access_config",), "moto does not return access_config"),
    # moto gives every node group an SSH key ("eksKeypair"), which forces a replacement,
    # reads back a launch template by id only, and no update_config.
    "aws_eks_node_group": (
        ("remote_access", "launch_template", "update_config", "release_version", "version"),
        "moto invents remote_access and reads back other node group fields",
    ),
    # moto adds a "launch-template" tag specification and reports no default/latest version.
    "aws_launch_template": (
        ("tag_specifications", "default_version", "latest_version"),
        "moto reports tag specifications and versions differently",
    ),
    # moto stores EventBridge delivery but leaves it out of GetBucketNotificationConfiguration.
    "aws_s3_bucket_notification": (("eventbridge",), "moto does not return eventbridge when it is read back"),
    # The EFA security group's rules: moto's DescribeSecurityGroupRules leaves out the description
    # (DescribeSecurityGroups returns it, and the tests read it there).
    "aws_vpc_security_group_ingress_rule": (("description",), "moto does not return a rule's description"),
    "aws_vpc_security_group_egress_rule": (("description",), "moto does not return a rule's description"),
}


@dataclass(frozen=True)
class Difference:
    what: str
    why: str


def for_emulator(tf: dict, endpoint: str, provider_version: str) -> tuple[dict, list[Difference]]:
    """A copy of a synthesized stack that applies against the emulator at `endpoint`, and the differences."""
    tf = copy.deepcopy(tf)
    differences = []
    required = tf["terraform"]["required_providers"]["aws"]
    if required.get("version") != provider_version:
        differences.append(
            Difference(
                f"AWS provider {provider_version} instead of {required.get('version')}",
                "no registry is reachable offline; the local mirror holds this version (the stacks validate on both)",
            )
        )
        required["version"] = provider_version
    for provider in tf["provider"]["aws"]:
        provider.update(endpoints=[{name: endpoint for name in ENDPOINTS}], s3_use_path_style=True)
    tf["terraform"]["backend"]["s3"].update(endpoints={"s3": endpoint, "sts": endpoint}, use_path_style=True)
    differences.append(
        Difference(
            "provider and S3 backend endpoints point at the emulator (path-style S3)",
            "the emulator answers on 127.0.0.1 only; state stays in an encrypted, locked S3 backend there",
        )
    )

    resources = tf.get("resource", {})
    dropped = {kind: sorted(resources.pop(kind)) for kind in NOT_EMULATED if kind in resources}
    for kind, names in dropped.items():
        differences.append(Difference(f"{kind} left out ({len(names)})", "moto does not implement it"))
    _drop_references(tf, dropped)
    policies = resources.get("aws_s3_bucket_policy", {})
    statements = [s for body in policies.values() for s in json.loads(body["policy"])["Statement"]]
    had_tls_denies = any(_denies_on(s, TLS_CONDITION_KEYS) for s in statements)
    had_encryption_denies = any(_denies_on(s, ENCRYPTION_CONDITION_KEYS) for s in statements)
    if emptied := _without_unevaluated_denies(policies):
        _drop_references(tf, {"aws_s3_bucket_policy": emptied})
        if not policies:  # Terraform refuses a resource type with no resource
            del resources["aws_s3_bucket_policy"]
    if had_tls_denies:
        differences.append(
            Difference(
                f"TLS-only deny statements left out of the bucket policies ({len(emptied)} policies held nothing else but "
                "these and the SSE-KMS upload denies, so they go; one-item Resource lists written as strings)",
                "moto treats a Deny whose condition does not hold (aws:SecureTransport, s3:TlsVersion) as a deny "
                "(moto/iam/access_control.py, _check_conditions), so the emulator would refuse every upload; the "
                "synthesized policy is checked by the synth tests and the policy gate",
            )
        )
    if had_encryption_denies:
        differences.append(
            Difference(
                "SSE-KMS upload denies left out of the bucket policies (uploads not encrypted with the environment's key)",
                "moto reads no s3:x-amz-server-side-encryption* values from a request and treats a Deny conditioned on "
                "them as a deny, so the emulator would refuse every upload, the compliant ones too; the synth tests "
                "assert the statements exactly, and tests/emulator/test_snapshot_rules_apply.py applies them (without "
                "uploads) and reads them back",
            )
        )
    if rewritten := _tag_filters_without_and(resources.get("aws_s3_bucket_lifecycle_configuration", {})):
        differences.append(
            Difference(
                f"lifecycle rules that filter on a prefix and a tag applied on the tag alone ({', '.join(rewritten)})",
                "the provider sends ObjectSizeGreaterThan 0 inside a filter's `and` and moto drops it, so the provider "
                "would wait for the configuration it sent until it times out (3 min); moto runs no lifecycle rule, so "
                "only what is read back differs; the synth tests assert the `and` filter exactly",
            )
        )
    return tf, differences


def _tag_filters_without_and(lifecycles: dict[str, dict]) -> list[str]:
    """Rewrites (in place) each rule filtering on `and { prefix, one tag }` to filter on that tag; returns their ids."""
    rewritten = []
    for body in lifecycles.values():
        for rule in body.get("rule", []):
            for f in rule.get("filter") or []:
                conditions = f.get("and") or []
                if (
                    len(conditions) == 1
                    and len(conditions[0].get("tags") or {}) == 1
                    and set(conditions[0]) <= {"prefix", "tags"}
                ):
                    ((key, value),) = f.pop("and")[0]["tags"].items()
                    f["tag"] = [{"key": key, "value": value}]
                    rewritten.append(rule["id"])
    return sorted(set(rewritten))


# Condition keys moto cannot evaluate (it has no value for them), of the statements
# `_without_unevaluated_denies` takes out.
TLS_CONDITION_KEYS = ("aws:SecureTransport", "s3:TlsVersion")
ENCRYPTION_CONDITION_KEYS = (
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:x-amz-server-side-encryption-customer-algorithm",
)


def _denies_on(statement: dict, keys: tuple[str, ...]) -> bool:
    """A Deny with a condition on one of `keys`."""
    return statement.get("Effect") == "Deny" and any(
        k in c for c in (statement.get("Condition") or {}).values() for k in keys
    )


def _without_unevaluated_denies(policies: dict[str, dict]) -> list[str]:
    """Takes the TLS-only and SSE-KMS upload denies out of each bucket policy (in place); returns the
    policies left empty, removed."""
    emptied = []
    for name, body in list(policies.items()):
        document = json.loads(body["policy"])
        kept = [s for s in document["Statement"] if not _denies_on(s, TLS_CONDITION_KEYS + ENCRYPTION_CONDITION_KEYS)]
        if kept:
            # A one-item Resource list as the string it equals: moto's logging check compares a string.
            kept = [
                {**s, "Resource": s["Resource"][0]}
                if isinstance(s.get("Resource"), list) and len(s["Resource"]) == 1
                else s
                for s in kept
            ]
            body["policy"] = json.dumps({**document, "Statement": kept})
        else:
            del policies[name]
            emptied.append(name)
    return sorted(emptied)


def _drop_references(tf: dict, dropped: dict[str, list[str]]) -> None:
    """`depends_on` entries that name a resource left out."""
    gone = {f"{kind}.{name}" for kind, names in dropped.items() for name in names}
    for items in tf.get("resource", {}).values():
        for body in items.values():
            if "depends_on" in body:
                body["depends_on"] = [d for d in body["depends_on"] if d not in gone]


def real_changes(changes: list[dict]) -> list[dict]:
    """Plan changes once the emulator's own (`EMULATOR_NOISE`) are set aside: an update, or a
    replacement forced by one of those attributes, whose known differences are all among them."""
    kept = []
    for change in changes:
        noisy = set(EMULATOR_NOISE.get(change["type"], ((), ""))[0])
        detail = change["change"]
        before, after = detail.get("before") or {}, detail.get("after") or {}
        unknown = detail.get("after_unknown") or {}
        differing = {k for k in before.keys() | after.keys() if _differs(before.get(k), after.get(k), unknown.get(k))}
        forced_by = {path[0] for path in detail.get("replace_paths") or []}
        if (
            noisy
            and detail["actions"] in (["update"], ["delete", "create"], ["create", "delete"])
            and differing <= noisy
            and forced_by <= noisy
        ):
            continue
        kept.append(change)
    return kept


def _differs(before, after, unknown) -> bool:
    """Whether a planned value differs from the applied one in what is known before apply.

    Parts Terraform computes only on apply (`after_unknown` true) are not differences, and an
    unset value (null) equals an empty one.
    """
    if unknown is True:
        return False
    if isinstance(after, dict) and isinstance(before, dict):
        parts = unknown if isinstance(unknown, dict) else {}
        return any(_differs(before.get(k), after.get(k), parts.get(k)) for k in before.keys() | after.keys())
    if isinstance(after, list) and isinstance(before, list):
        parts = unknown if isinstance(unknown, list) else []
        return len(before) != len(after) or any(
            _differs(b, a, parts[i] if i < len(parts) else None)
            for i, (b, a) in enumerate(zip(before, after, strict=True))
        )
    empty = (None, "", [], {})
    if before in empty and after in empty:
        return False
    return before != after
