"""Uploads killed at random moments, and a replica starting during an upload: the snapshot an
environment pins never changes, and Ray's own S3 download of it (what a replica with `load:
download` runs at start) gets exactly its files. The new snapshot is complete or unpublished.

The real `llmstacks upload-model`, in a subprocess, SIGKILLed; a moto S3 server on 127.0.0.1.
A moment is a point in the upload's own progress (once so many objects of the new snapshot are
there, and a random part of the time the last one took), never a time since the start: a loaded
machine moves every moment along with the upload. `KILL_SEED` picks other moments.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import waits
from artifact_fixtures import (
    environment_dir,
    model_dir,
    ray_download,
    tree,
    write_safetensors,
)
from local_s3 import fresh_bucket

from app.spec import snapshot_prefix, weights_uri
from stacks.cli import main
from stacks.publishing.manifests import manifest_for, snapshot_id
from stacks.publishing.models import scan_model_dir, upload_model
from stacks.publishing.objects import list_keys
from stacks.publishing.snapshots import verify_snapshot

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
REGION, MODEL = "us-west-2", "qwen2.5-7b-instruct"
BUCKET = "kill-dev-weights-111111111111"
MiB = 2**20
KILLS, MAX_ROUNDS = 6, 14  # kills to see, rounds at most (a round whose upload finishes first kills nothing)


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    return fresh_bucket(monkeypatch, s3_endpoint, BUCKET, REGION)


@pytest.fixture
def pinned(s3, tmp_path):
    """A small published snapshot that dev pins (and `llmstacks pin` pinned): (envs dir, id, the
    files Ray's download of it must give: the model's, `hash` and `manifest.json`)."""
    directory = model_dir(tmp_path / "pinned", shards=2, shard_bytes=MiB)
    snapshot = upload_model(s3, BUCKET, MODEL, directory).snapshot
    envs = environment_dir(tmp_path, prefix="kill", only=[MODEL], snapshots={MODEL: snapshot})
    assert main(["pin", "--env-dir", str(envs), "--env", "dev"]) == 0
    prefix = snapshot_prefix(MODEL, snapshot)
    files = tree(directory) | {
        name: s3.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read() for name in ("hash", "manifest.json")
    }
    return envs, snapshot, files


def versions(s3, prefix: str) -> dict[tuple[str, str], str]:
    """(key, version id) -> ETag ("marker" for a delete marker) of everything under `prefix`."""
    out = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        out |= {(v["Key"], v["VersionId"]): v["ETag"] for v in page.get("Versions", [])}
        out |= {(m["Key"], m["VersionId"]): "marker" for m in page.get("DeleteMarkers", [])}
    return out


def current(s3) -> dict[str, tuple]:
    """Key -> (ETag, LastModified) of every object (moto copies each version's bytes to list
    versions: too slow for the big ones)."""
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in list_keys(s3, BUCKET, "")}


def upload(envs: Path, directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [LLMSTACKS, "upload-model", "--env-dir", str(envs), "--env", "dev", "--model", MODEL, "--from", str(directory)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def snapshot_of(directory: Path) -> str:
    """The snapshot id upload-model gives this content (no S3 needed)."""
    return snapshot_id(manifest_for(MODEL, scan_model_dir(directory)))


def new_content(directory: Path, rng: random.Random) -> None:
    """Other weights: every shard rewritten (three of 40 MiB, sent whole, and one of 72 MiB, sent as
    a multipart upload)."""
    for i, size in enumerate((40, 40, 40, 72)):
        write_safetensors(
            directory / f"model-{i:05d}-of-00004.safetensors", {f"model.layers.{i}.weight": ("U8", [size * MiB])}
        )
    (directory / "config.json").write_text(f'{{"model_type": "qwen2", "hidden_size": 64, "revision": {rng.random()}}}')


def assert_pinned_intact(s3, pinned, before: dict, destination: Path) -> None:
    envs, snapshot, files = pinned
    prefix = snapshot_prefix(MODEL, snapshot)
    assert versions(s3, prefix) == before  # byte-identical: the same versions, nothing added or deleted
    assert all(s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"] == [] for key, _ in before)  # still pinned
    assert tree(ray_download(weights_uri(BUCKET, MODEL, snapshot), destination)) == files


def kill_in_progress(process: subprocess.Popen, s3, prefix: str, target: int, rng: random.Random) -> str:
    """SIGKILL `process` once `target` objects are under `prefix`, a random part of the time the last
    of them took after it (the next object is then partly sent); its moment, as "objects + seconds"."""
    started = last = time.monotonic()
    seen, gap = len(list_keys(s3, BUCKET, prefix)), 0.0
    while process.poll() is None and seen < target:
        if time.monotonic() - started > waits.COMMAND:  # a hang, not a slow machine
            process.kill()
            pytest.fail(f"upload-model wrote {seen} of {target} objects under {prefix} in {waits.COMMAND} s")
        time.sleep(0.01)
        if (count := len(list_keys(s3, BUCKET, prefix))) > seen:
            seen, gap, last = count, time.monotonic() - last, time.monotonic()
    after = rng.uniform(0, gap) if process.poll() is None else 0.0
    time.sleep(after)
    process.send_signal(signal.SIGKILL)
    return f"{target} + {after:.2f} s"


def test_killed_uploads_leave_the_pinned_snapshot_alone_and_the_new_one_complete_or_unpublished(
    s3, pinned, tmp_path, capsys
):
    envs, snapshot, _ = pinned
    rng = random.Random(int(os.environ.get("KILL_SEED", "18")))
    prefix = snapshot_prefix(MODEL, snapshot)
    pinned_versions = versions(s3, prefix)
    directory = model_dir(tmp_path / "new", shards=0)
    new_content(directory, rng)
    # A whole upload of such content first: how many objects a snapshot of it has (the kills are
    # spread over writing them), and its figures for the summary below.
    first_prefix, started, first = snapshot_prefix(MODEL, snapshot_of(directory)), time.monotonic(), None
    done = upload(envs, directory)
    while done.poll() is None and time.monotonic() - started < waits.COMMAND:
        if first is None and list_keys(s3, BUCKET, first_prefix):
            first = time.monotonic() - started
        time.sleep(0.01)
    assert done.wait(waits.COMMAND) == 0, done.stderr.read()
    whole, objects_of_a_snapshot = time.monotonic() - started, len(list_keys(s3, BUCKET, first_prefix))
    rounds = []
    n = 0
    while sum(r[1] == "killed" for r in rounds) < KILLS and n < MAX_ROUNDS:
        n += 1
        if n == 1 or rounds[-1][3] or rng.random() < 0.5:  # else: resume the unfinished upload of the same content
            new_content(directory, rng)
            new = snapshot_of(directory)
        new_prefix = snapshot_prefix(MODEL, new)
        before = current(s3)
        # Once one more object than a resumed upload starts with is written, up to the manifest.
        target = rng.randint(len(list_keys(s3, BUCKET, new_prefix)) + 1, objects_of_a_snapshot)
        process = upload(envs, directory)
        moment = kill_in_progress(process, s3, new_prefix, target, rng)
        code = process.wait(waits.COMMAND)
        after = current(s3)
        # Nothing outside the new snapshot's prefix was written or deleted.
        assert {k: v for k, v in after.items() if not k.startswith(new_prefix)} == {
            k: v for k, v in before.items() if not k.startswith(new_prefix)
        }
        objects = list_keys(s3, BUCKET, new_prefix)
        published = any(o["Key"] == new_prefix + "manifest.json" for o in objects)
        if published:
            assert verify_snapshot(s3, BUCKET, MODEL, new) == []
        assert_pinned_intact(s3, pinned, pinned_versions, tmp_path / f"replica-{n}")
        rounds.append((moment, "killed" if code == -signal.SIGKILL else f"exit {code}", len(objects), published))
    killed = [r for r in rounds if r[1] == "killed"]
    with capsys.disabled():
        print(
            f"\nwhole upload {whole:.1f} s, writing from {first or 0:.1f} s, {objects_of_a_snapshot} objects; rounds "
            f"(kill after objects + s, outcome, objects of the new snapshot, published): {rounds}"
        )
    assert len(killed) >= KILLS, rounds  # the test proves nothing unless uploads were really cut short
    assert any(not r[3] and r[2] for r in killed), rounds  # at least one left a half-written, unpublished snapshot
    result = upload(envs, directory)
    assert result.wait(waits.COMMAND) == 0, result.stderr.read()
    assert verify_snapshot(s3, BUCKET, MODEL, snapshot_of(directory), deep=True) == []
    assert_pinned_intact(s3, pinned, pinned_versions, tmp_path / "replica-last")


def test_a_replica_starting_during_an_upload_loads_exactly_the_pinned_snapshot(s3, pinned, tmp_path):
    envs, snapshot, _ = pinned
    prefix = snapshot_prefix(MODEL, snapshot)
    pinned_versions = versions(s3, prefix)
    directory = model_dir(tmp_path / "new", shards=0)
    new_content(directory, random.Random(7))
    new_prefix = snapshot_prefix(MODEL, snapshot_of(directory))
    process = upload(envs, directory)
    deadline = time.monotonic() + waits.COMMAND
    while process.poll() is None and not list_keys(s3, BUCKET, new_prefix):
        if time.monotonic() > deadline:  # a hang: the replica would start while nothing is written
            process.kill()
            pytest.fail(f"upload-model wrote nothing under {new_prefix} in {waits.COMMAND} s")
        time.sleep(0.02)
    assert process.poll() is None, "the upload finished before the replica started: nothing was tested"
    assert_pinned_intact(s3, pinned, pinned_versions, tmp_path / "replica")
    assert process.wait(waits.COMMAND) == 0, process.stderr.read()
    assert_pinned_intact(s3, pinned, pinned_versions, tmp_path / "replica-after")
