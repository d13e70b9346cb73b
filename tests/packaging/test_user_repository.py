"""A platform team's own repository, from the built wheel: `pip install` (into a fresh virtualenv,
offline), `llmstacks init`, git, synth, an edit, `preview --base HEAD` and `check` with the team's
own failing check, and its own baseline. Nothing here runs the repository's code: every command
is the installed kit's, run outside this repository.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import waits
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

# The team's own check: no spot capacity (dev's L4 pool is spot, so it fails there).
NO_SPOT = """
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


class OnDemandOnly(BaseResourceCheck):
    def __init__(self):
        super().__init__(name="Node groups run on on-demand capacity", id="CKV_ACME_1",
                         categories=[CheckCategories.GENERAL_SECURITY], supported_resources=["aws_eks_node_group"])

    def scan_resource_conf(self, conf):
        value = conf.get("capacity_type")
        value = value[0] if isinstance(value, list) and value else value
        return CheckResult.FAILED if value == "SPOT" else CheckResult.PASSED


check = OnDemandOnly()
"""


def command(kit: Path, cwd: Path, *args: str, timeout: int = waits.PIPELINE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CDKTF_OUTDIR", "VIRTUAL_ENV")}
    env.update(PATH=f"{kit}:{env.get('PATH', '')}", LLMSTACKS_CHECKOV=str(CHECKOV))
    return subprocess.run(
        [str(kit / "llmstacks"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Platform", "-c", "user.email=platform@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts
    }


@pytest.fixture(scope="module")
def project(kit_venv, tmp_path_factory) -> Path:
    """`llmstacks init acme` in an empty folder, the environment made the team's own (prefix
    `acme`), committed."""
    work = tmp_path_factory.mktemp("team")
    result = command(kit_venv, work, "init", "acme")
    assert result.returncode == 0, result.stderr
    root = work / "acme"
    assert {
        "environments/dev.yaml",
        "cdktf.json",
        "requirements.txt",
        ".gitignore",
        "README.md",
        "policies/baseline.yaml",
        "policies/checks/__init__.py",
        ".github/workflows/pull-request.yml",
        ".github/workflows/deploy.yml",
        ".github/workflows/deploy-environment.yml",
    } <= files(root)
    dev = root / "environments" / "dev.yaml"
    dev.write_text(dev.read_text().replace("prefix: llm\n", "prefix: acme\n"))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "Start from llm-serving-stacks")
    return root


def test_synth_in_the_new_repository_synthesizes_its_own_environment_only(kit_venv, project):
    result = command(kit_venv, project / "environments", "synth")  # from a subfolder: the project is found upward
    assert result.returncode == 0, result.stderr
    out = project / "cdktf.out"
    assert sorted(p.name for p in (out / "stacks").iterdir()) == ["dev", "dev-platform"]  # no shipped staging/prod
    buckets = {
        r["bucket"]
        for r in json.loads((out / "stacks" / "dev" / "cdk.tf.json").read_text())["resource"]["aws_s3_bucket"].values()
    }
    assert buckets and all(b.startswith("acme-") for b in buckets), (
        buckets
    )  # the scaffolded file's prefix, not the example's


def test_preview_shows_the_edit_the_kit_pin_change_and_the_teams_failing_check(kit_venv, project, tmp_path):
    from stacks import __version__

    dev = project / "environments" / "dev.yaml"
    data = yaml.safe_load(dev.read_text())
    pool = next(p for p in data["node_pools"] if p["name"] == "l4")
    edited = dev.read_text().replace(
        yaml.safe_dump({"max_size": pool["max_size"]}).strip(), f"max_size: {pool['max_size'] + 3}", 1
    )
    assert edited != dev.read_text()
    dev.write_text(edited)
    (project / "requirements.txt").write_text((project / "requirements.txt").read_text().replace(__version__, "0.0.1"))
    (project / "policies" / "checks" / "acme_capacity.py").write_text(NO_SPOT)  # init made the folder
    try:
        result = command(kit_venv, project, "preview", "--base", "HEAD", "--output", str(tmp_path / "preview.md"))
        text = (tmp_path / "preview.md").read_text() if (tmp_path / "preview.md").exists() else ""
        assert result.returncode == 1, result.stderr  # the team's check fails the gate
        assert f"max_size: {pool['max_size']} -> {pool['max_size'] + 3}" in text, text
        assert f"llm-serving-stacks {__version__} to 0.0.1" in text, text
        assert f"pins llm-serving-stacks 0.0.1, but {__version__} is installed" in text, text
        assert "CKV_ACME_1 aws_eks_node_group." in text, text
    finally:
        (project / "requirements.txt").write_text(
            (project / "requirements.txt").read_text().replace("0.0.1", __version__)
        )
        (project / "policies" / "checks" / "acme_capacity.py").unlink()
        dev.write_text(dev.read_text().replace(f"max_size: {pool['max_size'] + 3}", f"max_size: {pool['max_size']}", 1))


def test_check_runs_the_teams_checks_beside_ours_and_takes_the_teams_baseline(kit_venv, project):
    checks = project / "policies" / "checks"
    (checks / "acme_capacity.py").write_text(NO_SPOT)
    baseline = project / "policies" / "baseline.yaml"
    original = baseline.read_text()
    try:
        failed = command(kit_venv, project, "check", "--env", "dev")
        assert failed.returncode == 1, failed.stderr
        assert "  FAILED CKV_ACME_1 aws_eks_node_group." in failed.stdout, failed.stdout
        assert "CKV_LLM_" not in failed.stdout.split("policy gate")[0].split("FAILED", 1)[-1]  # ours still pass
        assert "baselined (CKV_AWS_144, CKV_AWS_145)" in failed.stdout  # the kit's baseline still applies

        entries = (yaml.safe_load(original) or []) + [
            {
                "check": "CKV_ACME_1",
                "reason": "dev runs on spot capacity to save cost",
                "resources": ["aws_eks_node_group.*"],
            }
        ]
        baseline.write_text(yaml.safe_dump(entries))
        passed = command(kit_venv, project, "check", "--env", "dev")
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert "CKV_ACME_1" in passed.stdout and "policy gate: passed" in passed.stdout
    finally:
        baseline.write_text(original)
        (checks / "acme_capacity.py").unlink()


def test_init_refuses_to_overwrite_and_writes_nothing(kit_venv, project, tmp_path):
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git" not in p.parts}
    result = command(kit_venv, project.parent, "init", "acme")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0] and "nothing was written" in lines[0], result.stderr
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git" not in p.parts} == before


def test_the_kit_names_its_version(kit_venv, tmp_path):
    from stacks import __version__

    result = command(kit_venv, tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"llmstacks {__version__}"


def test_init_example_copies_that_shipped_file(kit_venv, tmp_path):
    result = command(kit_venv, tmp_path, "init", "--example", "patterns")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "environments").iterdir()) == ["patterns.yaml"]
    assert (tmp_path / "environments" / "patterns.yaml").read_text() == (
        ROOT / "stacks" / "examples" / "patterns.yaml"
    ).read_text()
    deploy = yaml.safe_load((tmp_path / ".github" / "workflows" / "deploy.yml").read_text())
    assert list(deploy["jobs"]) == ["patterns"]
    unknown = command(kit_venv, tmp_path, "init", "other", "--example", "nope")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert "known: dev, patterns, prod, staging" in unknown.stderr
    assert not (tmp_path / "other").exists()


# Every command that needs environments, as the README gives it.
NEEDS_ENVIRONMENTS = [
    ["synth"],
    ["check"],
    ["preview", "--base", "HEAD"],
    ["plan-capacity", "--env", "dev"],
    ["publish", "--env", "dev", "--dry-run"],
    ["status", "--env", "dev"],
    ["rollback", "--env", "dev"],
    ["deploy-local", "--env", "dev"],
    ["pin", "--env", "dev"],
    ["list-models", "--env", "dev"],
    ["upload-model", "--env", "dev", "--model", "m", "--from", "."],
    ["verify-model", "--env", "dev", "--model", "m"],
    ["delete-snapshot", "--env", "dev", "--model", "m", "--snapshot", "0123456789abcdef"],
    ["upload-adapter", "--env", "dev", "--model", "m", "--adapter", "a", "--from", "."],
    ["list-adapters", "--env", "dev"],
    ["delete-adapter", "--env", "dev", "--model", "m", "--adapter", "a"],
]


@pytest.mark.parametrize("args", NEEDS_ENVIRONMENTS, ids=lambda a: a[0])
def test_outside_a_project_every_command_says_so_in_one_line_and_writes_nothing(kit_venv, tmp_path, args):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = command(kit_venv, empty, *args, timeout=waits.COMMAND)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not in an llm-serving-stacks project" in lines[0] and "llmstacks init" in lines[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert list(empty.iterdir()) == []
