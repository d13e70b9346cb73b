"""`llmstacks preview`: what a change does, in serving terms, offline.

The base revision is checked out in a temporary git worktree and synthesized
by its own code (a subprocess, in parallel with the working tree's synth in
this process); then the two outputs are compared per environment: Terraform
resources, models and node pools, capacity and cost (both sides planned by
this revision's planner), the rendered specs, and the policy gate's verdict
on the working tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from policies.gate import GateReport, find_checkov, project_policies, run_gate
from stacks.config.loader import environment_files
from stacks.config.project import NOT_A_PROJECT, PIN_FILE, kit_pin, locate_project
from stacks.errors import ConfigError, ToolError
from stacks.inputs import read_bounded
from stacks.planning.plan import EnvironmentPlan, plan_file
from stacks.preview.diff import (
    DescribeSnapshot,
    capacity_rows,
    compare,
    diff_resources,
    model_facts,
    pool_facts,
    spec_diff,
)
from stacks.preview.report import EnvironmentPreview, Preview
from stacks.synth.run import synthesize

BASE_SYNTH_TIMEOUT = 900


def preview(
    base_ref: str,
    *,
    repo: Path | None = None,
    env_dir: Path | None = None,
    policy: bool = True,
    keep_outputs: Path | None = None,
    describe: DescribeSnapshot | None = None,
) -> Preview:
    """Compare `base_ref` with the working tree of `repo` (default: the current directory's repository).

    `env_dir`: default, the project's environments (the project holding `repo`, else the working
    directory); the base revision's are the same folder at `base_ref`.
    `keep_outputs`: copy both synth outputs there (`base.out`, `head.out`), e.g. to apply them.
    `describe`: reads each pinned weights snapshot's size and date (the only step that needs AWS).
    """
    start = Path(repo or Path.cwd()).resolve()
    project = locate_project(start)
    if env_dir is None and project is None:
        raise ConfigError(start, "", NOT_A_PROJECT)
    env_dir = Path(env_dir or project.environments).resolve()
    # The working tree must be valid: its errors are the user's to fix (exit 2), before any git work.
    head_plans = {p.env.name: p for p in (plan_file(path) for path in environment_files(env_dir))}
    repo = _toplevel(start)
    if not env_dir.is_relative_to(repo):
        raise ConfigError(
            env_dir, "--env-dir", f"outside the git repository {repo}: the preview compares its files at two revisions"
        )
    relative_env_dir = env_dir.relative_to(repo)
    project_dir = (project.root if project else env_dir.parent).resolve()
    relative_project = project_dir.relative_to(repo) if project_dir.is_relative_to(repo) else Path(".")
    baselines, team_checks = project_policies(project.root if project else None)

    with tempfile.TemporaryDirectory(prefix="llmstacks-preview-") as tmp:
        workdir = Path(tmp)
        process, tree = _start_base_synth(repo, base_ref, workdir, relative_project)
        try:
            # This revision, in this process, while the base synthesizes in another.
            head_out = workdir / "head.out"
            ordered = [head_plans[name] for name in sorted(head_plans)]
            synthesize(ordered, head_out, replace_all=True)
            verdicts = {}
            if policy and ordered:
                report = run_gate(
                    head_out,
                    list(head_plans),
                    workdir / "policy",
                    baselines=baselines,
                    team_checks=team_checks,
                    checkov=find_checkov(project.root if project else None),
                )
                verdicts = _verdicts(report)
            try:
                _, stderr = process.communicate(timeout=BASE_SYNTH_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise ToolError(f"the base revision's synth took over {BASE_SYNTH_TIMEOUT} s") from None
            base_error = None
            if process.returncode != 0:
                base_error = (
                    f"the base revision does not synthesize: {(stderr.strip().splitlines() or ['no output'])[-1]}"
                )
            base_plans, base_problems = _plan_all(tree / relative_env_dir)
            if base_problems and not base_error:
                base_error = f"some base environment files do not load with this revision's schema: {base_problems[0]}"
            environments = [
                _environment(
                    name, base_plans.get(name), head_plans.get(name), workdir / "base.out", head_out, verdicts, describe
                )
                for name in sorted(head_plans.keys() | base_plans.keys())
            ]
            if keep_outputs is not None:
                for out in ("base.out", "head.out"):
                    if (workdir / out).is_dir():
                        shutil.copytree(workdir / out, Path(keep_outputs) / out)
            kit = _kit_versions(tree / relative_project / PIN_FILE, project_dir / PIN_FILE)
            return Preview(base_ref, environments, base_error, kit)
        finally:
            if process.poll() is None:
                process.kill()
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], capture_output=True)


def _environment(
    name: str,
    base: EnvironmentPlan | None,
    head: EnvironmentPlan | None,
    base_out: Path,
    head_out: Path,
    verdicts: dict[str, tuple[bool, str]],
    describe: DescribeSnapshot | None = None,
) -> EnvironmentPreview:
    head_tf, head_platform, head_specs = _read_out(head_out, name)
    base_tf, base_platform, base_specs = _read_out(base_out, name)
    item = EnvironmentPreview(
        name, "added" if base_tf is None and base is None else "removed" if head is None else "changed"
    )
    item.resources = diff_resources(base_tf, head_tf)
    # The in-cluster stack's changes (a chart version bump, say), named "<env>-platform/<address>".
    for change in diff_resources(base_platform, head_platform):
        change.address = f"{name}-platform/{change.address}"
        item.resources.append(change)
    item.serving = compare("model", model_facts(base, describe), model_facts(head, describe)) + compare(
        "node pool", pool_facts(base), pool_facts(head)
    )
    item.capacity = capacity_rows(base, head)
    item.cost = {
        at: {
            "before": round(base.cost_per_hour(at), 2) if base else None,
            "after": round(head.cost_per_hour(at), 2) if head else None,
        }
        for at in ("min", "max")
    }
    item.gpus = {"before": base.gpus_at_max if base else None, "after": head.gpus_at_max if head else None}
    item.spec_diff = spec_diff(base_specs, head_specs)
    if item.status == "changed" and not (item.resources or item.serving or item.spec_diff):
        item.status = "unchanged"
    item.policy_ok, item.policy = verdicts.get(name, (True, "n/a (removed)" if head is None else "not run"))
    return item


def _verdicts(report: GateReport) -> dict[str, tuple[bool, str]]:
    """Per environment: (passed, what failed)."""
    verdicts = {}
    for env in report.spec_problems:
        failed = [f for f in report.failures if f.environment in (env, f"{env}-platform")]
        specs = report.spec_problems.get(env, [])
        ok = not failed and not specs and not report.missing_checks
        text = (
            "passed"
            if ok
            else "; ".join(
                [f"{f.check} {f.resource}" for f in failed]
                + [f"{p} {m}" for p, m in specs]
                + [f"{c} did not run" for c in report.missing_checks]
            )
        )
        verdicts[env] = (ok, text)
    return verdicts


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True)
    except OSError as exc:
        raise ToolError(f"git is needed to check out the base revision: {exc}") from None


def _toplevel(path: Path) -> Path:
    top = _git("-C", str(path), "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ConfigError(path, "", "not a git repository (preview compares a base revision with the working tree)")
    return Path(top.stdout.strip())


def _plan_all(directory: Path) -> tuple[dict[str, EnvironmentPlan], list[str]]:
    """The base revision's environments, planned by this revision; and the ones that do not plan."""
    plans, problems = {}, []
    for path in environment_files(directory) if directory.is_dir() else []:
        try:
            plan = plan_file(path)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        plans[plan.env.name] = plan
    return plans, problems


def _kit_versions(base: Path, head: Path) -> dict[str, str | None]:
    """The kit version each revision pins (requirements.txt) and the one installed here."""
    from stacks import __version__

    def pinned(path: Path) -> str | None:
        try:
            return kit_pin(read_bounded(path, 64 * 1024, "a requirements file").decode("utf-8", "replace"))
        except ConfigError:  # no such file (the kit's own repository has none)
            return None

    return {"base": pinned(base), "head": pinned(head), "installed": __version__}


def _start_base_synth(repo: Path, ref: str, workdir: Path, project: Path) -> tuple[subprocess.Popen, Path]:
    """Check out `ref` in a worktree and start the synth of its project (at `project`, relative to
    the repository): by the base revision's own code in the kit's repository, else by the
    installed kit; (process, its worktree)."""
    tree = workdir / "base"
    result = _git("-C", str(repo), "worktree", "add", "--detach", "--quiet", str(tree), ref)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["git worktree failed"])[-1]
        raise ConfigError("--base", "", f"cannot check out {ref!r}: {message}")
    env = {**os.environ, "CDKTF_OUTDIR": str(workdir / "base.out")}
    if (tree / "stacks" / "cli").is_dir() and (tree / "stacks" / "__main__.py").is_file():  # the kit's own repository
        command = [sys.executable, "-m", "stacks"]
        env["PYTHONPATH"] = str(tree)
    else:  # -I: not the project's folders (its policies/, say) on the import path, only the installed kit
        command = [sys.executable, "-I", "-m", "stacks"]
    cwd = tree / project if (tree / project).is_dir() else tree
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, tree


def _read_out(outdir: Path, env: str) -> tuple[dict | None, dict | None, dict[str, str]]:
    """(the AWS stack, the platform stack, the spec files) of one environment in a synth output."""

    def stack(name: str) -> dict | None:
        path = outdir / "stacks" / name / "cdk.tf.json"
        return json.loads(path.read_text()) if path.is_file() else None

    specs_dir = outdir / "specs" / env
    specs = {p.name: p.read_text() for p in sorted(specs_dir.glob("*.yaml"))} if specs_dir.is_dir() else {}
    return stack(env), stack(f"{env}-platform"), specs
