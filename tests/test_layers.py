"""The layer contracts in pyproject.toml bite: each planted violation breaks its contract.

`make test` runs `lint-imports` on the tree itself; here a copy of the product
packages gets one bad import at a time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import waits

from conftest import ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
PACKAGES = ("stacks", "infra", "app", "policies")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=waits.COMMAND,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    return tree


@pytest.fixture
def tree(pristine, tmp_path) -> Path:
    copy = tmp_path / "tree"
    shutil.copytree(pristine, copy)
    return copy


def test_the_tree_keeps_every_contract(tree):
    result = lint(tree)
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


PLANTED = [
    (
        "config imports cdktf",
        "stacks/config/names.py",
        "import cdktf",
        "config and planning import neither cdktf nor Ray, not even indirectly BROKEN",
    ),
    (
        "planning imports Ray",
        "stacks/planning/pools.py",
        "import ray",
        "config and planning import neither cdktf nor Ray, not even indirectly BROKEN",
    ),
    (
        "planning reaches up to synth",
        "stacks/planning/pools.py",
        "from stacks.synth import summary",
        "stacks follows the data flow",
    ),
    (
        "a module cycle inside config",
        "stacks/config/schema.py",
        "from stacks.config import checks",
        "no package or module imports one that imports it back BROKEN",
    ),
    (
        "something imports the cli",
        "stacks/synth/summary.py",
        "import stacks.cli",
        "nothing imports the command line (but the `python -m stacks` entry) BROKEN",
    ),
    (
        "specs imports cdktf",
        "stacks/specs/pods.py",
        "from cdktf import App",
        "only infra and stacks.synth import cdktf BROKEN",
    ),
    (
        "infra imports Ray",
        "infra/catalog.py",
        "import vllm",
        "only the serving app and the vendor spec validation import Ray and vLLM BROKEN",
    ),
    ("app imports stacks", "app/spec.py", "from stacks.errors import UserError", "imports nothing from stacks, infra"),
    ("infra imports stacks", "infra/catalog.py", "import stacks.config.schema", "imports nothing from stacks or"),
    (
        "a rule uses a construct's module",
        "infra/rules/problems.py",
        "from infra.identity import policy",
        "infra.rules and infra.catalog import nothing else from infra (every construct stands on them) BROKEN",
    ),
    (
        "the catalog loads the node runtime",
        "infra/catalog.py",
        "from infra import node_runtime",
        "infra.rules and infra.catalog import nothing else from infra (every construct stands on them) BROKEN",
    ),
    (
        "identity reaches up to the platform",
        "infra/identity/policy.py",
        "from infra.platform import charts",
        "infra by concern: platform (in the cluster) -> compute | storage -> identity BROKEN",
    ),
    (
        "compute uses storage",
        "infra/compute/scheduling.py",
        "import infra.storage.access_logs",
        "infra by concern: platform (in the cluster) -> compute | storage -> identity BROKEN",
    ),
]


def test_the_ground_contract_forbids_every_other_part_of_infra():
    """A new folder of infra is forbidden to the rules and the catalog as soon as it exists."""
    (contract,) = [
        c
        for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
        if c["id"] == "infra-ground"
    ]
    parts = {
        f"infra.{p.stem}"
        for p in (ROOT / "infra").iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "__init__.py"
    }
    assert set(contract["source_modules"]) == {"infra.rules", "infra.catalog"}
    assert set(contract["forbidden_modules"]) == parts - set(contract["source_modules"])


@pytest.mark.parametrize(("module", "line", "broken"), [c[1:] for c in PLANTED], ids=[c[0] for c in PLANTED])
def test_a_planted_violation_breaks_its_contract(tree, module, line, broken):
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # planted\n")
    result = lint(tree)
    assert result.returncode != 0
    report = " ".join(result.stdout.split())  # lint-imports wraps long contract names
    assert broken in report, result.stdout
