"""The kit as a platform team gets it: an sdist built from this checkout, the wheel built from that
sdist, and the wheel installed into a fresh virtual environment. Offline: the build backend and the
dependencies are the ones already installed in the environment running the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
from kit_source import REPO

ROOT_CONFTEST = REPO / "tests" / "conftest.py"
# Variables that would point Python at this checkout (or another environment) instead of the kit.
_SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "DIST_EXTRA_CONFIG")


def _is_file(module, path: Path) -> bool:
    return bool(getattr(module, "__file__", None)) and Path(module.__file__).resolve() == path


def pytest_plugin_registered(plugin, manager):
    # pytest imports every conftest.py outside a package as the one module `conftest`, so loading
    # this one evicts the root conftest that other tests import helpers from: hand the name back.
    if _is_file(plugin, Path(__file__).resolve()):
        sys.modules["conftest"] = next(p for p in manager.get_plugins() if _is_file(p, ROOT_CONFTEST))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    return {**env, "PYTHONNOUSERSITE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _repo_outputs() -> dict[str, int]:
    """Where setuptools writes when building in place: each path and its newest mtime."""
    paths = [REPO / "build", REPO / "dist", *REPO.glob("*.egg-info")]
    return {p.name: max((c.stat().st_mtime_ns for c in [p, *p.iterdir()]), default=0) for p in paths if p.exists()}


class KitDist(NamedTuple):
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class KitBuild:
    dist: KitDist
    seconds: float
    repo_outputs_before: dict[str, int]
    repo_outputs_after: dict[str, int]


@pytest.fixture(scope="session")
def kit_build(tmp_path_factory) -> KitBuild:
    """Builds the sdist from the checkout, then the wheel from the unpacked sdist (as pip does)."""
    work = tmp_path_factory.mktemp("kit-build")
    out = work / "dist"
    # setuptools writes its egg-info and build/ next to the sources unless told otherwise: send
    # them here, so the checkout is left as it was and no stale SOURCES.txt is read back.
    (work / "meta").mkdir()
    config = work / "setuptools.cfg"
    config.write_text(f"[egg_info]\negg_base = {work / 'meta'}\n[build]\nbuild_base = {work / 'build'}\n")
    before = _repo_outputs()
    start = time.perf_counter()
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", out]
    _run([*build, "--sdist", REPO], cwd=work, env=clean_env(DIST_EXTRA_CONFIG=str(config)))
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (source,) = (work / "unpacked").iterdir()
    _run([*build, "--wheel", source], cwd=work, env=clean_env())
    (wheel,) = out.glob("*.whl")
    return KitBuild(KitDist(wheel, sdist), time.perf_counter() - start, before, _repo_outputs())


@pytest.fixture(scope="session")
def kit_dist(kit_build) -> KitDist:
    """(wheel path, sdist path) of this checkout's kit, built once per session."""
    return kit_build.dist


def _purelib(python: Path | str) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([python, "-c", code], cwd=REPO.parent, env=clean_env()).stdout.strip())


@pytest.fixture(scope="session")
def kit_venv(kit_dist, tmp_path_factory) -> Path:
    """The `bin` directory of a fresh virtual environment with the kit's wheel installed (no
    network: no dependencies resolved). The kit's dependencies come from the test environment's
    site-packages, appended to sys.path by a .pth path line; such a line does not run that
    directory's own .pth files, so the checkout's editable-install finder stays out."""
    venv = tmp_path_factory.mktemp("kit-venv") / "venv"
    cwd = venv.parent
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=cwd, env=clean_env())
    python = venv / "bin" / "python"
    # Install before the .pth exists, so pip does not see the checkout's editable install.
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", kit_dist.wheel],
        cwd=cwd,
        env=clean_env(),
    )
    dependencies = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (_purelib(python) / "_kit_dependencies.pth").write_text("".join(f"{p}\n" for p in dependencies))
    return venv / "bin"


@pytest.fixture(scope="session")
def kit_run(kit_venv, tmp_path_factory) -> Callable[..., subprocess.CompletedProcess]:
    """Runs a command with the kit's venv first on PATH, from a directory outside the checkout,
    without PYTHONPATH; `kit_run("python", "-c", ...)` is the venv's interpreter. Fails on exit != 0."""
    cwd = tmp_path_factory.mktemp("kit-cwd")
    env = clean_env(PATH=f"{kit_venv}{os.pathsep}{os.environ.get('PATH', '')}")

    def run(command: str, *args: str) -> subprocess.CompletedProcess:
        return _run([kit_venv / command, *args], cwd=cwd, env=env)

    return run


@pytest.fixture(scope="session")
def kit_site_packages(kit_venv) -> Path:
    return _purelib(kit_venv / "python")
