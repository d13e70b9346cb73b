"""An upgrade applied for real agrees with what `llmstacks preview` said it would do.

A temporary repository holds a base commit of dev (an extra CPU pool, other sizes and
retention) and a working-tree change. The base revision's stack is applied against a local
AWS; then Terraform plans the working tree's stack on the same state. The resources it
would add, change and destroy must be exactly the ones the preview reported; a
disagreement is a preview bug.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT
from stacks.emulator.deploy import LocalDeployment
from stacks.emulator.differences import NOT_EMULATED
from stacks.errors import ToolError
from stacks.planning.plan import plan_file
from stacks.preview import preview

# Not applied to the emulator, or (bucket policies) only in part: stacks/emulator/differences.py.
LEFT_OUT = {*NOT_EMULATED, "aws_s3_bucket_policy"}


def git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def edit(path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("upgrade-repo")
    for name in git(ROOT, "ls-files").splitlines():
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    dev = repo / "stacks" / "environments" / "dev.yaml"

    def base(d):
        d["node_pools"].append({"name": "batch", "instance_types": ["m7i.large"], "max_size": 2})
        d["buckets"] = {"weights": {"noncurrent_version_retention_days": 45}}

    edit(dev, base)
    git(repo, "init", "--quiet", "--initial-branch", "base")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "--all")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "base")

    def change(d):
        d["node_pools"] = [p for p in d["node_pools"] if p["name"] != "batch"]  # a node group and template go
        d["node_pools"][1]["max_size"] = 6  # a node group changes
        d["buckets"] = {}  # a lifecycle rule changes back to 30 days
        d["models"][0]["replicas"] = {"min": 1, "max": 3}  # the specs change: new content-addressed objects

    edit(dev, change)
    return repo


def test_the_applied_upgrade_matches_the_preview(repo, tmp_path):
    outputs = tmp_path / "outputs"
    result = preview("base", repo=repo, env_dir=repo / "stacks" / "environments", policy=False, keep_outputs=outputs)
    (reported,) = [e for e in result.environments if e.name == "dev"]
    # The AWS stack's changes (the platform stack's are named "dev-platform/..." and not applied here).
    expected = {
        (r.address, r.action)
        for r in reported.resources
        if "/" not in r.address and r.address.split(".")[0] not in LEFT_OUT
    }
    assert expected, "the change must touch resources for the test to mean something"

    head_plan = plan_file(repo / "stacks" / "environments" / "dev.yaml")
    try:
        deployment = LocalDeployment.start(
            head_plan, outputs / "base.out" / "stacks" / "dev" / "cdk.tf.json", tmp_path / "tf"
        )
    except ToolError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        deployment.apply()
        deployment.switch_to(outputs / "head.out" / "stacks" / "dev" / "cdk.tf.json")
        planned = set()
        for change in deployment.pending_changes():
            actions = change["change"]["actions"]
            action = "added" if actions == ["create"] else "removed" if actions == ["delete"] else "changed"
            planned.add((change["address"], action))
    finally:
        deployment.close()
    assert planned == expected
