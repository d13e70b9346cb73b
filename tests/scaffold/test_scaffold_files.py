"""The files of a new project (`stacks.scaffold.project_files`): one kit pin, cdktf.json the kit
and cdktf both read, the environments as given, and no template placeholder left behind."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from stacks import scaffold
from stacks.scaffold import project_files

ENVIRONMENTS = {
    name: (Path(__file__).parents[2] / "stacks" / "environments" / f"{name}.yaml").read_text()
    for name in ("dev", "staging", "prod")
}
PLACEHOLDER = re.compile(r"@[A-Z][A-Z0-9_]*@")
EXPECTED = {
    "README.md",
    ".gitignore",
    "requirements.txt",
    "cdktf.json",
    "policies/README.md",
    "policies/baseline.yaml",
    "policies/checks/__init__.py",
    ".github/workflows/pull-request.yml",
    ".github/workflows/deploy.yml",
    ".github/workflows/deploy-environment.yml",
    "environments/dev.yaml",
    "environments/staging.yaml",
    "environments/prod.yaml",
}


def make(
    kit_version: str = "0.1.0",
    checkov_version: str = "3.3.30",
    project_name: str = "acme-llm",
    environments: dict[str, str] = ENVIRONMENTS,
) -> dict[str, str]:
    return project_files(
        project_name=project_name, kit_version=kit_version, checkov_version=checkov_version, environments=environments
    )


def occurs(version: str, text: str) -> bool:
    """`version` as a whole version, not inside a longer one (0.1.0 is not in v5.1.0)."""
    return re.search(rf"(?<![\w.]){re.escape(version)}(?![\w.])", text) is not None


def test_the_project_has_exactly_its_files_and_the_environments_as_given():
    out = make()
    assert set(out) == EXPECTED
    assert [p for p in out if p.startswith("environments/")] == [f"environments/{n}.yaml" for n in ENVIRONMENTS]
    assert all(out[f"environments/{name}.yaml"] == text for name, text in ENVIRONMENTS.items())


@pytest.mark.parametrize("version", ["0.1.0", "7.4.19", "2.0.0rc1+acme.3"])
def test_requirements_pin_the_kit_once_and_nothing_else_names_its_version(version):
    out = make(kit_version=version)
    pins = [line for line in out["requirements.txt"].splitlines() if line and not line.startswith("#")]
    assert pins == [f"llm-serving-stacks=={version}"]
    assert len([line for line in out["requirements.txt"].splitlines() if line.startswith("#")]) == 1  # why, in one line
    assert [path for path, text in out.items() if occurs(version, text)] == ["requirements.txt"]


def test_the_kit_reads_the_pin_it_is_given():
    from stacks.config import project

    assert project.kit_pin(make(kit_version="7.4.19")["requirements.txt"]) == "7.4.19"


def test_checkov_is_pinned_where_it_is_installed_and_nowhere_else():
    out = make(checkov_version="9.8.76")
    installs = {path: [line for line in text.splitlines() if "checkov==" in line] for path, text in out.items()}
    installs = {path: lines for path, lines in installs.items() if lines}
    for lines in installs.values():
        assert all(
            line.rstrip().endswith(".venv-checkov/bin/python -m pip install checkov==9.8.76") for line in lines
        ), lines
    assert {path: len(lines) for path, lines in installs.items()} == {  # the test and preview jobs; the deploy; by hand
        ".github/workflows/pull-request.yml": 2,
        ".github/workflows/deploy-environment.yml": 1,
        "README.md": 1,
    }
    for path, text in out.items():  # the version only on those lines
        assert all("checkov==9.8.76" in line for line in text.splitlines() if occurs("9.8.76", line)), path


def test_cdktf_json_runs_the_kit_and_names_the_environments_folder():
    config = json.loads(make(project_name="acme.llm_stacks")["cdktf.json"])
    assert config == {
        "language": "python",
        "app": ".venv/bin/llmstacks synth",
        "output": "cdktf.out",
        "projectId": "acme.llm_stacks",
        "sendCrashReports": "false",
        "terraformProviders": [],
        "terraformModules": [],
        "context": {"environments": "environments"},
    }


def test_the_kit_finds_the_scaffolded_project(tmp_path):
    from policies import gate
    from stacks.config import project

    for path, text in make().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    found = project.find_project(tmp_path / "policies")
    root = tmp_path.resolve()
    assert (found.root, found.environments, found.output) == (root, root / "environments", root / "cdktf.out")
    assert sorted(p.stem for p in found.environments.glob("*.yaml")) == sorted(ENVIRONMENTS)
    baselines, checks = gate.project_policies(found.root)
    assert (
        baselines == (gate.BASELINE_FILE, root / "policies" / "baseline.yaml")
        and checks == root / "policies" / "checks"
    )


def test_the_gitignore_keeps_build_output_and_virtualenvs_out():
    assert make()[".gitignore"].splitlines() == [
        ".venv/",
        ".venv-checkov/",
        "cdktf.out/",
        ".cdktf.out.*/",
        "preview.md",
        "__pycache__/",
        ".llmstacks-local/",
    ]


UNUSUAL = [
    {"project_name": "a", "kit_version": "1", "checkov_version": "3", "environments": {"x": ""}},
    {
        "project_name": "Team_LLM.stacks-2",
        "kit_version": "10.0.0.post1+g1234",
        "checkov_version": "3.3.30.dev0",
        "environments": {"sandbox": "name: sandbox\n", "eu-prod-2": "", "no": "", "null": "", "on": ""},
    },
    {
        "project_name": "x@KIT_VERSION@y",
        "kit_version": "@PROJECT_NAME@",
        "checkov_version": "@DEPLOY_JOBS@",
        "environments": {"dev": "# @STACK@ stays as written\n"},
    },
]


@pytest.mark.parametrize("inputs", UNUSUAL, ids=["minimal", "odd-but-valid", "values-that-look-like-placeholders"])
def test_no_placeholder_is_left_and_every_file_still_parses(inputs):
    out = project_files(**inputs)
    values = "".join(str(v) for v in inputs.values()) + "".join(inputs["environments"].values())
    for path, text in out.items():
        assert set(PLACEHOLDER.findall(text)) <= set(PLACEHOLDER.findall(values)), path  # only what the caller gave
        if path.endswith((".yml", ".yaml")):
            yaml.safe_load(text)
    assert json.loads(out["cdktf.json"])["projectId"] == inputs["project_name"]
    assert out["README.md"].startswith(f"# {inputs['project_name']}\n")  # one pass: a value is never expanded
    names = list(inputs["environments"])
    jobs = yaml.safe_load(out[".github/workflows/deploy.yml"])["jobs"]
    assert list(jobs) == names and [job["with"]["stack"] for job in jobs.values()] == names


def test_github_expressions_and_shell_variables_pass_through():
    out = make()
    workflow = out[".github/workflows/deploy-environment.yml"]
    assert "${{ inputs.stack }}" in workflow and '"$STACK"' in workflow and ":$PATH" in workflow
    assert "${{ github.workspace }}/.venv-checkov/bin/checkov" in out[".github/workflows/pull-request.yml"]


def test_a_template_placeholder_without_a_value_is_refused():
    with pytest.raises(AssertionError, match="NEW_THING"):
        scaffold._fill("stack: @STACK@ @NEW_THING@\n", {"STACK": "dev"})
    assert scaffold._fill("a ${{ x }} $Y @STACK@", {"STACK": "dev"}) == "a ${{ x }} $Y dev"


def test_a_project_needs_an_environment():
    with pytest.raises(ValueError, match="at least one environment"):
        make(environments={})


def test_every_template_is_used_and_none_is_a_dotfile():
    root = files("stacks.scaffold").joinpath("templates")
    stored = sorted(str(p.relative_to(Path(str(root)))) for p in Path(str(root)).rglob("*") if p.is_file())
    assert stored == sorted([*scaffold.TEMPLATES, scaffold.DEPLOY_JOB])
    assert not [p for p in stored if any(part.startswith(".") for part in Path(p).parts)]


def test_the_module_stays_short():
    lines = [line for line in Path(scaffold.__file__).read_text().splitlines() if line.strip()]
    assert len(lines) < 350
