"""Shared fixtures. The AWS provider bindings take ~12 s to load: every test
that needs synthesized Terraform shares the one synth below, in this process."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import time
from functools import cache
from pathlib import Path

import pytest
import workers

from stacks.config.loader import ENVIRONMENTS_DIR, environment_files
from stacks.planning.plan import plan_file

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# Wall time of each environment's Terraform apply against the local AWS (they run in parallel).
APPLY_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (moto) on 127.0.0.1, reachable from other processes (Ray replicas, the CLI)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def shipped_plans():
    """Environment name -> the plan of each shipped environment file."""
    return {p.stem: plan_file(p) for p in environment_files(ENVIRONMENTS_DIR)}


@pytest.fixture(scope="session")
def shipped_environments(shipped_plans):
    return {name: plan.env for name, plan in shipped_plans.items()}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory, shipped_plans) -> Path:
    from stacks.synth.run import synthesize

    out = tmp_path_factory.mktemp("synth") / "cdktf.out"
    synthesize(list(shipped_plans.values()), out, replace_all=True)
    return out


@pytest.fixture(scope="session")
def local_deployments(synth_dir, shipped_plans, tmp_path_factory):
    """Every shipped environment applied with real Terraform against its own local AWS (moto
    over TLS), all at once: the applies mostly wait on the provider, not on the CPU."""
    from concurrent.futures import ThreadPoolExecutor

    from stacks.emulator.deploy import LocalDeployment
    from stacks.errors import ToolError

    root = tmp_path_factory.mktemp("local")
    deployments: dict[str, LocalDeployment] = {}
    try:
        try:
            for name, plan in shipped_plans.items():
                deployments[name] = LocalDeployment.start(
                    plan, synth_dir / "stacks" / name / "cdk.tf.json", root / name
                )
            started = time.monotonic()
            with ThreadPoolExecutor(len(deployments)) as pool:
                list(pool.map(LocalDeployment.apply, deployments.values()))
            APPLY_SECONDS.update(
                {name: d.applied_seconds for name, d in deployments.items()}, all_in_parallel=time.monotonic() - started
            )
        except ToolError as exc:  # Terraform or the provider mirror missing: say which, in one line
            pytest.fail(str(exc), pytrace=False)
        yield deployments
    finally:
        for deployment in deployments.values():
            deployment.close()


@pytest.fixture(scope="session")
def synthesized(synth_dir) -> dict[str, dict]:
    """Environment name -> its parsed cdk.tf.json."""
    return {p.name: json.loads((p / "cdk.tf.json").read_text()) for p in (synth_dir / "stacks").iterdir()}


@cache
def _cdktf_scratch() -> str:
    """This process's folder for the test apps' outputs, removed when it exits."""
    folder = tempfile.mkdtemp(prefix="llmstacks-tests-cdktf-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def cdktf_app():
    """cdktf's test app, writing into this process's scratch folder: `Testing.app()` alone leaves a
    `cdktf.outdir.*` folder in the system's temporary directory for every app, run after run."""
    from infra import node_runtime  # noqa: F401  (before cdktf)
    from cdktf import Testing

    return Testing.app(outdir=tempfile.mkdtemp(dir=_cdktf_scratch()))


def new_stack(name: str, region: str):
    """An empty stack with the AWS provider, for construct tests (cdktf loads on first use)."""
    from cdktf import TerraformStack
    from cdktf_cdktf_provider_aws.provider import AwsProvider

    stack = TerraformStack(cdktf_app(), name)
    AwsProvider(stack, "aws", region=region)
    return stack


def synth_stack(stack) -> dict:
    """A stack's Terraform JSON, parsed."""
    from cdktf import Testing

    return json.loads(Testing.synth(stack))


def resources(tf: dict, kind: str) -> dict[str, dict]:
    return tf.get("resource", {}).get(kind, {})


def policies_of(tf: dict, role_resource: str) -> list[dict]:
    """Every statement of the inline policies attached to one aws_iam_role (by resource name)."""
    ref = f"${{aws_iam_role.{role_resource}.name}}"
    statements = []
    for policy in resources(tf, "aws_iam_role_policy").values():
        if policy["role"] == ref:
            statements += json.loads(policy["policy"])["Statement"]
    return statements


@pytest.hookimpl(tryfirst=True)  # the slow marks are there before -m deselects by them
def pytest_collection_modifyitems(items):
    workers.assign(items)


def pytest_xdist_make_scheduler(config, log):
    """`make test`'s workers take whole groups of tests (tests/workers.py)."""
    return workers.GroupScheduling(config, log)


def pytest_terminal_summary(terminalreporter):
    if APPLY_SECONDS:
        times = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in APPLY_SECONDS.items())
        terminalreporter.write_line(f"terraform apply against the local AWS: {times}")
