"""`llmstacks`: the command line of llm-serving-stacks.

User errors (bad environment files, unknown names) print one line and exit
with status 2; nothing is written. cdktf and the AWS provider are imported
only once the input is known to be good.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stacks.environment import Environment
from stacks.loader import ENVIRONMENTS_DIR, ConfigError, environment_files, find_environment, load_environment

EXIT_USER_ERROR = 2


def _environments(args: argparse.Namespace) -> tuple[list[tuple[Environment, str]], bool]:
    """The environments named on the command line, validated; and whether that is all of them."""
    env_dir = Path(args.env_dir)
    paths = [find_environment(name, env_dir) for name in args.env or []]
    paths += [Path(p) for p in args.config or []]
    everything = not paths
    if everything:
        paths = environment_files(env_dir)
        if not paths:
            raise ConfigError(env_dir, "--env-dir", "no environment files (*.yaml) in this directory")
    loaded = [(load_environment(p), str(p)) for p in paths]
    seen: dict[str, str] = {}
    for env, source in loaded:
        if env.name in seen:
            raise ConfigError(source, "name", f"environment {env.name!r} is also defined in {seen[env.name]}")
        seen[env.name] = source
    return loaded, everything


def check_specs(env: Environment, source: str) -> list[str]:
    """Render the environment's service specs and validate them; returns the validators that ran."""
    from stacks.service_spec import render, scheduling_problems, vendor_problems  # noqa: PLC0415

    documents = render(env)
    problems, ran = vendor_problems(documents)
    problems += scheduling_problems(env, documents)
    if problems:
        raise ConfigError(source, "serving", problems[0], more=len(problems) - 1)
    return ran


def cmd_synth(args: argparse.Namespace) -> int:
    _synth(args)
    return 0


def synthesize_checked(envs: list[tuple[Environment, str]], outdir: Path, *, replace_all: bool) -> tuple[dict[str, Path], list[str]]:
    """Synthesize `envs` into `outdir`; (stack files, the spec validators that ran).

    The specs are validated (Ray's and Anyscale's schemas take ~3 s to import)
    while cdktf loads the provider bindings; nothing is written unless both pass.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        checked = pool.submit(lambda: [check_specs(env, source) for env, source in envs])
        from stacks.synth import synthesize  # noqa: PLC0415  (loads cdktf: only for good input)

        files = synthesize(envs, outdir, replace_all=replace_all, before_install=checked.result)
    return files, (checked.result()[0] if envs else [])


def _synth(args: argparse.Namespace) -> list[Environment]:
    from stacks.summary import summarize  # noqa: PLC0415

    envs, everything = _environments(args)
    files, validators = synthesize_checked(envs, Path(args.outdir), replace_all=everything)
    for env, _ in envs:
        print(summarize(env, files[env.name]))
    print(f"synthesized {len(envs)} stack(s) and their service specs into {args.outdir} "
          f"(specs checked: {', '.join([*validators, 'scheduling'])})")
    return [env for env, _ in envs]


def cmd_check(args: argparse.Namespace) -> int:
    from stacks.policy_gate import BASELINE_FILE, find_checkov, load_baseline, run_gate  # noqa: PLC0415

    baseline = Path(args.baseline) if args.baseline else BASELINE_FILE
    load_baseline(baseline)  # a bad baseline or a missing checkov stops the gate before synth
    checkov = find_checkov()
    envs = _synth(args)
    report = run_gate(Path(args.outdir), [env.name for env in envs], Path(args.report_dir) if args.report_dir else None,
                      baseline_file=baseline, checkov=checkov)
    print(report.summary())
    return 0 if report.ok else 1


def _one_environment(args: argparse.Namespace) -> tuple[Environment, str]:
    path = Path(args.config) if args.config else find_environment(args.env, Path(args.env_dir))
    env = load_environment(path)
    check_specs(env, str(path))
    return env, str(path)


def cmd_publish(args: argparse.Namespace) -> int:
    from stacks.publish import RolloutOptions, publish  # noqa: PLC0415

    env, source = _one_environment(args)
    options = RolloutOptions(in_place=args.in_place, canary_percent=args.canary_percent, max_surge_percent=args.max_surge_percent)
    print(publish(env, source, options, dry_run=args.dry_run, outdir=Path(args.outdir)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from stacks.publish import status  # noqa: PLC0415

    print(status(*_one_environment(args)))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from stacks.publish import rollback  # noqa: PLC0415

    env, source = _one_environment(args)
    print(rollback(env, source, args.max_surge_percent))
    return 0


def _model_index(env: Environment, path: Path, model_id: str) -> int:
    """The position of --model in the environment file."""
    index = next((i for i, m in enumerate(env.models) if m.id == model_id), None)
    if index is None:
        raise ConfigError(path, "--model", f"{model_id!r} is not a model of {env.name} (models: {', '.join(m.id for m in env.models) or 'none'})")
    return index


def _weights_target(args: argparse.Namespace):
    """(environment, s3 client, weights bucket) for a model of the environment that lives in the bucket."""
    from stacks.artifacts import s3_client  # noqa: PLC0415
    from stacks.names import Names  # noqa: PLC0415

    path = Path(args.config) if args.config else find_environment(args.env, Path(args.env_dir))
    env = load_environment(path)
    model = env.models[_model_index(env, path, args.model)]
    if model.weights.source != "bucket":
        raise ConfigError(path, "--model", f"{args.model!r} takes its weights from {model.weights.source}, not the weights bucket")
    return env, s3_client(env), Names(env).weights_bucket


def cmd_upload_model(args: argparse.Namespace) -> int:
    from app.artifact_files import Progress, local_files  # noqa: PLC0415
    from app.model_artifacts import upload_model  # noqa: PLC0415
    from stacks.artifacts import transfer_config, translate_aws_errors  # noqa: PLC0415

    env, s3, bucket = _weights_target(args)
    directory = Path(getattr(args, "from"))
    with translate_aws_errors():
        progress = Progress(sum(f.size for f in local_files(directory)))
        report = upload_model(s3, bucket, args.model, directory, transfer_config=transfer_config(), progress=progress)
        progress.close()
    print(f"published {args.model} to s3://{bucket}/{report.manifest_key.rsplit('/', 1)[0]}/ "
          f"({len(report.uploaded)} uploaded, {len(report.skipped)} already there; snapshot {report.snapshot[:12]})")
    return 0


def cmd_verify_model(args: argparse.Namespace) -> int:
    from app.model_artifacts import verify_model  # noqa: PLC0415
    from stacks.artifacts import translate_aws_errors  # noqa: PLC0415

    env, s3, bucket = _weights_target(args)
    with translate_aws_errors():
        problems = verify_model(s3, bucket, args.model, deep=args.deep)
    for problem in problems:
        print(problem)
    print(f"{args.model}: {'OK' if not problems else f'{len(problems)} object(s) differ from the manifest'}")
    return 0 if not problems else 1


def _lora_target(args: argparse.Namespace, *, upload: bool = True):
    """(environment, s3 client, LoRA bucket, AdapterTarget or None) for --model.

    Uploads need a model of the environment that serves LoRA; listing and
    deleting also reach adapters of models since removed from the file.
    """
    from app.adapter_artifacts import AdapterTarget  # noqa: PLC0415
    from app.spec import model_id_problem  # noqa: PLC0415
    from stacks.artifacts import s3_client  # noqa: PLC0415
    from stacks.names import Names  # noqa: PLC0415

    path = Path(args.config) if args.config else find_environment(args.env, Path(args.env_dir))
    env = load_environment(path)
    target = None
    if args.model is not None:
        if not upload and all(m.id != args.model for m in env.models):
            if problem := model_id_problem(args.model):
                raise ConfigError(path, "--model", problem)
            return env, s3_client(env), Names(env).lora_bucket, None
        index = _model_index(env, path, args.model)
        model = env.models[index]
        if upload and not model.lora.enabled:
            raise ConfigError(path, "--model", f"{args.model!r} does not serve LoRA adapters (set models[{index}].lora.enabled)")
        accepted = [model.id, model.weights.hf_id, model.lora.base_model]
        target = AdapterTarget(model.id, model.lora.max_rank, tuple(dict.fromkeys(n for n in accepted if n)),
                               where=f"{path}: models[{index}]")
    return env, s3_client(env), Names(env).lora_bucket, target


def cmd_upload_adapter(args: argparse.Namespace) -> int:
    from app.adapter_artifacts import upload_adapter  # noqa: PLC0415
    from app.artifact_files import Progress, local_files  # noqa: PLC0415
    from stacks.artifacts import transfer_config, translate_aws_errors  # noqa: PLC0415

    env, s3, bucket, target = _lora_target(args)
    directory = Path(getattr(args, "from"))
    with translate_aws_errors():
        progress = Progress(sum(f.size for f in local_files(directory)))
        report = upload_adapter(s3, bucket, target, args.adapter, directory, transfer_config=transfer_config(), progress=progress)
        progress.close()
    where = f"s3://{bucket}/{report.prefix}"
    if report.already_published:
        print(f"{target.model_id}:{args.adapter} is already published with this content at {where}")
    else:
        print(f"published {target.model_id}:{args.adapter} to {where} "
              f"({len(report.uploaded)} uploaded, {len(report.skipped)} already staged)")
    return 0


def cmd_list_adapters(args: argparse.Namespace) -> int:
    from app.adapter_artifacts import list_adapters  # noqa: PLC0415
    from stacks.artifacts import translate_aws_errors  # noqa: PLC0415

    env, s3, bucket, _ = _lora_target(args, upload=False)
    with translate_aws_errors():
        adapters = list_adapters(s3, bucket, [args.model] if args.model else None)
    known = {m.id for m in env.models}
    if args.json:
        import json  # noqa: PLC0415

        print(json.dumps([{
            "model": a.model_id, "adapter": a.name, "request_model": f"{a.model_id}:{a.name}", "ready": a.ready,
            "rank": a.rank, "base_model": a.base_model, "files": a.files, "bytes": a.size,
            "modified": a.modified.isoformat() if a.modified else None,
        } for a in adapters], indent=2))
        return 0
    if not adapters:
        print(f"no adapters in s3://{bucket}/adapters/")
        return 0
    rows = [("MODEL", "RANK", "SIZE", "STATE", "BASE MODEL")]
    for a in adapters:
        state = "ready" if a.ready else "incomplete (not served; rerun its upload or delete it)"
        if a.model_id not in known:
            state += f", model not in {env.name}"
        rows.append((f"{a.model_id}:{a.name}", str(a.rank or "-"), _size(a.size), state, a.base_model or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return 0


def cmd_delete_adapter(args: argparse.Namespace) -> int:
    from app.adapter_artifacts import delete_adapter  # noqa: PLC0415
    from stacks.artifacts import translate_aws_errors  # noqa: PLC0415

    env, s3, bucket, _ = _lora_target(args, upload=False)
    with translate_aws_errors():
        removed = delete_adapter(s3, bucket, args.model, args.adapter)
    days = env.buckets.lora.noncurrent_version_retention_days
    print(f"deleted {args.model}:{args.adapter} ({removed} object(s)); new requests for it get 404, replicas that "
          f"loaded it drop it when they evict or restart. Recoverable for {days} days from the bucket's "
          "versions (README: 'Recovering a deleted adapter').")
    return 0


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


def cmd_plan_capacity(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from infra.catalog import GPUS  # noqa: PLC0415
    from stacks.capacity import KV_DTYPE_BYTES, WEIGHT_DTYPE_BYTES, options, plan  # noqa: PLC0415
    from stacks.model_catalog import CATALOG, find, from_config  # noqa: PLC0415

    if args.list:
        for arch in CATALOG.values():
            print(f"{arch.hf_id:45s} {arch.params / 1e9:7.1f}B  {arch.layers} layers, {arch.kv_heads} KV heads")
        print("GPUs: " + ", ".join(f"{g.name} ({g.usable_gib} GiB)" for g in GPUS.values()))
        return 0
    if not args.model or not args.gpu or not args.max_model_len:
        raise ConfigError("plan-capacity", "", "give --model, --gpu and --max-model-len (or --list)")
    if args.model.endswith(".json"):
        try:
            arch = from_config(Path(args.model))
        except FileNotFoundError:
            raise ConfigError(args.model, "", "no such file") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(args.model, "", f"not a usable config.json ({exc})".replace(f"{args.model}: ", "")) from None
    else:
        arch = find(args.model)
        if arch is None:
            raise ConfigError("--model", "", f"{args.model!r} is not in the catalog (`llmstacks plan-capacity --list`); "
                                             "pass the model's config.json instead")
    gpu = GPUS.get(args.gpu) or next((g for g in GPUS.values() if g.name.lower() == args.gpu.lower()), None)
    if gpu is None:
        raise ConfigError("--gpu", "", f"unknown GPU {args.gpu!r} (known: {', '.join(GPUS)})")
    if args.dtype not in WEIGHT_DTYPE_BYTES:
        raise ConfigError("--dtype", "", f"{args.dtype!r}: one of {', '.join(WEIGHT_DTYPE_BYTES)}")
    if args.kv_cache_dtype not in KV_DTYPE_BYTES:
        raise ConfigError("--kv-cache-dtype", "", f"{args.kv_cache_dtype!r}: one of {', '.join(KV_DTYPE_BYTES)}")
    capacity = plan(arch, gpu, tensor_parallel=args.tensor_parallel, pipeline_parallel=args.pipeline_parallel,
                    max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
                    dtype=args.dtype, kv_cache_dtype=args.kv_cache_dtype, quantization=args.quantization,
                    max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs)
    if args.json:
        print(json.dumps(capacity.as_dict(), indent=2))
        return 0
    c = capacity
    print(f"{c.model} on {c.tensor_parallel * c.pipeline_parallel} x {c.gpu} (tp {c.tensor_parallel} x pp {c.pipeline_parallel}), "
          f"max_model_len {c.max_model_len:,}, gpu_memory_utilization {c.gpu_memory_utilization}")
    print(f"  per GPU: {c.requested_gib_per_gpu:.2f} GiB usable = weights {c.weights_gib_per_gpu:.2f} + activations "
          f"{c.activation_gib_per_gpu:.2f} + non-torch {c.non_torch_gib_per_gpu:.2f} + CUDA graphs {c.cuda_graph_gib_per_gpu:.2f} "
          f"+ KV cache {c.kv_cache_gib_per_gpu:.2f}")
    print(f"  KV cache: {c.kv_bytes_per_token:,} bytes per token per GPU, {c.kv_cache_tokens:,} tokens")
    print(f"  maximum concurrency for {c.max_model_len:,} tokens per request: {c.max_concurrency:.2f}x")
    for note in c.notes:
        print(f"  note: {note}")
    if c.fits:
        print("  fits")
    else:
        print(f"  does not fit: {c.problems[0]}")
        print(f"  options: {options(arch, gpu, c)}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from stacks.preview import preview, to_json, to_markdown  # noqa: PLC0415

    result = preview(args.base, env_dir=Path(args.env_dir), policy=not args.no_policy)
    text = to_json(result) if args.format == "json" else to_markdown(result)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0 if result.policy_ok else 1


def _utilization(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction of GPU memory (0-1]")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _percent(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not a percentage (0-100)")
    return value


def _add_environment(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--env", metavar="NAME", help="environment name")
    which.add_argument("--config", metavar="PATH", help="environment file")
    parser.add_argument("--env-dir", default=str(ENVIRONMENTS_DIR), metavar="DIR", help="where --env names are looked up")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmstacks", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="synthesize environments into Terraform JSON")
    synth.add_argument("--env", action="append", metavar="NAME", help="environment name (repeatable; default: all)")
    synth.add_argument("--config", action="append", metavar="PATH", help="environment file (repeatable)")
    synth.add_argument("--env-dir", default=str(ENVIRONMENTS_DIR), metavar="DIR", help="where --env names are looked up")
    synth.add_argument("--outdir", default="cdktf.out", metavar="DIR", help="output directory (default: cdktf.out)")
    synth.set_defaults(func=cmd_synth)

    check = commands.add_parser("check", help="synthesize, then run the policy gate (checkov + our policies) on stacks and specs")
    check.add_argument("--env", action="append", metavar="NAME", help="environment name (repeatable; default: all)")
    check.add_argument("--config", action="append", metavar="PATH", help="environment file (repeatable)")
    check.add_argument("--env-dir", default=str(ENVIRONMENTS_DIR), metavar="DIR", help="where --env names are looked up")
    check.add_argument("--outdir", default="cdktf.out", metavar="DIR", help="output directory (default: cdktf.out)")
    check.add_argument("--report-dir", metavar="DIR", help="where JSON and SARIF results go (default: <outdir>/policy)")
    check.add_argument("--baseline", metavar="PATH", help="baseline of skipped checks (default: policies/baseline.yaml)")
    check.set_defaults(func=cmd_check)

    publish = commands.add_parser("publish", help="deploy the environment's service (Anyscale) or write its RayService")
    _add_environment(publish)
    publish.add_argument("--dry-run", action="store_true", help="print what would be deployed; needs no credentials")
    publish.add_argument("--in-place", action="store_true", help="update the running cluster instead of a new one")
    publish.add_argument("--canary-percent", type=_percent, metavar="N", help="traffic share for the new version first")
    publish.add_argument("--max-surge-percent", type=_percent, metavar="N", help="extra capacity during the rollout")
    publish.add_argument("--outdir", default="cdktf.out", metavar="DIR", help="where the RayService is written (kuberay)")
    publish.set_defaults(func=cmd_publish)

    status = commands.add_parser("status", help="show the environment's Anyscale service status")
    _add_environment(status)
    status.set_defaults(func=cmd_status)

    rollback = commands.add_parser("rollback", help="roll the Anyscale service back to its previous version")
    _add_environment(rollback)
    rollback.add_argument("--max-surge-percent", type=_percent, metavar="N")
    rollback.set_defaults(func=cmd_rollback)

    upload = commands.add_parser("upload-model", help="publish a model directory to the weights bucket")
    _add_environment(upload)
    upload.add_argument("--model", required=True, metavar="ID", help="model id from the environment file")
    upload.add_argument("--from", required=True, metavar="DIR", help="the model directory (config.json, *.safetensors, tokenizer)")
    upload.set_defaults(func=cmd_upload_model)

    verify = commands.add_parser("verify-model", help="check a published model against its manifest")
    _add_environment(verify)
    verify.add_argument("--model", required=True, metavar="ID")
    verify.add_argument("--deep", action="store_true", help="re-read every byte instead of trusting recorded digests")
    verify.set_defaults(func=cmd_verify_model)

    upload_adapter = commands.add_parser("upload-adapter", help="publish a LoRA adapter directory to the LoRA bucket")
    _add_environment(upload_adapter)
    upload_adapter.add_argument("--model", required=True, metavar="ID", help="the base model's id from the environment file")
    upload_adapter.add_argument("--adapter", required=True, metavar="NAME", help="served as <model id>:<NAME>")
    upload_adapter.add_argument("--from", required=True, metavar="DIR", help="the PEFT adapter directory (adapter_config.json, adapter_model.safetensors)")
    upload_adapter.set_defaults(func=cmd_upload_adapter)

    list_adapters = commands.add_parser("list-adapters", help="list the LoRA adapters in the LoRA bucket")
    _add_environment(list_adapters)
    list_adapters.add_argument("--model", metavar="ID", help="only this model's adapters")
    list_adapters.add_argument("--json", action="store_true", help="one JSON array, for tools")
    list_adapters.set_defaults(func=cmd_list_adapters)

    delete_adapter = commands.add_parser("delete-adapter", help="remove a LoRA adapter (recoverable through bucket versioning)")
    _add_environment(delete_adapter)
    delete_adapter.add_argument("--model", required=True, metavar="ID")
    delete_adapter.add_argument("--adapter", required=True, metavar="NAME")
    delete_adapter.set_defaults(func=cmd_delete_adapter)

    capacity = commands.add_parser("plan-capacity", help="GPU memory, KV cache and concurrency of a model, as vLLM will report them")
    capacity.add_argument("--model", metavar="NAME_OR_CONFIG_JSON", help="a catalog model (Hugging Face id) or a config.json")
    capacity.add_argument("--gpu", metavar="GPU", help="A10G, L4, L40S, A100-40G, A100-80G, H100, H200 or B200")
    capacity.add_argument("--tensor-parallel", type=_positive, default=1, metavar="N")
    capacity.add_argument("--pipeline-parallel", type=_positive, default=1, metavar="P")
    capacity.add_argument("--max-model-len", type=_positive, metavar="L")
    capacity.add_argument("--gpu-memory-utilization", type=_utilization, default=0.9, metavar="U")
    capacity.add_argument("--dtype", default="auto", metavar="D", help="weights: auto, bfloat16, float16, float32")
    capacity.add_argument("--kv-cache-dtype", default="auto", metavar="K", help="auto, fp8, ...")
    capacity.add_argument("--quantization", metavar="Q", help="fp8, awq, gptq, bitsandbytes")
    capacity.add_argument("--max-num-batched-tokens", type=_positive, metavar="T")
    capacity.add_argument("--max-num-seqs", type=_positive, metavar="S")
    capacity.add_argument("--json", action="store_true", help="one JSON object")
    capacity.add_argument("--list", action="store_true", help="list the catalog's models and GPUs")
    capacity.set_defaults(func=cmd_plan_capacity)

    preview = commands.add_parser("preview", help="what this change does to every environment, offline (for pull requests)")
    preview.add_argument("--base", required=True, metavar="REF", help="the git revision to compare with (e.g. origin/main)")
    preview.add_argument("--format", choices=("markdown", "json"), default="markdown")
    preview.add_argument("--output", metavar="FILE", help="write the preview here instead of standard output")
    preview.add_argument("--env-dir", default=str(ENVIRONMENTS_DIR), metavar="DIR")
    preview.add_argument("--no-policy", action="store_true", help="skip the policy gate (faster; no checkov needed)")
    preview.set_defaults(func=cmd_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        from app.artifact_files import ArtifactError  # noqa: PLC0415

        if not isinstance(exc, ArtifactError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
