"""Policy documents as plain data: statements and their JSON (no cdktf)."""

from __future__ import annotations

import json

import pytest

from infra.identity.policy import Statement, policy_document


def test_policy_documents_are_deterministic():
    a = Statement(
        "A", ("s3:GetObject",), ("r",), conditions={"StringLike": {"b": "1", "a": "2"}, "Bool": {"c": "true"}}
    )
    b = Statement(
        "A", ("s3:GetObject",), ("r",), conditions={"Bool": {"c": "true"}, "StringLike": {"a": "2", "b": "1"}}
    )
    assert policy_document([a]) == policy_document([b])
    assert json.loads(policy_document([a]))["Version"] == "2012-10-17"


INVALID = [
    ("statement-sid", lambda: Statement("not-alnum", ("s3:GetObject",)), "sid"),
    ("statement-no-actions", lambda: Statement("A", ()), "actions"),
    ("statement-effect", lambda: Statement("A", ("s3:GetObject",), effect="Maybe"), "effect"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_statements_are_rejected_with_the_field_named(build, needle):
    with pytest.raises(ValueError, match=needle):
        build()
