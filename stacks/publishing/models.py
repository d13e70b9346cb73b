"""Publishing model weights to the weights bucket: validated, checksummed, resumable.

Layout under `models/<model id>/`: the model's files, then `hash` (the name
Ray gives its local snapshot) and, last, `manifest.json` (every file's size
and SHA-256). A model is published when, and only when, its manifest is
there: an upload first removes the old manifest, and writes the new one
after every file is in place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.spec import WEIGHTS_PREFIX
from stacks.errors import ArtifactError
from stacks.publishing.files import (
    SHA_METADATA,
    LocalFile,
    head,
    local_files,
    read_json_object,
    safetensors_header,
    stream_sha256,
    upload_missing,
    with_digests,
)

MANIFEST = "manifest.json"
HASH_OBJECT = "hash"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def scan_model_dir(directory: Path) -> list[LocalFile]:
    """The files to publish, after checking the directory is a complete, safe model."""
    files = local_files(directory, reserved=(MANIFEST, HASH_OBJECT))
    names = {f.name for f in files}
    if "config.json" not in names:
        raise ArtifactError(f"{directory}/config.json: missing (a Hugging Face model directory has one)")
    if "model_type" not in read_json_object(directory / "config.json"):
        raise ArtifactError(f"{directory}/config.json: no model_type")
    shards = [f for f in files if f.name.endswith(".safetensors")]
    if not shards:
        raise ArtifactError(f"{directory}: no *.safetensors weights")
    if not any(n.rsplit("/", 1)[-1] in TOKENIZER_FILES for n in names):
        raise ArtifactError(f"{directory}: no tokenizer ({', '.join(TOKENIZER_FILES)})")
    for shard in shards:
        if shard.size == 0:
            raise ArtifactError(f"{shard.path}: empty weights file")
        safetensors_header(shard.path)
    return with_digests(files)


def manifest_for(model_id: str, files: list[LocalFile]) -> dict:
    return {
        "model_id": model_id,
        "files": [{"path": f.name, "size": f.size, "sha256": f.sha256} for f in files],
    }


def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def model_prefix(model_id: str) -> str:
    return f"{WEIGHTS_PREFIX}/{model_id}/"


@dataclass
class UploadReport:
    uploaded: list[str]
    skipped: list[str]
    manifest_key: str
    snapshot: str


def upload_model(s3, bucket: str, model_id: str, directory: Path, *,
                 transfer_config=None, progress: Callable[[int], None] | None = None) -> UploadReport:
    """Upload `directory` to models/<model_id>/; files already there with the same digest are skipped."""
    files = scan_model_dir(directory)
    prefix = model_prefix(model_id)
    # Unpublish first: from here until the new manifest, readers see no model.
    s3.delete_object(Bucket=bucket, Key=prefix + MANIFEST)
    uploaded, skipped = upload_missing(s3, bucket, prefix, files, transfer_config=transfer_config, progress=progress)
    manifest = manifest_for(model_id, files)
    snapshot = manifest_digest(manifest)[:40]
    s3.put_object(Bucket=bucket, Key=prefix + HASH_OBJECT, Body=snapshot.encode(), ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key=prefix + MANIFEST, Body=json.dumps(manifest, indent=2).encode(),
                  ContentType="application/json", ChecksumAlgorithm="SHA256")
    return UploadReport(uploaded, skipped, prefix + MANIFEST, snapshot)


def verify_model(s3, bucket: str, model_id: str, *, deep: bool = False) -> list[str]:
    """Every object against the manifest (size and digest; `deep` re-hashes the bytes). [] means intact."""
    prefix = model_prefix(model_id)
    manifest = read_manifest(s3, bucket, model_id)
    problems = []
    for entry in manifest["files"]:
        key = prefix + entry["path"]
        found = head(s3, bucket, key)
        if found is None:
            problems.append(f"{key}: missing")
            continue
        if found["ContentLength"] != entry["size"]:
            problems.append(f"{key}: {found['ContentLength']} bytes, manifest says {entry['size']}")
            continue
        digest = stream_sha256(s3, bucket, key) if deep else found.get("Metadata", {}).get(SHA_METADATA)
        if digest != entry["sha256"]:
            problems.append(f"{key}: SHA-256 {digest or 'unknown'} differs from the manifest")
    return problems


def read_manifest(s3, bucket: str, model_id: str) -> dict:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        body = s3.get_object(Bucket=bucket, Key=model_prefix(model_id) + MANIFEST)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise ArtifactError(f"model {model_id!r} is not published in s3://{bucket}/{model_prefix(model_id)} (no manifest)") from None
        raise
    return json.loads(body)
