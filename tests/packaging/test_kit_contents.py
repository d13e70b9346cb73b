"""The wheel and sdist carry what `llmstacks` needs, and nothing of the repository's own tests."""

from __future__ import annotations

import tarfile
import zipfile
from email.parser import Parser

from kit_source import PACKAGES, REPO, git_files, pyproject_version

# What `llmstacks init`, synth and check read from an installed kit besides the code.
SHIPPED_DATA = [
    "stacks/environments/dev.yaml",
    "stacks/environments/staging.yaml",
    "stacks/environments/prod.yaml",
    "stacks/examples/patterns.yaml",
    "policies/baseline.yaml",
    "infra/platform/observability/dashboards/ray-serve.json",
    "infra/platform/observability/dashboards/ray-serve-llm.json",
]
REPOSITORY_ONLY = ("tests/", "benchmarks/", "examples/", ".github/", ".ci/")


def wheel_names(kit_dist) -> set[str]:
    with zipfile.ZipFile(kit_dist.wheel) as wheel:
        return {n for n in wheel.namelist() if not n.endswith("/")}


def sdist_names(kit_dist) -> set[str]:
    """Member paths below the sdist's top directory (`llm_serving_stacks-<version>/`)."""
    with tarfile.open(kit_dist.sdist) as sdist:
        return {m.name.partition("/")[2] for m in sdist.getmembers() if m.isfile()}


def test_the_wheel_carries_every_tracked_file_of_the_packages(kit_dist):
    tracked = git_files(*PACKAGES)
    assert {"app/serving.py", "policies/checks/llm_iam.py", "stacks/cli/__init__.py"} <= set(tracked)
    missing = sorted(set(tracked) - wheel_names(kit_dist))
    assert not missing, f"tracked package files the wheel leaves out: {missing}"


def test_the_wheel_carries_the_shipped_data_and_policy_checks(kit_dist):
    names = wheel_names(kit_dist)
    assert set(SHIPPED_DATA) <= names
    checks = {f for f in git_files("policies/checks") if f.endswith(".py")}
    assert checks and checks <= names


def test_the_wheel_carries_the_scaffold_templates_whatever_their_names(kit_dist):
    templates = git_files("stacks/scaffold/templates", untracked=True)
    # Files without a suffix (gitignore) and nested directories (workflows/) count too.
    assert templates and set(templates) <= wheel_names(kit_dist)


def test_the_wheel_holds_the_four_packages_and_its_metadata_only(kit_dist):
    dist_info = f"llm_serving_stacks-{pyproject_version()}.dist-info/"
    names = wheel_names(kit_dist)
    assert not {n for n in names if n.startswith(REPOSITORY_ONLY)}
    strays = {n for n in names if not n.startswith(dist_info) and n.split("/")[0] not in PACKAGES}
    assert not strays, f"wheel members outside the packages: {sorted(strays)}"
    assert not {n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))}


def test_the_sdist_has_no_repository_tests_and_what_a_build_needs(kit_dist):
    names = sdist_names(kit_dist)
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
    assert not {n for n in names if n.startswith(REPOSITORY_ONLY)}


def test_the_sdist_holds_every_file_the_wheel_ships(kit_dist):
    # The wheel is built from the unpacked sdist (kit_build), so this also says the sdist suffices.
    packaged = {n for n in wheel_names(kit_dist) if n.split("/")[0] in PACKAGES}
    assert packaged and packaged <= sdist_names(kit_dist)


def test_one_version_from_pyproject(kit_dist):
    import stacks

    version = pyproject_version()
    assert stacks.__version__ == version
    with zipfile.ZipFile(kit_dist.wheel) as wheel:
        metadata = Parser().parsestr(wheel.read(f"llm_serving_stacks-{version}.dist-info/METADATA").decode())
    assert (metadata["Name"], metadata["Version"]) == ("llm-serving-stacks", version)
    assert kit_dist.sdist.name == f"llm_serving_stacks-{version}.tar.gz"


def test_building_leaves_the_checkout_as_it_was(kit_build):
    # No build/, dist/ or egg-info written (or rewritten) in the repository by the build.
    assert kit_build.repo_outputs_after == kit_build.repo_outputs_before


def test_other_tests_still_import_the_root_conftest():
    # This directory's conftest.py must not take the module name `conftest` from the root one.
    import conftest

    assert conftest.__file__ == str(REPO / "tests" / "conftest.py")
