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
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.spec import WEIGHTS_PREFIX

MANIFEST = "manifest.json"
HASH_OBJECT = "hash"
SHA_METADATA = "sha256"  # x-amz-meta-sha256: the whole file's digest, multipart or not
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
CHUNK = 8 * 1024 * 1024


class ArtifactError(Exception):
    """A user error (bad directory, unknown model, no credentials): one line, exit status 2."""


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # relative to the model directory, with "/"
    size: int
    sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def scan_model_dir(directory: Path) -> list[LocalFile]:
    """The files to publish, after checking the directory is a complete, safe model."""
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
        if name in (MANIFEST, HASH_OBJECT):
            raise ArtifactError(f"{path}: {name!r} is reserved for the published manifest; remove it")
        if path.suffix in PICKLE_SUFFIXES:
            raise ArtifactError(f"{path}: pickled weights are not published; convert them to safetensors")
        files.append(LocalFile(path, name, path.stat().st_size, ""))
    if not files:
        raise ArtifactError(f"{directory}: empty directory")
    names = {f.name for f in files}
    if "config.json" not in names:
        raise ArtifactError(f"{directory}/config.json: missing (a Hugging Face model directory has one)")
    try:
        config = json.loads((directory / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{directory}/config.json: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ArtifactError(f"{directory}/config.json: no model_type")
    if not any(n.endswith(".safetensors") for n in names):
        raise ArtifactError(f"{directory}: no *.safetensors weights")
    if not any(n.rsplit("/", 1)[-1] in TOKENIZER_FILES for n in names):
        raise ArtifactError(f"{directory}: no tokenizer ({', '.join(TOKENIZER_FILES)})")
    if empty := [f.name for f in files if f.size == 0 and f.name.endswith(".safetensors")]:
        raise ArtifactError(f"{directory}/{empty[0]}: empty weights file")
    return [LocalFile(f.path, f.name, f.size, sha256_file(f.path)) for f in files]


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


def upload_model(s3, bucket: str, model_id: str, directory: Path, *,
                 transfer_config=None, progress: Callable[[int], None] | None = None) -> UploadReport:
    """Upload `directory` to models/<model_id>/; files already there with the same digest are skipped."""
    files = scan_model_dir(directory)
    prefix = model_prefix(model_id)
    # Unpublish first: from here until the new manifest, readers see no model.
    s3.delete_object(Bucket=bucket, Key=prefix + MANIFEST)
    uploaded, skipped = [], []
    for f in files:
        key = prefix + f.name
        if _already_there(s3, bucket, key, f):
            skipped.append(f.name)
            if progress:
                progress(f.size)
            continue
        s3.upload_file(
            str(f.path), bucket, key,
            ExtraArgs={"ChecksumAlgorithm": "SHA256", "Metadata": {SHA_METADATA: f.sha256}},
            Config=transfer_config, Callback=progress,
        )
        uploaded.append(f.name)
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
        head = _head(s3, bucket, key)
        if head is None:
            problems.append(f"{key}: missing")
            continue
        if head["ContentLength"] != entry["size"]:
            problems.append(f"{key}: {head['ContentLength']} bytes, manifest says {entry['size']}")
            continue
        digest = _stream_sha256(s3, bucket, key) if deep else head.get("Metadata", {}).get(SHA_METADATA)
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


def _head(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _already_there(s3, bucket: str, key: str, f: LocalFile) -> bool:
    head = _head(s3, bucket, key)
    return head is not None and head["ContentLength"] == f.size and head.get("Metadata", {}).get(SHA_METADATA) == f.sha256


def _stream_sha256(s3, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
