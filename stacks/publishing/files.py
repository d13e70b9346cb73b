"""What model and adapter publishing read from local files: digests, JSON configs, safetensors headers.

Each file gets two digests in one read: its whole-file SHA-256 (what `--deep`
compares the bytes with) and the checksum S3 itself computes and stores for the
object we upload (`ChecksumSHA256`). S3 keeps the latter out of anyone's reach:
an object replaced with the old metadata copied over still gets a new checksum.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys

from infra.rules import quoted
from stacks.errors import ArtifactError
from stacks.inputs import loads_json
from stacks.publishing.scan import LocalFile, open_regular, shown

CHUNK = 8 * 1024 * 1024
CONFIG_LIMIT = 1024 * 1024  # config.json, adapter_config.json
# The safetensors format caps its JSON header at 100 MB.
SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024


def with_digests(files: list[LocalFile], transfer_config) -> list[LocalFile]:
    """`files` with their SHA-256 and the S3 checksum they get when uploaded with `transfer_config`."""
    return [_digested(f, part_size(f.size, transfer_config)) for f in files]


def part_size(size: int, transfer_config) -> int:
    """The part size an upload of `size` bytes uses with `transfer_config` (0: one PutObject)."""
    from s3transfer.utils import ChunksizeAdjuster

    if size < transfer_config.multipart_threshold:
        return 0
    return ChunksizeAdjuster().adjust_chunksize(transfer_config.multipart_chunksize, size)


def _digested(f: LocalFile, part_size: int) -> LocalFile:
    # S3's SHA-256 of a multipart object is the SHA-256 of its parts' SHA-256s, "-<parts>".
    whole, part, parts, in_part, read = hashlib.sha256(), hashlib.sha256(), [], 0, 0
    with open_regular(f) as fh:
        while chunk := fh.read(CHUNK):
            whole.update(chunk)
            read += len(chunk)
            view = memoryview(chunk)
            while part_size and view:
                take = min(len(view), part_size - in_part)
                part.update(view[:take])
                in_part, view = in_part + take, view[take:]
                if in_part == part_size:
                    parts.append(part.digest())
                    part, in_part = hashlib.sha256(), 0
    if read != f.size:
        raise ArtifactError(f"{shown(f.path)}: changed while being read; rerun once it is final")
    if in_part:
        parts.append(part.digest())
    if part_size:
        checksum = f"{_b64(hashlib.sha256(b''.join(parts)).digest())}-{len(parts)}"
    else:
        checksum = _b64(whole.digest())
    return LocalFile(f.path, f.name, f.size, f.source, f.identity, whole.hexdigest(), checksum)


def checksum_matches(stored: str | None, expected: str) -> bool:
    """Whether S3's ChecksumSHA256 of an object is the one `expected` for a file.

    A multipart object's is "<base64>-<parts>"; moto leaves out "-<parts>", so the part
    count is compared only when S3 gives it (base64 has no "-").
    """
    if not stored or not expected:
        return False
    value, _, parts = stored.partition("-")
    expected_value, _, expected_parts = expected.partition("-")
    return value == expected_value and (not parts or parts == expected_parts)


def read_small(f: LocalFile, limit: int) -> bytes:
    with open_regular(f) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ArtifactError(
            f"{shown(f.path)}: over {limit:,} bytes; {f.name.rsplit('/', 1)[-1]} may be at most "
            f"{limit // 1024 // 1024:,} MiB"
        )
    return data


def parse_json(data: bytes) -> object:
    """Untrusted JSON: ValueError for anything but a document of bounded depth."""
    text = data.decode("utf-8")
    try:
        json.loads(text)  # first: linear, and the depth scan of `loads_json` is slow on unterminated strings
    except RecursionError:
        raise ValueError("nested too deep") from None
    return loads_json(text)


def read_json_object(f: LocalFile, limit: int = CONFIG_LIMIT) -> dict:
    try:
        data = parse_json(read_small(f, limit))
    except (ValueError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split(";")[0].split())[:200]  # one line, without Python's advice
        raise ArtifactError(f"{shown(f.path)}: not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{shown(f.path)}: not a JSON object")
    return data


def safetensors_header(f: LocalFile) -> dict[str, dict]:
    """The tensors of a safetensors file (name -> dtype, shape, data_offsets), after checking the
    file is complete: a truncated or foreign file is refused here, not by every replica."""
    with open_regular(f) as fh:
        prefix = fh.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        if not 2 <= length <= min(SAFETENSORS_HEADER_LIMIT, f.size - 8):
            raise ArtifactError(f"{shown(f.path)}: not a safetensors file (no valid header)")
        try:
            header = parse_json(fh.read(length))
        except (ValueError, UnicodeDecodeError):
            raise ArtifactError(
                f"{shown(f.path)}: not a safetensors file (header is not JSON of bounded depth)"
            ) from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{shown(f.path)}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    data_bytes, end = f.size - 8 - length, 0
    for name, tensor in header.items():
        if not _tensor_entry(tensor):
            raise ArtifactError(f"{shown(f.path)}: tensor {quoted(name, 160)} has no valid shape and data_offsets")
        end = max(end, tensor["data_offsets"][1])
    if end != data_bytes:
        raise ArtifactError(
            f"{shown(f.path)}: truncated or padded: the header describes {end} data bytes, the file holds {data_bytes}"
        )
    return header


def _tensor_entry(tensor: object) -> bool:
    """`{"shape": [counts], "data_offsets": [start, stop]}`, counts and offsets non-negative ints."""
    if not isinstance(tensor, dict):
        return False
    shape, offsets = tensor.get("shape"), tensor.get("data_offsets")
    return (
        isinstance(shape, list)
        and all(_count(d) for d in shape)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(_count(o) for o in offsets)
        and offsets[0] <= offsets[1]
    )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class Progress:
    """Bytes transferred, on one stderr line (only on a terminal)."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = stream.isatty()

    def __call__(self, amount: int) -> None:
        self.done += amount
        if self.enabled and self.total:
            self.stream.write(
                f"\r{self.done / 2**20:,.0f} / {self.total / 2**20:,.0f} MiB ({100 * self.done / self.total:.0f}%)"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
