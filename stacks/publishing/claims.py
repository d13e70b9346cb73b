"""Claims on adapter names: what makes two concurrent publishes of one name safe.

Before anything is copied under `adapters/<model>/<name>/`, an upload creates
`staging/claims/<name>` with a conditional PutObject (If-None-Match: *), which S3
lets exactly one writer win. The claim names the model and the content digest:
a rerun of the same publish finds its own claim and resumes; any other upload of
that name (other content, or another model: names are unique across models)
is refused before it writes anything. A finished publish or a delete-adapter
removes the claim; one an interrupted upload left behind expires with the
staging prefix (7 days) or goes with delete-adapter.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from app.spec import STAGING_PREFIX
from stacks.errors import ArtifactError
from stacks.publishing.aws import (
    CONDITIONAL_CONFLICT,
    NOT_FOUND,
    PRECONDITION_FAILED,
    error_code,
)
from stacks.publishing.files import parse_json

CLAIM_LIMIT = 4096
ATTEMPTS = 5


@dataclass(frozen=True)
class Claim:
    model_id: str
    content: str  # the adapter's content digest
    since: datetime | None = None


def claim_key(name: str) -> str:
    return f"{STAGING_PREFIX}/claims/{name}"


def take_claim(s3, bucket: str, name: str, mine: Claim) -> bool:
    """Hold the claim on `name`: True if taken now, False if this same publish held it already
    (a rerun); ArtifactError if another upload holds it."""
    from botocore.exceptions import ClientError

    body = json.dumps({"model": mine.model_id, "content": mine.content}).encode()
    for attempt in range(ATTEMPTS):
        try:
            s3.put_object(
                Bucket=bucket,
                Key=claim_key(name),
                Body=body,
                IfNoneMatch="*",
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
            )
            return True
        except ClientError as exc:
            if error_code(exc) in CONDITIONAL_CONFLICT:  # another claim is being written: look again
                time.sleep(0.2 * (attempt + 1))
                continue
            if error_code(exc) not in PRECONDITION_FAILED:
                raise
        held = read_claim(s3, bucket, name)
        if held is None:
            continue  # released in between: try again
        if (held.model_id, held.content) == (mine.model_id, mine.content):
            return False
        since = f" (claimed {held.since.astimezone(UTC):%Y-%m-%d %H:%M} UTC)" if held.since else ""
        if held.model_id and held.model_id != mine.model_id:
            raise ArtifactError(
                f"--adapter: {name!r} is being published for model {held.model_id!r} by another upload{since}; "
                "Ray caches adapters by name alone, so an adapter name must be unique across models"
            )
        raise ArtifactError(
            f"--adapter: {mine.model_id}:{name} is being published with other content by another upload{since}; "
            f"publish yours under a new name (e.g. {name}-v2). If no upload is running (one was interrupted), "
            f"delete-adapter removes its claim; claims also expire with the staging prefix after 7 days"
        )
    raise ArtifactError(f"--adapter: the claim on {name!r} kept changing hands ({ATTEMPTS} attempts); rerun")


def read_claim(s3, bucket: str, name: str) -> Claim | None:
    """The claim on `name` (None: unclaimed); one that cannot be read has model_id "" and matches no publish."""
    from botocore.exceptions import ClientError

    try:
        response = s3.get_object(Bucket=bucket, Key=claim_key(name))
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise
    with response["Body"] as body:
        data = body.read(CLAIM_LIMIT + 1)
    try:
        claim = parse_json(data) if len(data) <= CLAIM_LIMIT else None
    except (ValueError, UnicodeDecodeError):
        claim = None
    if not (isinstance(claim, dict) and isinstance(claim.get("model"), str) and isinstance(claim.get("content"), str)):
        claim = {"model": "", "content": ""}  # matches no publish: treated as another upload's
    return Claim(claim["model"][:63], claim["content"], response.get("LastModified"))


def release_claim(s3, bucket: str, name: str, model_id: str) -> bool:
    """Remove the claim on `name` if it is for `model_id` (or unreadable); True if one was removed."""
    held = read_claim(s3, bucket, name)
    if held is None or held.model_id not in (model_id, ""):
        return False
    s3.delete_object(Bucket=bucket, Key=claim_key(name))
    return True
