"""The app takes Ray Serve LLM's pieces from its public facade (`ray.serve.llm`), and from Ray's
internals only what Ray 2.60 does not offer there."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
INTERNAL = "ray.llm._internal"
# Not in ray.serve.llm of Ray 2.60: a config's /v1/models card and build_pd_openai_app's checks of a pair.
INTERNAL_ONLY = {"to_model_metadata", "PDServingArgs"}
FACADE = ("ray.serve.llm", "ray.serve.llm.deployment", "ray.serve.llm.ingress", "ray.serve.llm.request_router")


def _ray_imports() -> dict[str, set[str]]:
    """Module -> the names the app's files import from it, for every `ray.serve.llm` or internal module."""
    found: dict[str, set[str]] = {}
    for path in sorted(APP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith((INTERNAL, "ray.serve.llm")):
                found.setdefault(node.module, set()).update(alias.name for alias in node.names)
    return found


def test_only_what_the_facade_lacks_comes_from_rays_internals():
    internal = set().union(*(names for module, names in _ray_imports().items() if module.startswith(INTERNAL)))
    assert internal == INTERNAL_ONLY


def test_what_the_app_takes_from_the_facade_is_public_there_and_the_rest_is_not():
    pytest.importorskip("vllm")
    public = {module: _public(importlib.import_module(module)) for module in FACADE}
    for module, names in _ray_imports().items():
        if module in FACADE:
            assert names <= public[module], module
    assert not INTERNAL_ONLY & set().union(*public.values()), "now public in ray.serve.llm: import it from there"


def _public(module) -> set[str]:
    # ray.serve.llm.request_router has no __all__: its names without a leading underscore.
    return set(getattr(module, "__all__", [name for name in vars(module) if not name.startswith("_")]))
