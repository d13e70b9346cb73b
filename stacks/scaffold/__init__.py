"""The files of a new llm-serving-stacks project: a platform team's own repository that
pip-installs the kit instead of forking it (`llmstacks init` writes them).

Pure: text in, text out. Templates are package data under templates/ with `@NAME@` placeholders,
filled in one pass: GitHub's `${{ }}` and shell `$VAR` pass through untouched, and a value that
happens to contain `@...@` is never read as a placeholder itself.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files

import yaml

from stacks.config.project import DEFAULT_ENVIRONMENTS, DEFAULT_OUTPUT

__all__ = ["project_files"]

PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
CDKTF_APP = ".venv/bin/llmstacks synth"

# Template (under templates/) -> its path in the new repository. No dotfiles in package data
# (build tools and editors skip or hide them), so `.gitignore` is stored as `gitignore`.
TEMPLATES = {
    "README.md": "README.md",
    "gitignore": ".gitignore",
    "requirements.txt": "requirements.txt",
    "policies/README.md": "policies/README.md",
    "policies/baseline.yaml": "policies/baseline.yaml",
    # A .py file here would be a module of the kit itself: stored as text.
    "policies/checks/init.txt": "policies/checks/__init__.py",
    "workflows/pull-request.yml": ".github/workflows/pull-request.yml",
    "workflows/deploy.yml": ".github/workflows/deploy.yml",
    "workflows/deploy-environment.yml": ".github/workflows/deploy-environment.yml",
}
DEPLOY_JOB = "deploy-job.yml"  # one job of deploy.yml, per environment


def project_files(
    *, project_name: str, kit_version: str, checkov_version: str, environments: dict[str, str]
) -> dict[str, str]:
    """Relative path -> text of a new project repository. `environments` maps environment name ->
    that environment file's YAML text, in deploy order (dev first).

    Nothing is quoted or escaped for the caller, which refuses anything else: `project_name` is a
    repository name (letters, digits, `.`, `_`, `-`), the versions are PEP 440 versions (the kit's
    is pinned once, in requirements.txt), and environment names match `[a-z][a-z0-9-]*` (they
    become file names, workflow job ids and GitHub environment names).
    """
    if not environments:
        raise ValueError("a project needs at least one environment")
    names = list(environments)
    values = {
        "PROJECT_NAME": project_name,
        "KIT_VERSION": kit_version,
        "CHECKOV_VERSION": checkov_version,
        "PLAN_MATRIX": "[" + ", ".join(_yaml_scalar(name) for name in names) + "]",
        "DEPLOY_JOBS": "\n".join(
            _deploy_job(name, previous) for previous, name in zip([None, *names], names, strict=False)
        ).rstrip("\n"),
        "DEPLOY_ORDER": ", then ".join(names),
    }
    out = {target: _fill(_template(source), values) for source, target in TEMPLATES.items()}
    out["cdktf.json"] = _cdktf_json(project_name)
    out.update({f"{DEFAULT_ENVIRONMENTS}/{name}.yaml": text for name, text in environments.items()})
    return out


def _cdktf_json(project_name: str) -> str:
    # The kit finds the project as the nearest directory upward holding cdktf.json, and its
    # environments in context.environments; cdktf runs "app" and reads "output".
    return (
        json.dumps(
            {
                "language": "python",
                "app": CDKTF_APP,
                "output": DEFAULT_OUTPUT,
                "projectId": project_name,
                "sendCrashReports": "false",
                "terraformProviders": [],
                "terraformModules": [],
                "context": {"environments": DEFAULT_ENVIRONMENTS},
            },
            indent=2,
        )
        + "\n"
    )


def _deploy_job(name: str, previous: str | None) -> str:
    template = _template(DEPLOY_JOB)
    if previous is None:  # the first environment waits for nothing
        template = "".join(line for line in template.splitlines(keepends=True) if "@PREVIOUS@" not in line)
    values = {"JOB": _yaml_scalar(name), "STACK": _yaml_scalar(name)}
    return _fill(template, values if previous is None else {**values, "PREVIOUS": _yaml_scalar(previous)})


def _yaml_scalar(name: str) -> str:
    """`name` as a plain YAML scalar, quoted only where YAML would read it as something else (`no`, `null`)."""
    return name if yaml.safe_load(name) == name else json.dumps(name)


def _template(name: str) -> str:
    return files(__name__).joinpath("templates", name).read_text(encoding="utf-8")


def _fill(template: str, values: dict[str, str]) -> str:
    unknown = sorted(set(PLACEHOLDER.findall(template)) - values.keys())
    if unknown:  # a template the code does not fill: never ship `@NAME@` to a new project
        raise AssertionError(f"template placeholders without a value: {unknown}")
    return PLACEHOLDER.sub(lambda m: values[m[1]], template)
