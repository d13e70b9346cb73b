"""The serving application's code as a deterministic zip, for Ray's `py_modules`.

KubeRay pods run a stock Ray image; Ray downloads this zip from the LoRA
bucket (the stack publishes it) so `app.serving:build_app` is importable.
The zip holds every file of the `app` package as this process imports it
(a checkout's or an installed wheel's), subpackages and data included, so
the cluster runs exactly that code. The same files always give the same
bytes and so the same key.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from functools import cache
from pathlib import Path

import app

APP_DIR = Path(app.__file__).resolve().parent
CODE_PREFIX = "code"
# Fixed so the bytes depend on the files' names and contents only.
_DATE = (1980, 1, 1, 0, 0, 0)
_MODE = 0o644 << 16
# Interpreter caches and dotfiles are never part of a package (a wheel carries neither).
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def package_files(package_dir: Path) -> list[str]:
    """The package's files as zip member names (`<package>/<relative path>`), sorted."""
    names = []
    for path in package_dir.rglob("*"):
        relative = path.relative_to(package_dir)
        if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix not in _SKIPPED_SUFFIXES:
            names.append(f"{package_dir.name}/{relative.as_posix()}")
    return sorted(names)


def zip_package(package_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in package_files(package_dir):
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.external_attr = _MODE
            data = (package_dir.parent / name).read_bytes()
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@cache
def app_zip() -> bytes:
    return zip_package(APP_DIR)


def app_zip_key() -> str:
    return f"{CODE_PREFIX}/app-{hashlib.sha256(app_zip()).hexdigest()[:16]}.zip"
