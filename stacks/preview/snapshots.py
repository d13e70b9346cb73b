"""A pinned weights snapshot as a reviewer reads it in a preview: its size and when it was published,
from its manifest in the weights bucket (read-only; the plan role may read it, the offline preview cannot)."""

from __future__ import annotations

import json
from functools import cache

from app.spec import snapshot_prefix
from stacks.publishing.objects import head, read_object

MANIFEST = "manifest.json"
MANIFEST_LIMIT = 16 * 1024 * 1024


def describer(client_for):
    """(region, bucket, model id, snapshot) -> "12.40 GiB, published 2026-11-26", or why it cannot
    say; `client_for(region)` gives an S3 client; each manifest is read once."""
    clients = cache(client_for)

    @cache
    def describe(region: str, bucket: str, model_id: str, snapshot: str) -> str:
        key = snapshot_prefix(model_id, snapshot) + MANIFEST
        try:
            s3 = clients(region)
            found = head(s3, bucket, key)
            body = read_object(s3, bucket, key, MANIFEST_LIMIT) if found else None
        except Exception as exc:  # noqa: BLE001  (a preview line, not a failure: say what went wrong)
            return f"not read: {type(exc).__name__}"
        if found is None or body is None:
            return "not published in the weights bucket"
        try:
            size = sum(int(f["size"]) for f in json.loads(body)["files"])
        except (ValueError, KeyError, TypeError):
            return "its manifest is not one upload-model writes"
        return f"{size / 2**30:,.2f} GiB, published {found['LastModified']:%Y-%m-%d}"

    return describe
