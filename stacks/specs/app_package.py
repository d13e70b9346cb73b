"""The serving application's code as a deterministic zip, for Ray's `py_modules`.

KubeRay pods run a stock Ray image; Ray downloads this zip from the LoRA
bucket (the stack publishes it) so `app.serving:build_app` is importable.
The same sources always give the same bytes and so the same key.
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


@cache
def app_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(APP_DIR.glob("*.py")):
            info = zipfile.ZipInfo(f"app/{path.name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def app_zip_key() -> str:
    return f"{CODE_PREFIX}/app-{hashlib.sha256(app_zip()).hexdigest()[:16]}.zip"
