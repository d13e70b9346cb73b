"""IAM identities for the serving pods and for artifact publishers.

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

from infra.policy import Statement, policy_document

ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
SESSION_SECONDS = 3600


class Identity(Construct):
    """An IAM role that grants attach to."""

    def __init__(self, scope: Construct, id: str, *, role_name: str, assume_role_policy: str, description: str):
        super().__init__(scope, id)
        if not ROLE_NAME.match(role_name):
            raise ValueError(f"role_name {role_name!r} is not a valid IAM role name (1-64 of letters, digits, +=,.@_-)")
        self.role = IamRole(
            self,
            "role",
            name=role_name,
            description=description,
            assume_role_policy=assume_role_policy,
            max_session_duration=SESSION_SECONDS,
        )
        self._policies: dict[str, tuple[Statement, ...]] = {}

    def add_policy(self, name: str, statements: Sequence[Statement]) -> None:
        """Attach `statements` as the inline policy `name`; the same grant twice is one policy."""
        statements = tuple(statements)
        if name in self._policies:
            if self._policies[name] != statements:
                raise ValueError(f"policy {name!r} is already attached to {self.role_name} with other statements")
            return
        self._policies[name] = statements
        IamRolePolicy(self, f"policy-{name}", name=name, role=self.role.name, policy=policy_document(statements))

    def grant_read_secret(self, secret_name: str, *, region: str, account_id: str, partition: str = "aws") -> None:
        """GetSecretValue on one Secrets Manager secret (e.g. a Hugging Face token), by name.

        The `-??????` suffix matches the random characters Secrets Manager adds
        to the ARN, and nothing longer, so a secret named `<name>-more` is not
        included. Secrets encrypted with the default `aws/secretsmanager` key
        need no KMS grant.
        """
        if not SECRET_NAME.match(secret_name):
            raise ValueError(f"secret_name {secret_name!r} is not a valid Secrets Manager name")
        arn = f"arn:{partition}:secretsmanager:{region}:{account_id}:secret:{secret_name}-??????"
        slug = re.sub(r"[^A-Za-z0-9_.-]", "-", secret_name)
        self.add_policy(f"read-secret-{slug}", [Statement("ReadSecret", ("secretsmanager:GetSecretValue",), (arn,))])

    @property
    def policies(self) -> dict[str, tuple[Statement, ...]]:
        return dict(self._policies)

    @property
    def role_arn(self) -> str:
        return self.role.arn

    @property
    def role_name(self) -> str:
        return self.role.name


class ServingIdentity(Identity):
    """The role of the Ray pods' Kubernetes service account, through EKS Pod Identity."""

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
        trust = policy_document([Statement(
            "EksPodIdentity",
            ("sts:AssumeRole", "sts:TagSession"),
            principals={"Service": "pods.eks.amazonaws.com"},
            conditions={"StringEquals": {"aws:SourceAccount": account_id}},
        )])
        super().__init__(
            scope, id, role_name=role_name, assume_role_policy=trust,
            description=f"Ray Serve pods ({namespace}/{service_account}): read model weights and adapters",
        )
        self.namespace, self.service_account = namespace, service_account
        self.association = EksPodIdentityAssociation(
            self,
            "association",
            cluster_name=cluster_name,
            namespace=namespace,
            service_account=service_account,
            role_arn=self.role.arn,
        )


class ArtifactWriterIdentity(Identity):
    """The role CI or training jobs assume to publish weights and adapters."""

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
    ):
        if not github_subjects and not trusted_role_arns:
            raise ValueError("ArtifactWriterIdentity needs github_subjects or trusted_role_arns: nobody could assume it")
        for subject in github_subjects:
            if not subject.startswith("repo:") or subject.split(":", 1)[1].startswith("*"):
                raise ValueError(f"github_subjects: {subject!r} must name a repository, e.g. 'repo:org/repo:ref:refs/heads/main'")
        for arn in trusted_role_arns:
            if not ROLE_ARN.match(arn):
                raise ValueError(f"trusted_role_arns: {arn!r} is not an IAM role ARN")
        statements = []
        if github_subjects:
            provider = github_oidc_provider_arn or f"arn:{partition}:iam::{account_id}:oidc-provider/{GITHUB_OIDC_HOST}"
            statements.append(Statement(
                "GitHubActions",
                ("sts:AssumeRoleWithWebIdentity",),
                principals={"Federated": provider},
                conditions={
                    "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com"},
                    "StringLike": {f"{GITHUB_OIDC_HOST}:sub": list(github_subjects)},
                },
            ))
        if trusted_role_arns:
            statements.append(Statement(
                "TrustedRoles", ("sts:AssumeRole",), principals={"AWS": list(trusted_role_arns)}
            ))
        super().__init__(
            scope, id, role_name=role_name, assume_role_policy=policy_document(statements),
            description="Publishes model weights and LoRA adapters",
        )
