"""Publishing one adapter name from two places at once, and whatever else can change under an upload.

The races run real `llmstacks upload-adapter` processes against a moto S3 server
on 127.0.0.1: each process imports everything first, then waits for one start
file, so both reach S3 at the same moment.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import waits
from artifact_fixtures import adapter_dir
from local_s3 import empty, fresh_bucket
from botocore.exceptions import ClientError

from stacks.cli import main
from stacks.errors import ArtifactError
from stacks.publishing.adapter_dirs import AdapterTarget
from stacks.publishing.adapters import upload_adapter
from stacks.publishing.claims import claim_key

BUCKET, REGION = "llm-dev-lora-111111111111", "us-west-2"
QWEN = "qwen2.5-7b-instruct"
TARGET = AdapterTarget(QWEN, 32, (QWEN, "Qwen/Qwen2.5-7B-Instruct"), where="dev.yaml: models[0]")
ROUNDS = 5
# The command, started only once `go` exists: imports and start-up are done by then.
AT_THE_SIGNAL = """
import os, sys, time
import boto3, botocore.session, stacks.publishing.adapters
from stacks.cli import main
ready, go = sys.argv[1:3]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.0005)
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    return fresh_bucket(monkeypatch, s3_endpoint, BUCKET, REGION)


@pytest.fixture
def atomic_conditional_writes(monkeypatch):
    """S3 checks If-None-Match and stores the object as one step; moto 5.2.5 checks, then stores,
    without a lock, so two requests can both pass the check. The server runs in this process:
    serialize its PutObject, as S3 does."""
    from moto.s3.responses import S3Response

    lock, put_object = threading.Lock(), S3Response.put_object

    def atomic_put_object(self):
        with lock:
            return put_object(self)

    monkeypatch.setattr(S3Response, "put_object", atomic_put_object)


def empty_bucket(s3) -> None:
    empty(s3, BUCKET)


def keys(s3, prefix: str = "") -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def published(s3, name: str) -> dict[str, bytes]:
    prefix = f"adapters/{QWEN}/{name}/"
    return {k[len(prefix) :]: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys(s3, prefix)}


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def publish_together(tmp_path: Path, directories: list[Path], name: str) -> list[subprocess.CompletedProcess]:
    signals = tmp_path / "signals"
    shutil.rmtree(signals, ignore_errors=True)
    signals.mkdir()
    go, ready = signals / "go", [signals / f"ready-{i}" for i in range(len(directories))]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                AT_THE_SIGNAL,
                str(r),
                str(go),
                "upload-adapter",
                "--env",
                "dev",
                "--model",
                QWEN,
                "--adapter",
                name,
                "--from",
                str(d),
            ],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r, d in zip(ready, directories, strict=True)
    ]
    # However slow the start, `go` waits for every process: one let go early would reach S3 first and
    # the race would not be run (one winner holds for uploads one after the other too).
    deadline = time.monotonic() + waits.COMMAND
    while not all(r.exists() for r in ready):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            for process in processes:
                process.kill()
            pytest.fail(f"not every upload-adapter started: {[p.communicate()[1][-2000:] for p in processes]}")
        time.sleep(0.01)
    go.touch()  # every process imported and waiting: go
    results = []
    for process in processes:
        out, err = process.communicate(timeout=waits.COMMAND)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_of_two_uploads_of_one_name_with_other_content_exactly_one_wins(s3, tmp_path, atomic_conditional_writes):
    a = adapter_dir(tmp_path / "a", "support", rank=8)
    b = adapter_dir(tmp_path / "b", "support", rank=16)
    for round_ in range(ROUNDS):
        empty_bucket(s3)
        results = publish_together(tmp_path, [a, b], "support")
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 2], [(r.returncode, r.stderr[-2000:]) for r in results]
        winner, loser = (0, 1) if results[0].returncode == 0 else (1, 0)
        lines = results[loser].stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --adapter: ") and results[loser].stdout == "", lines
        assert "other content" in lines[0] and "Traceback" not in results[loser].stderr
        assert published(s3, "support") == contents([a, b][winner]), f"round {round_}: not the winner's adapter"
        assert not keys(s3, "staging/")  # staged files and the claim are gone


def test_two_uploads_of_one_name_with_the_same_content_both_succeed(s3, tmp_path, atomic_conditional_writes):
    a = adapter_dir(tmp_path / "a", "support")
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in a.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    for _ in range(ROUNDS):
        empty_bucket(s3)
        results = publish_together(tmp_path, [a, copy], "support")
        assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
        assert all(r.stderr == "" for r in results)
        assert published(s3, "support") == contents(a)
        assert not keys(s3, "staging/")


# ---------------------------------------------------------------- claims


class Interfering:
    """An S3 client that does something else first when one of its methods is called."""

    def __init__(self, client, **before):
        self._client, self._before = client, before

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name not in self._before:
            return attr

        def call(*args, **kwargs):
            self._before[name](*args, **kwargs)
            return attr(*args, **kwargs)

        return call


def _interrupted_after_claim(s3, directory: Path) -> None:
    def cut(*args, **kwargs):
        raise ConnectionError("connection reset")

    with pytest.raises(ConnectionError):
        upload_adapter(
            Interfering(s3, upload_file=cut, copy=cut, put_object=_after_first(cut)),
            BUCKET,
            TARGET,
            "support",
            directory,
        )


def _after_first(action):
    calls = []

    def maybe(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            action(*args, **kwargs)

    return maybe


def upload(directory: Path, name: str = "support") -> int:
    return main(["upload-adapter", "--env", "dev", "--model", QWEN, "--adapter", name, "--from", str(directory)])


def test_an_abandoned_claim_blocks_other_content_until_delete_adapter_removes_it(s3, tmp_path, capsys):
    first = adapter_dir(tmp_path / "a", "support")
    _interrupted_after_claim(s3, first)
    assert keys(s3, "staging/claims/") == {claim_key("support")}
    other = adapter_dir(tmp_path / "b", "support", rank=16)
    assert upload(other) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "is being published with other content by another upload (claimed 20" in err
        and "delete-adapter removes its claim" in err
    )
    assert upload(first) == 0  # the interrupted upload itself resumes
    assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "support"]) == 0
    _interrupted_after_claim(s3, first)
    assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "support"]) == 0
    assert "was not published; removed the 1 object(s) an interrupted upload of it left" in capsys.readouterr().out
    assert not keys(s3, "staging/")
    assert upload(other) == 0


def test_a_claim_for_another_model_or_an_unreadable_one_is_another_uploads(s3, tmp_path, capsys):
    directory = adapter_dir(tmp_path, "support")
    s3.put_object(
        Bucket=BUCKET, Key=claim_key("support"), Body=json.dumps({"model": "llama-3.2-1b-instruct", "content": "x"})
    )
    assert upload(directory) == 2
    assert "'support' is being published for model 'llama-3.2-1b-instruct' by another upload" in capsys.readouterr().err
    # delete-adapter for this model leaves another model's claim alone
    assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "support"]) == 2
    assert keys(s3, "staging/claims/") == {claim_key("support")}
    s3.put_object(Bucket=BUCKET, Key=claim_key("support"), Body=b"[" * 100_000)
    assert upload(directory) == 2
    assert "is being published with other content by another upload" in capsys.readouterr().err
    assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "support"]) == 0
    assert upload(directory) == 0


def _client_error(code: str, status: int, operation: str = "PutObject") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


def test_a_claim_that_keeps_changing_hands_gives_up_in_one_line(s3, tmp_path):
    def taken(*args, **kwargs):
        if kwargs.get("Key", "").startswith("staging/claims/"):
            raise _client_error("PreconditionFailed", 412)

    def gone(*args, **kwargs):
        if kwargs.get("Key", "").startswith("staging/claims/"):
            raise _client_error("NoSuchKey", 404, "GetObject")

    client = Interfering(s3, put_object=taken, get_object=gone)
    with pytest.raises(ArtifactError, match="the claim on 'support' kept changing hands"):
        upload_adapter(client, BUCKET, TARGET, "support", adapter_dir(tmp_path, "support"))


def test_conflicting_conditional_writes_are_retried(s3, tmp_path):
    """S3 answers 409 to a conditional write while another one to the key is in flight."""
    conflicts = []

    def conflict_once(*args, **kwargs):
        if kwargs.get("IfNoneMatch") and kwargs["Key"] not in conflicts:
            conflicts.append(kwargs["Key"])
            raise _client_error("ConditionalRequestConflict", 409)

    report = upload_adapter(
        Interfering(s3, put_object=conflict_once), BUCKET, TARGET, "support", adapter_dir(tmp_path, "support")
    )
    assert "adapter_config.json" in report.uploaded
    assert conflicts == [claim_key("support"), f"adapters/{QWEN}/support/adapter_config.json"]


# ---------------------------------------------------------------- what changes under an upload


def test_a_staged_file_removed_before_its_copy_stops_the_upload(s3, tmp_path):
    def remove_source(source, *args, **kwargs):
        s3.delete_object(Bucket=source["Bucket"], Key=source["Key"])

    with pytest.raises(ArtifactError, match="removed while being published"):
        upload_adapter(Interfering(s3, copy=remove_source), BUCKET, TARGET, "support", adapter_dir(tmp_path, "support"))
    assert f"adapters/{QWEN}/support/adapter_config.json" not in keys(s3)


def test_a_staged_file_replaced_before_its_copy_is_caught_and_a_rerun_repairs_it(s3, tmp_path):
    directory = adapter_dir(tmp_path, "support")

    def replace_source(source, *args, **kwargs):
        original = s3.head_object(Bucket=source["Bucket"], Key=source["Key"])
        s3.put_object(
            Bucket=source["Bucket"],
            Key=source["Key"],
            Body=os.urandom(original["ContentLength"]),
            Metadata=original["Metadata"],
        )

    with pytest.raises(ArtifactError, match="the copy does not hold .*its staged object was replaced"):
        upload_adapter(Interfering(s3, copy=replace_source), BUCKET, TARGET, "support", directory)
    assert f"adapters/{QWEN}/support/adapter_config.json" not in keys(s3)
    assert upload(directory) == 0  # the staged object no longer holds the file: sent again
    assert published(s3, "support") == contents(directory)


def test_a_staged_object_replaced_with_its_metadata_kept_is_sent_again(s3, tmp_path, capsys):
    directory = adapter_dir(tmp_path, "support")
    with pytest.raises(ConnectionError):  # staged, then cut before the copies
        upload_adapter(Interfering(s3, copy=_raise(ConnectionError("reset"))), BUCKET, TARGET, "support", directory)
    (staged,) = [k for k in keys(s3, "staging/adapters/") if k.endswith("adapter_model.safetensors")]
    original = s3.head_object(Bucket=BUCKET, Key=staged)
    s3.put_object(Bucket=BUCKET, Key=staged, Body=os.urandom(original["ContentLength"]), Metadata=original["Metadata"])
    assert upload(directory) == 0
    assert "(2 uploaded, 1 already staged)" in capsys.readouterr().out  # the weights again, and the config
    assert published(s3, "support") == contents(directory)


def _raise(exc: Exception):
    def fail(*args, **kwargs):
        raise exc

    return fail


def test_a_config_edited_during_the_upload_is_not_published(s3, tmp_path):
    directory = adapter_dir(tmp_path, "support")

    def edit_config(*args, **kwargs):
        config = json.loads((directory / "adapter_config.json").read_text())
        (directory / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": 1}))

    with pytest.raises(ArtifactError, match="adapter_config.json: changed while being published"):
        upload_adapter(Interfering(s3, copy=edit_config), BUCKET, TARGET, "support", directory)
    assert f"adapters/{QWEN}/support/adapter_config.json" not in keys(s3)


def test_a_config_key_taken_and_freed_again_is_reported(s3, tmp_path):
    def taken(*args, **kwargs):
        if kwargs.get("Key", "").endswith("/adapter_config.json"):
            raise _client_error("PreconditionFailed", 412)

    with pytest.raises(ArtifactError, match="changed while being published; rerun"):
        upload_adapter(Interfering(s3, put_object=taken), BUCKET, TARGET, "support", adapter_dir(tmp_path, "support"))


def test_a_published_adapter_whose_weights_were_replaced_is_not_taken_for_this_content(s3, tmp_path, capsys):
    directory = adapter_dir(tmp_path, "support")
    assert upload(directory) == 0
    key = f"adapters/{QWEN}/support/adapter_model.safetensors"
    original = s3.head_object(Bucket=BUCKET, Key=key)
    s3.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(original["ContentLength"]), Metadata=original["Metadata"])
    assert upload(directory) == 2
    assert "already published with other content" in capsys.readouterr().err
    digest = hashlib.sha256((directory / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert original["Metadata"]["sha256"] == digest  # what a metadata check would have trusted


def test_an_identical_upload_finishing_first_removes_the_staged_files_and_this_one_is_done(s3, tmp_path):
    """The other upload publishes and clears staging while this one is about to copy."""
    directory = adapter_dir(tmp_path, "support")
    other = []

    def the_other_upload_finishes(*args, **kwargs):
        if not other:
            other.append(upload_adapter(s3, BUCKET, TARGET, "support", directory))

    report = upload_adapter(Interfering(s3, copy=the_other_upload_finishes), BUCKET, TARGET, "support", directory)
    assert report.already_published and not other[0].already_published
    assert published(s3, "support") == contents(directory) and not keys(s3, "staging/")


def test_an_upload_that_claims_a_name_published_meanwhile_gives_its_claim_back(s3, tmp_path, capsys):
    first, other = adapter_dir(tmp_path / "a", "support"), adapter_dir(tmp_path / "b", "support", rank=16)

    def published_just_before_the_claim(*args, **kwargs):
        if kwargs.get("Key") == claim_key("support") and not published(s3, "support"):
            upload_adapter(s3, BUCKET, TARGET, "support", first)

    with pytest.raises(ArtifactError, match="already published with other content"):
        upload_adapter(Interfering(s3, put_object=published_just_before_the_claim), BUCKET, TARGET, "support", other)
    assert not keys(s3, "staging/")  # the claim it took is released
    assert published(s3, "support") == contents(first)
