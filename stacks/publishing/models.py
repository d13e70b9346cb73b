"""Publishing model weights to the weights bucket: validated, checksummed, resumable, immutable.

Each upload goes to its own snapshot, `models/<model id>/<snapshot>/`, named after its content
(`manifests.snapshot_id`): the model's files, then `hash` (the name Ray gives its local copy) and,
last, `manifest.json`, written only if no manifest is there yet. A snapshot is published when, and
only when, its manifest is there, and is never changed after: different content is another
snapshot, identical content the same one (a no-op). Nothing is written outside the snapshot's
prefix, so the snapshot an environment pins cannot change under its replicas, whatever an upload
does or wherever it is interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from app.spec import snapshot_prefix
from stacks.errors import ArtifactError
from stacks.publishing.aws import (
    NOT_FOUND,
    PRECONDITION_FAILED,
    error_code,
)
from stacks.publishing.aws import transfer_config as default_transfer_config
from stacks.publishing.files import read_json_object, safetensors_header, with_digests
from stacks.publishing.manifests import (
    HASH_OBJECT,
    MANIFEST,
    manifest_bytes,
    manifest_for,
    manifest_size,
    read_manifest,
    snapshot_id,
)
from stacks.publishing.objects import (
    SHA_METADATA,
    copy_object,
    delete_keys,
    head,
    holds,
    put_if_absent,
    read_object,
    upload_missing,
)
from stacks.publishing.scan import LocalFile, local_files, shown
from stacks.publishing.snapshots import (
    UNPINNED_TAGGING,
    legacy_objects,
    snapshots_in,
    unlisted_keys,
    verify_snapshot,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# Gemma 3's tokenizer_config.json alone is over 1 MiB (thousands of added tokens).
TOKENIZER_CONFIG_LIMIT = 16 * 1024 * 1024
# Any snapshot's prefix has this length: names are checked against S3's key limit before the id is known.
SNAPSHOT_PLACEHOLDER = "0" * 16
REUSE_SNAPSHOTS = 20  # the manifests of at most this many other snapshots are read to copy unchanged files


@dataclass(frozen=True)
class RemoteCode:
    """Consent to publish a model that ships Python code, which vLLM runs: it takes both."""

    flag: bool = False  # upload-model --trust-remote-code
    configured: bool = False  # the model's trust_remote_code: true in the environment file
    where: str = "the environment file"  # that model, for messages: "envs/dev.yaml: models[0]"


def scan_model_dir(
    directory: Path, *, key_prefix: str = "", remote_code: RemoteCode = RemoteCode(), transfer_config=None
) -> list[LocalFile]:
    """The files to publish with their digests, after checking the directory is a complete, safe model."""
    files = local_files(directory, key_prefix, reserved=(MANIFEST, HASH_OBJECT))
    by_name = {f.name: f for f in files}
    if "config.json" not in by_name:
        raise ArtifactError(f"{shown(directory)}/config.json: missing (a Hugging Face model directory has one)")
    config = read_json_object(by_name["config.json"])
    if "model_type" not in config:
        raise ArtifactError(f"{shown(directory)}/config.json: no model_type")
    tokenizer = (
        read_json_object(by_name["tokenizer_config.json"], TOKENIZER_CONFIG_LIMIT)
        if "tokenizer_config.json" in by_name
        else {}
    )
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


def _check_remote_code(
    directory: Path, files: list[LocalFile], config: dict, tokenizer: dict, consent: RemoteCode
) -> None:
    """Python files, or an `auto_map` (classes to import, possibly from another repository)."""
    code = next((f"Python file {f.name!r}" for f in files if f.name.lower().endswith(".py")), None)
    code = code or next(
        (
            f"{name} has auto_map"
            for name, data in (("config.json", config), ("tokenizer_config.json", tokenizer))
            if "auto_map" in data
        ),
        None,
    )
    if code is None or (consent.flag and consent.configured):
        return
    missing = [
        step
        for step, given in (
            ("pass --trust-remote-code", consent.flag),
            (f"set trust_remote_code: true in {consent.where}", consent.configured),
        )
        if not given
    ]
    raise ArtifactError(
        f"{shown(directory)}: ships code ({code}) that vLLM runs only with trust_remote_code; "
        f"to publish it, {' and '.join(missing)}"
    )


PUBLISHED, ALREADY, CONCURRENT, REPAIRED = "published", "already published", "published concurrently", "repaired"


@dataclass
class UploadReport:
    model_id: str
    snapshot: str
    prefix: str  # models/<model id>/<snapshot>/
    outcome: str  # PUBLISHED; ALREADY (nothing written); CONCURRENT (another upload of this content wrote
    #               the manifest first); REPAIRED (a published snapshot's objects put back as its manifest says)
    size: int  # bytes of the snapshot's files
    files: int
    uploaded: list[str]
    skipped: list[str]  # already held by the object under the snapshot's prefix (a rerun resumes)
    removed: list[str]  # objects under the snapshot's prefix that its manifest does not list
    legacy_objects: int  # objects of an upload in the old layout, still under models/<model id>/
    tagged: bool  # what it wrote carries the unpinned tag (False: an environment already pins this snapshot)
    copied: list[str] = field(default_factory=list)  # copied within S3 from another snapshot that holds the file

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST


def upload_model(
    s3,
    bucket: str,
    model_id: str,
    directory: Path,
    *,
    remote_code: RemoteCode = RemoteCode(),
    transfer_config=None,
    progress: Callable[[int], None] | None = None,
    pinned: Collection[str] = (),
) -> UploadReport:
    """Publish `directory` as a snapshot of `model_id` (see the module's docstring).

    `pinned`: the snapshots environments pin; objects written into one of those (a repair) go
    without the unpinned tag, so the lifecycle rule cannot expire them before `llmstacks pin` runs.
    """
    transfer_config = transfer_config or default_transfer_config()
    files = scan_model_dir(
        directory,
        key_prefix=snapshot_prefix(model_id, SNAPSHOT_PLACEHOLDER),
        remote_code=remote_code,
        transfer_config=transfer_config,
    )
    manifest = manifest_for(model_id, files)
    snapshot = snapshot_id(manifest)
    prefix = snapshot_prefix(model_id, snapshot)
    report = UploadReport(
        model_id,
        snapshot,
        prefix,
        PUBLISHED,
        manifest_size(manifest),
        len(files),
        [],
        [],
        [],
        len(legacy_objects(s3, bucket, model_id)),
        snapshot not in pinned,
    )
    present, existing = _existing_manifest(s3, bucket, model_id, snapshot)
    if existing == manifest and not verify_snapshot(s3, bucket, model_id, snapshot, manifest=manifest):
        report.outcome, report.skipped = ALREADY, [f.name for f in files]
        if progress:
            progress(report.size)
        return report
    if present and existing != manifest:  # not what this content's upload writes: it never described these files
        s3.delete_object(Bucket=bucket, Key=prefix + MANIFEST)
    tagging = UNPINNED_TAGGING if report.tagged else None
    report.copied = _copy_unchanged(s3, bucket, model_id, prefix, files, transfer_config, tagging, progress)
    report.uploaded, report.skipped = upload_missing(
        s3,
        bucket,
        prefix,
        [f for f in files if f.name not in report.copied],
        transfer_config=transfer_config,
        progress=progress,
        tagging=tagging,
    )
    # Ray downloads every object under the prefix and the streamer reads every *.safetensors in it:
    # whatever an earlier attempt or anyone else left there goes.
    report.removed = unlisted_keys(s3, bucket, prefix, {prefix + f.name for f in files})
    delete_keys(s3, bucket, report.removed)
    if read_object(s3, bucket, prefix + HASH_OBJECT, 1024) != snapshot.encode():
        _put(s3, bucket, prefix + HASH_OBJECT, snapshot.encode(), tagging)
    if existing == manifest:
        report.outcome = REPAIRED
    elif not _put_manifest(s3, bucket, prefix + MANIFEST, manifest, tagging):
        report.outcome = CONCURRENT
    if report.outcome != PUBLISHED and (problems := verify_snapshot(s3, bucket, model_id, snapshot)):
        raise ArtifactError(
            f"snapshot {snapshot} of {model_id} is {report.outcome} but differs from its manifest: {problems[0]}"
        )
    return report


def _copy_unchanged(
    s3,
    bucket: str,
    model_id: str,
    prefix: str,
    files: list[LocalFile],
    transfer_config,
    tagging: str | None,
    progress: Callable[[int], None] | None,
) -> list[str]:
    """Files that another published snapshot of the model holds are copied within S3 instead of sent
    again (a new tokenizer does not re-upload the weights). With the upload's part size the copy gets
    the same S3 checksum; each copy is checked like an upload. Returns the names copied."""
    from botocore.exceptions import ClientError

    wanted = [f for f in files if not holds(head(s3, bucket, prefix + f.name), f)]
    sources = _published_files(s3, bucket, model_id, prefix) if wanted else {}
    copied = []
    for f in wanted:
        source = sources.get((f.size, f.sha256, f.s3_checksum))
        found = head(s3, bucket, source) if source else None
        if not holds(found, f):
            continue
        # The copy carries the tags it is given (not the source's) from its first byte, so no kill
        # can leave an untagged copy that the lifecycle rule would never expire.
        try:
            copy_object(
                s3,
                bucket,
                found | {"Key": source},
                prefix + f.name,
                transfer_config,
                tagging=tagging,
                metadata={SHA_METADATA: f.sha256},
            )
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND + PRECONDITION_FAILED:
                continue  # the source went or changed in between: upload the file instead
            raise
        if holds(head(s3, bucket, prefix + f.name), f):
            copied.append(f.name)
            if progress:
                progress(f.size)
    return copied


def _published_files(s3, bucket: str, model_id: str, prefix: str) -> dict[tuple, str]:
    """(size, SHA-256, S3 checksum) -> a key holding it, from the manifests of the model's other snapshots."""
    found = {}
    for snap in snapshots_in(s3, bucket, model_id)[:REUSE_SNAPSHOTS]:
        other = snapshot_prefix(model_id, snap)
        try:
            manifest = read_manifest(s3, bucket, model_id, snap) if other != prefix else None
        except ArtifactError:
            manifest = None
        for e in (manifest or {}).get("files", []):
            if e.get("checksum_sha256"):
                found.setdefault((e["size"], e["sha256"], e["checksum_sha256"]), other + e["path"])
    return found


def _existing_manifest(s3, bucket: str, model_id: str, snapshot: str) -> tuple[bool, dict | None]:
    """(whether a manifest is there, it if it is one upload-model writes)."""
    try:
        manifest = read_manifest(s3, bucket, model_id, snapshot)
    except ArtifactError:
        return True, None
    return manifest is not None, manifest


def _put(s3, bucket: str, key: str, body: bytes, tagging: str | None, **extra) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ChecksumAlgorithm="SHA256",
        **({"Tagging": tagging} if tagging else {}),
        **extra,
    )


def _put_manifest(s3, bucket: str, key: str, manifest: dict, tagging: str | None) -> bool:
    """Write the manifest unless one is there (S3's conditional write); False: another upload did."""
    return put_if_absent(
        lambda: _put(
            s3, bucket, key, manifest_bytes(manifest), tagging, IfNoneMatch="*", ContentType="application/json"
        )
    )
