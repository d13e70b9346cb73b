"""Publishing LoRA adapters to the LoRA bucket: validated, checksummed, never half-visible.

Ray Serve LLM serves `adapters/<model id>/<adapter>/` as `<model id>:<adapter>`.
Its listing (`/v1/models`) and its loader both need the folder's
`adapter_config.json`: a folder without one is neither listed nor loaded.
So an upload goes first to a staging prefix Ray never reads, is then copied
server-side into place with `adapter_config.json` last, and a delete removes
`adapter_config.json` first. Whatever point an upload or delete is cut
short at, Ray sees the whole adapter or none of it.

Ray caches adapters on each replica by adapter name alone, so one name is
one adapter across every base model, and a published adapter is immutable:
a new version gets a new name.
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
from stacks.publishing.files import (
    SHA_METADATA,
    LocalFile,
    delete_keys,
    has_objects,
    head,
    holds,
    list_folders,
    list_keys,
    local_files,
    read_json_object,
    safetensors_header,
    upload_missing,
    with_digests,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class AdapterTarget:
    """What the environment file says about the model an adapter is published for."""

    model_id: str
    max_rank: int
    # Names adapter_config.json may give as base_model_name_or_path for this model.
    base_models: tuple[str, ...]
    where: str  # the model in the environment file, for messages: "envs/dev.yaml: models[0]"


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


def adapter_prefix(model_id: str, name: str) -> str:
    return f"{ADAPTERS_PREFIX}/{model_id}/{name}/"


def staging_root(model_id: str, name: str) -> str:
    return f"{STAGING_PREFIX}/{ADAPTERS_PREFIX}/{model_id}/{name}/"


def content_digest(files: Sequence[LocalFile]) -> str:
    listing = sorted((f.name, f.size, f.sha256) for f in files)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def base_model_matches(declared: str, accepted: Iterable[str]) -> bool:
    """`declared` names one of `accepted`, in full or by its last path component, ignoring case.

    PEFT records whatever the trainer loaded: a Hugging Face id
    ("Qwen/Qwen2.5-7B-Instruct") or a local path ("/ckpt/Qwen2.5-7B-Instruct").
    """
    value = declared.strip().rstrip("/").lower()
    last = value.rsplit("/", 1)[-1]
    return any(value == name.lower() or last == name.lower().rsplit("/", 1)[-1] for name in accepted)


def scan_adapter_dir(directory: Path, target: AdapterTarget) -> tuple[list[LocalFile], dict]:
    """The files to publish and the adapter's config, after checking it is a LoRA adapter for `target`."""
    files = local_files(directory)
    names = {f.name for f in files}
    config_path = directory / ADAPTER_CONFIG
    if ADAPTER_CONFIG not in names:
        raise ArtifactError(f"{config_path}: missing (a PEFT LoRA adapter directory has one)")
    config = read_json_object(config_path)
    peft_type = config.get("peft_type")
    if not isinstance(peft_type, str) or peft_type.upper() != "LORA":
        raise ArtifactError(f"{config_path}: peft_type: {peft_type!r} is not a LoRA adapter (vLLM serves peft_type LORA)")
    if config.get("use_dora"):
        raise ArtifactError(f"{config_path}: use_dora: DoRA adapters are not served by vLLM")
    rank = config.get("r")
    if not _positive_int(rank):
        raise ArtifactError(f"{config_path}: r: {rank!r} is not a LoRA rank (a positive integer)")
    pattern = config.get("rank_pattern") or {}
    if not isinstance(pattern, dict) or not all(_positive_int(r) for r in pattern.values()):
        raise ArtifactError(f"{config_path}: rank_pattern: not a mapping of module names to positive integers")
    highest = max([rank, *pattern.values()])
    if highest > target.max_rank:
        raise ArtifactError(
            f"{config_path}: r: rank {highest} exceeds lora.max_rank {target.max_rank} of model {target.model_id} "
            f"({target.where}); raise max_rank there or train with a lower rank"
        )
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise ArtifactError(f"{config_path}: base_model_name_or_path: missing; an adapter must say which model it was trained on")
    if not base_model_matches(base, target.base_models):
        raise ArtifactError(
            f"{config_path}: base_model_name_or_path: {base!r} is not model {target.model_id} "
            f"(expected {' or '.join(repr(n) for n in target.base_models)}; "
            f"if it is the same model under another name, set lora.base_model in {target.where})"
        )
    if ADAPTER_WEIGHTS not in names:
        raise ArtifactError(f"{directory}: no {ADAPTER_WEIGHTS} (the adapter's weights, as safetensors)")
    weights = directory / ADAPTER_WEIGHTS
    tensors = safetensors_header(weights)
    lora_a = {n: t["shape"] for n, t in tensors.items() if ".lora_A." in n}
    if not lora_a:
        raise ArtifactError(f"{weights}: no LoRA tensors (*.lora_A.*) in it")
    for tensor, shape in lora_a.items():
        tensor_rank = shape[0] if shape else 0
        if tensor_rank > highest or (not pattern and tensor_rank != rank):
            raise ArtifactError(f"{weights}: tensor {tensor} has rank {tensor_rank}, but {ADAPTER_CONFIG} says r={rank}")
    return with_digests(files), config


def upload_adapter(s3, bucket: str, target: AdapterTarget, name: str, directory: Path, *,
                   transfer_config=None, progress: Callable[[int], None] | None = None) -> AdapterReport:
    """Publish `directory` as `<model id>:<name>`; safe to rerun after any interruption."""
    if problem := adapter_name_problem(name):
        raise ArtifactError(f"--adapter: {problem}")
    files, _ = scan_adapter_dir(directory, target)
    final = adapter_prefix(target.model_id, name)
    for model_id in list_folders(s3, bucket, f"{ADAPTERS_PREFIX}/"):
        if model_id != target.model_id and has_objects(s3, bucket, adapter_prefix(model_id, name)):
            raise ArtifactError(
                f"--adapter: {name!r} is already published for model {model_id!r}; Ray caches adapters by name "
                "alone, so an adapter name must be unique across models: pick another name"
            )
    existing = {o["Key"][len(final):] for o in list_keys(s3, bucket, final)}
    if ADAPTER_CONFIG in existing:
        if existing == {f.name for f in files} and all(holds(head(s3, bucket, final + f.name), f) for f in files):
            _clean_staging(s3, bucket, target.model_id, name)
            return AdapterReport([], [f.name for f in files], final, already_published=True)
        raise ArtifactError(
            f"--adapter: {target.model_id}:{name} is already published with other content; replicas cache "
            f"adapters by name, so publish the new version under a new name (e.g. {name}-v2), or delete-adapter it first"
        )

    staging = f"{staging_root(target.model_id, name)}{content_digest(files)[:16]}/"
    uploaded, skipped = upload_missing(s3, bucket, staging, files, transfer_config=transfer_config, progress=progress)

    # Leftovers of an interrupted upload or delete: without adapter_config.json Ray ignores them.
    wanted = {f.name for f in files}
    delete_keys(s3, bucket, [final + k for k in sorted(existing - wanted)])
    for f in sorted(files, key=lambda f: f.name == ADAPTER_CONFIG):  # adapter_config.json last
        if f.name != ADAPTER_CONFIG and holds(head(s3, bucket, final + f.name), f):
            continue
        s3.copy(
            {"Bucket": bucket, "Key": staging + f.name}, bucket, final + f.name,
            ExtraArgs={"Metadata": {SHA_METADATA: f.sha256}, "MetadataDirective": "REPLACE", "ChecksumAlgorithm": "SHA256"},
            Config=transfer_config,
        )
    _clean_staging(s3, bucket, target.model_id, name)
    return AdapterReport(uploaded, skipped, final)


def list_adapters(s3, bucket: str, model_ids: Iterable[str] | None = None) -> list[PublishedAdapter]:
    """Adapters in the bucket (of `model_ids`, or of every model with an adapters folder)."""
    adapters = []
    for model_id in sorted(model_ids if model_ids is not None else list_folders(s3, bucket, f"{ADAPTERS_PREFIX}/")):
        for name in sorted(list_folders(s3, bucket, f"{ADAPTERS_PREFIX}/{model_id}/")):
            prefix = adapter_prefix(model_id, name)
            objects = list_keys(s3, bucket, prefix)
            ready = any(o["Key"] == prefix + ADAPTER_CONFIG for o in objects)
            config = json.loads(s3.get_object(Bucket=bucket, Key=prefix + ADAPTER_CONFIG)["Body"].read()) if ready else {}
            adapters.append(PublishedAdapter(
                model_id, name, ready,
                rank=config.get("r"), base_model=config.get("base_model_name_or_path"),
                files=len(objects), size=sum(o["Size"] for o in objects),
                modified=max((o["LastModified"] for o in objects), default=None),
            ))
    return adapters


def delete_adapter(s3, bucket: str, model_id: str, name: str) -> int:
    """Remove `<model id>:<name>` (delete markers: recoverable from versions). Returns the objects removed."""
    if problem := adapter_name_problem(name):
        raise ArtifactError(f"--adapter: {problem}")
    prefix = adapter_prefix(model_id, name)
    keys = [o["Key"] for o in list_keys(s3, bucket, prefix)]
    if not keys:
        raise ArtifactError(f"--adapter: no adapter {name!r} for model {model_id!r} in s3://{bucket}/{ADAPTERS_PREFIX}/{model_id}/")
    config = prefix + ADAPTER_CONFIG
    if config in keys:
        # Unlist it first: without its config Ray neither lists nor loads it.
        s3.delete_object(Bucket=bucket, Key=config)
    delete_keys(s3, bucket, [k for k in keys if k != config])
    _clean_staging(s3, bucket, model_id, name)
    return len(keys)


def _clean_staging(s3, bucket: str, model_id: str, name: str) -> None:
    delete_keys(s3, bucket, [o["Key"] for o in list_keys(s3, bucket, staging_root(model_id, name))])


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
