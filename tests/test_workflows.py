"""The GitHub Actions workflows users get: linted by actionlint, and wired as the README says.
The security checks are shared with the workflows `llmstacks init` scaffolds (tests/workflow_checks.py)."""

from __future__ import annotations

import shutil
import subprocess
from functools import partial
from pathlib import Path

import pytest
import workflow_checks as checks

from stacks.preview.report import MARKER

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
load = partial(checks.load, WORKFLOWS)
ENVIRONMENTS = ["dev", "staging", "prod"]


def test_workflows_pass_actionlint():
    result = checks.actionlint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_really_checks_them(tmp_path):
    broken = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOWS, broken)
    text = (broken / "pull-request.yml").read_text().replace("${{ github.base_ref }}", "${{ github.base_reff }}")
    (broken / "pull-request.yml").write_text(text)
    result = checks.actionlint(broken)
    assert result.returncode == 1 and "base_reff" in result.stdout


def test_pull_requests_run_the_tests_the_gate_and_the_preview():
    jobs = load("pull-request.yml")["jobs"]
    runs = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert "make test" in runs and "make check" in runs
    preview = "\n".join(step.get("run", "") for step in jobs["preview"]["steps"])
    assert 'make preview BASE="origin/${BASE_REF}"' in preview
    assert jobs["preview"]["steps"][0].get("with", {}).get("fetch-depth") == 0  # the base revision must be there
    assert jobs["plan"]["strategy"]["matrix"]["stack"] == ENVIRONMENTS
    assert jobs["plan"]["permissions"]["id-token"] == "write"


def test_main_deploys_dev_then_staging_then_prod_behind_environments():
    jobs = load("deploy.yml")["jobs"]
    assert jobs["staging"]["needs"] == "dev" and jobs["prod"]["needs"] == "staging"
    assert [jobs[j]["with"]["stack"] for j in ENVIRONMENTS] == ENVIRONMENTS
    deploy = load("deploy-environment.yml")["jobs"]["deploy"]
    assert deploy["environment"] == "${{ inputs.stack }}"
    runs = [step.get("run", "") for step in deploy["steps"]]
    order = [i for i, r in enumerate(runs) if "llmstacks check" in r or "make deploy" in r or "llmstacks publish" in r]
    assert len(order) == 4 and order == sorted(order)  # gate, deploy (AWS, then with the platform), then publish


def test_the_deploy_pins_the_weights_snapshots_after_the_gate_and_before_deploying_them():
    """The AWS stack (which creates the weights bucket), then the pin, then the platform stack that
    serves the pinned snapshots: a first deploy fails at the pin, not at a replica start."""
    steps = load("deploy-environment.yml")["jobs"]["deploy"]["steps"]
    runs = [step.get("run", "").strip() for step in steps]
    gate, pin = (next(i for i, r in enumerate(runs) if text in r) for text in ("llmstacks check", "llmstacks pin"))
    aws = runs.index('make deploy ENV="$STACK" STACKS="$STACK" AUTO_APPROVE=1')
    both = runs.index('make deploy ENV="$STACK" AUTO_APPROVE=1')
    assert gate < aws < pin < both  # the gate installs the venv it runs from
    assert steps[pin]["run"].strip() == '.venv/bin/llmstacks pin --env "$STACK"'
    assert steps[pin]["env"] == {"STACK": "${{ inputs.stack }}"}  # the input through the environment; no secret
    # With the credentials the job assumed for the deploy, and no others.
    assume = [i for i, s in enumerate(steps) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert len(assume) == 1 and assume[0] < pin


def test_deploys_in_ci_skip_the_prompt_and_by_hand_ask_for_it():
    """cdktf deploy waits for an answer nobody gives in CI: the workflow approves (its environment's
    reviewers did), `make deploy` by hand still asks."""

    def deploy_line(*args: str) -> str:
        result = subprocess.run(
            ["make", "-n", "deploy", "ENV=dev", *args], check=True, capture_output=True, text=True, cwd=ROOT
        )
        return next(line for line in result.stdout.splitlines() if "cdktf-cli" in line)

    assert deploy_line("AUTO_APPROVE=1").endswith(" deploy dev dev-platform --auto-approve")
    assert deploy_line().endswith(" deploy dev dev-platform")
    assert deploy_line("STACKS=dev", "AUTO_APPROVE=1").endswith(" deploy dev --auto-approve")


def test_the_make_preview_target_installs_the_gate_and_needs_a_base():
    makefile = (ROOT / "Makefile").read_text()
    assert "preview: $(VENV)/.installed-base $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)" in makefile
    result = subprocess.run(["make", "-s", "preview"], check=False, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "usage: make preview BASE=<git revision>" in result.stderr


def test_third_party_actions_are_pinned_by_commit_sha_with_their_tag():
    assert set(checks.action_pins(WORKFLOWS)) == set(checks.MAJORS)


def test_every_checkout_keeps_the_token_out_of_git_config():
    checks.assert_checkouts_keep_the_token_out(WORKFLOWS, count=4)


def test_no_secrets_inherit_and_deploy_passes_exactly_the_declared_secrets():
    checks.assert_deploy_passes_only_declared_secrets(WORKFLOWS)


def test_every_deploy_job_runs_only_from_main():
    checks.assert_deploys_only_from_main(WORKFLOWS, environments=len(ENVIRONMENTS))


def test_the_plan_job_runs_only_for_pull_requests_from_this_repository():
    checks.assert_plan_runs_only_for_this_repository(WORKFLOWS)


def test_the_plan_comment_lists_the_weights_snapshots_the_change_pins():
    checks.assert_plan_lists_the_pinned_snapshots(WORKFLOWS)


def test_every_job_has_least_privilege_permissions():
    assert checks.job_permissions(WORKFLOWS) == checks.expected_permissions(ENVIRONMENTS)


# Every github-script step that edits a comment, with the marker it owns (env as the matrix's dev).
COMMENT_STEPS = {
    ("pull-request.yml", "preview"): MARKER,
    ("pull-request.yml", "plan"): "<!-- llmstacks-plan-dev -->",
}


def test_comment_scripts_look_for_the_marker_and_the_bot_author():
    checks.assert_comment_scripts_find_marker_and_bot(WORKFLOWS, COMMENT_STEPS, MARKER)


@pytest.mark.parametrize("key", sorted(COMMENT_STEPS), ids=lambda key: key[1])
def test_comment_scripts_never_edit_a_comment_someone_else_wrote(key):
    script = checks.comment_scripts(WORKFLOWS)[key]["with"]["script"]
    checks.assert_script_edits_only_its_own_comment(script, COMMENT_STEPS[key])
