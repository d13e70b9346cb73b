"""S3 objects for publishing: uploads, "does this object hold this file", listings, deletes.

Every object we upload carries S3's own SHA-256 checksum (`ChecksumAlgorithm`)
and, for people, its whole-file SHA-256 as metadata. Whether an object holds a
file is decided by its size and S3's checksum, never by the metadata, which
anyone who can write the object can copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from stacks.errors import ArtifactError
from stacks.publishing.aws import (
    CONDITIONAL_CONFLICT,
    NOT_FOUND,
    PRECONDITION_FAILED,
    error_code,
)
from stacks.publishing.files import checksum_matches, part_size
from stacks.publishing.scan import LocalFile, open_regular, shown

SHA_METADATA = "sha256"


def put_file(
    s3,
    bucket: str,
    key: str,
    f: LocalFile,
    *,
    transfer_config,
    progress: Callable[[int], None] | None = None,
    tagging: str | None = None,
) -> None:
    """Concurrent multipart upload with an S3 SHA-256 checksum (and `tagging`, S3's "k=v" form),
    then checked: S3 must hold exactly `f`."""
    from boto3.s3.transfer import S3Transfer

    classic = copy.copy(transfer_config)
    classic.preferred_transfer_client = "classic"  # the CRT client would open the file itself
    with S3Transfer(s3, classic, osutil=_regular_file_only(f)) as transfer:
        extra = {"ChecksumAlgorithm": "SHA256", "Metadata": {SHA_METADATA: f.sha256}}
        transfer.upload_file(
            str(f.source), bucket, key, callback=progress, extra_args=extra | ({"Tagging": tagging} if tagging else {})
        )
    if not holds(head(s3, bucket, key), f):
        raise ArtifactError(
            f"{shown(f.path)}: changed while being uploaded (S3's checksum of s3://{bucket}/{key} "
            "is not the file's); rerun once it is final"
        )


def _regular_file_only(f: LocalFile):
    """s3transfer's file access, through `open_regular`: the transfer's own opens (one per part,
    in its threads) cannot block on a FIFO swapped in, nor read another file."""
    from s3transfer.utils import OSUtils

    class RegularFileOnly(OSUtils):
        def get_file_size(self, filename):
            return f.size

        def open(self, filename, mode):
            return open_regular(f)

    return RegularFileOnly()


def upload_missing(
    s3,
    bucket: str,
    prefix: str,
    files: list[LocalFile],
    *,
    transfer_config,
    progress: Callable[[int], None] | None = None,
    tagging: str | None = None,
) -> tuple[list[str], list[str]]:
    """Upload each file to `prefix` + its name unless the object there already holds it (a rerun
    resumes; an object that differs is replaced); returns the names (uploaded, skipped)."""
    uploaded, skipped = [], []
    for f in files:
        if holds(head(s3, bucket, prefix + f.name), f):
            skipped.append(f.name)
            if progress:
                progress(f.size)
            continue
        put_file(s3, bucket, prefix + f.name, f, transfer_config=transfer_config, progress=progress, tagging=tagging)
        uploaded.append(f.name)
    return uploaded, skipped


def head(s3, bucket: str, key: str) -> dict | None:
    """The object's HEAD, with S3's stored checksum (None: no such object)."""
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise


def holds(head_response: dict | None, f: LocalFile) -> bool:
    """Whether an object (its HEAD response) holds exactly this file: its size and S3's checksum."""
    return (
        head_response is not None
        and head_response["ContentLength"] == f.size
        and checksum_matches(head_response.get("ChecksumSHA256"), f.s3_checksum)
    )


def copy_object(
    s3, bucket: str, source: dict, key: str, transfer_config, *, tagging: str | None, metadata: dict[str, str]
) -> None:
    """Copy `source` (its HEAD response, with "Key") to `key` in the bucket with S3's SHA-256 checksum,
    the part size an upload of it uses (so the same checksum), `metadata`, and `tagging` (or no tag)
    from the start: s3transfer's managed copy cannot tag a multipart copy when it is created. Every
    request is conditional on the source's ETag, so parts of two versions never mix."""
    size, copy_source = source["ContentLength"], {"Bucket": bucket, "Key": source["Key"]}
    common = {"Metadata": metadata, "ChecksumAlgorithm": "SHA256", **({"Tagging": tagging} if tagging else {})}
    if_match = {"CopySource": copy_source, "CopySourceIfMatch": source["ETag"]}
    part = part_size(size, transfer_config)
    if not part:
        s3.copy_object(
            Bucket=bucket, Key=key, MetadataDirective="REPLACE", TaggingDirective="REPLACE", **if_match, **common
        )
        return
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **common)["UploadId"]

    def copy_part(number: int) -> dict:
        start = (number - 1) * part
        result = s3.upload_part_copy(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            PartNumber=number,
            **if_match,
            CopySourceRange=f"bytes={start}-{min(start + part, size) - 1}",
        )["CopyPartResult"]
        # S3 returns each part's checksum (an upload created with one); send it back, as s3transfer does.
        return {"PartNumber": number, "ETag": result["ETag"]} | (
            {"ChecksumSHA256": result["ChecksumSHA256"]} if "ChecksumSHA256" in result else {}
        )

    try:
        with ThreadPoolExecutor(max_workers=transfer_config.max_concurrency) as pool:
            parts = list(pool.map(copy_part, range(1, -(-size // part) + 1)))
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    except BaseException:
        try:  # else the bucket's lifecycle rule aborts it after a day
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        except Exception:  # noqa: BLE001, S110  (the first failure is the one to report)
            pass
        raise


def read_object(s3, bucket: str, key: str, limit: int) -> bytes | None:
    """A small object's bytes (None: no such object); one over `limit` bytes is refused unread."""
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise
    with body:
        data = body.read(limit + 1)
    if len(data) > limit:
        raise ArtifactError(f"s3://{bucket}/{key}: over {limit:,} bytes; not an object this tool wrote")
    return data


def stream_sha256(s3, bucket: str, key: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(8 * 1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def list_keys(s3, bucket: str, prefix: str) -> list[dict]:
    """Every object under `prefix` (Key, Size, LastModified), across pages."""
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects += page.get("Contents", [])
    return objects


def has_objects(s3, bucket: str, prefix: str) -> bool:
    return s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0


def list_folders(s3, bucket: str, prefix: str) -> list[str]:
    """The immediate "subfolder" names under `prefix` (which ends with "/")."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
    return names


def delete_keys(s3, bucket: str, keys: list[str]) -> None:
    """Delete in batches of 1000 (S3's limit); with versioning these become delete markers."""
    for i in range(0, len(keys), 1000):
        batch = keys[i : i + 1000]
        result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        if errors := result.get("Errors"):
            first = errors[0]
            raise ArtifactError(
                f"S3 refused to delete s3://{bucket}/{first['Key']}: {first.get('Code')}: {first.get('Message', '')}"
            )


# Tries of a conditional write while S3 reports another one to the key in flight (409).
CONDITIONAL_ATTEMPTS = 5


def put_if_absent(write: Callable[[], object]) -> bool:
    """Run `write`, a conditional PUT (If-None-Match: *): True if it wrote, False if the key was
    already taken; retried while another conditional write to the key is in flight."""
    import time

    from botocore.exceptions import ClientError

    for attempt in range(CONDITIONAL_ATTEMPTS):
        try:
            write()
            return True
        except ClientError as exc:
            if error_code(exc) in PRECONDITION_FAILED:
                return False
            if error_code(exc) not in CONDITIONAL_CONFLICT:
                raise
            time.sleep(0.2 * (attempt + 1))  # another write is in flight: look again
    return False
