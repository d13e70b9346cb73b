"""AWS plumbing for the artifact commands: the S3 client, transfer settings, credential errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from stacks.errors import ArtifactError

MiB = 1024 * 1024


def s3_client(region: str):
    """boto3's standard credential chain, in `region` (AWS_ENDPOINT_URL_S3 is honoured)."""
    import boto3  # noqa: PLC0415

    return boto3.client("s3", region_name=region)


def transfer_config():
    from boto3.s3.transfer import TransferConfig  # noqa: PLC0415

    # Large shards go up as concurrent multipart uploads.
    return TransferConfig(multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=8)


@contextmanager
def translate_aws_errors() -> Iterator[None]:
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError  # noqa: PLC0415

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise ArtifactError("no AWS credentials (standard chain: AWS_* variables, a profile, SSO, or an instance role)") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            raise ArtifactError(f"S3 refused the request: {error.get('Code')}: {error.get('Message', '')}".rstrip(": ")) from None
        raise
