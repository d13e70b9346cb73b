"""The app zip Ray downloads (py_modules) is exactly the `app` package: the checkout's tracked files,
the wheel's `app/`, and what an installed kit publishes are the same files, byte for byte."""

from __future__ import annotations

import hashlib
import io
import zipfile

from kit_source import REPO, git_files

from stacks.specs.app_package import app_zip, app_zip_key, package_files, zip_package

WRITE_APP_ZIP = "import sys; from stacks.specs.app_package import app_zip; open(sys.argv[1], 'wb').write(app_zip())"


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def test_the_installed_kit_publishes_the_wheels_app_and_the_checkouts(kit_dist, kit_run, tmp_path):
    # The kit's interpreter runs outside the checkout (test_installed_kit), so `app` is the wheel's.
    kit_run("python", "-c", WRITE_APP_ZIP, str(tmp_path / "app.zip"))
    installed = (tmp_path / "app.zip").read_bytes()
    with zipfile.ZipFile(kit_dist.wheel) as wheel:
        shipped = {n: wheel.read(n) for n in wheel.namelist() if n.startswith("app/")}
    tracked = {f: (REPO / f).read_bytes() for f in git_files("app")}
    assert members(installed) == shipped == tracked
    # The checkout's zip (what synth publishes in development) is the same bytes, so the same key.
    assert installed == app_zip()


def tree(root, files: dict[str, bytes]):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / "app"


def test_subpackages_and_data_go_in_bytecode_and_dotfiles_do_not(tmp_path):
    app_dir = tree(
        tmp_path,
        {
            "app/__init__.py": b"",
            "app/serving.py": b"x = 1\n",
            "app/prompts/system.txt": b"hi\n",
            "app/engines/__init__.py": b"",
            "app/engines/vllm.py": b"y = 2\n",
            "app/__pycache__/serving.cpython-311.pyc": b"\0",
            "app/engines/__pycache__/vllm.cpython-311.pyc": b"\0",
            "app/stale.pyc": b"\0",
            "app/.DS_Store": b"\0",
            "app/.cache/x.py": b"",
        },
    )
    expected = [
        "app/__init__.py",
        "app/engines/__init__.py",
        "app/engines/vllm.py",
        "app/prompts/system.txt",
        "app/serving.py",
    ]
    assert package_files(app_dir) == expected
    assert members(zip_package(app_dir)) == {n: (tmp_path / n).read_bytes() for n in expected}


def test_the_zip_depends_on_names_and_contents_only(tmp_path):
    app_dir = tree(tmp_path, {"app/__init__.py": b"", "app/serving.py": b"x = 1\n"})
    first = zip_package(app_dir)
    (app_dir / "serving.py").touch()
    (app_dir / "__init__.py").chmod(0o600)
    assert zip_package(app_dir) == first
    for info in zipfile.ZipFile(io.BytesIO(first)).infolist():
        assert (info.date_time, info.external_attr, info.compress_type) == (
            (1980, 1, 1, 0, 0, 0),
            0o644 << 16,
            zipfile.ZIP_DEFLATED,
        )
    (app_dir / "serving.py").write_bytes(b"x = 2\n")
    assert zip_package(app_dir) != first


def test_the_bytes_for_unchanged_content_keep_their_key(tmp_path):
    # Pinned from the zip format published so far (top-level modules only): same files, same object key.
    app_dir = tree(
        tmp_path, {"app/__init__.py": b'"""app"""\n', "app/serving.py": b"def build_app(args):\n    return args\n"}
    )
    assert (
        hashlib.sha256(zip_package(app_dir)).hexdigest()
        == "fedd42e3174b0900568d6ce20658558d6e9a817324ef383d01510601a9170954"
    )
    assert app_zip_key() == f"code/app-{hashlib.sha256(app_zip()).hexdigest()[:16]}.zip"
