"""The policy gate: checkov's built-in checks plus ours over every synthesized stack, and our
policies over the rendered specs.

checkov runs from its own virtualenv (it pins packages the serving stack
needs newer), offline, once over `<outdir>/stacks`. Failures listed in
`policies/baseline.yaml` are reported as baselined; any other failure, a
custom check that did not run, or a spec policy problem fails the gate.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from policies.specs import POLICIES, load_specs
from stacks.errors import ConfigError, ToolError
from stacks.inputs import read_bounded, yaml_shape_problem

POLICIES_DIR = Path(__file__).resolve().parent
ROOT = POLICIES_DIR.parent
CHECKS_DIR = POLICIES_DIR / "checks"
BASELINE_FILE = POLICIES_DIR / "baseline.yaml"
CHECKOV_VERSION = "3.3.30"
CHECKOV_ENV = "LLMSTACKS_CHECKOV"
LOCAL_CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
BASELINE_MAX_BYTES = 64 * 1024
CUSTOM_ID = re.compile(r'id="(CKV_LLM_\d+)"')


class BaselineEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    check: Annotated[str, Field(pattern=r"^CKV2?_[A-Z]+_\d+$")]
    reason: Annotated[str, Field(min_length=20)]
    # Only these resources ("<type>.<name>", shell-style wildcards); default: every resource.
    resources: tuple[Annotated[str, Field(min_length=3, max_length=256)], ...] = ()

    def covers(self, resource: str) -> bool:
        return not self.resources or any(fnmatch.fnmatchcase(resource, pattern) for pattern in self.resources)


@dataclass(frozen=True)
class Finding:
    check: str
    name: str
    environment: str
    resource: str
    passed: bool
    baselined: bool = False


@dataclass
class GateReport:
    findings: list[Finding] = field(default_factory=list)
    spec_problems: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # env -> (policy id, problem)
    spec_passed: Counter = field(default_factory=Counter)
    missing_checks: list[str] = field(default_factory=list)
    stale_baseline: list[tuple[str, Path]] = field(default_factory=list)  # (check, the baseline file naming it)
    sarif: Path | None = None
    json: Path | None = None

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed and not f.baselined]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.missing_checks and not any(self.spec_problems.values())

    def summary(self) -> str:
        lines = []
        for env in sorted({f.environment for f in self.findings} | set(self.spec_problems)):
            mine = [f for f in self.findings if f.environment == env]
            passed = sum(f.passed for f in mine)
            failed = [f for f in mine if not f.passed and not f.baselined]
            baselined = Counter(f.check for f in mine if f.baselined)
            specs_failed = self.spec_problems.get(env, [])
            line = f"{env}: {passed} passed, {len(failed)} failed"
            if baselined:
                line += f", {sum(baselined.values())} baselined ({', '.join(sorted(baselined))})"
            if env in self.spec_problems:  # specs are per environment, not per stack
                line += f"; specs: {self.spec_passed[env]} passed, {len(specs_failed)} failed"
            lines.append(line)
            lines += [f"  FAILED {f.check} {f.resource}: {f.name}" for f in failed]
            lines += [f"  FAILED {policy} {problem}" for policy, problem in specs_failed]
        lines += [
            f"error: custom check {c} did not run (checkov could not load it; run checkov on policies/checks to see why)"
            for c in self.missing_checks
        ]
        lines += [
            f"note: baseline entry {c} matches no failure any more; remove it from {path}"
            for c, path in self.stale_baseline
        ]
        if self.sarif:
            lines.append(f"results: {self.json} (JSON), {self.sarif} (SARIF)")
        lines.append("policy gate: " + ("passed" if self.ok else "FAILED"))
        return "\n".join(lines)


def load_baseline(path: Path = BASELINE_FILE) -> dict[str, BaselineEntry]:
    try:
        text = read_bounded(path, BASELINE_MAX_BYTES, "a baseline file").decode("utf-8")
        if problem := yaml_shape_problem(text, yaml.SafeLoader):
            raise ConfigError(path, "", problem)
        data = yaml.safe_load(text) or []
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        entries = TypeAdapter(list[BaselineEntry]).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        if first["loc"][-1] == "reason" and first["type"] == "string_too_short":
            message = "give the reason this check is skipped (at least 20 characters)"
        raise ConfigError(path, where, message) from None
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.check in seen:
            raise ConfigError(path, f"[{i}].check", f"{entry.check} is listed twice")
        seen.add(entry.check)
    return {e.check: e for e in entries}


def load_baselines(paths: list[Path]) -> tuple[dict[str, BaselineEntry], dict[str, Path]]:
    """The kit's and the team's baselines as one: (check -> entry, check -> the file naming it). A
    check both name is skipped where either skips it."""
    merged: dict[str, BaselineEntry] = {}
    sources: dict[str, Path] = {}
    for path in dict.fromkeys(p.resolve() for p in paths):
        for check, entry in load_baseline(path).items():
            if check in merged:
                earlier = merged[check]
                resources = () if not earlier.resources or not entry.resources else earlier.resources + entry.resources
                entry = earlier.model_copy(update={"resources": resources})
            merged[check] = entry
            sources.setdefault(check, path)
    return merged, sources


def project_policies(project_root: Path | None, baseline: Path | None = None) -> tuple[tuple[Path, ...], Path | None]:
    """(baseline files, the team's checks folder) for a project: the kit's baseline plus the
    project's `policies/baseline.yaml` (or `baseline`), and its `policies/checks/` (checkov checks,
    Python or YAML). In the kit's own repository the project's policies are the kit's: there
    `baseline` replaces the kit's baseline."""
    kit_repository = project_root is not None and project_root.resolve() == ROOT
    own = project_root is not None and not kit_repository
    team = baseline
    if team is None and own and (project_root / "policies" / "baseline.yaml").is_file():
        team = project_root / "policies" / "baseline.yaml"
    baselines = (team,) if kit_repository and team else (BASELINE_FILE, *([team] if team else []))
    checks = project_root / "policies" / "checks" if own else None
    return baselines, checks if checks and checks.is_dir() else None


def custom_check_ids() -> list[str]:
    return sorted({m for p in CHECKS_DIR.glob("*.py") for m in CUSTOM_ID.findall(p.read_text())}, key=_numeric)


def find_checkov(project_root: Path | None = None) -> str:
    """$LLMSTACKS_CHECKOV, else the project's .venv-checkov (or the kit repository's), else checkov on PATH."""
    configured = os.environ.get(CHECKOV_ENV)
    if configured:
        if not (Path(configured).is_file() and os.access(configured, os.X_OK)):
            raise ToolError(f"{CHECKOV_ENV}: {configured} is not an executable checkov")
        return configured
    own = project_root is not None and project_root.resolve() != ROOT
    for local in ([project_root / ".venv-checkov" / "bin" / "checkov"] if own else []) + [LOCAL_CHECKOV]:
        if local.is_file():
            return str(local)
    found = shutil.which("checkov")
    if found is None:
        raise ToolError(
            f"checkov: not installed: `make check` installs checkov=={CHECKOV_VERSION} into .venv-checkov "
            f"(in a project of your own: python3 -m venv .venv-checkov && .venv-checkov/bin/pip install "
            f"checkov=={CHECKOV_VERSION}; or set {CHECKOV_ENV} to a checkov in its own virtualenv)"
        )
    return found


def run_checkov(
    stacks_dir: Path, report_dir: Path, checkov: str | None = None, team_checks: Path | None = None
) -> dict:
    """checkov's JSON report for every stack under `stacks_dir`, with our checks and the team's
    (`team_checks`, a folder of checkov checks); also leaves its SARIF in `report_dir`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    checks = [CHECKS_DIR] + ([team_checks] if team_checks and team_checks.resolve() != CHECKS_DIR else [])
    command = [
        checkov or find_checkov(),
        "--directory",
        str(stacks_dir),
        "--framework",
        "terraform_json",
        *[arg for folder in checks for arg in ("--external-checks-dir", str(folder))],
        "--skip-download",
        "--soft-fail",
        "--output",
        "json",
        "--output",
        "sarif",
        "--output-file-path",
        str(report_dir),
    ]
    # Offline: no vendor API mapping, no guideline download.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LLMSTACKS_POLICY_ROOT": str(stacks_dir.resolve())}
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"checkov could not run: {exc}") from None
    output = report_dir / "results_json.json"
    if result.returncode != 0 or not output.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ToolError(f"checkov failed (exit {result.returncode}): {tail[0]}")
    try:
        report = json.loads(output.read_text())
    except ValueError as exc:
        raise ToolError(f"checkov wrote an unreadable report ({exc})") from None
    return report[0] if isinstance(report, list) else report


def findings_from(report: dict, baseline: dict[str, BaselineEntry], stacks_dir: Path | None = None) -> list[Finding]:
    findings, types = [], {}
    for kind, passed in (("passed_checks", True), ("failed_checks", False)):
        for result in report.get("results", {}).get(kind, []):
            env = result["file_path"].lstrip("/").split("/", 1)[0]
            resource = result["resource"]
            if resource.startswith("resource.") and stacks_dir is not None:
                # checkov names external checks' resources "resource.<name>": put the type back.
                if env not in types:
                    document = json.loads((stacks_dir / result["file_path"].lstrip("/")).read_text())
                    types[env] = {
                        name: kind_ for kind_, items in document.get("resource", {}).items() for name in items
                    }
                name = resource.removeprefix("resource.")
                resource = f"{types[env].get(name, 'resource')}.{name}"
            entry = baseline.get(result["check_id"])
            findings.append(
                Finding(
                    result["check_id"],
                    result["check_name"],
                    env,
                    resource,
                    passed,
                    baselined=not passed and entry is not None and entry.covers(resource),
                )
            )
    return findings


def run_gate(
    outdir: Path,
    environments: list[str],
    report_dir: Path | None = None,
    *,
    baselines: tuple[Path, ...] = (BASELINE_FILE,),
    checkov: str | None = None,
    team_checks: Path | None = None,
) -> GateReport:
    """Gate the synthesized `environments` in `outdir` (cdktf.out): our checks and the team's
    (`team_checks`), failures skipped where one of `baselines` (the kit's, the team's) says so."""
    baseline, sources = load_baselines(list(baselines))
    report_dir = report_dir or outdir / "policy"
    stacks_dir = outdir / "stacks"
    # Only the selected environments: checkov scans a directory, so point it at one that holds just them.
    selected = report_dir / "stacks"
    if selected.exists():
        shutil.rmtree(selected)
    for env in environments:
        for stack in (env, f"{env}-platform"):  # the AWS stack and, where synthesized, the in-cluster one
            if (stacks_dir / stack).is_dir():
                shutil.copytree(stacks_dir / stack, selected / stack)
    raw = run_checkov(selected, report_dir, checkov, team_checks)
    report = GateReport(findings=findings_from(raw, baseline, selected))
    ran = {f.check for f in report.findings}
    report.missing_checks = [c for c in custom_check_ids() if c not in ran]
    used = {f.check for f in report.findings if f.baselined}
    report.stale_baseline = sorted((c, sources[c]) for c in baseline if c not in used)
    for env in environments:
        documents = load_specs(outdir / "specs" / env)
        report.spec_problems[env] = []
        for policy in POLICIES:
            problems = policy.check(documents)
            report.spec_problems[env] += [(policy.id, p) for p in problems]
            report.spec_passed[env] += not problems
    report.sarif = report_dir / "results_sarif.sarif"
    report.json = report_dir / "report.json"
    report.json.write_text(
        json.dumps(
            {
                "passed": report.ok,
                "findings": [f.__dict__ for f in report.findings],
                "spec_problems": {
                    env: [{"policy": p, "problem": m} for p, m in problems]
                    for env, problems in report.spec_problems.items()
                },
                "missing_checks": report.missing_checks,
                "baseline": {check: entry.model_dump(mode="json") for check, entry in baseline.items()},
            },
            indent=2,
        )
    )
    shutil.rmtree(selected)
    return report


def _numeric(check_id: str) -> int:
    return int(check_id.rsplit("_", 1)[1])
