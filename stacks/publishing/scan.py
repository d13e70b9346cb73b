"""The files of a model or adapter directory, as far as anything in it can be trusted.

Only regular files are published, each read through `open_regular`, which never
blocks (a FIFO opened for reading waits for a writer forever) and refuses a file
that is no longer the one scanned. Links may only point at regular files inside
the directory; hard links are refused (the other name may be outside it). Every
name must be printable UTF-8 and fit in an S3 key; pickles are refused by suffix
and by content (`sniff`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from infra.rules import quoted
from stacks.errors import ArtifactError
from stacks.publishing.sniff import PICKLE_SUFFIXES, content_problem

S3_KEY_LIMIT = 1024  # bytes of UTF-8
MAX_ENTRIES = 10_000  # files and folders; a model has tens
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


@dataclass(frozen=True)
class LocalFile:
    path: Path  # as the user names it: the directory / name (a link's own path)
    name: str  # relative to the published directory, with "/"
    size: int
    source: Path  # what is read: the file itself, or a link's target
    identity: tuple[int, int]  # (device, inode) of `source` when scanned
    sha256: str = ""  # of the whole file
    s3_checksum: str = ""  # the ChecksumSHA256 S3 reports once it holds the file (files.with_digests)


def shown(path: Path | str) -> str:
    """A path for a one-line message: as is when printable, else quoted."""
    text = str(path)
    return text if text.isprintable() and len(text) <= 1024 else quoted(text)


def open_regular(f: LocalFile) -> BinaryIO:
    """`f` opened for reading: never blocks, and only if it is still the regular file scanned."""
    try:
        fd = os.open(f.source, _OPEN_FLAGS)
    except OSError as exc:
        raise ArtifactError(f"{shown(f.path)}: cannot be read ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != f.identity or info.st_size != f.size:
        os.close(fd)
        raise ArtifactError(
            f"{shown(f.path)}: changed while being published (replaced, resized or no longer "
            "a regular file); rerun once it is final"
        )
    return os.fdopen(fd, "rb")


def local_files(directory: Path, key_prefix: str = "", reserved: tuple[str, ...] = ()) -> list[LocalFile]:
    """The files under `directory` (hidden ones skipped) that would be published as `key_prefix` + name,
    after the checks above."""
    if not directory.is_dir():
        raise ArtifactError(f"{shown(directory)}: not a directory")
    root = directory.resolve()
    files, pending, seen = [], [""], 0
    while pending:  # iterative: a deep tree cannot exhaust the stack
        folder = pending.pop()
        try:
            with os.scandir(root / folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    seen += 1
                    if seen > MAX_ENTRIES:
                        raise ArtifactError(
                            f"{shown(directory)}: more than {MAX_ENTRIES:,} files and folders; "
                            "publish the model's own files only"
                        )
                    name = f"{folder}/{entry.name}" if folder else entry.name
                    if problem := name_problem(name, key_prefix):
                        raise ArtifactError(f"{shown(directory)}: file name {quoted(name)} {problem}")
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(name)
                    else:
                        files.append(_regular_file(directory, root, name))
        except OSError as exc:
            raise ArtifactError(f"{shown(directory / folder)}: cannot be listed ({exc.strerror or exc})") from None
    if not files:
        raise ArtifactError(f"{shown(directory)}: empty directory")
    files.sort(key=lambda f: f.name)
    for f in files:
        if f.name in reserved:
            raise ArtifactError(f"{shown(f.path)}: {f.name!r} is reserved for what the publisher writes; remove it")
        if f.name.lower().endswith(PICKLE_SUFFIXES):
            raise ArtifactError(
                f"{shown(f.path)}: pickled weights are not published (they run code when loaded); "
                "convert them to safetensors"
            )
        if not f.name.endswith(".safetensors"):  # those are checked as safetensors instead
            with open_regular(f) as fh:
                if problem := content_problem(fh, f.size):
                    raise ArtifactError(f"{shown(f.path)}: {problem}")
    return files


def name_problem(name: str, key_prefix: str) -> str | None:
    """Why `name` cannot be published as `key_prefix` + name, or None."""
    try:
        size = len((key_prefix + name).encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogate escapes
        return "is not valid UTF-8; rename it"
    if not name.isprintable():
        return "is not printable (newlines, tabs and control characters are refused); rename it"
    if size > S3_KEY_LIMIT:
        return (
            f"makes an S3 key of {size:,} bytes ({key_prefix}...), over S3's limit of "
            f"{S3_KEY_LIMIT:,} bytes (UTF-8); shorten it"
        )
    return None


def _regular_file(directory: Path, root: Path, name: str) -> LocalFile:
    path, source = directory / name, root / name
    info = os.lstat(source)
    link = stat.S_ISLNK(info.st_mode)
    if link:
        source = _link_target(path, source, root, directory)
        info = os.stat(source)
    if not stat.S_ISREG(info.st_mode):
        kind = next((kind for test, kind in _KINDS if test(info.st_mode)), "an unknown kind of file")
        raise ArtifactError(f"{shown(path)}: {'a link to ' if link else ''}{kind}; only regular files are published")
    if info.st_nlink > 1:
        raise ArtifactError(
            f"{shown(path)}: a hard link ({info.st_nlink} names; the others may be outside "
            f"{shown(directory)}); copy the file in instead"
        )
    return LocalFile(path, name, info.st_size, source, (info.st_dev, info.st_ino))


def _link_target(path: Path, link: Path, root: Path, directory: Path) -> Path:
    """Where a link inside the directory leads, if that is inside the directory too."""
    try:
        target = link.resolve(strict=True)
    except FileNotFoundError:
        raise ArtifactError(
            f"{shown(path)}: a dangling link (its target does not exist); remove it or copy the file in"
        ) from None
    except (RuntimeError, OSError) as exc:  # a loop: RuntimeError up to Python 3.12, OSError (ELOOP) after
        raise ArtifactError(
            f"{shown(path)}: a link that cannot be resolved ({getattr(exc, 'strerror', None) or 'a loop'}); "
            "remove it or copy the file in"
        ) from None
    if not target.is_relative_to(root):
        raise ArtifactError(
            f"{shown(path)}: links outside {shown(directory)} (to {shown(target)}); copy the file in instead"
        )
    return target
