"""What both stacks of an environment start with: the AWS provider, held to the environment's
account and region, and the stack's Terraform state in S3."""

from __future__ import annotations

from infra import node_runtime  # noqa: F401  (before cdktf: picks the Node runtime)
from cdktf import S3Backend, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags

from stacks.config.schema import Environment

MANAGED_BY = "llm-serving-stacks"


def aws_provider_and_state(stack: TerraformStack, env: Environment, *, state_key: str) -> None:
    """The AWS provider in the environment's region, tagging what it creates with the environment,
    and the stack's state at `state_key` in the environment's state bucket, encrypted and locked."""
    AwsProvider(
        stack,
        "aws",
        region=env.aws.region,
        # A dev config can never touch another account's resources.
        allowed_account_ids=[env.aws.account_id],
        default_tags=[
            AwsProviderDefaultTags(
                tags={
                    **env.tags,
                    "llm-serving-stacks:environment": env.name,
                    "managed-by": MANAGED_BY,
                }
            )
        ],
    )
    state = env.state
    backend = S3Backend(stack, bucket=state.bucket, key=state_key, region=state.region or env.aws.region, encrypt=True)
    # Native S3 state locking (Terraform >= 1.10); cdktf 0.21 has no typed field.
    backend.add_override("use_lockfile", True)
