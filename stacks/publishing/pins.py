"""Which snapshots environments pin: read from the environment files themselves.

Each environment's models with bucket weights name the snapshot they serve
(`models[i].weights.snapshot`). A pin is on one bucket's copy: environments keep their weights
in buckets of their own, so a snapshot is pinned in a bucket when an environment whose weights
bucket that is names it. A bucket model without a snapshot still serves the old layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.spec import snapshot_prefix
from stacks.config.loader import load_environment
from stacks.config.names import Names
from stacks.errors import ConfigError
from stacks.publishing.aws import error_code
from stacks.publishing.manifests import read_manifest
from stacks.publishing.snapshots import unpin_tag, verify_snapshot


@dataclass(frozen=True)
class Pin:
    environment: str
    source: str  # the environment file
    bucket: str  # its weights bucket
    index: int  # models[index]
    model_id: str
    snapshot: str | None  # None: the model still serves the old layout (models/<id>/ itself)

    @property
    def field(self) -> str:
        return f"models[{self.index}].weights.snapshot"

    def __str__(self) -> str:
        return f"{self.environment} ({self.source}: {self.field})"


def environment_pins(files: Iterable[Path]) -> list[Pin]:
    """The pins of every bucket model in these environment files (each loaded with the project's
    loader; a file that does not load is an error: what it pins cannot be known)."""
    pins, seen = [], set()
    for path in files:
        if (resolved := Path(path).resolve()) in seen:
            continue
        seen.add(resolved)
        env = load_environment(path)
        bucket = Names(env).weights_bucket
        for i, model in enumerate(env.models):
            if model.weights.source == "bucket":
                pins.append(Pin(env.name, str(path), bucket, i, model.id, model.weights.snapshot))
    return pins


def pins_of(pins: Iterable[Pin], bucket: str, model_id: str, snapshot: str | None) -> list[Pin]:
    """The pins on one snapshot of `bucket` (None: on the old layout of the model)."""
    return [p for p in pins if (p.bucket, p.model_id, p.snapshot) == (bucket, model_id, snapshot)]


def pin_snapshots(s3, pins: list[Pin]) -> list[tuple[Pin, int]]:
    """Verify every pinned snapshot (complete, both directions), then remove the unpinned tag from
    each of their objects, then verify again (the lifecycle rule may have expired one in between).
    Idempotent. Returns each pin with the number of its objects."""
    for pin in pins:
        _check_pinnable(s3, pin)
    done = [(pin, unpin_tag(s3, pin.bucket, pin.model_id, pin.snapshot)) for pin in pins]
    for pin in pins:
        _check_pinnable(s3, pin)
    return done


def _check_pinnable(s3, pin: Pin) -> None:
    from botocore.exceptions import ClientError

    if pin.snapshot is None:
        raise ConfigError(pin.source, pin.field, "required for bucket weights: the snapshot upload-model printed")
    where = f"s3://{pin.bucket}/{snapshot_prefix(pin.model_id, pin.snapshot)}"
    try:
        manifest = read_manifest(s3, pin.bucket, pin.model_id, pin.snapshot)
    except ClientError as exc:
        if error_code(exc) != "NoSuchBucket":
            raise
        raise ConfigError(
            pin.source,
            pin.field,
            f"{pin.snapshot} is not published: the weights bucket s3://{pin.bucket} "
            "does not exist yet: deploy the AWS stack first (make deploy ENV=<env> STACKS=<env>), then upload-model",
        ) from None
    if manifest is None:
        raise ConfigError(
            pin.source,
            pin.field,
            f"{pin.snapshot} is not published in {where} (expired or never uploaded): "
            "run upload-model again; identical content gives the same snapshot",
        )
    if problems := verify_snapshot(s3, pin.bucket, pin.model_id, pin.snapshot, manifest=manifest):
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(
            pin.source, pin.field, f"{pin.snapshot} in {where} differs from its manifest: {problems[0]}{more}"
        )
