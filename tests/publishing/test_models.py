"""`llmstacks upload-model` / `verify-model` against a moto S3 server on 127.0.0.1: snapshots
(models/<id>/<snapshot>/), their manifests, resuming and repairing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import waits
from artifact_fixtures import model_dir, write_safetensors
from local_s3 import fresh_bucket

from app.spec import SNAPSHOT_PATTERN, UNPINNED_TAG
from stacks.cli import main
from stacks.errors import ArtifactError
from stacks.publishing.manifests import manifest_digest
from stacks.publishing.models import upload_model

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
BUCKET, REGION, MODEL = "llm-dev-weights-111111111111", "us-west-2", "qwen2.5-7b-instruct"
PREFIX = f"models/{MODEL}/"


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    return fresh_bucket(monkeypatch, s3_endpoint, BUCKET, REGION, versioned=False)


def keys(s3) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def upload(directory: Path) -> int:
    return main(["upload-model", "--env", "dev", "--model", MODEL, "--from", str(directory)])


def published(capsys) -> str:
    """The snapshot upload-model printed (its `pin it:` line)."""
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("pin it: ")]
    return line.rsplit(" ", 1)[1]


def verify(snapshot: str, *extra: str) -> int:
    return main(["verify-model", "--env", "dev", "--model", MODEL, "--snapshot", snapshot, *extra])


NAMES = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model-00000-of-00002.safetensors",
    "model-00001-of-00002.safetensors",
}


def test_upload_publishes_a_snapshot_files_then_hash_then_manifest(s3, tmp_path, capsys):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0
    out = capsys.readouterr().out.splitlines()
    snapshot = out[1].rsplit(" ", 1)[1]
    assert re.fullmatch(SNAPSHOT_PATTERN, snapshot)
    prefix = f"{PREFIX}{snapshot}/"
    assert out[0].startswith(f"published {MODEL} snapshot {snapshot} at s3://{BUCKET}/{prefix} (5 files, ")
    assert out[0].endswith(": 5 uploaded, 0 already there)")
    # dev pins its models: this one is models[0]; no other environment pins this snapshot yet.
    assert out[1] == f"pin it: models[0].weights.snapshot: {snapshot}"
    assert out[2].startswith("until an environment pins it and `llmstacks pin` runs") and out[2].endswith(
        "expires 30 days after upload"
    )
    assert keys(s3) == {prefix + n for n in NAMES} | {prefix + "hash", prefix + "manifest.json"}
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "manifest.json")["Body"].read())
    assert {f["path"] for f in manifest["files"]} == NAMES
    assert manifest_digest(manifest)[:16] == snapshot
    assert s3.get_object(Bucket=BUCKET, Key=prefix + "hash")["Body"].read() == snapshot.encode()
    shard = next(f for f in manifest["files"] if f["path"].endswith("00000-of-00002.safetensors"))
    assert shard["sha256"] == hashlib.sha256((directory / shard["path"]).read_bytes()).hexdigest()
    head = s3.head_object(Bucket=BUCKET, Key=prefix + shard["path"], ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == shard["sha256"] and head.get("ChecksumSHA256")
    # Every object of the snapshot carries the unpinned tag (the lifecycle rule's filter).
    for key in keys(s3):
        assert s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"] == [
            {"Key": UNPINNED_TAG[0], "Value": UNPINNED_TAG[1]}
        ]
    assert verify(snapshot, "--deep") == 0
    assert capsys.readouterr().out.strip().endswith(f"{MODEL} snapshot {snapshot}: OK")


def test_identical_content_is_the_same_snapshot_and_other_content_another(s3, tmp_path, capsys):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0
    first = published(capsys)
    before = keys(s3)
    assert upload(directory) == 0
    out = capsys.readouterr().out
    assert f"{MODEL} snapshot {first} is already published at s3://{BUCKET}/{PREFIX}{first}/ (5 files, " in out
    assert out.splitlines()[0].endswith("); nothing uploaded") and f"pin it: models[0].weights.snapshot: {first}" in out
    assert keys(s3) == before
    write_safetensors(directory / "model-00001-of-00002.safetensors", {"w": ("U8", [4096])})
    assert upload(directory) == 0
    out = capsys.readouterr().out
    second = out.split("pin it: models[0].weights.snapshot: ")[1].split()[0]
    assert second != first
    # Only the changed shard is sent: the four unchanged files are copied within S3, tagged like uploads.
    assert ": 1 uploaded, 4 copied from earlier snapshots, 0 already there)" in out.splitlines()[0]
    copied = f"{PREFIX}{second}/model-00000-of-00002.safetensors"
    assert s3.get_object_tagging(Bucket=BUCKET, Key=copied)["TagSet"] == [
        {"Key": UNPINNED_TAG[0], "Value": UNPINNED_TAG[1]}
    ]
    # The first snapshot is untouched; the second holds only its own files.
    assert {k for k in keys(s3) if k.startswith(f"{PREFIX}{first}/")} == {k for k in before}
    assert verify(first) == 0 and verify(second) == 0


def test_republishing_fewer_shards_is_a_snapshot_of_its_own(s3, tmp_path, capsys):
    # A streamed load reads every *.safetensors in the snapshot's folder: the third shard of an
    # earlier upload must never be in the folder of a two-shard one.
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # as the stack makes it
    assert upload(model_dir(tmp_path / "three", shards=3)) == 0
    three = published(capsys)
    assert upload(model_dir(tmp_path / "two", shards=2)) == 0
    two = published(capsys)

    def shards(snap):
        return {
            k.rsplit("/", 1)[1] for k in keys(s3) if k.startswith(f"{PREFIX}{snap}/") and k.endswith(".safetensors")
        }

    assert shards(two) == {"model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors"}
    assert len(shards(three)) == 3
    assert verify(two) == 0 and verify(three) == 0
    # Nothing was deleted: no delete markers anywhere.
    assert not s3.list_object_versions(Bucket=BUCKET, Prefix=PREFIX).get("DeleteMarkers")


def test_a_rerun_removes_an_object_planted_in_its_snapshot(s3, tmp_path, capsys):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0
    snapshot = published(capsys)
    planted = f"{PREFIX}{snapshot}/consolidated.safetensors"
    s3.put_object(Bucket=BUCKET, Key=planted, Body=b"x")
    assert verify(snapshot) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{planted}: not in the manifest (a replica loads it too); "
        "rerun upload-model with this snapshot's content to remove it"
    )
    assert upload(directory) == 0
    assert capsys.readouterr().out.startswith(f"repaired {MODEL} snapshot {snapshot} at ")
    assert planted not in keys(s3) and verify(snapshot) == 0


class FailingClient:
    """An S3 client whose n-th PutObject (small files go up as one) raises, as a dropped connection would."""

    def __init__(self, client, fail_at: int):
        self._client, self._fail_at, self.uploads = client, fail_at, 0

    def put_object(self, *args, **kwargs):
        self.uploads += 1
        if self.uploads == self._fail_at:
            raise ConnectionError("connection reset")
        return self._client.put_object(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])  # the two files that changed, then hash, then the manifest
def test_an_interrupted_upload_leaves_its_snapshot_unpublished_and_a_rerun_completes(s3, tmp_path, capsys, fail_at):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0  # a published snapshot exists
    old = published(capsys)
    old_objects = {k: s3.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in keys(s3)}
    write_safetensors(directory / "model-00000-of-00002.safetensors", {"w": ("U8", [4096])})
    (directory / "tokenizer.json").write_text('{"v": 2}')
    with pytest.raises(ConnectionError):
        upload_model(FailingClient(s3, fail_at), BUCKET, MODEL, directory)
    new = [k for k in keys(s3) if not k.startswith(f"{PREFIX}{old}/")]
    assert new and not any(k.endswith("manifest.json") for k in new)  # unpublished, not half-published
    assert {k: s3.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in old_objects} == old_objects
    assert upload(directory) == 0
    snapshot = published(capsys)
    assert verify(snapshot, "--deep") == 0 and verify(old) == 0


def test_verify_catches_a_changed_object(s3, tmp_path, capsys):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0
    snapshot = published(capsys)
    shard = f"{PREFIX}{snapshot}/model-00001-of-00002.safetensors"
    original = s3.head_object(Bucket=BUCKET, Key=shard)
    size = original["ContentLength"]
    # Same size, digest metadata copied: S3's own checksum still tells.
    s3.put_object(Bucket=BUCKET, Key=shard, Body=os.urandom(size), Metadata=original["Metadata"])
    assert verify(snapshot) == 1
    assert f"{shard}: S3 checksum" in capsys.readouterr().out
    assert verify(snapshot, "--deep") == 1
    assert f"{shard}: SHA-256" in capsys.readouterr().out
    s3.put_object(Bucket=BUCKET, Key=shard, Body=b"short")
    assert verify(snapshot) == 1
    assert f"{shard}: 5 bytes, manifest says {size}" in capsys.readouterr().out
    s3.delete_object(Bucket=BUCKET, Key=shard)
    assert verify(snapshot) == 1
    assert f"{shard}: missing" in capsys.readouterr().out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _link_outside(d: Path) -> None:
    secret = d.parent / "outside.safetensors"
    secret.write_bytes(b"x" * 10)
    (d / "extra.safetensors").symlink_to(secret)


BAD = [
    ("missing-config", lambda d: (d / "config.json").unlink(), "config.json: missing"),
    ("config-not-json", lambda d: (d / "config.json").write_text("{nope"), "config.json: not valid JSON"),
    ("config-without-model-type", lambda d: (d / "config.json").write_text("{}"), "no model_type"),
    ("no-safetensors", lambda d: [p.unlink() for p in d.glob("*.safetensors")], "no *.safetensors weights"),
    ("pickled-weights", lambda d: (d / "pytorch_model.bin").write_bytes(b"x"), "pickled weights are not published"),
    ("no-tokenizer", lambda d: [(d / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")], "no tokenizer"),
    ("empty-shard", lambda d: (d / "model-00000-of-00002.safetensors").write_bytes(b""), "empty weights file"),
    (
        "not-safetensors",
        lambda d: (d / "model-00000-of-00002.safetensors").write_bytes(os.urandom(4096)),
        "not a safetensors file",
    ),
    ("truncated-shard", lambda d: _truncate(d / "model-00001-of-00002.safetensors"), "truncated or padded"),
    ("reserved-name", lambda d: (d / "manifest.json").write_text("{}"), "reserved"),
    ("link-outside", _link_outside, "links outside"),
    ("empty-directory", lambda d: [p.unlink() for p in d.iterdir()], "empty directory"),
]


@pytest.mark.parametrize(("change", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_model_directories_are_one_line_exit_2_and_upload_nothing(s3, tmp_path, capsys, change, needle):
    directory = model_dir(tmp_path)
    change(directory)
    assert upload(directory) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
    assert keys(s3) == set()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--env", "dev", "--model", "qwen:7b"], "--model: "),
        (["--env", "prod", "--model", "llama-3.1-70b-instruct"], "takes its weights from huggingface"),
        (["--env", "dev", "--model", MODEL, "--from", "/nonexistent/dir"], "not a directory"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(s3, tmp_path, capsys, args, needle):
    if "--from" not in args:
        args = [*args, "--from", str(model_dir(tmp_path))]
    assert main(["upload-model", *args]) == 2
    assert needle in capsys.readouterr().err
    assert keys(s3) == set()


def test_no_credentials_is_one_line_exit_2(s3_endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL_S3=s3_endpoint,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    result = subprocess.run(
        [LLMSTACKS, "upload-model", "--env", "dev", "--model", MODEL, "--from", str(model_dir(tmp_path))],
        env=env,
        capture_output=True,
        text=True,
        timeout=waits.COMMAND,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: no AWS credentials (standard chain: AWS_* variables, a profile, SSO, or an instance role)"
    )


def test_verify_of_an_unpublished_model_or_snapshot_says_so(s3, capsys):
    assert main(["verify-model", "--env", "dev", "--model", MODEL]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: model {MODEL!r} is not published in s3://{BUCKET}/{PREFIX} (no snapshots)"
    )
    assert verify("0123456789abcdef") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: snapshot 0123456789abcdef of {MODEL} is not in s3://{BUCKET}/{PREFIX} "
        "(never uploaded, expired or deleted; list-models shows what is there)"
    )


def test_library_rejects_before_touching_s3(tmp_path):
    class NoS3:
        def __getattr__(self, name):
            raise AssertionError("S3 was called")

    with pytest.raises(ArtifactError, match="empty directory"):
        upload_model(NoS3(), BUCKET, MODEL, tmp_path)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_updating_line_on_a_terminal_and_silent_otherwise(s3, tmp_path):
    from stacks.publishing.files import Progress

    directory = model_dir(tmp_path, shards=2, shard_bytes=3 * 2**20)
    total = sum(p.stat().st_size for p in directory.iterdir())
    terminal = Terminal()
    progress = Progress(total, stream=terminal)
    upload_model(s3, BUCKET, MODEL, directory, progress=progress)
    progress.close()
    updates = terminal.getvalue().split("\r")[1:]
    assert len(updates) >= 2 and updates[-1] == "6 / 6 MiB (100%)\n"
    assert "\n" not in "".join(updates[:-1])  # one line, rewritten in place
    piped = io.StringIO()
    quiet = Progress(total, stream=piped)
    upload_model(s3, BUCKET, MODEL, directory, progress=quiet)  # all skipped: still counted
    quiet.close()
    assert piped.getvalue() == "" and quiet.done == total
