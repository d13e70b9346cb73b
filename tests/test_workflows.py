"""The GitHub Actions workflows users get: linted by actionlint, and wired as the README says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = str(Path(sys.executable).parent / "actionlint")


def actionlint(directory: Path) -> subprocess.CompletedProcess:
    files = sorted(str(p) for p in directory.glob("*.yml"))
    return subprocess.run([ACTIONLINT, "-color=false", *files], capture_output=True, text=True, cwd=directory.parent.parent)


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_workflows_pass_actionlint():
    result = actionlint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_really_checks_them(tmp_path):
    broken = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOWS, broken)
    text = (broken / "pull-request.yml").read_text().replace("${{ github.base_ref }}", "${{ github.base_reff }}")
    (broken / "pull-request.yml").write_text(text)
    result = actionlint(broken)
    assert result.returncode == 1 and "base_reff" in result.stdout


def test_pull_requests_run_the_tests_the_gate_and_the_preview():
    jobs = load("pull-request.yml")["jobs"]
    runs = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert "make test" in runs and "make check" in runs
    preview = "\n".join(step.get("run", "") for step in jobs["preview"]["steps"])
    assert 'make preview BASE="origin/${BASE_REF}"' in preview
    assert jobs["preview"]["steps"][0].get("with", {}).get("fetch-depth") == 0  # the base revision must be there
    assert jobs["plan"]["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    assert jobs["plan"]["permissions"]["id-token"] == "write"


def test_main_deploys_dev_then_staging_then_prod_behind_environments():
    jobs = load("deploy.yml")["jobs"]
    assert jobs["staging"]["needs"] == "dev" and jobs["prod"]["needs"] == "staging"
    assert [jobs[j]["with"]["stack"] for j in ("dev", "staging", "prod")] == ["dev", "staging", "prod"]
    deploy = load("deploy-environment.yml")["jobs"]["deploy"]
    assert deploy["environment"] == "${{ inputs.stack }}"
    runs = [step.get("run", "") for step in deploy["steps"]]
    order = [i for i, r in enumerate(runs) if "llmstacks check" in r or "make deploy" in r or "llmstacks publish" in r]
    assert len(order) == 3 and order == sorted(order)  # gate, deploy, then publish


def test_the_make_preview_target_installs_the_gate_and_needs_a_base():
    makefile = (ROOT / "Makefile").read_text()
    assert "preview: $(VENV)/.installed-base $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)" in makefile
    result = subprocess.run(["make", "-s", "preview"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "usage: make preview BASE=<git revision>" in result.stderr
