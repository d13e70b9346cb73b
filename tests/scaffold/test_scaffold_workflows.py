"""The workflows `llmstacks init` scaffolds: linted, as locked down as ours (the same shared
checks, tests/workflow_checks.py), wired to the installed kit, one plan and deploy per environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import workflow_checks as checks

from stacks.preview.report import MARKER
from stacks.scaffold import project_files

OURS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
THREE = ["dev", "staging", "prod"]
NODE_PATH = """PATH="$(.venv/bin/python -c 'import infra.node_runtime as n; print(n.wheel_node().parent)'):$PATH\""""
CHECKOV = "${{ github.workspace }}/.venv-checkov/bin/checkov"


def scaffold(root: Path, names: list[str]) -> Path:
    """The project's files under `root`; returns its workflows folder."""
    files = project_files(
        project_name="acme-llm",
        kit_version="0.1.0",
        checkov_version="3.3.30",
        environments={name: f"name: {name}\n" for name in names},
    )
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root / ".github" / "workflows"


@pytest.fixture
def workflows(tmp_path) -> Path:
    return scaffold(tmp_path, THREE)


def runs(job: dict) -> list[str]:
    return [step.get("run", "").strip() for step in job["steps"]]


@pytest.mark.parametrize("names", [THREE, ["dev"], ["sandbox", "eu-prod-2", "no"]], ids=["three", "one", "unusual"])
def test_scaffolded_workflows_pass_actionlint(tmp_path, names):
    result = checks.actionlint(scaffold(tmp_path, names))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_scaffolded_workflow(workflows):
    path = workflows / "deploy-environment.yml"
    path.write_text(path.read_text().replace("${{ inputs.stack }}", "${{ inputs.stak }}", 1))
    result = checks.actionlint(workflows)
    assert result.returncode == 1 and "stak" in result.stdout


def test_actions_are_pinned_to_the_same_commits_as_ours(workflows):
    assert checks.action_pins(workflows) == checks.action_pins(OURS)


def test_every_checkout_keeps_the_token_out_of_git_config(workflows):
    checks.assert_checkouts_keep_the_token_out(workflows, count=4)


def test_no_secrets_inherit_and_deploy_passes_exactly_the_declared_secrets(workflows):
    checks.assert_deploy_passes_only_declared_secrets(workflows)


@pytest.mark.parametrize("names", [THREE, ["dev"]], ids=["three", "one"])
def test_every_deploy_job_runs_only_from_main(tmp_path, names):
    checks.assert_deploys_only_from_main(scaffold(tmp_path, names), environments=len(names))


def test_the_plan_job_runs_only_for_pull_requests_from_this_repository(workflows):
    checks.assert_plan_runs_only_for_this_repository(workflows)


def test_the_plan_comment_lists_the_weights_snapshots_the_change_pins(workflows):
    checks.assert_plan_lists_the_pinned_snapshots(workflows)


def test_every_job_has_least_privilege_permissions(workflows):
    assert checks.job_permissions(workflows) == checks.expected_permissions(THREE)


COMMENT_STEPS = {
    ("pull-request.yml", "preview"): MARKER,
    ("pull-request.yml", "plan"): "<!-- llmstacks-plan-dev -->",
}


def test_comments_are_found_by_marker_and_bot_exactly_as_ours(workflows):
    checks.assert_comment_scripts_find_marker_and_bot(workflows, COMMENT_STEPS, MARKER)
    ours, theirs = checks.comment_scripts(OURS), checks.comment_scripts(workflows)
    assert {k: s["with"]["script"] for k, s in theirs.items()} == {k: s["with"]["script"] for k, s in ours.items()}


@pytest.mark.parametrize("key", sorted(COMMENT_STEPS), ids=lambda key: key[1])
def test_comment_scripts_never_edit_a_comment_someone_else_wrote(workflows, key):
    script = checks.comment_scripts(workflows)[key]["with"]["script"]
    checks.assert_script_edits_only_its_own_comment(script, COMMENT_STEPS[key])


def test_the_same_jobs_timeouts_and_concurrency_as_ours(workflows):
    for name in ("pull-request.yml", "deploy.yml", "deploy-environment.yml"):
        ours, theirs = checks.load(OURS, name), checks.load(workflows, name)
        assert checks.triggers(theirs) == checks.triggers(ours), name
        assert theirs.get("concurrency") == ours.get("concurrency"), name
        assert list(theirs["jobs"]) == list(ours["jobs"]), name
        assert {j: job.get("timeout-minutes") for j, job in theirs["jobs"].items()} == {
            j: job.get("timeout-minutes") for j, job in ours["jobs"].items()
        }, name


def test_deploy_chains_the_environments_in_the_given_order(workflows, tmp_path):
    jobs = checks.load(workflows, "deploy.yml")["jobs"]
    assert list(jobs) == THREE
    assert "needs" not in jobs["dev"] and jobs["staging"]["needs"] == "dev" and jobs["prod"]["needs"] == "staging"
    assert [job["with"]["stack"] for job in jobs.values()] == THREE
    one = checks.load(scaffold(tmp_path / "one", ["dev"]), "deploy.yml")["jobs"]
    assert list(one) == ["dev"] and "needs" not in one["dev"] and one["dev"]["with"]["stack"] == "dev"


@pytest.mark.parametrize(
    "names", [THREE, ["dev"], ["sandbox", "eu-prod-2", "no", "null"]], ids=["three", "one", "unusual"]
)
def test_the_plan_matrix_lists_exactly_the_environments_in_order(tmp_path, names):
    workflows = scaffold(tmp_path, names)
    assert checks.load(workflows, "pull-request.yml")["jobs"]["plan"]["strategy"]["matrix"]["stack"] == names
    assert [job["with"]["stack"] for job in checks.load(workflows, "deploy.yml")["jobs"].values()] == names


def test_pull_requests_synth_gate_and_preview_with_the_installed_kit(workflows):
    jobs = checks.load(workflows, "pull-request.yml")["jobs"]
    test = runs(jobs["test"])
    assert test.index(".venv/bin/llmstacks synth") < test.index(".venv/bin/llmstacks check")
    [upload] = [s for s in jobs["test"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "cdktf.out/policy/" and upload["if"] == "always()"
    assert jobs["preview"]["steps"][0]["with"]["fetch-depth"] == 0  # the base revision must be there
    assert '.venv/bin/llmstacks preview --base "origin/${BASE_REF}" --output preview.md' in "\n".join(
        runs(jobs["preview"])
    )
    plan = "\n".join(runs(jobs["plan"]))
    assert (
        plan.index(".venv/bin/llmstacks synth")
        < plan.index(NODE_PATH)
        < plan.index('npx --yes cdktf-cli@0.21.0 diff "$STACK" --skip-synth')
    )
    for job in ("test", "preview"):  # the jobs that run the gate find checkov through the environment
        assert jobs[job]["env"] == {"LLMSTACKS_CHECKOV": CHECKOV}, job


def test_each_environment_deploys_gate_aws_pin_platform_publish(workflows):
    deploy = checks.load(workflows, "deploy-environment.yml")["jobs"]["deploy"]
    assert deploy["environment"] == "${{ inputs.stack }}" and deploy["env"] == {"LLMSTACKS_CHECKOV": CHECKOV}
    steps = runs(deploy)
    gate = steps.index('.venv/bin/llmstacks check --env "$STACK"')
    aws = steps.index(f'{NODE_PATH}\nnpx --yes cdktf-cli@0.21.0 deploy "$STACK" --auto-approve')
    pin = steps.index('.venv/bin/llmstacks pin --env "$STACK"')
    platform = steps.index(f'{NODE_PATH}\nnpx --yes cdktf-cli@0.21.0 deploy "$STACK" "$STACK-platform" --auto-approve')
    publish = steps.index(
        '.venv/bin/python -m pip install -c requirements.txt "llm-serving-stacks[serving]"\n'
        '.venv/bin/llmstacks publish --env "$STACK"'
    )
    assert gate < aws < pin < platform < publish
    assume = [
        i
        for i, s in enumerate(deploy["steps"])
        if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    ]
    assert len(assume) == 1 and assume[0] < gate


KIT = "python -m venv .venv && .venv/bin/python -m pip install -r requirements.txt"
CHECKOV_VENV = "python -m venv .venv-checkov && .venv-checkov/bin/python -m pip install checkov==3.3.30"
SERVING = '.venv/bin/python -m pip install -c requirements.txt "llm-serving-stacks[serving]"'


def test_the_kit_is_installed_from_requirements_txt_and_never_built(workflows):
    installs: dict[tuple[str, str], list[str]] = {}
    for name, job, step in checks.all_steps(workflows):
        run = step.get("run", "")
        assert not re.search(r"\bmake\b", run), (name, job)
        installs.setdefault((name, job), []).extend(line.strip() for line in run.splitlines() if "pip install" in line)
    assert {key: lines for key, lines in installs.items() if lines} == {
        ("deploy-environment.yml", "deploy"): [KIT, CHECKOV_VENV, SERVING],
        ("pull-request.yml", "test"): [KIT, CHECKOV_VENV],
        ("pull-request.yml", "preview"): [KIT, CHECKOV_VENV],
        ("pull-request.yml", "plan"): [KIT],
    }
