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
    envs, everything = _environments(args)
    # The specs are validated (Ray's and Anyscale's schemas take ~3 s to import)
    # while cdktf loads the provider bindings; nothing is written unless both pass.
    with ThreadPoolExecutor(max_workers=1) as pool:
        checked = pool.submit(lambda: [check_specs(env, source) for env, source in envs])
        from stacks.summary import summarize  # noqa: PLC0415
        from stacks.synth import synthesize  # noqa: PLC0415  (loads cdktf: only for good input)

        files = synthesize(envs, Path(args.outdir), replace_all=everything, before_install=checked.result)
    validators = checked.result()[0] if envs else []
    for env, _ in envs:
        print(summarize(env, files[env.name]))
    print(f"synthesized {len(envs)} stack(s) and their service specs into {args.outdir} "
          f"(specs checked: {', '.join([*validators, 'scheduling'])})")
    return 0


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


def _weights_target(args: argparse.Namespace):
    """(environment, s3 client, weights bucket) for a model of the environment that lives in the bucket."""
    from stacks.artifacts import s3_client  # noqa: PLC0415
    from stacks.names import Names  # noqa: PLC0415

    path = Path(args.config) if args.config else find_environment(args.env, Path(args.env_dir))
    env = load_environment(path)
    model = next((m for m in env.models if m.id == args.model), None)
    if model is None:
        raise ConfigError(path, "--model", f"{args.model!r} is not a model of {env.name} (models: {', '.join(m.id for m in env.models) or 'none'})")
    if model.weights.source != "bucket":
        raise ConfigError(path, "--model", f"{args.model!r} takes its weights from {model.weights.source}, not the weights bucket")
    return env, s3_client(env), Names(env).weights_bucket


def cmd_upload_model(args: argparse.Namespace) -> int:
    from app.model_artifacts import Progress, upload_model  # noqa: PLC0415
    from stacks.artifacts import transfer_config, translate_aws_errors  # noqa: PLC0415

    env, s3, bucket = _weights_target(args)
    directory = Path(getattr(args, "from"))
    with translate_aws_errors():
        from app.model_artifacts import scan_model_dir  # noqa: PLC0415

        progress = Progress(sum(f.size for f in scan_model_dir(directory)))
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        from app.model_artifacts import ArtifactError  # noqa: PLC0415

        if not isinstance(exc, ArtifactError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
