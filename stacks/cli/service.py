"""`llmstacks publish`, `status` and `rollback`: the environment's service."""

from __future__ import annotations

import argparse

from stacks.cli.arguments import add_environment, environment_file, output_dir, percent
from stacks.cli.status_codes import SUCCESS
from stacks.planning.plan import EnvironmentPlan, plan_file


def register(commands) -> None:
    publish = commands.add_parser(
        "publish", help="deploy the environment's Anyscale service (kuberay: the platform stack does)"
    )
    add_environment(publish)
    publish.add_argument("--dry-run", action="store_true", help="print what would be deployed; needs no credentials")
    publish.add_argument("--in-place", action="store_true", help="update the running cluster instead of a new one")
    publish.add_argument("--canary-percent", type=percent, metavar="N", help="traffic share for the new version first")
    publish.add_argument("--max-surge-percent", type=percent, metavar="N", help="extra capacity during the rollout")
    publish.add_argument(
        "--outdir", metavar="DIR", help="unused: for the kuberay target the platform stack applies the RayService"
    )
    publish.set_defaults(func=cmd_publish)

    status = commands.add_parser("status", help="show the environment's Anyscale service status")
    add_environment(status)
    status.set_defaults(func=cmd_status)

    rollback = commands.add_parser("rollback", help="roll the Anyscale service back to its previous version")
    add_environment(rollback)
    rollback.add_argument("--max-surge-percent", type=percent, metavar="N")
    rollback.set_defaults(func=cmd_rollback)


def _plan(args: argparse.Namespace) -> EnvironmentPlan:
    return plan_file(environment_file(args))


def cmd_publish(args: argparse.Namespace) -> int:
    from stacks.publishing.service import RolloutOptions, publish
    from stacks.specs.render import render_specs
    from stacks.specs.validate import check_specs

    plan = _plan(args)
    specs = render_specs(plan)
    check_specs(plan, specs)
    options = RolloutOptions(
        in_place=args.in_place, canary_percent=args.canary_percent, max_surge_percent=args.max_surge_percent
    )
    print(publish(plan, specs, options, dry_run=args.dry_run, outdir=output_dir(args)))
    return SUCCESS


def cmd_status(args: argparse.Namespace) -> int:
    from stacks.publishing.service import status

    print(status(_plan(args)))
    return SUCCESS


def cmd_rollback(args: argparse.Namespace) -> int:
    from stacks.publishing.service import rollback

    print(rollback(_plan(args), args.max_surge_percent))
    return SUCCESS
