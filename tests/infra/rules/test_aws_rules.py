"""The AWS rules (`infra.rules.aws`): the same verdicts for constructs and environment files."""

from __future__ import annotations

import pytest

from infra import rules

TOKEN = "${TfToken[TOKEN.12]}"


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (rules.account_id_problem, "123456789012", ["12345678901", "123456789012\n", "12345678901a"]),
        (rules.role_name_problem, "llm-dev-serving", ["a b", "r" * 65, "r\n"]),
        (
            rules.bucket_name_problem,
            "llm-dev-weights-111111111111",
            ["Models", "a" * 64, "models..b", "192.168.1.1", "xn--m", "m-s3alias", "models\n"],
        ),
        (rules.kms_alias_problem, "team/llm-data", ["alias/x", "aws/x", "my key"]),
        (rules.secret_name_problem, "llm-prod/hf-token", ["bad name", "x" * 513, "s\n"]),
        (
            rules.subnet_id_problem,
            "subnet-0123456789abcdef0",
            ["subnet-XYZ", "sn-0123456789", "subnet-0123456789abcdef0\n"],
        ),
        (rules.cidr_problem, "203.0.113.0/24", ["everyone", "203.0.113.0/33", "203.0.113.1/24"]),
    ],
)
def test_each_rule_accepts_the_good_and_names_what_is_wrong_with_the_bad(rule, good, bad):
    assert rule(good) is None
    for value in bad:
        assert rule(value), value


@pytest.mark.parametrize(
    "subject",
    [
        "repo:acme/models:ref:refs/heads/main",
        "repo:acme/models:ref:refs/heads/release/1.2",
        "repo:acme/models:ref:refs/tags/v1.0.0",
        "repo:acme/models:environment:prod",
        "repo:acme/models:pull_request",
    ],
)
def test_github_subjects_for_one_repository_and_context(subject):
    assert rules.github_subject_problem(subject) is None


@pytest.mark.parametrize(
    "subject",
    [
        "*",
        "repo:*",
        "repo:*/models:ref:refs/heads/main",
        "repo:acme/*:*",
        "repo:acme/models:*",
        "repo:acme/models:ref:refs/heads/*",
        "repo:acme/models:ref:refs/heads/ma?n",
        "repo:acme/models",
        "repo:acme/models:ref:refs/heads/main\n",
        "repo:acme/models:ref:refs/heads/main now",
    ],
)
def test_github_subjects_that_would_let_other_repositories_or_branches_in(subject):
    assert "no wildcards" in rules.github_subject_problem(subject)


def test_arns_are_checked_in_their_partition_and_tokens_pass():
    key = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab"
    assert rules.kms_key_arn_problem(key) is None and rules.kms_key_arn_problem(key, "aws") is None
    assert "partition 'aws-cn'" in rules.kms_key_arn_problem(key, "aws-cn")
    assert rules.kms_key_arn_problem(key.replace(":key/", ":alias/")) is not None
    assert rules.principal_arn_problem("arn:aws:sts::123456789012:assumed-role/admin/me") is not None
    assert rules.role_arn_problem("arn:aws:iam::123456789012:user/x") is not None
    for rule in (
        rules.kms_key_arn_problem,
        rules.role_arn_problem,
        rules.principal_arn_problem,
        rules.account_id_problem,
        rules.subnet_id_problem,
    ):
        assert rule(TOKEN) is None  # resolved at plan time: not checkable at synth


def test_regions_in_form_and_in_their_partition():
    assert rules.region_problem("eu-west-1", "aws") is None
    assert (
        rules.region_problem("xx-nowhere-9") is None
    )  # well formed, unknown to the table: the construct lets AWS decide
    assert "partition 'aws-cn'" in rules.region_problem("cn-north-1", "aws")
    assert rules.region_problem("Europe") is not None
    assert rules.known_region_problem("xx-nowhere-9") == "unknown AWS region 'xx-nowhere-9'"
