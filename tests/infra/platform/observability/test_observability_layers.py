"""The stacks' side of observability needs neither Ray nor cdktf; only the dashboard generator imports Ray;
the dashboards ship in the wheel."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "infra" / "platform" / "observability"
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
RAY_CONTRACT = "only the serving app and the vendor spec validation import Ray and vLLM BROKEN"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_generator_imports_ray_or_vllm():
    importers = sorted(p.name for p in PACKAGE.glob("*.py") if imported_roots(p) & {"ray", "vllm", "torch"})
    assert importers == ["generate_dashboards.py"]
    assert not any(imported_roots(p) & {"cdktf", "constructs", "jsii"} for p in PACKAGE.glob("*.py"))


def test_monitoring_objects_and_values_build_without_ray_vllm_or_cdktf():
    script = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ray", "vllm", "torch", "cdktf", "constructs", "jsii"}:
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Refuse())
from infra.platform.observability import ModelObjective, kube_prometheus_stack_values, monitoring_objects
objects = monitoring_objects(environment="dev", serving_namespace="llm-serving", models=[ModelObjective("m", 1.0)])
kube_prometheus_stack_values()
print(len(objects))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5"


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for package in ("stacks", "infra", "app", "policies"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    return tree


def test_a_ray_import_elsewhere_in_observability_breaks_the_contract(tmp_path):
    tree = _tree(tmp_path)
    lint = [LINT_IMPORTS, "--no-cache", "--no-logo"]
    env = {"PYTHONPATH": str(tree), "PATH": ""}
    kept = subprocess.run(lint, cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    assert kept.returncode == 0, kept.stdout
    module = tree / "infra" / "platform" / "observability" / "dashboards.py"
    module.write_text(module.read_text() + "\nimport ray  # planted\n")
    broken = subprocess.run(lint, cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0
    assert RAY_CONTRACT in " ".join(broken.stdout.split())


def test_the_wheel_carries_the_dashboards(tmp_path):
    tree = _tree(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for dashboard in sorted((PACKAGE / "dashboards").glob("*.json")):
        assert f"infra/platform/observability/dashboards/{dashboard.name}" in names
