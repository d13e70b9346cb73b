"""Pickles under any name: loading one runs code, so no published file may be one.

Suffixes catch the usual names; content catches the rest: a pickle of protocol 2
or later starts with the PROTO opcode, and PyTorch's checkpoints are ZIP archives
holding a `data.pkl`. The ZIP's central directory is read entry by entry, so an
archive with millions of entries costs time in proportion, never memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
ZIP_LOCAL_HEADER = b"PK\x03\x04"
_EOCD, _EOCD64_LOCATOR, _EOCD64, _CENTRAL = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06", b"PK\x01\x02"
_EOCD_SEARCH = 22 + 0xFFFF  # the end record and the longest comment it may carry


def content_problem(f: BinaryIO, size: int) -> str | None:
    """Why the open file `f` (of `size` bytes) must not be published, from its content, or None."""
    head = f.read(4)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]}), whatever its name; pickles run code when loaded"
    if head == ZIP_LOCAL_HEADER:
        try:
            pickled = next((n for n in zip_member_names(f, size) if n.lower().endswith(b".pkl")), None)
        except ValueError as exc:
            return f"a ZIP archive that cannot be inspected ({exc}); a PyTorch checkpoint could hide in it"
        if pickled is not None:
            member = pickled.decode("utf-8", "replace")[:80]
            return f"a ZIP archive holding a pickle ({member!r}: a PyTorch checkpoint); convert it to safetensors"
    return None


def zip_member_names(f: BinaryIO, size: int) -> Iterator[bytes]:
    """The member names of a ZIP archive, from its central directory (ValueError if there is none)."""
    tail_size = min(size, _EOCD_SEARCH)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise ValueError("no end of central directory")
    entries, directory_size, directory_offset = struct.unpack("<xxxxxxxxxxHII", tail[at : at + 20])
    if entries == 0xFFFF or 0xFFFFFFFF in (directory_size, directory_offset):  # ZIP64
        locator = tail[at - 20 : at] if at >= 20 else b""
        if not locator.startswith(_EOCD64_LOCATOR):
            raise ValueError("no ZIP64 end of central directory")
        (record_offset,) = struct.unpack("<Q", locator[8:16])
        if record_offset > size - 56:
            raise ValueError("ZIP64 end record out of range")
        f.seek(record_offset)
        record = f.read(56)
        if not record.startswith(_EOCD64):
            raise ValueError("no ZIP64 end of central directory")
        entries, directory_size, directory_offset = struct.unpack("<QQQ", record[32:56])
    if directory_offset + directory_size > size:
        raise ValueError("central directory out of range")
    f.seek(directory_offset)
    for _ in range(entries):
        header = f.read(46)
        if len(header) < 46 or not header.startswith(_CENTRAL):
            raise ValueError("damaged central directory")
        name_length, extra_length, comment_length = struct.unpack("<HHH", header[28:34])
        name = f.read(name_length)
        if len(name) < name_length:
            raise ValueError("damaged central directory")
        f.seek(extra_length + comment_length, 1)
        yield name
