"""`llmstacks upload-model`, `verify-model`, `list-models`, `delete-snapshot`, `pin`: model weights as
snapshots in an environment's weights bucket (stacks.publishing.models and .snapshots).

The environment gives the bucket, its region and, for upload-model, the model's consent to
ship code. Which snapshots are pinned comes from every environment file in --env-dir (and
--config): delete-snapshot never removes one that a file pins.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from app.spec import SNAPSHOT_PATTERN, model_id_problem, snapshot_prefix
from infra.rules import quoted
from stacks.cli.arguments import add_environment, environment_file, environments_dir
from stacks.cli.artifacts import size_text
from stacks.cli.status_codes import CHECK_FAILED, SUCCESS
from stacks.config.loader import environment_files, load_environment
from stacks.config.models import Model
from stacks.config.names import Names
from stacks.config.schema import Environment
from stacks.errors import ArtifactError, ConfigError


def register(commands) -> None:
    upload = commands.add_parser("upload-model", help="publish a model directory as a snapshot in the weights bucket")
    add_environment(upload)
    upload.add_argument("--model", required=True, metavar="ID", help="the model's id (as in the environment file)")
    upload.add_argument(
        "--from", required=True, metavar="DIR", help="the model directory (config.json, *.safetensors, tokenizer)"
    )
    upload.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="publish a model that ships Python code (*.py, auto_map); its trust_remote_code must be true too",
    )
    upload.set_defaults(func=cmd_upload_model)

    verify = commands.add_parser("verify-model", help="check a published snapshot against its manifest, both ways")
    add_environment(verify)
    verify.add_argument("--model", required=True, metavar="ID")
    verify.add_argument("--snapshot", metavar="ID", help="the snapshot (required when the model has snapshots)")
    verify.add_argument("--deep", action="store_true", help="re-read every byte instead of comparing S3's checksums")
    verify.set_defaults(func=cmd_verify_model)

    listing = commands.add_parser(
        "list-models", help="list each model's snapshots in the weights bucket and who pins them"
    )
    add_environment(listing)
    listing.add_argument("--model", metavar="ID", help="only this model")
    listing.add_argument("--json", action="store_true", help="one JSON array, for tools")
    listing.set_defaults(func=cmd_list_models)

    delete = commands.add_parser(
        "delete-snapshot", help="remove a snapshot no environment pins (recoverable through bucket versioning)"
    )
    add_environment(delete)
    delete.add_argument("--model", required=True, metavar="ID")
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("--snapshot", metavar="ID")
    which.add_argument("--legacy", action="store_true", help="the old layout's objects directly under models/<id>/")
    delete.set_defaults(func=cmd_delete_snapshot)

    pin = commands.add_parser("pin", help="verify each snapshot the environment pins and keep it from expiring")
    add_environment(pin)
    pin.set_defaults(func=cmd_pin)


@dataclass(frozen=True)
class Target:
    env: Environment
    source: Path
    bucket: str
    model: Model | None  # --model, when the environment has it
    index: int | None


def _target(args: argparse.Namespace, model_id: str | None = None) -> Target:
    """The environment (loaded, not planned: a model waiting for its first snapshot is fine here)."""
    source = environment_file(args)
    env = load_environment(source)
    if model_id is not None and (problem := model_id_problem(model_id)):
        raise ConfigError(source, "--model", problem)
    index = next((i for i, m in enumerate(env.models) if m.id == model_id), None)
    model = env.models[index] if index is not None else None
    if model is not None and model.weights.source != "bucket":
        raise ConfigError(
            source, "--model", f"{model_id!r} takes its weights from {model.weights.source}, not the weights bucket"
        )
    return Target(env, source, Names(env).weights_bucket, model, index)


def _s3(target: Target):
    from stacks.publishing.aws import s3_client

    return s3_client(target.env.aws.region)


def _pins(args: argparse.Namespace, target: Target):
    """What every environment file pins in this environment's bucket."""
    from stacks.publishing.pins import environment_pins

    files = [*environment_files(environments_dir(args)), target.source]
    return [p for p in environment_pins(files) if p.bucket == target.bucket]


def _snapshot_arg(target: Target, snapshot: str) -> str:
    import re

    if not re.fullmatch(SNAPSHOT_PATTERN, snapshot):
        raise ConfigError(
            target.source,
            "--snapshot",
            f"{quoted(snapshot)} is not a snapshot id (16 hex digits, as upload-model prints)",
        )
    return snapshot


def cmd_upload_model(args: argparse.Namespace) -> int:
    from stacks.publishing.aws import transfer_config
    from stacks.publishing.files import Progress
    from stacks.publishing.models import ALREADY, RemoteCode, upload_model
    from stacks.publishing.scan import local_files

    target = _target(args, args.model)
    pins = [p for p in _pins(args, target) if p.model_id == args.model]
    directory = Path(getattr(args, "from"))
    where = f"{target.source}: models[{target.index}]" if target.model else f"{target.source} (add the model to it)"
    remote_code = RemoteCode(
        flag=args.trust_remote_code, configured=bool(target.model and target.model.trust_remote_code), where=where
    )
    progress = Progress(sum(f.size for f in local_files(directory)))
    report = upload_model(
        _s3(target),
        target.bucket,
        args.model,
        directory,
        remote_code=remote_code,
        transfer_config=transfer_config(),
        progress=progress,
        pinned={p.snapshot for p in pins},
    )
    progress.close()
    uri = f"s3://{target.bucket}/{report.prefix}"
    size = f"{_count(report.files, 'file')}, {size_text(report.size)}"
    if report.outcome == ALREADY:
        print(f"{args.model} snapshot {report.snapshot} is already published at {uri} ({size}); nothing uploaded")
    else:
        removed = f", {_count(len(report.removed), 'object')} not in the manifest removed" if report.removed else ""
        copied = f"{len(report.copied)} copied from earlier snapshots, " if report.copied else ""
        print(
            f"{report.outcome} {args.model} snapshot {report.snapshot} at {uri} ({size}: {len(report.uploaded)} uploaded, "
            f"{copied}{len(report.skipped)} already there{removed})"
        )
    field = f"models[{target.index}].weights.snapshot" if target.model else "weights.snapshot"
    print(f"pin it: {field}: {report.snapshot}")
    holders = [p.environment for p in pins if p.snapshot == report.snapshot]
    days = target.env.buckets.weights.unpinned_snapshot_days
    if holders:
        print(f"pinned by {', '.join(sorted(set(holders)))}")
    elif days:
        print(
            f"until an environment pins it and `llmstacks pin` runs (the deploy workflow does), it expires {days} days after upload"
        )
    if report.legacy_objects:
        print(
            f"models/{args.model}/ still holds an upload in the old layout ({_count(report.legacy_objects, 'object')}); "
            "`llmstacks delete-snapshot --legacy` removes it once no environment serves it"
        )
    return SUCCESS


def cmd_verify_model(args: argparse.Namespace) -> int:
    from stacks.publishing.snapshots import legacy_objects, old_layout, snapshots_in, verify_snapshot

    target = _target(args, args.model)
    s3 = _s3(target)
    snapshot = args.snapshot and _snapshot_arg(target, args.snapshot)
    if snapshot is None:
        if found := snapshots_in(s3, target.bucket, args.model):
            pinned = target.model.weights.snapshot if target.model else None
            hint = f"; {target.env.name} pins {pinned}" if pinned else ""
            raise ConfigError(
                target.source,
                "--snapshot",
                f"required: models/{args.model}/ holds snapshots "
                f"({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}){hint}",
            )
        if legacy_objects(s3, target.bucket, args.model):
            raise ArtifactError(old_layout(args.model))
        raise ArtifactError(
            f"model {args.model!r} is not published in s3://{target.bucket}/models/{args.model}/ (no snapshots)"
        )
    problems = verify_snapshot(s3, target.bucket, args.model, snapshot, deep=args.deep)
    for problem in problems:
        print(problem)
    print(
        f"{args.model} snapshot {snapshot}: {'OK' if not problems else f'{len(problems)} problem(s): it differs from its manifest'}"
    )
    return SUCCESS if not problems else CHECK_FAILED


def cmd_list_models(args: argparse.Namespace) -> int:
    from stacks.publishing.snapshots import model_folders

    target = _target(args, args.model)
    pins = _pins(args, target)
    folders = model_folders(_s3(target), target.bucket, [args.model] if args.model else None)
    models = _listing(target, folders, [p for p in pins if args.model in (None, p.model_id)])
    if args.json:
        print(json.dumps(models, indent=2))
        return SUCCESS
    if not models:
        print(f"no models in s3://{target.bucket}/models/")
        return SUCCESS
    rows = [("MODEL", "SNAPSHOT", "SIZE", "DATE", "PINNED BY", "STATE")]
    for m in models:
        for s in m["snapshots"]:
            rows.append(
                (
                    m["model"],
                    s["snapshot"],
                    size_text(s["bytes"]) if s["bytes"] is not None else "-",
                    s["date"][:16].replace("T", " ") if s["date"] else "-",
                    ", ".join(s["pinned_by"]) or "-",
                    STATES[s["state"]],
                )
            )
        if old := m["old_layout"]:
            rows.append(
                (
                    m["model"],
                    "(old layout)",
                    size_text(old["bytes"]),
                    "-",
                    ", ".join(old["served_by"]) or "-",
                    STATES["old"],
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    return SUCCESS


STATES = {
    "complete": "complete",
    "incomplete": "incomplete (no manifest: an interrupted upload; rerun it, or delete-snapshot)",
    "missing": "missing (pinned but not in the bucket: expired or never uploaded; upload-model again)",
    "old": "old layout (re-publish with upload-model; delete-snapshot --legacy once no environment serves it)",
}


def _listing(target: Target, folders, pins) -> list[dict]:
    """list-models --json: per model, its snapshots (and pinned ones missing from the bucket), the old layout."""
    by_model = {f.model_id: f for f in folders}
    out = []
    for model_id in sorted(set(by_model) | {p.model_id for p in pins}):
        folder = by_model.get(model_id)
        found = {s.id: s for s in folder.snapshots} if folder else {}
        rows = [
            {
                "snapshot": s.id,
                "state": "complete" if s.complete else "incomplete",
                "bytes": s.size,
                "objects": s.objects,
                "date": s.date.isoformat(),
                "pinned_by": _names(pins, model_id, s.id),
                "uri": f"s3://{target.bucket}/{snapshot_prefix(model_id, s.id)}",
            }
            for s in found.values()
        ]
        rows += [
            {
                "snapshot": snap,
                "state": "missing",
                "bytes": None,
                "objects": 0,
                "date": None,
                "pinned_by": _names(pins, model_id, snap),
                "uri": f"s3://{target.bucket}/{snapshot_prefix(model_id, snap)}",
            }
            for snap in sorted({p.snapshot for p in pins if p.model_id == model_id and p.snapshot} - set(found))
        ]
        old = None
        if folder and folder.legacy_objects:
            old = {
                "objects": folder.legacy_objects,
                "bytes": folder.legacy_size,
                "served_by": _names(pins, model_id, None),
            }
        out.append({"model": model_id, "snapshots": rows, "old_layout": old})
    return out


def _names(pins, model_id: str, snapshot: str | None) -> list[str]:
    return sorted({p.environment for p in pins if (p.model_id, p.snapshot) == (model_id, snapshot)})


def cmd_delete_snapshot(args: argparse.Namespace) -> int:
    from stacks.publishing.pins import pins_of
    from stacks.publishing.snapshots import delete_legacy, delete_snapshot

    target = _target(args, args.model)
    snapshot = None if args.legacy else _snapshot_arg(target, args.snapshot)
    what = f"snapshot {snapshot} of {args.model}" if snapshot else f"the old layout of {args.model}"
    if holders := pins_of(_pins(args, target), target.bucket, args.model, snapshot):
        pin = holders[0]
        serves = (
            f"pinned by {pin.environment} ({pin.source}: {pin.field})"
            if snapshot
            else f"still served by {pin.environment} ({pin.source}: models[{pin.index}] has bucket weights without a snapshot)"
        )
        raise ArtifactError(f"{what} is {serves}; nothing deleted: pin another snapshot there first")
    s3 = _s3(target)
    deleted = (
        delete_snapshot(s3, target.bucket, args.model, snapshot)
        if snapshot
        else delete_legacy(s3, target.bucket, args.model)
    )
    days = target.env.buckets.weights.noncurrent_version_retention_days
    print(
        f"deleted {what} ({_count(deleted.objects, 'object')}, {size_text(deleted.size)}) from s3://{target.bucket}/, its manifest first. "
        f"Recoverable for {days} days (buckets.weights.noncurrent_version_retention_days): the versioned bucket keeps each "
        "object behind a delete marker; remove the markers, manifest.json last, to restore it"
    )
    return SUCCESS


def cmd_pin(args: argparse.Namespace) -> int:
    from stacks.publishing.pins import environment_pins, pin_snapshots

    target = _target(args)
    pins = environment_pins([target.source])
    if not pins:
        print(f"nothing to pin: {target.env.name} has no models with bucket weights")
        return SUCCESS
    done = pin_snapshots(_s3(target), pins)
    for pin, objects in done:
        print(
            f"pinned {pin.model_id} snapshot {pin.snapshot} in s3://{pin.bucket}/ ({pin.field}): verified, "
            f"{_count(objects, 'object')} untagged, so it never expires"
        )
    return SUCCESS


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
