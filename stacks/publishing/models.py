"""Publishing model weights to the weights bucket: validated, checksummed, resumable.

Layout under `models/<model id>/`: the model's files, then `hash` (the name
Ray gives its local snapshot) and, last, `manifest.json` (every file's size,
SHA-256 and S3 checksum). A model is published when, and only when, its
manifest is there: an upload first removes the old manifest, and writes the
new one after every file is in place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.spec import WEIGHTS_PREFIX
from stacks.errors import ArtifactError
from stacks.publishing.aws import transfer_config as default_transfer_config
from stacks.publishing.files import (
    checksum_matches,
    parse_json,
    read_json_object,
    safetensors_header,
    with_digests,
)
from stacks.publishing.objects import delete_keys, head, list_keys, read_object, stream_sha256, upload_missing
from stacks.publishing.scan import LocalFile, local_files, shown

MANIFEST = "manifest.json"
HASH_OBJECT = "hash"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# Gemma 3's tokenizer_config.json alone is over 1 MiB (thousands of added tokens).
TOKENIZER_CONFIG_LIMIT = 16 * 1024 * 1024
MANIFEST_LIMIT = 16 * 1024 * 1024  # ~80,000 entries


@dataclass(frozen=True)
class RemoteCode:
    """Consent to publish a model that ships Python code, which vLLM runs: it takes both."""

    flag: bool = False  # upload-model --trust-remote-code
    configured: bool = False  # the model's trust_remote_code: true in the environment file
    where: str = "the environment file"  # that model, for messages: "envs/dev.yaml: models[0]"


def scan_model_dir(directory: Path, *, key_prefix: str = "", remote_code: RemoteCode = RemoteCode(),
                   transfer_config=None) -> list[LocalFile]:
    """The files to publish with their digests, after checking the directory is a complete, safe model."""
    files = local_files(directory, key_prefix, reserved=(MANIFEST, HASH_OBJECT))
    by_name = {f.name: f for f in files}
    if "config.json" not in by_name:
        raise ArtifactError(f"{shown(directory)}/config.json: missing (a Hugging Face model directory has one)")
    config = read_json_object(by_name["config.json"])
    if "model_type" not in config:
        raise ArtifactError(f"{shown(directory)}/config.json: no model_type")
    tokenizer = read_json_object(by_name["tokenizer_config.json"], TOKENIZER_CONFIG_LIMIT) if "tokenizer_config.json" in by_name else {}
    _check_remote_code(directory, files, config, tokenizer, remote_code)
    shards = [f for f in files if f.name.endswith(".safetensors")]
    if not shards:
        raise ArtifactError(f"{shown(directory)}: no *.safetensors weights")
    if not any(n.rsplit("/", 1)[-1] in TOKENIZER_FILES for n in by_name):
        raise ArtifactError(f"{shown(directory)}: no tokenizer ({', '.join(TOKENIZER_FILES)})")
    for shard in shards:
        if shard.size == 0:
            raise ArtifactError(f"{shown(shard.path)}: empty weights file")
        safetensors_header(shard)
    return with_digests(files, transfer_config or default_transfer_config())


def _check_remote_code(directory: Path, files: list[LocalFile], config: dict, tokenizer: dict, consent: RemoteCode) -> None:
    """Python files, or an `auto_map` (classes to import, possibly from another repository)."""
    code = next((f"Python file {f.name!r}" for f in files if f.name.lower().endswith(".py")), None)
    code = code or next((f"{name} has auto_map" for name, data in (("config.json", config), ("tokenizer_config.json", tokenizer))
                         if "auto_map" in data), None)
    if code is None or (consent.flag and consent.configured):
        return
    missing = [step for step, given in (("pass --trust-remote-code", consent.flag),
                                        (f"set trust_remote_code: true in {consent.where}", consent.configured)) if not given]
    raise ArtifactError(f"{shown(directory)}: ships code ({code}) that vLLM runs only with trust_remote_code; "
                        f"to publish it, {' and '.join(missing)}")


def manifest_for(model_id: str, files: list[LocalFile]) -> dict:
    return {
        "model_id": model_id,
        "files": [{"path": f.name, "size": f.size, "sha256": f.sha256, "checksum_sha256": f.s3_checksum} for f in files],
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
    removed: list[str]  # objects of an earlier upload that this one does not have


def upload_model(s3, bucket: str, model_id: str, directory: Path, *, remote_code: RemoteCode = RemoteCode(),
                 transfer_config=None, progress: Callable[[int], None] | None = None) -> UploadReport:
    """Upload `directory` to models/<model_id>/; objects S3 says already hold a file are skipped."""
    transfer_config = transfer_config or default_transfer_config()
    prefix = model_prefix(model_id)
    files = scan_model_dir(directory, key_prefix=prefix, remote_code=remote_code, transfer_config=transfer_config)
    # Unpublish first: from here until the new manifest, readers see no model.
    s3.delete_object(Bucket=bucket, Key=prefix + MANIFEST)
    uploaded, skipped = upload_missing(s3, bucket, prefix, files, transfer_config=transfer_config, progress=progress)
    # The folder holds exactly this upload: a streamed load reads every *.safetensors in it, and Ray's
    # download every object, so a shard left by an earlier upload would be loaded too.
    removed = stale_keys(s3, bucket, model_id, {prefix + f.name for f in files})
    delete_keys(s3, bucket, removed)
    manifest = manifest_for(model_id, files)
    snapshot = manifest_digest(manifest)[:40]
    s3.put_object(Bucket=bucket, Key=prefix + HASH_OBJECT, Body=snapshot.encode(), ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key=prefix + MANIFEST, Body=json.dumps(manifest, indent=2).encode(),
                  ContentType="application/json", ChecksumAlgorithm="SHA256")
    return UploadReport(uploaded, skipped, prefix + MANIFEST, snapshot, removed)


def stale_keys(s3, bucket: str, model_id: str, published: set[str]) -> list[str]:
    """Objects under the model's folder that are not among `published` (its manifest and hash aside)."""
    prefix = model_prefix(model_id)
    own = {prefix + MANIFEST, prefix + HASH_OBJECT}
    return sorted(o["Key"] for o in list_keys(s3, bucket, prefix) if o["Key"] not in published | own)


def verify_model(s3, bucket: str, model_id: str, *, deep: bool = False) -> list[str]:
    """Every object against the manifest: size and S3's checksum (`deep`: the bytes' SHA-256). [] means intact."""
    prefix = model_prefix(model_id)
    problems = []
    manifest = read_manifest(s3, bucket, model_id)
    problems += [f"{key}: not in the manifest (a load reads it too); rerun upload-model to remove it"
                 for key in stale_keys(s3, bucket, model_id, {prefix + e["path"] for e in manifest["files"]})]
    for entry in manifest["files"]:
        key = prefix + entry["path"]
        found = head(s3, bucket, key)
        if found is None:
            problems.append(f"{key}: missing")
        elif found["ContentLength"] != entry["size"]:
            problems.append(f"{key}: {found['ContentLength']} bytes, manifest says {entry['size']}")
        elif deep:
            if (digest := stream_sha256(s3, bucket, key)) != entry["sha256"]:
                problems.append(f"{key}: SHA-256 {digest} differs from the manifest")
        elif not entry.get("checksum_sha256"):
            problems.append(f"{key}: the manifest records no S3 checksum (an older upload-model wrote it); "
                            "rerun upload-model, or verify with --deep")
        elif not checksum_matches(stored := found.get("ChecksumSHA256"), entry["checksum_sha256"]):
            problems.append(f"{key}: S3 checksum {stored or 'none'} differs from the manifest's "
                            f"{entry['checksum_sha256']} (the object was replaced)")
    return problems


def read_manifest(s3, bucket: str, model_id: str) -> dict:
    where = f"s3://{bucket}/{model_prefix(model_id)}{MANIFEST}"
    body = read_object(s3, bucket, model_prefix(model_id) + MANIFEST, MANIFEST_LIMIT)
    if body is None:
        raise ArtifactError(f"model {model_id!r} is not published in s3://{bucket}/{model_prefix(model_id)} (no manifest)")
    try:
        manifest = parse_json(body)
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not _manifest_shape(manifest):
        raise ArtifactError(f"{where}: not a manifest upload-model writes; rerun upload-model")
    return manifest


def _manifest_shape(manifest: object) -> bool:
    def entry_ok(e: object) -> bool:
        return (isinstance(e, dict) and isinstance(e.get("path"), str) and e["path"].isprintable()
                and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
                and isinstance(e.get("checksum_sha256", ""), str))

    return isinstance(manifest, dict) and isinstance(manifest.get("files"), list) and all(entry_ok(e) for e in manifest["files"])
