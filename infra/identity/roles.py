"""IAM identities: roles EKS Pod Identity gives to pods (the serving pods' among them) and the role
artifact publishers assume.

Permissions are something a resource construct gives (`ModelBucket.grant_read`),
not something callers hand-write: each grant becomes one inline policy on the
role, named for its intent, so a plan shows one policy per grant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf_cdktf_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy

from infra.identity.policy import Statement, policy_document
from infra.rules import (
    GITHUB_OIDC_HOST,
    account_id_problem,
    arn_problem,
    cluster_reference_problem,
    github_subject_problem,
    namespace_problem,
    partition_problem,
    region_problem,
    require,
    role_arn_problem,
    role_name_problem,
    secret_name_problem,
    service_account_problem,
)

POLICY_NAME = re.compile(r"[\w+=,.@-]{1,128}")
SESSION_SECONDS = 3600
# Tags each role with what it is for, so policy checks and audits need no naming convention.
IDENTITY_TAG = "llm-serving-stacks:identity"


class Identity(Construct):
    """An IAM role that grants attach to: one inline policy per grant, named for its intent.

    Props:
        role_name: the IAM role name (1-64 of letters, digits, +=,.@_-).
        assume_role_policy: the trust policy, as JSON (see `infra.identity.policy.policy_document`).
        description: shown in the IAM console.
        kind: the `llm-serving-stacks:identity` tag value, so policy checks and audits can
            tell what the role is for. Default "custom".

    Sessions last at most an hour.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        role_name: str,
        assume_role_policy: str,
        description: str,
        kind: str = "custom",
    ):
        super().__init__(scope, id)
        require("role_name", role_name_problem(role_name))
        self.role = IamRole(
            self,
            "role",
            name=role_name,
            description=description,
            assume_role_policy=assume_role_policy,
            max_session_duration=SESSION_SECONDS,
            tags={IDENTITY_TAG: kind},
        )
        self._role_name = role_name
        self._policies: dict[str, tuple[Statement, ...]] = {}
        self._policy_resources: dict[str, IamRolePolicy] = {}

    def add_policy(self, name: str, statements: Sequence[Statement]) -> IamRolePolicy:
        """Attach `statements` as the inline policy `name`; the same grant twice is one policy."""
        statements = tuple(statements)
        if not POLICY_NAME.fullmatch(name):
            raise ValueError(f"policy name {name!r}: use 1-128 letters, digits and +=,.@_-")
        if not statements:
            raise ValueError(f"policy {name!r} has no statements")
        if name in self._policies:
            if self._policies[name] != statements:
                raise ValueError(f"policy {name!r} is already attached to {self._role_name} with other statements")
            return self._policy_resources[name]
        self._policies[name] = statements
        self._policy_resources[name] = IamRolePolicy(
            self, f"policy-{name}", name=name, role=self.role.name, policy=policy_document(statements)
        )
        return self._policy_resources[name]

    def grant_read_secret(
        self, secret_name: str, *, region: str, account_id: str, partition: str = "aws"
    ) -> IamRolePolicy:
        """GetSecretValue on one Secrets Manager secret (e.g. a Hugging Face token), by name.

        The `-??????` suffix matches the random characters Secrets Manager adds
        to the ARN, and nothing longer, so a secret named `<name>-more` is not
        included. Secrets encrypted with the default `aws/secretsmanager` key
        need no KMS grant. Returns the policy.
        """
        require("secret_name", secret_name_problem(secret_name))
        require("partition", partition_problem(partition))
        require("region", region_problem(region, partition))
        require("account_id", account_id_problem(account_id))
        arn = f"arn:{partition}:secretsmanager:{region}:{account_id}:secret:{secret_name}-??????"
        slug = re.sub(r"[^A-Za-z0-9_.-]", "-", secret_name)
        return self.add_policy(
            f"read-secret-{slug}", [Statement("ReadSecret", ("secretsmanager:GetSecretValue",), (arn,))]
        )

    @property
    def policies(self) -> dict[str, tuple[Statement, ...]]:
        return dict(self._policies)

    @property
    def role_arn(self) -> str:
        return self.role.arn

    @property
    def role_name(self) -> str:
        return self.role.name


class PodIdentityRole(Identity):
    """A role only EKS Pod Identity may assume, for one cluster, namespace and service account.

    EKS Pod Identity tags its AssumeRole call with the association's cluster, namespace and
    service account (EKS User Guide, pod-id-role and pod-id-abac): the trust matches them, so no
    other association in the account can use the role; the association comes with it.

    Props: `Identity`'s (role_name, description, kind), plus cluster_name (a reference to a
    created cluster is fine), namespace and service_account.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        role_name: str,
        cluster_name: str,
        namespace: str,
        service_account: str,
        description: str,
        kind: str,
    ):
        require("cluster_name", cluster_reference_problem(cluster_name))
        require("namespace", namespace_problem(namespace))
        require("service_account", service_account_problem(service_account))
        # No aws:SourceAccount: the User Guide does not list it for Pod Identity, and a condition
        # the service does not send would lock every pod out. The principal is the same in every partition.
        trust = policy_document(
            [
                Statement(
                    "EksPodIdentity",
                    ("sts:AssumeRole", "sts:TagSession"),
                    principals={"Service": "pods.eks.amazonaws.com"},
                    conditions={
                        "StringEquals": {
                            "aws:RequestTag/eks-cluster-name": cluster_name,
                            "aws:RequestTag/kubernetes-namespace": namespace,
                            "aws:RequestTag/kubernetes-service-account": service_account,
                        }
                    },
                )
            ]
        )
        super().__init__(scope, id, role_name=role_name, assume_role_policy=trust, description=description, kind=kind)
        self.cluster_name, self.namespace, self.service_account = cluster_name, namespace, service_account
        self.association = EksPodIdentityAssociation(
            self,
            "association",
            cluster_name=cluster_name,
            namespace=namespace,
            service_account=service_account,
            role_arn=self.role.arn,
        )


class ServingIdentity(PodIdentityRole):
    """The role of the Ray pods' Kubernetes service account, through EKS Pod Identity.

    A `PodIdentityRole`: trusted only by EKS Pod Identity for this cluster, namespace and service
    account, with the association that binds them. It holds no permission until a resource grants
    one (`ModelBucket.grant_read(identity, "models")`).

    Props:
        role_name: the IAM role name.
        cluster_name: the EKS cluster (a reference to a created cluster is fine).
        namespace: the pods' Kubernetes namespace (a DNS label).
        service_account: the pods' service account (a DNS subdomain).
        account_id: the owning account (12 digits).
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        role_name: str,
        cluster_name: str,
        namespace: str,
        service_account: str,
        account_id: str,
        partition: str = "aws",
    ):
        require("partition", partition_problem(partition))
        require("account_id", account_id_problem(account_id))
        super().__init__(
            scope,
            id,
            role_name=role_name,
            cluster_name=cluster_name,
            namespace=namespace,
            service_account=service_account,
            kind="serving",
            description=f"Ray Serve pods ({namespace}/{service_account}): read model weights and adapters",
        )


class ArtifactWriterIdentity(Identity):
    """The role CI or training jobs assume to publish weights and adapters.

    Trusted by exactly the GitHub Actions subjects and IAM roles listed (at least
    one of them); it holds no permission until a bucket grants one.

    Props:
        role_name: the IAM role name.
        account_id: the owning account (12 digits).
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
        github_subjects: GitHub Actions OIDC subjects, each one repository and one context
            (`repo:org/repo:ref:refs/heads/main`, `repo:org/repo:environment:prod`); no wildcards.
        github_oidc_provider_arn: the account's GitHub OIDC provider. Default: the one named
            `token.actions.githubusercontent.com` in `account_id`.
        trusted_role_arns: IAM roles (e.g. a training pipeline's) that may assume this one.
        allow_context_wildcards: let github_subjects use `*`/`?` in their context (e.g. every
            release tag, `repo:org/repo:ref:refs/tags/v*`). Default False; the repository itself
            can never be a wildcard.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        role_name: str,
        account_id: str,
        partition: str = "aws",
        github_subjects: Sequence[str] = (),
        github_oidc_provider_arn: str | None = None,
        trusted_role_arns: Sequence[str] = (),
        allow_context_wildcards: bool = False,
    ):
        require("partition", partition_problem(partition))
        require("account_id", account_id_problem(account_id))
        github_subjects, trusted_role_arns = list(github_subjects), list(trusted_role_arns)
        if not github_subjects and not trusted_role_arns:
            raise ValueError(
                "ArtifactWriterIdentity needs github_subjects or trusted_role_arns: nobody could assume it"
            )
        for subject in github_subjects:
            require("github_subjects", github_subject_problem(subject, allow_context_wildcards=allow_context_wildcards))
        if github_oidc_provider_arn is not None:
            require(
                "github_oidc_provider_arn",
                arn_problem(
                    github_oidc_provider_arn,
                    partition,
                    rf"iam::\d{{12}}:oidc-provider/{re.escape(GITHUB_OIDC_HOST)}",
                    "the GitHub Actions OIDC provider ARN",
                ),
            )
        for arn in trusted_role_arns:
            require("trusted_role_arns", role_arn_problem(arn, partition))
        statements = []
        if github_subjects:
            provider = github_oidc_provider_arn or f"arn:{partition}:iam::{account_id}:oidc-provider/{GITHUB_OIDC_HOST}"
            # The audience GitHub's aws-actions/configure-aws-credentials requests by default.
            statements.append(
                Statement(
                    "GitHubActions",
                    ("sts:AssumeRoleWithWebIdentity",),
                    principals={"Federated": provider},
                    conditions={
                        "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com"},
                        "StringLike": {f"{GITHUB_OIDC_HOST}:sub": github_subjects},
                    },
                )
            )
        if trusted_role_arns:
            statements.append(Statement("TrustedRoles", ("sts:AssumeRole",), principals={"AWS": trusted_role_arns}))
        super().__init__(
            scope,
            id,
            role_name=role_name,
            assume_role_policy=policy_document(statements),
            description="Publishes model weights and LoRA adapters",
            kind="artifact-writer",
        )
