"""What model and adapter publishing share: local file checks, digests, S3 object checks.

Every object we upload carries its whole-file SHA-256 as metadata
(`x-amz-meta-sha256`, valid for multipart objects too) and an S3 checksum,
so a rerun can tell which objects are already in place and a verify can
tell which ones changed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stacks.errors import ArtifactError

SHA_METADATA = "sha256"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
CHUNK = 8 * 1024 * 1024
# The safetensors format caps its JSON header at 100 MB.
SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # relative to the published directory, with "/"
    size: int
    sha256: str = ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(directory: Path, reserved: tuple[str, ...] = ()) -> list[LocalFile]:
    """The regular files under `directory` (hidden ones skipped), refusing links out and pickles."""
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: not a directory")
    root = directory.resolve()
    files = []
    for path in sorted(p for p in directory.rglob("*") if not any(part.startswith(".") for part in p.relative_to(directory).parts)):
        target = path.resolve()
        if not target.is_relative_to(root):
            raise ArtifactError(f"{path}: links outside {directory} (to {target}); copy the file in instead")
        if path.is_dir():
            continue
        name = path.relative_to(directory).as_posix()
        if name in reserved:
            raise ArtifactError(f"{path}: {name!r} is reserved for what the publisher writes; remove it")
        if path.suffix in PICKLE_SUFFIXES:
            raise ArtifactError(f"{path}: pickled weights are not published (they run code when loaded); convert them to safetensors")
        files.append(LocalFile(path, name, path.stat().st_size))
    if not files:
        raise ArtifactError(f"{directory}: empty directory")
    return files


def with_digests(files: list[LocalFile]) -> list[LocalFile]:
    return [LocalFile(f.path, f.name, f.size, sha256_file(f.path)) for f in files]


def read_json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    return data


def safetensors_header(path: Path) -> dict[str, dict]:
    """The tensors of a safetensors file (name -> dtype, shape, data_offsets), after checking the
    file is complete: a truncated or foreign file is refused here, not by every replica."""
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        if not 2 <= length <= min(SAFETENSORS_HEADER_LIMIT, size - 8):
            raise ArtifactError(f"{path}: not a safetensors file (no valid header)")
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise ArtifactError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    data_bytes, end = size - 8 - length, 0
    for name, tensor in header.items():
        try:
            start, stop = tensor["data_offsets"]
            shape_ok = all(isinstance(d, int) and d >= 0 for d in tensor["shape"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{path}: tensor {name!r} has no valid shape and data_offsets") from None
        if not shape_ok or not 0 <= start <= stop:
            raise ArtifactError(f"{path}: tensor {name!r} has no valid shape and data_offsets")
        end = max(end, stop)
    if end != data_bytes:
        raise ArtifactError(f"{path}: truncated or padded: the header describes {end} data bytes, the file holds {data_bytes}")
    return header


class Progress:
    """Bytes transferred, on one stderr line (only on a terminal)."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = stream.isatty()

    def __call__(self, amount: int) -> None:
        self.done += amount
        if self.enabled and self.total:
            self.stream.write(f"\r{self.done / 2**20:,.0f} / {self.total / 2**20:,.0f} MiB ({100 * self.done / self.total:.0f}%)")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def put_file(s3, bucket: str, key: str, f: LocalFile, *, transfer_config=None,
             progress: Callable[[int], None] | None = None) -> None:
    """Concurrent multipart upload with an S3 SHA-256 checksum and the whole-file digest as metadata."""
    s3.upload_file(
        str(f.path), bucket, key,
        ExtraArgs={"ChecksumAlgorithm": "SHA256", "Metadata": {SHA_METADATA: f.sha256}},
        Config=transfer_config, Callback=progress,
    )


def upload_missing(s3, bucket: str, prefix: str, files: list[LocalFile], *, transfer_config=None,
                   progress: Callable[[int], None] | None = None) -> tuple[list[str], list[str]]:
    """Upload each file to `prefix` + its name unless an object there already holds it (a rerun
    resumes); returns the names (uploaded, skipped)."""
    uploaded, skipped = [], []
    for f in files:
        if holds(head(s3, bucket, prefix + f.name), f):
            skipped.append(f.name)
            if progress:
                progress(f.size)
            continue
        put_file(s3, bucket, prefix + f.name, f, transfer_config=transfer_config, progress=progress)
        uploaded.append(f.name)
    return uploaded, skipped


def head(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def holds(head_response: dict | None, f: LocalFile) -> bool:
    """Whether an object (its HEAD response) already holds exactly this file."""
    return (head_response is not None and head_response["ContentLength"] == f.size
            and head_response.get("Metadata", {}).get(SHA_METADATA) == f.sha256)


def stream_sha256(s3, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(CHUNK):
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
        names += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
    return names


def delete_keys(s3, bucket: str, keys: list[str]) -> None:
    """Delete in batches of 1000 (S3's limit); with versioning these become delete markers."""
    for i in range(0, len(keys), 1000):
        batch = keys[i:i + 1000]
        result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        if errors := result.get("Errors"):
            first = errors[0]
            raise ArtifactError(f"S3 refused to delete s3://{bucket}/{first['Key']}: {first.get('Code')}: {first.get('Message', '')}")
