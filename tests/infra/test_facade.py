"""`from infra import ...`: one list of public names, each resolving to its construct, and every
construct there (the ones the README names included); the plain-data modules stay free of cdktf."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys

import pytest

import infra
from conftest import ROOT

FACADE = ROOT / "infra" / "__init__.py"
# Imports Ray's dashboard factory (`make dashboards` only); it defines no construct.
NOT_IMPORTED = {"infra.platform.observability.generate_dashboards"}
# What the environment schema, the plan and the service specs import: plain data and functions.
PLAIN = (
    "infra",
    "infra.catalog",
    "infra.rules",
    "infra.identity.policy",
    "infra.compute.scheduling",
    "infra.compute.autoscaling",
    "infra.compute.efa.plugin",
    "infra.compute.efa.rules",
    "infra.platform.charts",
    "infra.platform.observability",
)


def type_checking_imports() -> dict[str, str]:
    """Name -> module of every import under the facade's `if TYPE_CHECKING:`."""
    tree = ast.parse(FACADE.read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    found: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for alias in node.names:
            assert alias.name not in found, f"{alias.name} is imported twice"
            found[alias.name] = node.module
    return found


def infra_classes() -> dict[str, type]:
    """Every public class defined in an infra module, by name."""
    classes: dict[str, type] = {}
    for module in pkgutil.walk_packages(infra.__path__, "infra."):
        if module.name in NOT_IMPORTED:
            continue
        for name, value in vars(importlib.import_module(module.name)).items():
            if inspect.isclass(value) and value.__module__ == module.name and not name.startswith("_"):
                classes[name] = value
    return classes


def test_the_type_checking_imports_are_the_exports():
    assert type_checking_imports() == infra._EXPORTS
    assert infra.__all__ == sorted(infra._EXPORTS)


@pytest.mark.parametrize("name", sorted(infra._EXPORTS))
def test_each_name_resolves_to_what_its_module_defines(name):
    module = importlib.import_module(infra._EXPORTS[name])
    assert getattr(infra, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Bucket'"):
        infra.Bucket  # noqa: B018


def test_every_construct_is_exported():
    from constructs import Construct

    constructs = {name for name, cls in infra_classes().items() if issubclass(cls, Construct)}
    assert constructs and constructs <= set(infra._EXPORTS), sorted(constructs - set(infra._EXPORTS))


def test_every_construct_the_readme_names_is_exported():
    readme = (ROOT / "README.md").read_text()
    imported = {
        name.strip()
        for names in re.findall(r"^from infra import \(?([\w, ]+)\)?$", readme, re.MULTILINE)
        for name in names.split(",")
    }
    assert imported and imported <= set(infra._EXPORTS), sorted(imported - set(infra._EXPORTS))
    named = set(re.findall(r"`([A-Z]\w+)[`(.]", readme)) & set(infra_classes())
    assert named and named <= set(infra._EXPORTS), sorted(named - set(infra._EXPORTS))


def test_the_plain_modules_load_no_cdktf():
    """Loading the provider bindings takes ~15 s: importing infra's plain modules (and the facade) must not."""
    code = (
        f"import sys, {', '.join(PLAIN)}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'cdktf', 'constructs', 'jsii'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
