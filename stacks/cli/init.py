"""`llmstacks init [DIR]`: a new project repository that uses the installed kit.

It writes only new files: if any of them exists, it says which in one line and writes
nothing. Files appear whole (written aside, then linked into place), and a failure part-way
removes what this run wrote.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from stacks.cli.status_codes import SUCCESS
from stacks.config.loader import shipped_examples
from stacks.errors import ConfigError, UserError

DEFAULT_EXAMPLE = "dev"


def register(commands) -> None:
    init = commands.add_parser(
        "init", help="start a project repository of your own (environments, cdktf.json, workflows, policies)"
    )
    init.add_argument(
        "directory", nargs="?", default=".", metavar="DIR", help="where (default: here); created if missing"
    )
    init.add_argument(
        "--example",
        default=DEFAULT_EXAMPLE,
        metavar="NAME",
        help=f"the shipped environment file to start from (default: {DEFAULT_EXAMPLE}; "
        f"known: {', '.join(sorted(shipped_examples()))})",
    )
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from policies.gate import CHECKOV_VERSION
    from stacks import __version__
    from stacks.scaffold import project_files

    examples = shipped_examples()
    if args.example not in examples:
        raise ConfigError("--example", "", f"no example {args.example[:60]!r} (known: {', '.join(sorted(examples))})")
    target = Path(args.directory)
    if target.exists() and not target.is_dir():
        raise ConfigError(target, "", "not a directory")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", target.resolve().name).strip("-.") or "llm-serving"
    files = project_files(
        project_name=name,
        kit_version=__version__,
        checkov_version=CHECKOV_VERSION,
        environments={args.example: examples[args.example].read_text()},
    )
    for relative in sorted(files):
        _refuse_existing(target, Path(relative))
    write_new(target, files)
    print("\n".join(f"wrote {target / relative}" for relative in sorted(files)))
    print(
        f"next: cd {target} && python3 -m venv .venv && .venv/bin/pip install -r requirements.txt "
        "&& .venv/bin/llmstacks synth (README.md has the rest)"
    )
    return SUCCESS


def _refuse_existing(root: Path, relative: Path) -> None:
    """One line for the first file (or a folder in its way) that is already there."""
    for depth in range(1, len(relative.parts) + 1):
        path = root.joinpath(*relative.parts[:depth])
        last = depth == len(relative.parts)
        if os.path.lexists(path) and (last or not path.is_dir() or path.is_symlink()):
            raise ConfigError(
                path,
                "",
                "already exists; init writes only new files, so nothing was written "
                "(start in an empty directory, or move this aside)",
            )


def write_new(root: Path, files: dict[str, str]) -> None:
    """Every file, each whole and only where nothing is (a hard link fails if the name exists);
    on any failure, what this call wrote is removed again."""
    created_dirs: list[Path] = []
    written: list[Path] = []
    try:
        for relative, text in files.items():
            path = root / relative
            parts = Path(relative).parts
            # The target and its missing ancestors, then each folder on the way to the file.
            folders = [
                *reversed([p for p in [root, *root.parents] if not p.exists()]),
                *(root.joinpath(*parts[:i]) for i in range(1, len(parts))),
            ]
            for folder in folders:
                if not folder.exists():
                    folder.mkdir()
                    created_dirs.append(folder)
            fd, tmp = tempfile.mkstemp(prefix=".init-", dir=path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
            written.append(path)
    except FileExistsError as exc:
        _undo(written, created_dirs)
        # os.link names its target second: that is the file that appeared.
        raise ConfigError(
            exc.filename2 or exc.filename or root, "", "appeared while init ran; nothing was written"
        ) from None
    except OSError as exc:
        _undo(written, created_dirs)
        raise UserError(f"{root}: cannot write the project ({exc.strerror or exc}); nothing was written") from None


def _undo(written: list[Path], created_dirs: list[Path]) -> None:
    for path in written:
        path.unlink(missing_ok=True)
    for directory in reversed(created_dirs):
        try:
            directory.rmdir()
        except OSError:
            pass
