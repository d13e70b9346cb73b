"""`llmstacks deploy-local`: synthesize one environment and apply it with Terraform against a local AWS."""

from __future__ import annotations

import argparse
import shutil
import signal
from pathlib import Path

from stacks.cli.arguments import add_environment, environment_file
from stacks.cli.status_codes import SUCCESS
from stacks.planning.plan import plan_file


def register(commands) -> None:
    local = commands.add_parser(
        "deploy-local",
        help="apply an environment with real Terraform against a local AWS emulator (moto); no AWS account needed",
    )
    add_environment(local)
    local.add_argument(
        "--workdir",
        default=".llmstacks-local",
        metavar="DIR",
        help="where the synthesized stack and Terraform's files go (default: .llmstacks-local/<env>)",
    )
    local.add_argument("--keep", action="store_true", help="keep the emulator running until interrupted, to explore it")
    local.set_defaults(func=cmd_deploy_local)


def cmd_deploy_local(args: argparse.Namespace) -> int:
    from stacks.emulator.deploy import LocalDeployment
    from stacks.emulator.terraform import find_mirror, terraform_binary
    from stacks.synth.run import synthesize

    plan = plan_file(environment_file(args))
    terraform_binary(), find_mirror()  # what is missing is said before anything is synthesized
    workdir = Path(args.workdir).absolute() / plan.env.name
    if (workdir / "terraform").exists():
        shutil.rmtree(workdir / "terraform")  # each run starts a fresh emulator: the old state is gone
    result = synthesize([plan], workdir / "cdktf.out", replace_all=True)
    deployment = LocalDeployment.start(plan, result.stack_files[plan.env.name], workdir / "terraform")
    try:
        print(
            f"applying {plan.env.name} against the local AWS at {deployment.emulator.endpoint}, which differs from "
            "what you deploy in:"
        )
        for difference in deployment.differences:
            print(f"  - {difference.what}: {difference.why}")
        outputs = deployment.apply()
        print("applied; outputs:")
        for name, value in sorted(outputs.items()):
            print(f"  {name} = {value}")
        if args.keep:
            print("the emulator keeps running until you press Ctrl-C; reach it with:")
            for name, value in sorted(deployment.emulator.env.items()):
                print(f"  export {name}={value}")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        deployment.close()
    return SUCCESS
