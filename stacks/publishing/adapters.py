"""Publishing LoRA adapters to the LoRA bucket: validated, checksummed, never half-visible.

Ray Serve LLM serves `adapters/<model id>/<adapter>/` as `<model id>:<adapter>`.
Its listing (`/v1/models`) and its loader both need the folder's
`adapter_config.json`: a folder without one is neither listed nor loaded.
So an upload goes first to a staging prefix Ray never reads, is then copied
server-side into place, and `adapter_config.json` is written last, from the
local bytes, only if absent (If-None-Match: *); a delete removes
`adapter_config.json` first. Whatever point an upload or delete is cut
short at, Ray sees the whole adapter or none of it.

Ray caches adapters on each replica by adapter name alone, so one name is
one adapter across every base model, and a published adapter is immutable:
a new version gets a new name. A claim on the name (`claims`) makes that hold
for concurrent uploads too: of two publishing one name, one wins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app.spec import ADAPTERS_PREFIX, STAGING_PREFIX, adapter_name_problem
from stacks.errors import ArtifactError
from stacks.publishing.adapter_dirs import (
    ADAPTER_CONFIG,
    AdapterTarget,
    scan_adapter_dir,
)
from stacks.publishing.aws import (
    NOT_FOUND,
    error_code,
)
from stacks.publishing.aws import transfer_config as default_transfer_config
from stacks.publishing.claims import Claim, release_claim, take_claim
from stacks.publishing.files import CONFIG_LIMIT, parse_json, read_small
from stacks.publishing.objects import (
    SHA_METADATA,
    delete_keys,
    has_objects,
    head,
    holds,
    list_folders,
    list_keys,
    put_if_absent,
    read_object,
    upload_missing,
)
from stacks.publishing.scan import LocalFile, shown


@dataclass(frozen=True)
class PublishedAdapter:
    model_id: str
    name: str
    ready: bool  # has adapter_config.json: Ray lists and loads it
    rank: int | None
    base_model: str | None
    files: int
    size: int
    modified: datetime | None


@dataclass
class AdapterReport:
    uploaded: list[str]
    skipped: list[str]
    prefix: str
    already_published: bool = False


@dataclass
class DeleteReport:
    published: int  # objects removed from the adapter's folder
    staged: int  # staged objects and the claim an interrupted upload left


def adapter_prefix(model_id: str, name: str) -> str:
    return f"{ADAPTERS_PREFIX}/{model_id}/{name}/"


def staging_root(model_id: str, name: str) -> str:
    return f"{STAGING_PREFIX}/{ADAPTERS_PREFIX}/{model_id}/{name}/"


def longest_prefix(model_id: str, name: str) -> str:
    """The longest key prefix a file of the adapter gets (its staging folder): names must fit after it."""
    return f"{staging_root(model_id, name)}<content digest>/"  # as long as the 16 digits it stands for


def content_digest(files: Sequence[LocalFile]) -> str:
    listing = sorted((f.name, f.size, f.sha256) for f in files)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def upload_adapter(
    s3,
    bucket: str,
    target: AdapterTarget,
    name: str,
    directory: Path,
    *,
    transfer_config=None,
    progress: Callable[[int], None] | None = None,
) -> AdapterReport:
    """Publish `directory` as `<model id>:<name>`; safe to rerun after any interruption, and to race."""
    if problem := adapter_name_problem(name):
        raise ArtifactError(f"--adapter: {problem}")
    transfer_config = transfer_config or default_transfer_config()
    files, _ = scan_adapter_dir(
        directory, target, key_prefix=longest_prefix(target.model_id, name), transfer_config=transfer_config
    )
    final = adapter_prefix(target.model_id, name)
    already = AdapterReport([], [f.name for f in files], final, already_published=True)
    if _published(s3, bucket, target, name, files):  # a rerun after success writes nothing
        _clean_staging(s3, bucket, target.model_id, name)
        return already
    mine = Claim(target.model_id, content_digest(files))
    fresh = take_claim(s3, bucket, name, mine)
    try:  # again, now that no other upload can start writing under the name
        published = _published(s3, bucket, target, name, files)
    except ArtifactError:
        if fresh:
            release_claim(s3, bucket, name, target.model_id)
        raise
    if published:
        _clean_staging(s3, bucket, target.model_id, name)
        return already

    config = next(f for f in files if f.name == ADAPTER_CONFIG)
    rest = [f for f in files if f is not config]
    staging = f"{staging_root(target.model_id, name)}{mine.content[:16]}/"
    uploaded, skipped = upload_missing(s3, bucket, staging, rest, transfer_config=transfer_config, progress=progress)
    # Leftovers of an interrupted upload or delete: without adapter_config.json Ray ignores them.
    existing = {o["Key"][len(final) :] for o in list_keys(s3, bucket, final)}
    delete_keys(s3, bucket, [final + k for k in sorted(existing - {f.name for f in files})])
    for f in rest:
        if not _in_place(s3, bucket, staging, final, f, transfer_config):
            if _published(s3, bucket, target, name, files):  # an identical upload finished first
                _clean_staging(s3, bucket, target.model_id, name)
                return already
            raise ArtifactError(
                f"s3://{bucket}/{staging}{f.name}: removed while being published (a delete-adapter "
                f"or an upload of {target.model_id}:{name} ran at the same time); rerun"
            )
    if _put_config(s3, bucket, final + ADAPTER_CONFIG, config):
        uploaded.append(config.name)
    elif not _published(s3, bucket, target, name, files):  # taken, then gone again
        raise ArtifactError(f"--adapter: {target.model_id}:{name} changed while being published; rerun")
    if progress:
        progress(config.size)
    _clean_staging(s3, bucket, target.model_id, name)
    return AdapterReport(uploaded, skipped, final)


def _published(s3, bucket: str, target: AdapterTarget, name: str, files: list[LocalFile]) -> bool:
    """Whether `files` are published under the name; ArtifactError if something else is."""
    for model_id in list_folders(s3, bucket, f"{ADAPTERS_PREFIX}/"):
        if model_id != target.model_id and has_objects(s3, bucket, adapter_prefix(model_id, name)):
            raise ArtifactError(
                f"--adapter: {name!r} is already published for model {model_id!r}; Ray caches adapters by name "
                "alone, so an adapter name must be unique across models: pick another name"
            )
    final = adapter_prefix(target.model_id, name)
    existing = {o["Key"][len(final) :] for o in list_keys(s3, bucket, final)}
    if ADAPTER_CONFIG not in existing:
        return False
    if existing == {f.name for f in files} and all(holds(head(s3, bucket, final + f.name), f) for f in files):
        return True
    raise ArtifactError(
        f"--adapter: {target.model_id}:{name} is already published with other content; replicas cache "
        f"adapters by name, so publish the new version under a new name (e.g. {name}-v2), or delete-adapter it first"
    )


def _in_place(s3, bucket: str, staging: str, final: str, f: LocalFile, transfer_config) -> bool:
    """Copy `f` from staging into place unless it is there; False if its staged copy is gone."""
    from botocore.exceptions import ClientError

    if holds(head(s3, bucket, final + f.name), f):
        return True
    try:
        # The same part size as the upload: the copy gets the same S3 checksum.
        s3.copy(
            {"Bucket": bucket, "Key": staging + f.name},
            bucket,
            final + f.name,
            ExtraArgs={
                "Metadata": {SHA_METADATA: f.sha256},
                "MetadataDirective": "REPLACE",
                "ChecksumAlgorithm": "SHA256",
            },
            Config=transfer_config,
        )
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return False
        raise
    if not holds(head(s3, bucket, final + f.name), f):
        raise ArtifactError(
            f"s3://{bucket}/{final}{f.name}: the copy does not hold {shown(f.path)} (its staged "
            "object was replaced); rerun"
        )
    return True


def _put_config(s3, bucket: str, key: str, f: LocalFile) -> bool:
    """Write adapter_config.json from the local bytes if the key is free; False if it is taken."""
    body = read_small(f, CONFIG_LIMIT)
    if hashlib.sha256(body).hexdigest() != f.sha256:
        raise ArtifactError(f"{shown(f.path)}: changed while being published; rerun once it is final")
    return put_if_absent(
        lambda: s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            IfNoneMatch="*",
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            Metadata={SHA_METADATA: f.sha256},
        )
    )


def list_adapters(s3, bucket: str, model_ids: Iterable[str] | None = None) -> list[PublishedAdapter]:
    """Adapters in the bucket (of `model_ids`, or of every model with an adapters folder)."""
    adapters = []
    for model_id in sorted(model_ids if model_ids is not None else list_folders(s3, bucket, f"{ADAPTERS_PREFIX}/")):
        for name in sorted(list_folders(s3, bucket, f"{ADAPTERS_PREFIX}/{model_id}/")):
            prefix = adapter_prefix(model_id, name)
            objects = list_keys(s3, bucket, prefix)
            ready = any(o["Key"] == prefix + ADAPTER_CONFIG for o in objects)
            config = _published_config(s3, bucket, prefix + ADAPTER_CONFIG) if ready else {}
            rank, base = config.get("r"), config.get("base_model_name_or_path")
            adapters.append(
                PublishedAdapter(
                    model_id,
                    name,
                    ready,
                    rank=rank if isinstance(rank, int) and not isinstance(rank, bool) else None,
                    base_model=base if isinstance(base, str) and base.isprintable() else None,
                    files=len(objects),
                    size=sum(o["Size"] for o in objects),
                    modified=max((o["LastModified"] for o in objects), default=None),
                )
            )
    return adapters


def _published_config(s3, bucket: str, key: str) -> dict:
    """A published adapter_config.json, bounded; {} if it is not one (listing goes on)."""
    try:
        config = parse_json(read_object(s3, bucket, key, CONFIG_LIMIT) or b"{}")
    except (ArtifactError, ValueError, UnicodeDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def delete_adapter(s3, bucket: str, model_id: str, name: str) -> DeleteReport:
    """Remove `<model id>:<name>` (delete markers: recoverable from versions), and what an
    interrupted upload of it left in staging."""
    if problem := adapter_name_problem(name):
        raise ArtifactError(f"--adapter: {problem}")
    prefix = adapter_prefix(model_id, name)
    keys = [o["Key"] for o in list_keys(s3, bucket, prefix)]
    config = prefix + ADAPTER_CONFIG
    if config in keys:
        # Unlist it first: without its config Ray neither lists nor loads it.
        s3.delete_object(Bucket=bucket, Key=config)
    delete_keys(s3, bucket, [k for k in keys if k != config])
    staged = _clean_staging(s3, bucket, model_id, name)
    if not keys and not staged:
        raise ArtifactError(
            f"--adapter: no adapter {name!r} for model {model_id!r} in s3://{bucket}/{ADAPTERS_PREFIX}/{model_id}/"
        )
    return DeleteReport(len(keys), staged)


def _clean_staging(s3, bucket: str, model_id: str, name: str) -> int:
    """Remove the name's staged files and its claim; returns how many objects went."""
    keys = [o["Key"] for o in list_keys(s3, bucket, staging_root(model_id, name))]
    delete_keys(s3, bucket, keys)
    return len(keys) + release_claim(s3, bucket, name, model_id)
