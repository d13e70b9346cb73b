"""`llmstacks synth` and `llmstacks check`: environments to Terraform JSON and specs, and the policy gate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stacks.cli.arguments import add_selection, output_dir, selected_files
from stacks.cli.status_codes import CHECK_FAILED, SUCCESS
from stacks.config.project import locate_project
from stacks.planning.plan import EnvironmentPlan, plan_files


def register(commands) -> None:
    synth = commands.add_parser("synth", help="synthesize environments into Terraform JSON")
    add_selection(synth)
    synth.set_defaults(func=cmd_synth)

    check = commands.add_parser(
        "check", help="synthesize, then run the policy gate (checkov + our policies) on stacks and specs"
    )
    add_selection(check)
    check.add_argument("--report-dir", metavar="DIR", help="where JSON and SARIF results go (default: <outdir>/policy)")
    check.add_argument(
        "--baseline",
        metavar="PATH",
        help="the project's baseline of skipped checks, added to the kit's (default: policies/baseline.yaml)",
    )
    check.set_defaults(func=cmd_check)


def cmd_synth(args: argparse.Namespace) -> int:
    synth(args)
    return SUCCESS


def synth(args: argparse.Namespace, selection: tuple[list[Path], bool] | None = None) -> list[EnvironmentPlan]:
    """Plan the selected environments (no cdktf yet: bad input fails fast), synthesize, print the summaries."""
    from stacks.synth.run import synthesize
    from stacks.synth.summary import summarize, summarize_platform

    paths, everything = selection or selected_files(args)
    plans = plan_files(paths)
    for plan in plans:
        for warning in plan.warnings:
            print(f"warning: {plan.source}: {warning.field}: {warning.message}", file=sys.stderr)
    outdir = output_dir(args)
    result = synthesize(plans, outdir, replace_all=everything)
    for plan in plans:
        print(summarize(plan, result.stack_files[plan.names.stack]))
        print(summarize_platform(plan, result.stack_files[plan.names.platform_stack]))
    print(
        f"synthesized {len(plans)} environment(s), {len(result.stack_files)} stacks and their service specs into "
        f"{outdir} (specs checked: {', '.join(result.validators)})"
    )
    return plans


def cmd_check(args: argparse.Namespace) -> int:
    from policies.gate import find_checkov, load_baselines, project_policies, run_gate

    selection = selected_files(args)  # outside a project: that one line, before anything else
    project = locate_project()
    root = project.root if project else None
    baselines, team_checks = project_policies(root, Path(args.baseline) if args.baseline else None)
    load_baselines(list(baselines))  # a bad baseline or a missing checkov stops the gate before synth
    checkov = find_checkov(root)
    plans = synth(args, selection)
    report = run_gate(
        output_dir(args),
        [p.env.name for p in plans],
        Path(args.report_dir) if args.report_dir else None,
        baselines=baselines,
        checkov=checkov,
        team_checks=team_checks,
    )
    print(report.summary())
    return SUCCESS if report.ok else CHECK_FAILED
