"""`llmstacks init`: a new project's files, whole or not at all, never over anything."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from stacks import __version__
from stacks.cli import main
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.config.project import find_project, kit_pin


def tree(path: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(path.rglob("*")):
        key = str(p.relative_to(path))
        out[key] = f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


def test_init_writes_a_project_that_the_commands_find(tmp_path: Path, capsys):
    target = tmp_path / "new" / "acme"  # missing folders are created
    assert main(["init", str(target)]) == 0
    assert (target / "environments" / "dev.yaml").read_text() == (ENVIRONMENTS_DIR / "dev.yaml").read_text()
    assert kit_pin((target / "requirements.txt").read_text()) == __version__
    found = find_project(target / "environments")
    assert found.root == target.resolve() and found.environments == target.resolve() / "environments"
    out = capsys.readouterr().out
    assert f"wrote {target / 'cdktf.json'}" in out and "next: cd" in out
    assert not list(target.rglob(".init-*"))  # no temporary file left


@pytest.mark.parametrize(
    "existing", ["cdktf.json", "README.md", ".github/workflows/deploy.yml", "environments/dev.yaml"]
)
def test_init_refuses_any_existing_file_and_writes_nothing(tmp_path: Path, capsys, existing: str):
    (tmp_path / existing).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / existing).write_text("the team's own")
    before = tree(tmp_path)
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / existing}: already exists"), err
    assert tree(tmp_path) == before


def test_a_file_or_a_dangling_link_in_the_way_is_refused_too(tmp_path: Path, capsys):
    (tmp_path / "environments").write_text("a file where a folder goes")
    assert main(["init", str(tmp_path)]) == 2
    assert f"error: {tmp_path / 'environments'}: already exists" in capsys.readouterr().err
    (tmp_path / "environments").unlink()
    (tmp_path / ".gitignore").symlink_to(tmp_path / "nowhere")  # writing through it would create a file elsewhere
    before = tree(tmp_path)
    assert main(["init", str(tmp_path)]) == 2
    assert f"error: {tmp_path / '.gitignore'}: already exists" in capsys.readouterr().err
    assert tree(tmp_path) == before and not (tmp_path / "nowhere").exists()


def before_link(monkeypatch, nth: int, act) -> list:
    """os.link as init calls it, with `act(target)` run before the `nth` link; returns the targets."""
    real_link, calls = os.link, []

    def link(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == nth:
            act(Path(dst))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    return calls


def test_a_failure_part_way_removes_what_init_wrote(tmp_path: Path, capsys, monkeypatch):
    def disk_full(_: Path):
        raise OSError(errno.ENOSPC, "No space left on device")

    calls = before_link(monkeypatch, 4, disk_full)
    target = tmp_path / "acme"
    assert main(["init", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {target}: cannot write the project (No space left on device); nothing was written"]
    assert len(calls) == 4 and list(tmp_path.iterdir()) == []  # the folder init created is gone too


def test_init_into_a_file_or_an_unknown_example_is_one_line(tmp_path: Path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["init", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'file'}: not a directory"
    assert main(["init", str(tmp_path / "x"), "--example", "nope"]) == 2
    assert (
        capsys.readouterr().err.strip() == "error: --example: no example 'nope' (known: dev, patterns, prod, staging)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_file_that_appears_while_init_runs_is_named_and_nothing_is_left(tmp_path: Path, capsys, monkeypatch):
    # Someone else writes this very file between the check and the write.
    calls = before_link(monkeypatch, 3, lambda path: path.write_text("theirs"))
    target = tmp_path / "acme"
    assert main(["init", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {calls[2]}: appeared while init ran; nothing was written"]
    assert tree(tmp_path) == {
        str(Path(calls[2]).relative_to(tmp_path)): b"theirs",
        **{
            str(p.relative_to(tmp_path)): "dir"
            for p in Path(calls[2]).parents
            if p != tmp_path and tmp_path in p.parents
        },
    }
