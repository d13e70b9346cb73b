"""Published snapshots of model weights: verify, list, delete, pin.

A snapshot is `models/<model id>/<snapshot>/`: the model's files, `hash` and `manifest.json`.
It is published when its manifest is there, and intact when the objects under its prefix are
exactly what the manifest lists (Ray downloads every object under the prefix, the streamer reads
every top-level *.safetensors): nothing missing, nothing changed, nothing more. Objects under
`models/<model id>/` outside a snapshot folder are an upload in the old layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.spec import UNPINNED_TAG, WEIGHTS_PREFIX, snapshot_prefix
from stacks.errors import ArtifactError
from stacks.publishing.files import checksum_matches
from stacks.publishing.manifests import (
    HASH_OBJECT,
    MANIFEST,
    manifest_size,
    model_prefix,
    read_manifest,
    snapshot_id,
    snapshot_of,
)
from stacks.publishing.objects import (
    delete_keys,
    head,
    list_folders,
    list_keys,
    read_object,
    stream_sha256,
)

UNPINNED_TAGGING = f"{UNPINNED_TAG[0]}={UNPINNED_TAG[1]}"  # S3's Tagging header form


def required_manifest(s3, bucket: str, model_id: str, snapshot: str) -> dict:
    """The snapshot's manifest, or one line saying why there is none."""
    manifest = read_manifest(s3, bucket, model_id, snapshot)
    if manifest is not None:
        return manifest
    prefix = snapshot_prefix(model_id, snapshot)
    if list_keys(s3, bucket, prefix):
        raise ArtifactError(
            f"snapshot {snapshot} of {model_id} is not published in s3://{bucket}/{prefix} (no manifest: "
            "an upload of it was interrupted; rerun upload-model with that content, or delete-snapshot)"
        )
    if legacy_objects(s3, bucket, model_id) and not snapshots_in(s3, bucket, model_id):
        raise ArtifactError(old_layout(model_id))
    raise ArtifactError(
        f"snapshot {snapshot} of {model_id} is not in s3://{bucket}/{model_prefix(model_id)} "
        "(never uploaded, expired or deleted; list-models shows what is there)"
    )


def old_layout(model_id: str) -> str:
    return (
        f"{model_prefix(model_id)} is in the old layout (no snapshots): re-publish with upload-model "
        "and pin the snapshot it prints"
    )


def verify_snapshot(
    s3, bucket: str, model_id: str, snapshot: str, *, deep: bool = False, manifest: dict | None = None
) -> list[str]:
    """Both directions: every file of the manifest present with its size and S3's checksum (`deep`:
    the bytes' SHA-256), `hash` naming the snapshot, and no object the manifest does not list.
    One line per problem, each naming its key; [] means intact."""
    manifest = manifest if manifest is not None else required_manifest(s3, bucket, model_id, snapshot)
    prefix = snapshot_prefix(model_id, snapshot)
    problems = []
    if (described := snapshot_id(manifest)) != snapshot:
        problems.append(
            f"{prefix}{MANIFEST}: describes snapshot {described}, not {snapshot} (not what upload-model "
            "wrote for this folder); delete-snapshot and upload again"
        )
    listed = {prefix + e["path"] for e in manifest["files"]}
    problems += [
        f"{key}: not in the manifest (a replica loads it too); rerun upload-model with this snapshot's "
        "content to remove it"
        for key in unlisted_keys(s3, bucket, prefix, listed)
    ]
    hash_body = read_object(s3, bucket, prefix + HASH_OBJECT, 1024)
    if hash_body is None:
        problems.append(f"{prefix}{HASH_OBJECT}: missing (Ray names its local copy after it); rerun upload-model")
    elif hash_body.strip() != snapshot.encode():
        problems.append(f"{prefix}{HASH_OBJECT}: does not name snapshot {snapshot}; rerun upload-model")
    for entry in manifest["files"]:
        if problem := _entry_problem(s3, bucket, prefix + entry["path"], entry, deep):
            problems.append(problem)
    return problems


def _entry_problem(s3, bucket: str, key: str, entry: dict, deep: bool) -> str | None:
    found = head(s3, bucket, key)
    if found is None:
        return f"{key}: missing"
    if found["ContentLength"] != entry["size"]:
        return f"{key}: {found['ContentLength']} bytes, manifest says {entry['size']}"
    if deep:
        if (digest := stream_sha256(s3, bucket, key)) != entry["sha256"]:
            return f"{key}: SHA-256 {digest} differs from the manifest"
        return None
    if not entry.get("checksum_sha256"):
        return (
            f"{key}: the manifest records no S3 checksum (an older upload-model wrote it); "
            "rerun upload-model, or verify with --deep"
        )
    if not checksum_matches(stored := found.get("ChecksumSHA256"), entry["checksum_sha256"]):
        return f"{key}: S3 checksum {stored or 'none'} differs from the manifest's {entry['checksum_sha256']} (the object was replaced)"
    return None


def unlisted_keys(s3, bucket: str, prefix: str, listed: set[str]) -> list[str]:
    """Objects under the snapshot's prefix that are neither listed files nor its hash and manifest."""
    own = listed | {prefix + MANIFEST, prefix + HASH_OBJECT}
    return sorted(o["Key"] for o in list_keys(s3, bucket, prefix) if o["Key"] not in own)


# --- What a model's folder holds ---------------------------------------------------------------


@dataclass
class Snapshot:
    id: str
    complete: bool  # its manifest is there
    size: int  # the manifest's files; without one, the bytes present
    objects: int
    date: datetime  # the manifest's LastModified; without one, the newest object's
    pinned_by: list[str] = field(default_factory=list)  # filled in by the caller


@dataclass
class ModelFolder:
    model_id: str
    snapshots: list[Snapshot]
    legacy_objects: int  # objects of an upload in the old layout (outside any snapshot folder)
    legacy_size: int


def legacy_objects(s3, bucket: str, model_id: str) -> list[dict]:
    """Objects of the model's folder that are in no snapshot folder: the old layout."""
    return [o for o in list_keys(s3, bucket, model_prefix(model_id)) if snapshot_of(model_id, o["Key"]) is None]


def snapshots_in(s3, bucket: str, model_id: str) -> list[str]:
    """The snapshot folders of the model that hold objects (published or not)."""
    return sorted(
        {snap for o in list_keys(s3, bucket, model_prefix(model_id)) if (snap := snapshot_of(model_id, o["Key"]))}
    )


def model_folder(s3, bucket: str, model_id: str) -> ModelFolder:
    """The model's snapshots (newest first) and old-layout objects, from one listing and each manifest."""
    groups: dict[str | None, list[dict]] = {}
    for o in list_keys(s3, bucket, model_prefix(model_id)):
        groups.setdefault(snapshot_of(model_id, o["Key"]), []).append(o)
    legacy = groups.pop(None, [])
    snapshots = []
    for snap, objects in groups.items():
        manifest_obj = next((o for o in objects if o["Key"] == snapshot_prefix(model_id, snap) + MANIFEST), None)
        manifest = read_manifest(s3, bucket, model_id, snap) if manifest_obj else None
        if manifest is not None:
            snapshots.append(Snapshot(snap, True, manifest_size(manifest), len(objects), manifest_obj["LastModified"]))
        else:
            snapshots.append(
                Snapshot(
                    snap, False, sum(o["Size"] for o in objects), len(objects), max(o["LastModified"] for o in objects)
                )
            )
    snapshots.sort(key=lambda s: s.date, reverse=True)
    return ModelFolder(model_id, snapshots, len(legacy), sum(o["Size"] for o in legacy))


def model_folders(s3, bucket: str, model_ids: list[str] | None = None) -> list[ModelFolder]:
    ids = model_ids if model_ids is not None else list_folders(s3, bucket, f"{WEIGHTS_PREFIX}/")
    folders = [model_folder(s3, bucket, m) for m in sorted(ids)]
    return [f for f in folders if f.snapshots or f.legacy_objects]


# --- Deleting and pinning ----------------------------------------------------------------------


@dataclass
class Deleted:
    objects: int
    size: int


def delete_snapshot(s3, bucket: str, model_id: str, snapshot: str) -> Deleted:
    """Its manifest first (from then on it is not published), then everything else under it."""
    prefix = snapshot_prefix(model_id, snapshot)
    objects = list_keys(s3, bucket, prefix)
    if not objects:
        raise ArtifactError(
            f"snapshot {snapshot} of {model_id} is not in s3://{bucket}/{model_prefix(model_id)} "
            "(list-models shows what is there)"
        )
    return _delete_manifest_first(s3, bucket, prefix + MANIFEST, objects)


def delete_legacy(s3, bucket: str, model_id: str) -> Deleted:
    """The old layout's objects (its manifest first); snapshot folders are left alone."""
    objects = legacy_objects(s3, bucket, model_id)
    if not objects:
        raise ArtifactError(f"s3://{bucket}/{model_prefix(model_id)} holds no upload in the old layout")
    return _delete_manifest_first(s3, bucket, model_prefix(model_id) + MANIFEST, objects)


def _delete_manifest_first(s3, bucket: str, manifest_key: str, objects: list[dict]) -> Deleted:
    keys = [o["Key"] for o in objects]
    if manifest_key in keys:
        delete_keys(s3, bucket, [manifest_key])
    delete_keys(s3, bucket, [k for k in keys if k != manifest_key])
    return Deleted(len(objects), sum(o["Size"] for o in objects))


def unpin_tag(s3, bucket: str, model_id: str, snapshot: str) -> int:
    """Remove the unpinned tag from every object of the snapshot, so that the lifecycle rule never
    expires it (never added back: re-tagging an old object would expire it at once). Returns the count."""
    keys = [o["Key"] for o in list_keys(s3, bucket, snapshot_prefix(model_id, snapshot))]
    for key in keys:
        s3.delete_object_tagging(Bucket=bucket, Key=key)
    return len(keys)
