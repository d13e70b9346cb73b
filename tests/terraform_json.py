"""Lookups in a synthesized stack's Terraform JSON, shared by the construct tests (tests/infra)."""

from __future__ import annotations

import json

from conftest import resources


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
