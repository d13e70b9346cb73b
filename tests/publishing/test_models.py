"""`llmstacks upload-model` / `verify-model` against a moto S3 server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from stacks.errors import ArtifactError
from stacks.publishing.models import upload_model
from artifact_fixtures import model_dir, write_safetensors
from stacks.cli import main

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
BUCKET, REGION, MODEL = "llm-dev-weights-111111111111", "us-west-2", "qwen2.5-7b-instruct"
PREFIX = f"models/{MODEL}/"


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_ENDPOINT_URL_S3": s3_endpoint, "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", region_name=REGION)
    try:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return client


def keys(s3) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def upload(directory: Path) -> int:
    return main(["upload-model", "--env", "dev", "--model", MODEL, "--from", str(directory)])


def test_upload_publishes_files_then_hash_then_manifest(s3, tmp_path, capsys):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0
    assert f"published {MODEL} to s3://{BUCKET}/models/{MODEL}/ (5 uploaded, 0 already there" in capsys.readouterr().out
    names = {"config.json", "tokenizer.json", "tokenizer_config.json",
             "model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors"}
    assert keys(s3) == {PREFIX + n for n in names} | {PREFIX + "hash", PREFIX + "manifest.json"}
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "manifest.json")["Body"].read())
    assert {f["path"] for f in manifest["files"]} == names
    shard = next(f for f in manifest["files"] if f["path"].endswith("00000-of-00002.safetensors"))
    import hashlib

    assert shard["sha256"] == hashlib.sha256((directory / shard["path"]).read_bytes()).hexdigest()
    head = s3.head_object(Bucket=BUCKET, Key=PREFIX + shard["path"], ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == shard["sha256"] and head.get("ChecksumSHA256")
    assert main(["verify-model", "--env", "dev", "--model", MODEL, "--deep"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{MODEL}: OK")


def test_rerun_skips_what_is_there_and_reuploads_what_changed(s3, tmp_path, capsys):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0
    assert upload(directory) == 0
    assert "(0 uploaded, 5 already there" in capsys.readouterr().out.splitlines()[-1]
    write_safetensors(directory / "model-00001-of-00002.safetensors", {"w": ("U8", [4096])})
    assert upload(directory) == 0
    assert "(1 uploaded, 4 already there" in capsys.readouterr().out


def test_republishing_fewer_shards_removes_the_ones_left_over(s3, tmp_path, capsys):
    # A streamed load reads every *.safetensors in the folder: a third shard left by the first
    # upload would be loaded alongside the two of the second.
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # as the stack makes it
    three = model_dir(tmp_path / "three", shards=3)
    assert upload(three) == 0
    assert PREFIX + "model-00002-of-00003.safetensors" in keys(s3)
    two = model_dir(tmp_path / "two", shards=2)
    assert upload(two) == 0
    assert "3 left by an earlier upload removed" in capsys.readouterr().out.splitlines()[-1]
    shards = {k for k in keys(s3) if k.endswith(".safetensors")}
    assert shards == {PREFIX + "model-00000-of-00002.safetensors", PREFIX + "model-00001-of-00002.safetensors"}
    assert main(["verify-model", "--env", "dev", "--model", MODEL]) == 0
    # Removed, not destroyed: the versioned bucket keeps them behind a delete marker.
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=PREFIX + "model-00002-of-00003")
    assert [m["Key"] for m in versions["DeleteMarkers"]] == [PREFIX + "model-00002-of-00003.safetensors"]
    assert [v["Key"] for v in versions["Versions"]] == [PREFIX + "model-00002-of-00003.safetensors"]


def test_verify_model_reports_an_object_the_manifest_does_not_list(s3, tmp_path, capsys):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "consolidated.safetensors", Body=b"x")
    capsys.readouterr()
    assert main(["verify-model", "--env", "dev", "--model", MODEL]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (f"{PREFIX}consolidated.safetensors: not in the manifest "
                                                       "(a load reads it too); rerun upload-model to remove it")
    assert upload(directory) == 0
    assert PREFIX + "consolidated.safetensors" not in keys(s3)


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


@pytest.mark.parametrize("fail_at", [1, 2, 3])  # the three files this rerun has to send
def test_an_interrupted_upload_leaves_no_manifest_and_a_rerun_completes(s3, tmp_path, capsys, fail_at):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0  # a published version exists
    write_safetensors(directory / "model-00000-of-00002.safetensors", {"w": ("U8", [4096])})
    (directory / "tokenizer.json").write_text('{"v": 2}')
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "config.json")
    with pytest.raises(ConnectionError):
        upload_model(FailingClient(s3, fail_at), BUCKET, MODEL, directory)
    assert PREFIX + "manifest.json" not in keys(s3)  # unpublished, not half-published
    assert upload(directory) == 0
    assert main(["verify-model", "--env", "dev", "--model", MODEL, "--deep"]) == 0


def test_killed_uploads_never_leave_a_manifest(s3, s3_endpoint, tmp_path):
    directory = model_dir(tmp_path, shards=4, shard_bytes=48 * 1024 * 1024)
    env = {**os.environ}
    killed = 0
    for kill_after in (1, 2, 4):
        process = subprocess.Popen([LLMSTACKS, "upload-model", "--env", "dev", "--model", MODEL, "--from", str(directory)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            shards = [k for k in keys(s3) if k.endswith(".safetensors")]
            if len(shards) >= kill_after:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.returncode == 0:
            continue  # finished before the kill: nothing to check this round
        killed += 1
        assert PREFIX + "manifest.json" not in keys(s3)
        s3.delete_object(Bucket=BUCKET, Key=PREFIX + "hash")
    assert killed >= 2  # the test proves nothing unless uploads were really cut short
    result = subprocess.run([LLMSTACKS, "upload-model", "--env", "dev", "--model", MODEL, "--from", str(directory)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert PREFIX + "manifest.json" in keys(s3)


def test_verify_catches_a_changed_object(s3, tmp_path, capsys):
    directory = model_dir(tmp_path)
    assert upload(directory) == 0
    shard = PREFIX + "model-00001-of-00002.safetensors"
    original = s3.head_object(Bucket=BUCKET, Key=shard)
    size = original["ContentLength"]
    # Same size, digest metadata copied: S3's own checksum still tells.
    s3.put_object(Bucket=BUCKET, Key=shard, Body=os.urandom(size), Metadata=original["Metadata"])
    capsys.readouterr()
    assert main(["verify-model", "--env", "dev", "--model", MODEL]) == 1
    assert f"{shard}: S3 checksum" in capsys.readouterr().out
    assert main(["verify-model", "--env", "dev", "--model", MODEL, "--deep"]) == 1
    assert f"{shard}: SHA-256" in capsys.readouterr().out
    s3.put_object(Bucket=BUCKET, Key=shard, Body=b"short")
    assert main(["verify-model", "--env", "dev", "--model", MODEL]) == 1
    assert f"{shard}: 5 bytes, manifest says {size}" in capsys.readouterr().out
    s3.delete_object(Bucket=BUCKET, Key=shard)
    assert main(["verify-model", "--env", "dev", "--model", MODEL]) == 1
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
    ("not-safetensors", lambda d: (d / "model-00000-of-00002.safetensors").write_bytes(os.urandom(4096)), "not a safetensors file"),
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


@pytest.mark.parametrize(("args", "needle"), [
    (["--env", "dev", "--model", "no-such-model"], "--model: 'no-such-model' is not a model of dev"),
    (["--env", "prod", "--model", "llama-3.1-70b-instruct"], "takes its weights from huggingface"),
    (["--env", "dev", "--model", MODEL, "--from", "/nonexistent/dir"], "not a directory"),
])
def test_bad_arguments_are_one_line_exit_2(s3, tmp_path, capsys, args, needle):
    if "--from" not in args:
        args = [*args, "--from", str(model_dir(tmp_path))]
    assert main(["upload-model", *args]) == 2
    assert needle in capsys.readouterr().err
    assert keys(s3) == set()


def test_no_credentials_is_one_line_exit_2(s3_endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL_S3=s3_endpoint, AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    result = subprocess.run([LLMSTACKS, "upload-model", "--env", "dev", "--model", MODEL, "--from", str(model_dir(tmp_path))],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no AWS credentials (standard chain: AWS_* variables, a profile, SSO, or an instance role)"


def test_verify_of_an_unpublished_model_says_so(s3, capsys):
    assert main(["verify-model", "--env", "dev", "--model", MODEL]) == 2
    assert "is not published" in capsys.readouterr().err


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
