"""The roles grants attach to: Identity, PodIdentityRole, ServingIdentity and ArtifactWriterIdentity.

Two small stacks (one in the aws-cn partition), each synthesized once per module; the validation
cases build roles without synthesizing anything.
"""

from __future__ import annotations


import pytest
from cdktf import TerraformStack, Token

import conftest
from conftest import resources
from infra import (
    ArtifactWriterIdentity,
    EksCluster,
    ExistingCluster,
    NodeRole,
    PodIdentityRole,
    ServingIdentity,
    Statement,
)
from terraform_json import one, trust_of

ACCOUNT, REGION = "123456789012", "eu-west-1"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
REPO = "repo:acme/models:ref:refs/heads/main"


def new_stack(name: str = "test") -> TerraformStack:
    return conftest.new_stack(name, REGION)


synth = conftest.synth_stack


@pytest.fixture(scope="module")
def built():
    """A serving identity on a cluster created in the same stack, and a writer trusted by a repository and a role."""
    stack = new_stack("roles")
    cluster = EksCluster(
        stack, "cluster", name="test", version="1.33", subnet_ids=SUBNETS, kms_key_arn=KEY, account_id=ACCOUNT
    )
    serving = ServingIdentity(
        stack,
        "serving",
        role_name="test-serving",
        cluster_name=cluster.name,
        namespace="llm",
        service_account="ray",
        account_id=ACCOUNT,
    )
    writer = ArtifactWriterIdentity(
        stack,
        "writer",
        role_name="test-writer",
        account_id=ACCOUNT,
        github_subjects=[REPO],
        trusted_role_arns=[f"arn:aws:iam::{ACCOUNT}:role/trainer"],
    )
    return {"tf": synth(stack), "serving": serving, "writer": writer}


@pytest.fixture(scope="module")
def china():
    """The same identities in the aws-cn partition."""
    stack = new_stack("china")
    ServingIdentity(
        stack,
        "serving",
        role_name="cn-serving",
        cluster_name="cn",
        namespace="llm",
        service_account="ray",
        account_id=ACCOUNT,
        partition="aws-cn",
    )
    ArtifactWriterIdentity(
        stack, "writer", role_name="cn-writer", account_id=ACCOUNT, partition="aws-cn", github_subjects=[REPO]
    )
    return synth(stack)


def test_serving_identity_trusts_only_its_pod_identity_association(built):
    tf = built["tf"]
    trust = trust_of(tf, "test-serving")["EksPodIdentity"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    conditions = trust["Condition"]["StringEquals"]
    assert conditions.pop("aws:RequestTag/eks-cluster-name").startswith("${aws_eks_cluster.")
    assert conditions == {
        "aws:RequestTag/kubernetes-namespace": "llm",
        "aws:RequestTag/kubernetes-service-account": "ray",
    }
    assert one(tf, "aws_iam_role", name="test-serving")["max_session_duration"] == 3600
    association = one(tf, "aws_eks_pod_identity_association")
    assert (association["namespace"], association["service_account"]) == ("llm", "ray")
    assert association["role_arn"].startswith("${aws_iam_role.")
    assert association["cluster_name"].startswith("${aws_eks_cluster.")
    assert (built["serving"].namespace, built["serving"].service_account) == ("llm", "ray")


def test_the_serving_identity_is_a_pod_identity_role_with_the_same_trust():
    stack = new_stack("pod-identity")
    serving = ServingIdentity(
        stack, "serving", role_name="a", cluster_name="c", namespace="llm", service_account="ray", account_id=ACCOUNT
    )
    other = PodIdentityRole(
        stack,
        "other",
        role_name="b",
        cluster_name="c",
        namespace="llm",
        service_account="ray",
        description="d",
        kind="custom",
    )
    assert isinstance(serving, PodIdentityRole)
    tf = synth(stack)
    assert trust_of(tf, "a") == trust_of(tf, "b")
    assert serving.cluster_name == other.cluster_name == "c"


def test_writer_identity_trusts_the_named_repository_and_roles(built):
    tf = built["tf"]
    statements = trust_of(tf, "test-writer")
    assert set(statements) == {"GitHubActions", "TrustedRoles"}
    github = statements["GitHubActions"]
    assert github["Principal"] == {
        "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    }
    assert github["Action"] == ["sts:AssumeRoleWithWebIdentity"]
    assert github["Condition"] == {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
        "StringLike": {"token.actions.githubusercontent.com:sub": [REPO]},
    }
    assert statements["TrustedRoles"]["Action"] == ["sts:AssumeRole"]
    assert statements["TrustedRoles"]["Principal"] == {"AWS": [f"arn:aws:iam::{ACCOUNT}:role/trainer"]}
    assert one(tf, "aws_iam_role", name="test-writer")["max_session_duration"] == 3600


def test_roles_say_what_they_are_for(built):
    kinds = {
        r["name"]: r.get("tags", {}).get("llm-serving-stacks:identity")
        for r in resources(built["tf"], "aws_iam_role").values()
    }
    assert kinds["test-serving"] == "serving" and kinds["test-writer"] == "artifact-writer"


def test_a_different_policy_under_a_taken_name_is_refused():
    stack = new_stack()
    identity = ServingIdentity(
        stack, "s", role_name="r", cluster_name="c", namespace="n", service_account="a", account_id=ACCOUNT
    )
    first = identity.add_policy("p", [Statement("A", ("s3:GetObject",), ("arn:aws:s3:::b/x/*",))])
    assert identity.add_policy("p", [Statement("A", ["s3:GetObject"], ["arn:aws:s3:::b/x/*"])]) is first
    with pytest.raises(ValueError, match="already attached"):
        identity.add_policy("p", [Statement("A", ("s3:PutObject",), ("arn:aws:s3:::b/x/*",))])


def test_china_partition_arns_and_endpoints(china):
    github = trust_of(china, "cn-writer")["GitHubActions"]
    assert github["Principal"]["Federated"].startswith(f"arn:aws-cn:iam::{ACCOUNT}:oidc-provider/")
    # Pod Identity keeps amazonaws.com in China.
    assert trust_of(china, "cn-serving")["EksPodIdentity"]["Principal"] == {"Service": "pods.eks.amazonaws.com"}


def test_writer_context_wildcards_only_behind_the_opt_in():
    tags = "repo:acme/models:ref:refs/tags/v*"
    with pytest.raises(ValueError, match="github_subjects"):
        _writer(github_subjects=[tags])(new_stack())
    with pytest.raises(ValueError, match="no wildcard in its owner or name"):
        _writer(github_subjects=["repo:acme/*:ref:refs/tags/v*"], allow_context_wildcards=True)(new_stack())
    stack = new_stack()
    _writer(github_subjects=[tags], allow_context_wildcards=True)(stack)
    trust = trust_of(synth(stack), "w")
    assert trust["GitHubActions"]["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"] == [tags]


def test_tokens_pass_validation_for_plan_time_values():
    """A role ARN from another resource (a token) cannot be checked at synth time and must not be refused."""
    stack = new_stack()
    role = NodeRole(stack, "r", role_name="r")
    assert Token.is_unresolved(role.role_arn)
    ArtifactWriterIdentity(stack, "w", role_name="w", account_id=ACCOUNT, trusted_role_arns=[role.role_arn])
    ServingIdentity(
        stack,
        "s",
        role_name="s",
        cluster_name=ExistingCluster(stack, "e", name="other").cluster.name,
        namespace="llm",
        service_account="ray",
        account_id=ACCOUNT,
    )


# --- validation: every ValueError a caller can hit ----------------------------------------


def _serving(**kw):
    props = {
        "role_name": "r",
        "cluster_name": "c",
        "namespace": "n",
        "service_account": "a",
        "account_id": ACCOUNT,
        **kw,
    }
    return lambda s: ServingIdentity(s, "i", **props)


def _writer(**kw):
    props = {"role_name": "w", "account_id": ACCOUNT, **kw}
    return lambda s: ArtifactWriterIdentity(s, "w", **props)


INVALID = [
    ("role-name", _serving(role_name="bad name!"), "role_name"),
    ("role-name-long", _serving(role_name="r" * 65), "role_name"),
    ("serving-namespace", _serving(namespace="Team_LLM"), "namespace"),
    ("serving-service-account", _serving(service_account="ray/head"), "service_account"),
    ("serving-account", _serving(account_id="12345678901a"), "account_id"),
    ("serving-partition", _serving(partition="aws-iso"), "partition"),
    ("serving-cluster", _serving(cluster_name="bad name"), "cluster_name"),
    (
        "policy-name",
        lambda s: _serving()(s).add_policy("bad name", [Statement("A", ("s3:GetObject",), ("r",))]),
        "policy name",
    ),
    ("policy-empty", lambda s: _serving()(s).add_policy("p", []), "no statements"),
    (
        "secret-name",
        lambda s: _serving()(s).grant_read_secret("bad name", region=REGION, account_id=ACCOUNT),
        "secret_name",
    ),
    ("secret-region", lambda s: _serving()(s).grant_read_secret("hf", region="nowhere", account_id=ACCOUNT), "region"),
    ("writer-nobody", _writer(), "needs github_subjects or trusted_role_arns"),
    ("writer-any-subject", _writer(github_subjects=["*"]), "github_subjects"),
    ("writer-any-repo", _writer(github_subjects=["repo:*"]), "github_subjects"),
    ("writer-any-owner", _writer(github_subjects=["repo:*/models:ref:refs/heads/main"]), "github_subjects"),
    ("writer-no-context", _writer(github_subjects=["repo:acme/models"]), "github_subjects"),
    ("writer-not-a-subject", _writer(github_subjects=["acme/models"]), "github_subjects"),
    (
        "writer-oidc-provider",
        _writer(github_subjects=[REPO], github_oidc_provider_arn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/example.com"),
        "github_oidc_provider_arn",
    ),
    ("writer-user-arn", _writer(trusted_role_arns=[f"arn:aws:iam::{ACCOUNT}:user/x"]), "trusted_role_arns"),
    ("writer-role-partition", _writer(trusted_role_arns=[f"arn:aws-cn:iam::{ACCOUNT}:role/x"]), "trusted_role_arns"),
    ("writer-account", _writer(github_subjects=[REPO], account_id="acme"), "account_id"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    with pytest.raises(ValueError, match=needle):
        build(new_stack())
