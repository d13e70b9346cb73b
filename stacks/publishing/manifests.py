"""A snapshot's manifest: what one upload of a model holds, and the snapshot id derived from it.

`manifest.json` lists every file with its size, SHA-256 and the checksum S3 stores for it. The
snapshot id is the first 16 hex digits of the manifest's SHA-256, so identical content always
gets the same id, and any other content (a byte, a file name, the model id) another one.
"""

from __future__ import annotations

import hashlib
import json
import re

from app.spec import SNAPSHOT_PATTERN, WEIGHTS_PREFIX, snapshot_prefix
from stacks.errors import ArtifactError
from stacks.publishing.files import parse_json
from stacks.publishing.objects import read_object
from stacks.publishing.scan import LocalFile

MANIFEST = "manifest.json"
HASH_OBJECT = "hash"  # Ray names its local copy of a snapshot after this object's content
MANIFEST_LIMIT = 16 * 1024 * 1024  # ~80,000 entries
SNAPSHOT_ID = re.compile(SNAPSHOT_PATTERN)


def manifest_for(model_id: str, files: list[LocalFile]) -> dict:
    return {
        "model_id": model_id,
        "files": [
            {"path": f.name, "size": f.size, "sha256": f.sha256, "checksum_sha256": f.s3_checksum} for f in files
        ],
    }


def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def snapshot_id(manifest: dict) -> str:
    return manifest_digest(manifest)[:16]


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=2).encode()


def manifest_size(manifest: dict) -> int:
    """The bytes of the files a manifest lists."""
    return sum(e["size"] for e in manifest["files"])


def model_prefix(model_id: str) -> str:
    return f"{WEIGHTS_PREFIX}/{model_id}/"


def snapshot_of(model_id: str, key: str) -> str | None:
    """The snapshot a key of the model's folder belongs to (None: the old layout's, or none)."""
    rest = key[len(model_prefix(model_id)) :] if key.startswith(model_prefix(model_id)) else ""
    folder, slash, _ = rest.partition("/")
    return folder if slash and SNAPSHOT_ID.fullmatch(folder) else None


def read_manifest(s3, bucket: str, model_id: str, snapshot: str) -> dict | None:
    """The snapshot's manifest (None: there is none, so the snapshot is not published)."""
    key = snapshot_prefix(model_id, snapshot) + MANIFEST
    body = read_object(s3, bucket, key, MANIFEST_LIMIT)
    if body is None:
        return None
    try:
        manifest = parse_json(body)
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not _manifest_shape(manifest):
        raise ArtifactError(f"s3://{bucket}/{key}: not a manifest upload-model writes; rerun upload-model")
    return manifest


def _manifest_shape(manifest: object) -> bool:
    def entry_ok(e: object) -> bool:
        return (
            isinstance(e, dict)
            and isinstance(e.get("path"), str)
            and e["path"].isprintable()
            and isinstance(e.get("size"), int)
            and not isinstance(e["size"], bool)
            and e["size"] >= 0
            and isinstance(e.get("sha256"), str)
            and isinstance(e.get("checksum_sha256", ""), str)
        )

    return (
        isinstance(manifest, dict)
        and isinstance(manifest.get("files"), list)
        and all(entry_ok(e) for e in manifest["files"])
    )
