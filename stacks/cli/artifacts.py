"""`llmstacks upload-adapter`, `list-adapters`, `delete-adapter` (model weights: stacks.cli.weights)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.spec import adapter_name_problem, model_id_problem
from infra.rules import quoted
from stacks.cli.arguments import add_environment, environment_file
from stacks.cli.status_codes import SUCCESS
from stacks.errors import ArtifactError, ConfigError
from stacks.planning.plan import EnvironmentPlan, ModelPlan, plan_file


def register(commands) -> None:
    upload_adapter = commands.add_parser("upload-adapter", help="publish a LoRA adapter directory to the LoRA bucket")
    add_environment(upload_adapter)
    upload_adapter.add_argument(
        "--model", required=True, metavar="ID", help="the base model's id from the environment file"
    )
    upload_adapter.add_argument("--adapter", required=True, metavar="NAME", help="served as <model id>:<NAME>")
    upload_adapter.add_argument(
        "--from",
        required=True,
        metavar="DIR",
        help="the PEFT adapter directory (adapter_config.json, adapter_model.safetensors)",
    )
    upload_adapter.set_defaults(func=cmd_upload_adapter)

    list_adapters = commands.add_parser("list-adapters", help="list the LoRA adapters in the LoRA bucket")
    add_environment(list_adapters)
    list_adapters.add_argument("--model", metavar="ID", help="only this model's adapters")
    list_adapters.add_argument("--json", action="store_true", help="one JSON array, for tools")
    list_adapters.set_defaults(func=cmd_list_adapters)

    delete_adapter = commands.add_parser(
        "delete-adapter", help="remove a LoRA adapter (recoverable through bucket versioning)"
    )
    add_environment(delete_adapter)
    delete_adapter.add_argument("--model", required=True, metavar="ID")
    delete_adapter.add_argument("--adapter", required=True, metavar="NAME")
    delete_adapter.set_defaults(func=cmd_delete_adapter)


def _model(plan: EnvironmentPlan, model_id: str) -> ModelPlan:
    """--model, a model of the environment."""
    found = next((m for m in plan.models if m.id == model_id), None)
    if found is None:
        known = ", ".join(m.id for m in plan.models) or "none"
        raise ConfigError(
            plan.source, "--model", f"{quoted(model_id)} is not a model of {plan.env.name} (models: {known})"
        )
    return found


def _s3(plan: EnvironmentPlan):
    from stacks.publishing.aws import s3_client

    return s3_client(plan.env.aws.region)


def _adapter_target(plan: EnvironmentPlan, model_id: str):
    """What upload-adapter checks an adapter against: a model of the environment that serves LoRA."""
    from stacks.publishing.adapter_dirs import AdapterTarget

    model = _model(plan, model_id)
    config = model.config
    if not config.lora.enabled:
        raise ConfigError(
            plan.source,
            "--model",
            f"{model_id!r} does not serve LoRA adapters (set models[{model.index}].lora.enabled)",
        )
    accepted = [config.id, config.weights.hf_id, config.lora.base_model]
    return AdapterTarget(
        config.id,
        config.lora.max_rank,
        tuple(dict.fromkeys(n for n in accepted if n)),
        where=f"{plan.source}: models[{model.index}]",
    )


def _any_model(plan: EnvironmentPlan, model_id: str | None) -> None:
    """Listing and deleting also reach adapters of models since removed from the file: any valid id."""
    if model_id is not None and (problem := model_id_problem(model_id)):
        raise ConfigError(plan.source, "--model", problem)


def cmd_upload_adapter(args: argparse.Namespace) -> int:
    from stacks.publishing.adapters import longest_prefix, upload_adapter
    from stacks.publishing.aws import transfer_config
    from stacks.publishing.files import Progress
    from stacks.publishing.scan import local_files

    plan = plan_file(environment_file(args))
    target = _adapter_target(plan, args.model)
    if problem := adapter_name_problem(args.adapter):
        raise ArtifactError(f"--adapter: {problem}")
    bucket = plan.names.lora_bucket
    directory = Path(getattr(args, "from"))
    progress = Progress(sum(f.size for f in local_files(directory, longest_prefix(target.model_id, args.adapter))))
    report = upload_adapter(
        _s3(plan), bucket, target, args.adapter, directory, transfer_config=transfer_config(), progress=progress
    )
    progress.close()
    where = f"s3://{bucket}/{report.prefix}"
    if report.already_published:
        print(f"{target.model_id}:{args.adapter} is already published with this content at {where}")
    else:
        print(
            f"published {target.model_id}:{args.adapter} to {where} "
            f"({len(report.uploaded)} uploaded, {len(report.skipped)} already staged)"
        )
    return SUCCESS


def cmd_list_adapters(args: argparse.Namespace) -> int:
    from stacks.publishing.adapters import list_adapters

    plan = plan_file(environment_file(args))
    _any_model(plan, args.model)
    bucket = plan.names.lora_bucket
    adapters = list_adapters(_s3(plan), bucket, [args.model] if args.model else None)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "model": a.model_id,
                        "adapter": a.name,
                        "request_model": f"{a.model_id}:{a.name}",
                        "ready": a.ready,
                        "rank": a.rank,
                        "base_model": a.base_model,
                        "files": a.files,
                        "bytes": a.size,
                        "modified": a.modified.isoformat() if a.modified else None,
                    }
                    for a in adapters
                ],
                indent=2,
            )
        )
        return SUCCESS
    if not adapters:
        print(f"no adapters in s3://{bucket}/adapters/")
        return SUCCESS
    known = {m.id for m in plan.models}
    rows = [("MODEL", "RANK", "SIZE", "STATE", "BASE MODEL")]
    for a in adapters:
        state = "ready" if a.ready else "incomplete (not served; rerun its upload or delete it)"
        if a.model_id not in known:
            state += f", model not in {plan.env.name}"
        rows.append((f"{a.model_id}:{a.name}", str(a.rank or "-"), size_text(a.size), state, a.base_model or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return SUCCESS


def cmd_delete_adapter(args: argparse.Namespace) -> int:
    from stacks.publishing.adapters import delete_adapter

    plan = plan_file(environment_file(args))
    _any_model(plan, args.model)
    removed = delete_adapter(_s3(plan), plan.names.lora_bucket, args.model, args.adapter)
    if not removed.published:
        print(
            f"{args.model}:{args.adapter} was not published; removed the {removed.staged} object(s) an interrupted "
            "upload of it left in staging (its staged files and its claim on the name)"
        )
        return SUCCESS
    days = plan.env.buckets.lora.noncurrent_version_retention_days
    print(
        f"deleted {args.model}:{args.adapter} ({removed.published} object(s)); new requests for it get 404, replicas that "
        f"loaded it drop it when they evict or restart. Recoverable for {days} days from the bucket's "
        "versions (README: 'Recovering a deleted adapter')."
    )
    return SUCCESS


def size_text(n: float) -> str:
    """Bytes for people: 512 B, 3.0 MiB, 12.4 GiB."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"
