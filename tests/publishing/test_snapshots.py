"""Snapshots of model weights against a moto S3 server on 127.0.0.1: `verify-model` both ways,
`list-models`, `delete-snapshot`, `pin`, no-op re-uploads, repairs and the old layout.

The environment is a copy of dev with a prefix of its own (its weights bucket is this module's),
in a directory of its own: what it pins is what the commands see as pinned.
"""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
from artifact_fixtures import environment_dir, model_dir, write_safetensors
from local_s3 import fresh_bucket

from app.spec import UNPINNED_TAG
from stacks.cli import main
from stacks.publishing.models import ALREADY, CONCURRENT, PUBLISHED, upload_model
from stacks.publishing.snapshots import delete_snapshot, verify_snapshot

REGION, MODEL, LLAMA = "us-west-2", "qwen2.5-7b-instruct", "llama-3.2-1b-instruct"
BUCKET = "snap-dev-weights-111111111111"
FOLDER = f"models/{MODEL}/"
TAG = [{"Key": UNPINNED_TAG[0], "Value": UNPINNED_TAG[1]}]
WRITES = {
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
    "PutObjectTagging",
    "DeleteObjectTagging",
}


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    return fresh_bucket(monkeypatch, s3_endpoint, BUCKET, REGION)


@pytest.fixture
def envs(tmp_path):
    """dev, serving only the qwen model, pinning nothing yet (`pin(tmp_path, snapshot)` pins one)."""
    return pin(tmp_path, None)


def pin(root, snapshot: str | None):
    return environment_dir(root, prefix="snap", only=[MODEL], snapshots={MODEL: snapshot})


def run(envs, *args: str) -> int:
    return main([args[0], "--env-dir", str(envs), "--env", "dev", *args[1:]])


def publish(s3, directory, **kwargs) -> str:
    return upload_model(s3, BUCKET, MODEL, directory, **kwargs).snapshot


def keys(s3, prefix: str = "models/") -> set[str]:
    return {
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for o in page.get("Contents", [])
    }


def versions(s3) -> set[tuple]:
    page = s3.list_object_versions(Bucket=BUCKET)
    return {(v["Key"], v["VersionId"], v["IsLatest"]) for v in page.get("Versions", [])} | {
        (m["Key"], m["VersionId"], "marker") for m in page.get("DeleteMarkers", [])
    }


def tags(s3, key: str) -> list[dict]:
    return s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), captured
    return err[0].removeprefix("error: ")


# --- verify-model: both directions -----------------------------------------------------------------


def _fewer(s3, p):
    s3.delete_object(Bucket=BUCKET, Key=p + "model-00001-of-00002.safetensors")
    return p + "model-00001-of-00002.safetensors", "missing"


def _more(s3, p):
    body = s3.get_object(Bucket=BUCKET, Key=p + "model-00001-of-00002.safetensors")["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=p + "model-00002-of-00002.safetensors", Body=body)
    return p + "model-00002-of-00002.safetensors", "not in the manifest"


def _renamed(s3, p):
    s3.copy_object(
        Bucket=BUCKET,
        Key=p + "model-00001-of-00003.safetensors",
        CopySource={"Bucket": BUCKET, "Key": p + "model-00001-of-00002.safetensors"},
    )
    s3.delete_object(Bucket=BUCKET, Key=p + "model-00001-of-00002.safetensors")
    return p + "model-00001-of-00003.safetensors", "not in the manifest"


def _planted(s3, p):
    s3.put_object(Bucket=BUCKET, Key=p + "original/consolidated.safetensors", Body=b"\0" * 64)
    return p + "original/consolidated.safetensors", "not in the manifest"


def _hash(s3, p):
    s3.put_object(Bucket=BUCKET, Key=p + "hash", Body=b"0" * 40)
    return p + "hash", "does not name snapshot"


CHANGES = {
    "fewer-shards": _fewer,
    "more-shards": _more,
    "renamed-shard": _renamed,
    "planted-file": _planted,
    "hash": _hash,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_verify_catches_every_change_to_a_snapshot(s3, envs, tmp_path, capsys, change):
    snapshot = publish(s3, model_dir(tmp_path))
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", snapshot) == 0
    key, what = CHANGES[change](s3, f"{FOLDER}{snapshot}/")
    capsys.readouterr()
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", snapshot) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith(f"{key}: {what}") for line in lines), lines
    assert lines[-1].startswith(f"{MODEL} snapshot {snapshot}: ") and "differs from its manifest" in lines[-1]
    if change == "renamed-shard":  # the original name is missing too
        assert f"{FOLDER}{snapshot}/model-00001-of-00002.safetensors: missing" in lines


def test_verify_catches_a_manifest_of_another_snapshot(s3, envs, tmp_path, capsys):
    one, two = publish(s3, model_dir(tmp_path / "a")), publish(s3, model_dir(tmp_path / "b"))
    s3.copy_object(
        Bucket=BUCKET,
        Key=f"{FOLDER}{one}/manifest.json",
        CopySource={"Bucket": BUCKET, "Key": f"{FOLDER}{two}/manifest.json"},
    )
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", one) == 1
    assert f"{FOLDER}{one}/manifest.json: describes snapshot {two}, not {one}" in capsys.readouterr().out


def test_verify_needs_the_snapshot_and_says_which_there_are(s3, envs, tmp_path, capsys):
    snapshot = publish(s3, model_dir(tmp_path))
    envs = pin(tmp_path, snapshot)
    assert run(envs, "verify-model", "--model", MODEL) == 2
    assert one_error(capsys).endswith(
        f"--snapshot: required: {FOLDER} holds snapshots ({snapshot}); dev pins {snapshot}"
    )
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", "not-an-id") == 2
    assert "'not-an-id' is not a snapshot id (16 hex digits, as upload-model prints)" in one_error(capsys)


def test_an_incomplete_snapshot_is_not_published(s3, envs, tmp_path, capsys):
    snapshot = publish(s3, model_dir(tmp_path))
    s3.delete_object(Bucket=BUCKET, Key=f"{FOLDER}{snapshot}/manifest.json")
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", snapshot) == 2
    assert one_error(capsys) == (
        f"snapshot {snapshot} of {MODEL} is not published in s3://{BUCKET}/{FOLDER}{snapshot}/ "
        "(no manifest: an upload of it was interrupted; rerun upload-model with that content, "
        "or delete-snapshot)"
    )


# --- upload-model: no-op, repair, concurrency, pin line ---------------------------------------------


def counted(client) -> list[str]:
    """The names of the S3 operations `client` calls from now on."""
    calls: list[str] = []
    client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    return calls


def test_reuploading_identical_content_writes_nothing(s3, tmp_path, capsys, envs):
    directory = model_dir(tmp_path, shards=2, shard_bytes=32 * 2**20)
    first = upload_model(s3, BUCKET, MODEL, directory)
    assert first.outcome == PUBLISHED
    before = versions(s3)
    client = boto3.client("s3", region_name=REGION)
    calls = counted(client)
    started = time.perf_counter()
    again = upload_model(client, BUCKET, MODEL, directory)
    seconds = time.perf_counter() - started
    assert (again.outcome, again.snapshot, again.uploaded, again.copied) == (ALREADY, first.snapshot, [], [])
    assert not WRITES & set(calls), calls
    assert set(calls) <= {"ListObjectsV2", "GetObject", "HeadObject"}
    assert versions(s3) == before
    with capsys.disabled():
        print(
            f"\nno-op re-upload of 64 MiB in 2 shards: {seconds:.2f} s, {len(calls)} requests ({', '.join(sorted(set(calls)))})"
        )
    assert run(envs, "upload-model", "--model", MODEL, "--from", str(directory)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"{MODEL} snapshot {first.snapshot} is already published at s3://{BUCKET}/{FOLDER}{first.snapshot}/ "
        "(5 files, 64.0 MiB); nothing uploaded"
    )
    assert out[1] == f"pin it: models[0].weights.snapshot: {first.snapshot}"


def test_a_model_the_environment_does_not_have_gets_the_field_alone(s3, envs, tmp_path, capsys):
    assert (
        main(
            [
                "upload-model",
                "--env-dir",
                str(envs),
                "--env",
                "dev",
                "--model",
                LLAMA,
                "--from",
                str(model_dir(tmp_path)),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("pin it: weights.snapshot: ") and f"models/{LLAMA}/" in out[0]


def test_repairing_a_pinned_snapshot_writes_no_unpinned_tag(s3, envs, tmp_path, capsys):
    directory = model_dir(tmp_path)
    snapshot = publish(s3, directory)
    envs = pin(tmp_path, snapshot)
    assert run(envs, "pin") == 0
    shard = f"{FOLDER}{snapshot}/model-00000-of-00002.safetensors"
    s3.delete_object(Bucket=BUCKET, Key=shard)
    capsys.readouterr()
    assert run(envs, "upload-model", "--model", MODEL, "--from", str(directory)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"repaired {MODEL} snapshot {snapshot} ") and out[2] == "pinned by dev"
    # Put back without the tag: the lifecycle rule cannot expire it before the next pin.
    assert tags(s3, shard) == []
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", snapshot) == 0


def test_identical_uploads_at_once_both_succeed_with_one_snapshot(s3, tmp_path):
    directory = model_dir(tmp_path, shards=3, shard_bytes=4 * 2**20)
    reports, errors = [], []

    def one():
        try:
            reports.append(upload_model(boto3.client("s3", region_name=REGION), BUCKET, MODEL, directory))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(reports) == 3
    assert len({r.snapshot for r in reports}) == 1
    assert {r.outcome for r in reports} <= {PUBLISHED, CONCURRENT, ALREADY} and PUBLISHED in {
        r.outcome for r in reports
    }
    assert (
        main(
            [
                "verify-model",
                "--env",
                "dev",
                "--env-dir",
                str(pin(tmp_path, None)),
                "--model",
                MODEL,
                "--snapshot",
                reports[0].snapshot,
            ]
        )
        == 0
    )


# --- The old layout ---------------------------------------------------------------------------------


def old_layout(s3, tmp_path) -> set[str]:
    """What upload-model wrote before snapshots: the files directly under models/<id>/."""
    directory = model_dir(tmp_path / "old")
    for path in directory.iterdir():
        s3.put_object(Bucket=BUCKET, Key=FOLDER + path.name, Body=path.read_bytes())
    s3.put_object(Bucket=BUCKET, Key=FOLDER + "hash", Body=b"a" * 40)
    s3.put_object(Bucket=BUCKET, Key=FOLDER + "manifest.json", Body=b'{"files": []}')
    return keys(s3)


def test_the_old_layout_is_named_and_left_alone_until_deleted(s3, envs, tmp_path, capsys):
    old = old_layout(s3, tmp_path)
    assert run(envs, "verify-model", "--model", MODEL) == 2
    assert one_error(capsys) == (
        f"{FOLDER} is in the old layout (no snapshots): re-publish with upload-model and pin the snapshot it prints"
    )
    assert run(envs, "upload-model", "--model", MODEL, "--from", str(model_dir(tmp_path))) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if "old layout" in line] == [
        f"{FOLDER} still holds an upload in the old layout (7 objects); `llmstacks delete-snapshot --legacy` removes it "
        "once no environment serves it"
    ]
    snapshot = out[1].rsplit(" ", 1)[1]
    assert old <= keys(s3)
    # dev's model without a snapshot serves the old layout: not deleted.
    assert run(envs, "delete-snapshot", "--model", MODEL, "--legacy") == 2
    assert one_error(capsys).startswith(f"the old layout of {MODEL} is still served by dev (")
    assert old <= keys(s3)
    envs = pin(tmp_path, snapshot)
    assert run(envs, "delete-snapshot", "--model", MODEL, "--legacy") == 0
    assert capsys.readouterr().out.startswith(f"deleted the old layout of {MODEL} (7 objects, ")
    assert keys(s3) == {k for k in keys(s3) if k.startswith(f"{FOLDER}{snapshot}/")} and keys(s3)
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", snapshot) == 0


# --- delete-snapshot ----------------------------------------------------------------------------------


def test_deleting_a_pinned_snapshot_is_refused_and_deletes_nothing(s3, tmp_path, capsys):
    snapshot = publish(s3, model_dir(tmp_path))
    pinned_dir = pin(tmp_path / "repo", snapshot)
    # Run against another file (--config) that pins nothing: the directory's files still count.
    other = environment_dir(tmp_path / "elsewhere", prefix="snap", only=[MODEL], snapshots={MODEL: None}) / "dev.yaml"
    before = versions(s3)
    for target in (["--env", "dev"], ["--config", str(other)]):
        assert (
            main(["delete-snapshot", "--env-dir", str(pinned_dir), *target, "--model", MODEL, "--snapshot", snapshot])
            == 2
        )
        assert one_error(capsys) == (
            f"snapshot {snapshot} of {MODEL} is pinned by dev ({pinned_dir / 'dev.yaml'}: "
            "models[0].weights.snapshot); nothing deleted: pin another snapshot there first"
        )
    assert versions(s3) == before


def test_deleting_an_unpinned_snapshot_is_recoverable(s3, tmp_path, capsys):
    kept = publish(s3, model_dir(tmp_path / "kept"))
    gone = publish(s3, model_dir(tmp_path / "gone"))
    envs = pin(tmp_path, kept)
    prefix = f"{FOLDER}{gone}/"
    deleted = {k for k in keys(s3) if k.startswith(prefix)}
    assert run(envs, "delete-snapshot", "--model", MODEL, "--snapshot", gone) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"deleted snapshot {gone} of {MODEL} (7 objects, ") and "Recoverable for 30 days" in out
    assert len(out.splitlines()) == 1
    assert not {k for k in keys(s3) if k.startswith(prefix)}
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", kept) == 0
    # Every object's version remains behind a delete marker: removing the markers restores it.
    page = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    assert {v["Key"] for v in page["Versions"]} == deleted == {m["Key"] for m in page["DeleteMarkers"]}
    markers = sorted(page["DeleteMarkers"], key=lambda m: m["Key"].endswith("/manifest.json"))  # manifest last
    for m in markers:
        s3.delete_object(Bucket=BUCKET, Key=m["Key"], VersionId=m["VersionId"])
    assert run(envs, "verify-model", "--model", MODEL, "--snapshot", gone) == 0


def test_delete_removes_the_manifest_first(s3, tmp_path):
    snapshot = publish(s3, model_dir(tmp_path))
    client = boto3.client("s3", region_name=REGION)
    order: list[list[str]] = []
    client.meta.events.register(
        "provide-client-params.s3.DeleteObjects",
        lambda params, **_: order.append([o["Key"] for o in params["Delete"]["Objects"]]),
    )
    assert delete_snapshot(client, BUCKET, MODEL, snapshot).objects == 7
    assert order[0] == [f"{FOLDER}{snapshot}/manifest.json"] and len(order[1]) == 6


def test_deleting_a_snapshot_that_is_not_there_says_so(s3, envs, capsys):
    assert run(envs, "delete-snapshot", "--model", MODEL, "--snapshot", "0123456789abcdef") == 2
    assert one_error(capsys) == (
        f"snapshot 0123456789abcdef of {MODEL} is not in s3://{BUCKET}/{FOLDER} (list-models shows what is there)"
    )


# --- pin ------------------------------------------------------------------------------------------------


def test_pin_removes_the_tag_from_every_object_of_the_pinned_snapshot_only(s3, tmp_path, capsys):
    pinned = publish(s3, model_dir(tmp_path / "a"))
    other = publish(s3, model_dir(tmp_path / "b"))
    envs = pin(tmp_path, pinned)
    for _ in range(2):  # idempotent
        assert run(envs, "pin") == 0
        assert capsys.readouterr().out.strip() == (
            f"pinned {MODEL} snapshot {pinned} in s3://{BUCKET}/ (models[0].weights."
            "snapshot): verified, 7 objects untagged, so it never expires"
        )
    assert all(tags(s3, k) == [] for k in keys(s3, f"{FOLDER}{pinned}/"))
    assert all(tags(s3, k) == TAG for k in keys(s3, f"{FOLDER}{other}/"))


@pytest.mark.parametrize("damage", ["no-manifest", "never-uploaded", "planted"])
def test_pin_refuses_a_snapshot_that_is_not_complete(s3, tmp_path, capsys, damage):
    snapshot = publish(s3, model_dir(tmp_path))
    prefix = f"{FOLDER}{snapshot}/"
    if damage == "no-manifest":
        s3.delete_object(Bucket=BUCKET, Key=prefix + "manifest.json")
    if damage == "planted":
        s3.put_object(Bucket=BUCKET, Key=prefix + "extra.safetensors", Body=b"x")
    if damage == "never-uploaded":
        snapshot, prefix = "0123456789abcdef", f"{FOLDER}0123456789abcdef/"
    envs = pin(tmp_path, snapshot)
    before = {k: tags(s3, k) for k in keys(s3)}
    assert run(envs, "pin") == 2
    error = one_error(capsys)
    assert error.startswith(f"{envs / 'dev.yaml'}: models[0].weights.snapshot: {snapshot} ")
    if damage == "planted":
        assert error.endswith(
            f"differs from its manifest: {prefix}extra.safetensors: not in the manifest (a replica loads "
            "it too); rerun upload-model with this snapshot's content to remove it"
        )
    else:
        assert error.endswith(
            f"is not published in s3://{BUCKET}/{prefix} (expired or never uploaded): run upload-model "
            "again; identical content gives the same snapshot"
        )
    assert {k: tags(s3, k) for k in keys(s3)} == before  # nothing untagged


def test_pin_before_the_bucket_exists_says_so(s3_endpoint, s3, tmp_path, capsys):
    envs = environment_dir(tmp_path, prefix="nobucket", only=[MODEL], snapshots={MODEL: "0123456789abcdef"})
    assert run(envs, "pin") == 2
    assert "the weights bucket s3://nobucket-dev-weights-111111111111 does not exist yet" in one_error(capsys)


# --- list-models ------------------------------------------------------------------------------------------


def test_list_models_shows_snapshots_their_state_and_who_pins_them(s3, tmp_path, capsys):
    pinned = publish(s3, model_dir(tmp_path / "a"))
    time.sleep(1.1)  # LastModified has whole seconds: the newer one lists first
    unpinned = publish(s3, model_dir(tmp_path / "b"))
    directory = model_dir(tmp_path / "c")
    write_safetensors(directory / "model-00000-of-00002.safetensors", {"w": ("U8", [100])})
    incomplete = publish(s3, directory)
    s3.delete_object(Bucket=BUCKET, Key=f"{FOLDER}{incomplete}/manifest.json")
    s3.put_object(Bucket=BUCKET, Key=FOLDER + "config.json", Body=b"{}")  # the old layout
    envs = environment_dir(tmp_path, prefix="snap", snapshots={MODEL: pinned, LLAMA: "fedcba9876543210"})
    assert run(envs, "list-models", "--json") == 0
    listing = {m["model"]: m for m in json.loads(capsys.readouterr().out)}
    assert set(listing) == {MODEL, LLAMA}
    rows = {s["snapshot"]: s for s in listing[MODEL]["snapshots"]}
    assert [s["snapshot"] for s in listing[MODEL]["snapshots"]][-1] == pinned  # newest first
    assert rows[pinned] | {"date": None} == {
        "snapshot": pinned,
        "state": "complete",
        "bytes": rows[pinned]["bytes"],
        "objects": 7,
        "date": None,
        "pinned_by": ["dev"],
        "uri": f"s3://{BUCKET}/{FOLDER}{pinned}/",
    }
    assert rows[pinned]["bytes"] == sum(p.stat().st_size for p in (tmp_path / "a" / "model").iterdir())
    assert (rows[unpinned]["state"], rows[unpinned]["pinned_by"]) == ("complete", [])
    assert (rows[incomplete]["state"], rows[incomplete]["objects"]) == ("incomplete", 6)
    assert listing[MODEL]["old_layout"] == {"objects": 1, "bytes": 2, "served_by": []}
    assert listing[LLAMA] == {
        "model": LLAMA,
        "old_layout": None,
        "snapshots": [
            {
                "snapshot": "fedcba9876543210",
                "state": "missing",
                "bytes": None,
                "objects": 0,
                "date": None,
                "pinned_by": ["dev"],
                "uri": f"s3://{BUCKET}/models/{LLAMA}/fedcba9876543210/",
            }
        ],
    }
    assert run(envs, "list-models") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["MODEL", "SNAPSHOT", "SIZE", "DATE", "PINNED", "BY", "STATE"]
    by_snapshot = {line.split()[1]: line for line in lines[1:]}
    assert (
        by_snapshot["fedcba9876543210"].startswith(LLAMA)
        and "missing (pinned but not in the bucket" in by_snapshot["fedcba9876543210"]
    )
    assert "  dev  " in by_snapshot[pinned] and by_snapshot[pinned].endswith("  complete")
    assert "incomplete (no manifest" in by_snapshot[incomplete]
    assert (
        by_snapshot["(old"].split()[3:5] == ["2", "B"]
        and "old layout (re-publish with upload-model" in by_snapshot["(old"]
    )
    assert run(envs, "list-models", "--model", LLAMA) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_unchanged_files_are_copied_from_another_snapshot_with_their_checksum_and_the_tag(s3, tmp_path):
    """A new tokenizer makes a new snapshot without sending the weights again: the shards are copied
    within S3, a multipart one part by part (the same S3 checksum), tagged like an upload."""
    from boto3.s3.transfer import TransferConfig

    small_parts = TransferConfig(
        multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20, preferred_transfer_client="classic"
    )
    directory = model_dir(tmp_path, shards=2, shard_bytes=12 * 2**20)
    first = upload_model(s3, BUCKET, MODEL, directory, transfer_config=small_parts)
    (directory / "tokenizer.json").write_text('{"version": "2"}')
    client = boto3.client("s3", region_name=REGION)
    calls = counted(client)
    second = upload_model(client, BUCKET, MODEL, directory, transfer_config=small_parts)
    assert second.snapshot != first.snapshot
    assert (second.uploaded, sorted(second.copied)) == (
        ["tokenizer.json"],
        [
            "config.json",
            "model-00000-of-00002.safetensors",
            "model-00001-of-00002.safetensors",
            "tokenizer_config.json",
        ],
    )
    assert "UploadPartCopy" in calls and "UploadPart" not in calls  # the shards went part by part, within S3
    for name in second.copied:
        assert tags(s3, second.prefix + name) == TAG
    assert verify_snapshot(s3, BUCKET, MODEL, second.snapshot) == []
    # Copied into a snapshot an environment pins (a repair): no tag.
    for name in ("config.json", "model-00000-of-00002.safetensors"):  # one CopyObject, one multipart copy
        s3.delete_object(Bucket=BUCKET, Key=second.prefix + name)
    repaired = upload_model(s3, BUCKET, MODEL, directory, transfer_config=small_parts, pinned={second.snapshot})
    assert repaired.copied == ["config.json", "model-00000-of-00002.safetensors"] and not repaired.tagged
    assert tags(s3, first.prefix + "config.json") == TAG  # the source's tag is not copied
    assert (
        tags(s3, second.prefix + "config.json") == []
        and tags(s3, second.prefix + "model-00000-of-00002.safetensors") == []
    )
    assert verify_snapshot(s3, BUCKET, MODEL, second.snapshot) == []


def test_a_multipart_copy_is_tagged_from_the_moment_it_exists(s3, tmp_path):
    """No window in which a kill leaves an untagged copy that the lifecycle rule would never expire:
    the copy is created with its tag, and nothing tags it afterwards."""
    from boto3.s3.transfer import TransferConfig

    small_parts = TransferConfig(
        multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20, preferred_transfer_client="classic"
    )
    directory = model_dir(tmp_path, shards=1, shard_bytes=12 * 2**20)
    upload_model(s3, BUCKET, MODEL, directory, transfer_config=small_parts)
    (directory / "tokenizer.json").write_text('{"version": "2"}')
    client = boto3.client("s3", region_name=REGION)
    calls, completing, at_completion = counted(client), [], []
    client.meta.events.register(
        "before-parameter-build.s3.CompleteMultipartUpload", lambda params, **_: completing.append(params["Key"])
    )
    client.meta.events.register(
        "after-call.s3.CompleteMultipartUpload", lambda **_: at_completion.append(tags(s3, completing[-1]))
    )
    second = upload_model(client, BUCKET, MODEL, directory, transfer_config=small_parts)
    assert "model-00000-of-00001.safetensors" in second.copied and "UploadPartCopy" in calls
    assert at_completion == [TAG] and "PutObjectTagging" not in calls


def test_a_source_replaced_during_a_copy_is_never_mixed_in(s3, tmp_path):
    """Every part is copied only while the source is still the version that was checked (S3 refuses
    a part with 412 otherwise; moto ignores the condition), and the copy is checked against the file
    after: replaced between parts, the file is uploaded instead of the mixed copy."""
    from boto3.s3.transfer import TransferConfig

    # One part at a time, so that the source is replaced before the next part is asked for.
    small_parts = TransferConfig(
        multipart_threshold=5 * 2**20,
        multipart_chunksize=5 * 2**20,
        max_concurrency=1,
        preferred_transfer_client="classic",
    )
    directory = model_dir(tmp_path, shards=1, shard_bytes=12 * 2**20)
    first = upload_model(s3, BUCKET, MODEL, directory, transfer_config=small_parts)
    (directory / "tokenizer.json").write_text('{"version": "2"}')
    shard = first.prefix + "model-00000-of-00001.safetensors"
    client = boto3.client("s3", region_name=REGION)
    replaced = []

    def replace_source(**_):
        if not replaced:  # after the first part: the source gets other bytes of the same size
            replaced.append(s3.put_object(Bucket=BUCKET, Key=shard, Body=b"\0" * (12 * 2**20)))

    conditions = []
    client.meta.events.register(
        "before-parameter-build.s3.UploadPartCopy",
        lambda params, **_: conditions.append(params.get("CopySourceIfMatch")),
    )
    client.meta.events.register("after-call.s3.UploadPartCopy", replace_source)
    source_etag = s3.head_object(Bucket=BUCKET, Key=shard)["ETag"]
    second = upload_model(client, BUCKET, MODEL, directory, transfer_config=small_parts)
    assert replaced and conditions == [source_etag] * 3, conditions  # 12 MiB in 5 MiB parts
    assert (
        "model-00000-of-00001.safetensors" in second.uploaded
        and "model-00000-of-00001.safetensors" not in second.copied
    )
    assert verify_snapshot(s3, BUCKET, MODEL, second.snapshot, deep=True) == []
