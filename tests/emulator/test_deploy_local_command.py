"""`llmstacks deploy-local` as the README gives it: one command, no AWS account."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import waits

from stacks.config.loader import ENVIRONMENTS_DIR

ENVS = str(ENVIRONMENTS_DIR)  # the tests run outside the project

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [LLMSTACKS, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=waits.PIPELINE,
        env={**os.environ, **(env or {})},
    )


def test_deploy_local_applies_dev_and_prints_the_differences_and_outputs(tmp_path):
    result = run("deploy-local", "--env-dir", ENVS, "--env", "dev", "--workdir", str(tmp_path / "local"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "differs from what you deploy in:" in out
    assert "TLS-only deny statements left out" in out and "moto does not implement it" in out
    assert "weights_bucket = llm-dev-weights-111111111111" in out
    assert "writer_role_arn = arn:aws:iam::111111111111:role/llm-dev-artifact-writer" in out
    assert (tmp_path / "local" / "dev" / "cdktf.out" / "stacks" / "dev" / "cdk.tf.json").is_file()


def test_without_terraform_or_the_mirror_it_says_which_in_one_line(tmp_path):
    no_terraform = run(
        "deploy-local", "--env-dir", ENVS, "--env", "dev", cwd=tmp_path, env={"PATH": str(Path(sys.executable).parent)}
    )
    assert no_terraform.returncode == 3
    assert no_terraform.stderr.strip().splitlines() == ["error: terraform is not on PATH (Terraform >= 1.10 is needed)"]
    no_mirror = run(
        "deploy-local",
        "--env-dir",
        ENVS,
        "--env",
        "dev",
        cwd=tmp_path,
        env={"LLMSTACKS_PROVIDER_MIRROR": str(tmp_path / "none")},
    )
    assert no_mirror.returncode == 3
    (line,) = no_mirror.stderr.strip().splitlines()
    assert line.startswith("error: no local mirror of the registry.terraform.io/hashicorp/aws provider")
    assert not (tmp_path / ".llmstacks-local").exists()
