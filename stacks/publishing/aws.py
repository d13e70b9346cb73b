"""AWS plumbing for the artifact commands: the S3 client, transfer settings, AWS errors in the user's terms."""

from __future__ import annotations

from stacks.errors import ArtifactError, ToolError

MiB = 1024 * 1024
# Files from this size up go as multipart uploads of this part size. S3's checksum of an
# object depends on its parts, so the checksum we expect is computed with the same values.
MULTIPART_THRESHOLD = 64 * MiB
PART_SIZE = 64 * MiB
NOT_FOUND = ("404", "NoSuchKey", "NotFound")
# A conditional write (If-None-Match: *) found the key taken; S3 answers 409 while another
# conditional write to the key is in flight.
PRECONDITION_FAILED = ("412", "PreconditionFailed")
CONDITIONAL_CONFLICT = ("409", "ConditionalRequestConflict")
# Answers that are the user's to fix: the bucket or the credentials.
REFUSED = ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")


def s3_client(region: str):
    """boto3's standard credential chain, in `region` (AWS_ENDPOINT_URL_S3 is honoured)."""
    import boto3

    return boto3.client("s3", region_name=region)


def transfer_config():
    from boto3.s3.transfer import TransferConfig

    # Large shards go up as concurrent multipart uploads. "classic": the CRT client would
    # pick its own part sizes and open files itself (see objects.put_file).
    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=PART_SIZE,
        max_concurrency=8,
        preferred_transfer_client="classic",
    )


def error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def translated(exc: BaseException) -> Exception | None:
    """An error boto3 or botocore raised, in the user's terms (None for any other); `stacks.cli.main` reports it.

    Missing credentials and S3 refusing us the user can fix; any other answer from AWS, or no answer,
    is said as AWS said it (a ToolError), never dropped."""
    from boto3.exceptions import Boto3Error, S3UploadFailedError
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ArtifactError(
            "no AWS credentials (standard chain: AWS_* variables, a profile, SSO, or an instance role)"
        )
    if isinstance(exc, S3UploadFailedError):  # boto3 wraps what S3 said about an upload
        return ArtifactError(" ".join(str(exc).split()))
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        if error.get("Code") in REFUSED:
            return ArtifactError(
                f"S3 refused the request: {error.get('Code')}: {error.get('Message', '')}".rstrip(": ")
            )
    if isinstance(exc, (ClientError, BotoCoreError, Boto3Error)):
        return ToolError(f"AWS: {exc}")
    return None
