"""`pip install llm-serving-stacks` in a fresh environment: the packages, the command and the
version come from the installed wheel, not from this checkout."""

from __future__ import annotations

import json

from kit_source import PACKAGES, REPO, pyproject_version

WHERE = """
import importlib, importlib.metadata, json, sys
print(json.dumps({"files": {n: importlib.import_module(n).__file__ for n in sys.argv[1:]},
                  "version": importlib.metadata.version("llm-serving-stacks"),
                  "stacks_version": importlib.import_module("stacks").__version__}))
"""


def test_the_packages_import_from_the_installed_wheel(kit_run, kit_site_packages):
    seen = json.loads(kit_run("python", "-c", WHERE, *PACKAGES).stdout)
    for name, file in seen["files"].items():
        assert file == str(kit_site_packages / name / "__init__.py"), name
        assert not file.startswith(str(REPO)), name
    assert seen["version"] == seen["stacks_version"] == pyproject_version()


def test_the_dependencies_come_from_the_test_environment(kit_run, kit_site_packages):
    code = "import cdktf, json, pydantic, sys; print(json.dumps([cdktf.__file__, sys.path, repr(sys.meta_path)]))"
    cdktf, path, finders = json.loads(kit_run("python", "-c", code).stdout)
    assert not cdktf.startswith(str(kit_site_packages))
    # The checkout itself is never on the path: no PYTHONPATH, no editable-install finder.
    assert not {p for p in path if p in (str(REPO), str(REPO / "tests"))}
    assert "__editable__" not in finders


def test_llmstacks_is_installed_and_runs(kit_venv, kit_run):
    script = kit_venv / "llmstacks"
    assert script.is_file()
    assert script.read_text().splitlines()[0] == f"#!{kit_venv / 'python'}"
    assert "usage: llmstacks" in kit_run("llmstacks", "--help").stdout


def test_sources_never_installed_name_an_unknown_version(monkeypatch):
    """Code put on sys.path by hand (no metadata) still starts, naming no version it cannot know."""
    import importlib.metadata

    import stacks

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delitem(stacks.__dict__, "__version__", raising=False)
    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert stacks.__version__ == "0+unknown"
