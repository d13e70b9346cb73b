"""Hostile input for `llmstacks upload-model` and `upload-adapter`.

Every case runs the real command in a subprocess, bounded in time and in memory
(RLIMIT_AS), and must end in exactly one `error: ` line on stderr, exit status 2,
no traceback, and not one object version changed in either bucket. Then the
other side: objects replaced in the bucket behind the tools' back.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
import yaml
from artifact_fixtures import (
    adapter_dir,
    deep_json,
    model_dir,
    write_raw_safetensors,
    write_torch_zip,
)

from stacks.cli import main
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.publishing.adapter_dirs import AdapterTarget
from stacks.publishing.adapters import upload_adapter
from stacks.publishing.models import upload_model

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
WEIGHTS, LORA, REGION = "llm-dev-weights-111111111111", "llm-dev-lora-111111111111", "us-west-2"
QWEN = "qwen2.5-7b-instruct"
TARGET = AdapterTarget(QWEN, 32, (QWEN, "Qwen/Qwen2.5-7B-Instruct"), where="dev.yaml: models[0]")
# A bound the tests assert, in seconds: a hostile directory must not make the command hang. A refusal takes
# 1-5 s on this machine loaded 4x; one that blocks on a FIFO or scans quadratically would take forever.
TIMEOUT = 120
MEMORY = 2 * 2**30  # address space: a command that expands a hostile file in memory dies


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


@pytest.fixture(scope="module")
def aws(s3_endpoint, tmp_path_factory):
    """Both buckets with something published in them, an environment trusting the model's code,
    and the environment for the commands."""
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
    }
    s3 = boto3.client(
        "s3", region_name=REGION, endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    for bucket in (WEIGHTS, LORA):
        try:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    s3.put_bucket_versioning(Bucket=LORA, VersioningConfiguration={"Status": "Enabled"})
    root = tmp_path_factory.mktemp("published")
    upload_model(s3, WEIGHTS, QWEN, model_dir(root))
    upload_adapter(s3, LORA, TARGET, "legal", adapter_dir(root, "legal"))
    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    data["models"][0]["trust_remote_code"] = True
    trusted = root / "trusted" / "dev.yaml"
    trusted.parent.mkdir()
    trusted.write_text(yaml.safe_dump(data))
    return SimpleNamespace(s3=s3, env={**os.environ, **creds}, trusted=trusted)


def versions(s3) -> set[tuple]:
    """Every object version and delete marker in both buckets."""
    found = set()
    for bucket in (WEIGHTS, LORA):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                found.add((bucket, v["Key"], v["VersionId"], v["IsLatest"], v.get("ETag")))
    return found


def llmstacks(aws, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LLMSTACKS, *args],
        check=False,
        env=aws.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=_limit_memory,
    )


def assert_refused(result: subprocess.CompletedProcess, needle: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines[:5]
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


# ---------------------------------------------------------------- what a directory can hold


def _outside(d: Path, name: str = "outside.json") -> Path:
    target = d.parent / name
    target.write_text("{}")
    return target


def _link(name: str, to: str) -> Callable[[Path], None]:
    return lambda d: (d / name).symlink_to(d / to)


def _loop(d: Path) -> None:
    (d / "a.json").symlink_to(d / "b.json")
    (d / "b.json").symlink_to(d / "a.json")


def _link_to_folder(d: Path) -> None:
    (d / "sub").mkdir()
    (d / "sub" / "notes.txt").write_text("x")
    (d / "alias").symlink_to(d / "sub")


def _socket(d: Path) -> None:
    here = os.getcwd()
    os.chdir(d)  # a relative bind: AF_UNIX paths are limited to ~100 bytes
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind("control.sock")
    finally:
        os.chdir(here)


def _write(name: str, content: bytes | str) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return write


def _undecodable_name(d: Path) -> None:
    with open(os.fsencode(d) + b"/notes-\xff\xfe.txt", "wb") as f:
        f.write(b"x")


def _long_key(d: Path) -> None:
    folder = d
    for part in "abcd":
        folder = folder / (part * 200)
    folder.mkdir(parents=True)
    (folder / ("e" * 200 + ".txt")).write_text("x")


def _many_files(d: Path) -> None:
    (d / "extra").mkdir()
    for i in range(10_001):
        (d / "extra" / f"{i}.txt").touch()


def _header(name: str, header: str) -> Callable[[Path], None]:
    return lambda d: write_raw_safetensors(d / name, header, b"\0" * 8)


def _tensor(name: str, tensor_name: str, entry: str) -> Callable[[Path], None]:
    return _header(name, f'{{"{tensor_name}": {entry}}}')


SHARD = "model-00000-of-00002.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
LORA_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
PICKLE = pickle.dumps({"weights": [1, 2, 3]}, protocol=4)
# A JSON string that never ends, of escaped quotes: a regular-expression scan of it is quadratic.
UNTERMINATED = '"' + '\\"' * 400_000
MiB = 2**20

MODEL_CASES = [
    # links, special files, names
    ("dangling-link", _link("extra.json", "missing.json"), "a dangling link"),
    ("link-loop", _loop, "a link that cannot be resolved"),
    ("self-link", _link("self.json", "self.json"), "a link that cannot be resolved"),
    ("link-outside", lambda d: (d / "extra.json").symlink_to(_outside(d)), "links outside"),
    ("link-to-folder", _link_to_folder, "a link to a folder"),
    ("hard-link", lambda d: os.link(_outside(d), d / "extra.json"), "a hard link (2 names"),
    ("fifo", lambda d: os.mkfifo(d / "generation_config.json"), "a FIFO (named pipe)"),
    (
        "link-to-fifo",
        lambda d: (os.mkfifo(d.parent / "pipe"), (d / "extra.json").symlink_to(d.parent / "pipe")),
        "links outside",
    ),
    ("socket", _socket, "a socket"),
    ("newline-in-name", _write("notes\n.txt", "x"), "'notes\\n.txt' is not printable"),
    ("escape-in-name", _write("\x1b[31mred.txt", "x"), "is not printable"),
    ("tab-in-folder-name", _write("sub\tdir/notes.txt", "x"), "'sub\\tdir' is not printable"),
    ("undecodable-name", _undecodable_name, "is not valid UTF-8"),
    ("key-over-1024-bytes", _long_key, "over S3's limit of 1,024 bytes"),
    ("over-10000-files", _many_files, "more than 10,000 files and folders"),
    # JSON the command parses
    ("config-100000-deep", _write("config.json", deep_json(100_000)), "config.json: not valid JSON"),
    (
        "config-100-deep",
        _write("config.json", '{"model_type": "qwen2", "x": ' + deep_json(100) + "}"),
        "nested more than 64 levels deep",
    ),
    (
        "config-over-1-mib",
        _write("config.json", '{"model_type": "qwen2", "pad": "' + "x" * MiB + '"}'),
        "over 1,048,576 bytes; config.json may be at most 1 MiB",
    ),
    ("config-unterminated-string", _write("config.json", UNTERMINATED), "config.json: not valid JSON"),
    (
        "config-huge-number",
        _write("config.json", '{"model_type": "qwen2", "n": ' + "9" * 100_000 + "}"),
        "not valid JSON",
    ),
    (
        "tokenizer-config-100000-deep",
        _write("tokenizer_config.json", deep_json(100_000)),
        "tokenizer_config.json: not valid JSON",
    ),
    (
        "tokenizer-config-over-16-mib",
        _write("tokenizer_config.json", '{"pad": "' + "x" * 16 * MiB + '"}'),
        "at most 16 MiB",
    ),
    ("header-100000-deep", _header(SHARD, deep_json(100_000)), "header is not JSON of bounded depth"),
    ("header-unterminated-string", _header(SHARD, UNTERMINATED), "header is not JSON"),
    (
        "header-string-offsets",
        _tensor(SHARD, "w", '{"dtype": "U8", "shape": [8], "data_offsets": "ab"}'),
        "tensor 'w' has no valid shape and data_offsets",
    ),
    (
        "header-float-shape",
        _tensor(SHARD, "w", '{"dtype": "U8", "shape": [8.0], "data_offsets": [0, 8]}'),
        "no valid shape",
    ),
    (
        "header-nested-shape",
        _tensor(SHARD, "w", '{"dtype": "U8", "shape": [[8]], "data_offsets": [0, 8]}'),
        "no valid shape",
    ),
    (
        "header-bool-offsets",
        _tensor(SHARD, "w", '{"dtype": "U8", "shape": [8], "data_offsets": [false, true]}'),
        "no valid shape",
    ),
    (
        "header-negative-offset",
        _tensor(SHARD, "w", '{"dtype": "U8", "shape": [8], "data_offsets": [-8, 8]}'),
        "no valid shape",
    ),
    (
        "header-three-offsets",
        _tensor(SHARD, "w", '{"dtype": "U8", "shape": [8], "data_offsets": [0, 4, 8]}'),
        "no valid shape",
    ),
    ("header-tensor-not-object", _tensor(SHARD, "w", '"U8"'), "no valid shape"),
    (
        "header-over-limit",
        lambda d: (d / SHARD).write_bytes((200 * MiB).to_bytes(8, "little") + b"{}"),
        "not a safetensors file (no valid header)",
    ),
    # pickles, by name and by content
    ("pickle-upper-BIN", _write("pytorch_model.BIN", PICKLE), "pickled weights are not published"),
    ("pickle-dot-pickle", _write("optimizer.pickle", b"x"), "pickled weights are not published"),
    ("pickle-mixed-case-Pt", _write("extra/weights.Pt", b"x"), "pickled weights are not published"),
    ("pickle-dot-npy", _write("embeddings.npy", b"x"), "pickled weights are not published"),
    ("pickle-dot-joblib", _write("scaler.joblib", b"x"), "pickled weights are not published"),
    ("pickle-magic-unknown-suffix", _write("weights.dat", PICKLE), "a pickle (protocol 4), whatever its name"),
    ("pickle-magic-as-json", _write("generation_config.json", pickle.dumps([1], protocol=2)), "a pickle (protocol 2)"),
    ("torch-zip", lambda d: write_torch_zip(d / "weights.data"), "a ZIP archive holding a pickle ('archive/data.pkl'"),
    (
        "torch-zip-upper-PKL",
        lambda d: write_torch_zip(d / "weights.data", "archive/DATA.PKL"),
        "a ZIP archive holding a pickle",
    ),
    ("broken-zip", _write("weights.data", b"PK\x03\x04" + os.urandom(200)), "a ZIP archive that cannot be inspected"),
    # remote code
    (
        "python-file",
        _write("modeling_qwen2.py", "import os\n"),
        "pass --trust-remote-code and set trust_remote_code: true in",
    ),
    ("python-file-upper-PY", _write("sub/Modeling.PY", "import os\n"), "ships code (Python file 'sub/Modeling.PY')"),
    (
        "auto-map-in-config",
        _write("config.json", '{"model_type": "qwen2", "auto_map": {"AutoConfig": "other/repo--c.C"}}'),
        "ships code (config.json has auto_map)",
    ),
    (
        "auto-map-in-tokenizer-config",
        _write("tokenizer_config.json", '{"auto_map": {"AutoTokenizer": ["t.T", null]}}'),
        "ships code (tokenizer_config.json has auto_map)",
    ),
]


@pytest.mark.parametrize(("change", "needle"), [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_hostile_model_directories_are_refused_in_one_line(aws, tmp_path, change, needle):
    directory = model_dir(tmp_path)
    change(directory)
    before = versions(aws.s3)
    result = llmstacks(aws, "upload-model", "--env", "dev", "--model", QWEN, "--from", str(directory))
    assert_refused(result, needle)
    assert versions(aws.s3) == before


@pytest.mark.parametrize(
    ("flag", "env_file", "missing", "given"),
    [
        (True, False, "set trust_remote_code: true in", "pass --trust-remote-code"),
        (False, True, "pass --trust-remote-code", "set trust_remote_code"),
    ],
    ids=["flag-without-environment", "environment-without-flag"],
)
@pytest.mark.parametrize("code", ["python-file", "auto-map-in-config"])
def test_remote_code_takes_both_the_flag_and_the_environment(aws, tmp_path, flag, env_file, missing, given, code):
    directory = model_dir(tmp_path)
    {c[0]: c[1] for c in MODEL_CASES}[code](directory)
    before = versions(aws.s3)
    where = ["--config", str(aws.trusted)] if env_file else ["--env", "dev"]
    result = llmstacks(
        aws,
        "upload-model",
        *where,
        "--model",
        QWEN,
        "--from",
        str(directory),
        *(["--trust-remote-code"] if flag else []),
    )
    line = assert_refused(result, missing)
    assert given not in line
    assert versions(aws.s3) == before


ADAPTER_CASES = [
    ("config-100000-deep", _write("adapter_config.json", deep_json(100_000)), "adapter_config.json: not valid JSON"),
    ("config-unterminated-string", _write("adapter_config.json", UNTERMINATED), "adapter_config.json: not valid JSON"),
    (
        "config-over-1-mib",
        _write("adapter_config.json", '{"peft_type": "LORA", "pad": "' + "x" * MiB + '"}'),
        "adapter_config.json may be at most 1 MiB",
    ),
    ("config-is-a-pickle", _write("adapter_config.json", pickle.dumps({"r": 8}, protocol=2)), "a pickle (protocol 2)"),
    (
        "config-huge-rank",
        _write("adapter_config.json", '{"peft_type": "LORA", "r": [' + "1," * 100_000 + "1]}"),
        "r: [1, 1, 1, 1,",
    ),
    ("weights-100000-deep", _header(ADAPTER_WEIGHTS, deep_json(100_000)), "header is not JSON of bounded depth"),
    (
        "weights-string-shape",
        _tensor(ADAPTER_WEIGHTS, LORA_A, '{"dtype": "F16", "shape": "8", "data_offsets": [0, 8]}'),
        "has no valid shape and data_offsets",
    ),
    (
        "weights-huge-tensor-name",
        _tensor(ADAPTER_WEIGHTS, "x" * 100_000, '{"shape": [], "data_offsets": ["0", 8]}'),
        "tensor 'xxxxxxxx",
    ),
    ("other-safetensors-a-pickle", _write("extra.safetensors", PICKLE), "extra.safetensors: not a safetensors file"),
    ("python-file", _write("handler.py", "import os\n"), "a Python file; an adapter is weights and configuration only"),
    ("fifo", lambda d: os.mkfifo(d / "tokenizer.json"), "a FIFO (named pipe)"),
    ("dangling-link", _link("tokenizer.json", "gone.json"), "a dangling link"),
    ("hard-link", lambda d: os.link(_outside(d), d / "tokenizer.json"), "a hard link"),
    ("newline-in-name", _write("notes\n.md", "x"), "is not printable"),
    ("key-over-1024-bytes", _long_key, "over S3's limit of 1,024 bytes"),
    ("pickle-upper-BIN", _write("adapter_model.BIN", PICKLE), "pickled weights are not published"),
    ("torch-zip", lambda d: write_torch_zip(d / "adapter.weights"), "a ZIP archive holding a pickle"),
]


@pytest.mark.parametrize(("change", "needle"), [c[1:] for c in ADAPTER_CASES], ids=[c[0] for c in ADAPTER_CASES])
def test_hostile_adapter_directories_are_refused_in_one_line(aws, tmp_path, change, needle):
    directory = adapter_dir(tmp_path, "support")
    change(directory)
    before = versions(aws.s3)
    result = llmstacks(
        aws, "upload-adapter", "--env", "dev", "--model", QWEN, "--adapter", "support", "--from", str(directory)
    )
    line = assert_refused(result, needle)
    assert len(line) < 2000  # values are quoted as a short prefix, never whole
    assert versions(aws.s3) == before


def test_what_is_allowed_is_published(aws, tmp_path):
    """Links to files inside, printable non-ASCII names, ZIPs without pickles, and remote code
    with both opt-ins: published as they are."""
    directory = model_dir(tmp_path)
    (directory / "modeling_custom.py").write_text("class Custom: pass\n")
    (directory / "tokenizer.model").symlink_to(directory / "tokenizer.json")
    (directory / "説明.txt").write_text("read me")
    write_torch_zip(directory / "extras.zip", "archive/notes.txt")
    result = llmstacks(
        aws,
        "upload-model",
        "--config",
        str(aws.trusted),
        "--model",
        QWEN,
        "--from",
        str(directory),
        "--trust-remote-code",
    )
    assert result.returncode == 0, result.stderr
    snapshot = result.stdout.split("pin it: models[0].weights.snapshot: ")[1].split()[0]
    prefix = f"models/{QWEN}/{snapshot}/"
    keys = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=WEIGHTS, Prefix=prefix)["Contents"]}
    assert {prefix + n for n in ("modeling_custom.py", "tokenizer.model", "説明.txt", "extras.zip")} <= keys
    linked = aws.s3.get_object(Bucket=WEIGHTS, Key=f"{prefix}tokenizer.model")["Body"].read()
    assert linked == (directory / "tokenizer.json").read_bytes()


# ---------------------------------------------------------------- objects replaced behind the tools' back


@pytest.fixture
def cli_env(aws, monkeypatch):
    """The in-process command line, against the same server."""
    for key, value in aws.env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    return aws


def _verify(snapshot: str, *flags: str) -> int:
    return main(["verify-model", "--env", "dev", "--model", QWEN, "--snapshot", snapshot, *flags])


@pytest.mark.parametrize("with_checksum", [False, True], ids=["no-checksum", "own-sha256-checksum"])
def test_an_object_replaced_with_its_metadata_kept_is_reported_and_a_rerun_repairs_it(
    cli_env, tmp_path, capsys, with_checksum
):
    s3, directory = cli_env.s3, model_dir(tmp_path)
    assert main(["upload-model", "--env", "dev", "--model", QWEN, "--from", str(directory)]) == 0
    snapshot = capsys.readouterr().out.split("pin it: models[0].weights.snapshot: ")[1].split()[0]
    shard = f"models/{QWEN}/{snapshot}/model-00001-of-00002.safetensors"
    original = s3.head_object(Bucket=WEIGHTS, Key=shard)
    extra = {"ChecksumAlgorithm": "SHA256"} if with_checksum else {}
    s3.put_object(
        Bucket=WEIGHTS, Key=shard, Body=os.urandom(original["ContentLength"]), Metadata=original["Metadata"], **extra
    )
    assert s3.head_object(Bucket=WEIGHTS, Key=shard)["Metadata"] == original["Metadata"]
    capsys.readouterr()
    assert _verify(snapshot) == 1
    out = capsys.readouterr().out
    assert f"{shard}: S3 checksum" in out and "the object was replaced" in out
    assert out.strip().endswith(f"snapshot {snapshot}: 1 problem(s): it differs from its manifest")
    assert main(["upload-model", "--env", "dev", "--model", QWEN, "--from", str(directory)]) == 0
    assert (
        f"repaired {QWEN} snapshot {snapshot}" in (out := capsys.readouterr().out)
        and ": 1 uploaded, 4 already there)" in out
    )
    assert _verify(snapshot) == 0 and _verify(snapshot, "--deep") == 0


def test_multipart_objects_are_compared_by_their_composite_checksum(cli_env, tmp_path):
    from boto3.s3.transfer import TransferConfig

    from stacks.publishing.snapshots import verify_snapshot

    s3 = cli_env.s3
    small_parts = TransferConfig(
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, preferred_transfer_client="classic"
    )
    directory = model_dir(tmp_path, shards=1, shard_bytes=12 * MiB)
    report = upload_model(s3, WEIGHTS, QWEN, directory, transfer_config=small_parts)
    manifest = json.loads(s3.get_object(Bucket=WEIGHTS, Key=report.manifest_key)["Body"].read())
    (shard,) = [e for e in manifest["files"] if e["path"].endswith(".safetensors")]
    assert shard["checksum_sha256"].endswith("-3") and shard["path"] in report.uploaded  # three 5 MiB parts
    snapshot = report.snapshot
    assert verify_snapshot(s3, WEIGHTS, QWEN, snapshot) == []
    assert upload_model(s3, WEIGHTS, QWEN, directory, transfer_config=small_parts).uploaded == []
    # The same bytes in one part: another checksum, so reported (and a rerun sends the file again).
    s3.put_object(
        Bucket=WEIGHTS,
        Key=report.prefix + shard["path"],
        Body=(directory / shard["path"]).read_bytes(),
        ChecksumAlgorithm="SHA256",
    )
    assert (
        len(verify_snapshot(s3, WEIGHTS, QWEN, snapshot)) == 1
        and verify_snapshot(s3, WEIGHTS, QWEN, snapshot, deep=True) == []
    )
    assert upload_model(s3, WEIGHTS, QWEN, directory, transfer_config=small_parts).uploaded == [shard["path"]]
    assert verify_snapshot(s3, WEIGHTS, QWEN, snapshot) == []


def _put_manifest(s3, report, body: bytes) -> None:
    s3.put_object(Bucket=WEIGHTS, Key=report.manifest_key, Body=body)


def test_a_manifest_without_checksums_is_reported_not_trusted(cli_env, tmp_path, capsys):
    s3 = cli_env.s3
    report = upload_model(s3, WEIGHTS, QWEN, model_dir(tmp_path))
    manifest = json.loads(s3.get_object(Bucket=WEIGHTS, Key=report.manifest_key)["Body"].read())
    _put_manifest(
        s3,
        report,
        json.dumps(
            {**manifest, "files": [{k: v for k, v in e.items() if k != "checksum_sha256"} for e in manifest["files"]]}
        ).encode(),
    )
    capsys.readouterr()
    assert _verify(report.snapshot) == 1
    out = capsys.readouterr().out
    assert "the manifest records no S3 checksum (an older upload-model wrote it)" in out
    # It is no longer the manifest the snapshot id was derived from, and --deep says so too.
    assert "manifest.json: describes snapshot " in out
    assert _verify(report.snapshot, "--deep") == 1
    assert "checksum" not in (out := capsys.readouterr().out) and "manifest.json: describes snapshot" in out


@pytest.mark.parametrize(
    "body",
    [
        deep_json(100_000).encode(),
        b'"' + b'\\"' * 400_000,
        b"[]",
        b'{"files": [{"path": "a\\nb", "size": 1, "sha256": "x"}]}',
        b"\xff\xfe",
    ],
    ids=["deep", "unterminated", "a-list", "newline-in-path", "not-utf8"],
)
def test_a_manifest_that_is_not_one_is_one_line_exit_2(cli_env, tmp_path, capsys, body):
    report = upload_model(cli_env.s3, WEIGHTS, QWEN, model_dir(tmp_path))
    _put_manifest(cli_env.s3, report, body)
    capsys.readouterr()
    assert _verify(report.snapshot) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith("manifest.json: not a manifest upload-model writes; rerun upload-model")


def test_a_manifest_over_its_limit_is_not_read(cli_env, tmp_path, capsys, monkeypatch):
    from stacks.publishing import manifests

    report = upload_model(cli_env.s3, WEIGHTS, QWEN, model_dir(tmp_path))
    monkeypatch.setattr(manifests, "MANIFEST_LIMIT", 100)
    capsys.readouterr()
    assert _verify(report.snapshot) == 2
    assert "manifest.json: over 100 bytes; not an object this tool wrote" in capsys.readouterr().err


def test_a_file_changed_while_it_is_uploaded_is_caught(cli_env, tmp_path):
    """What S3 received (its checksum) must be the file that was hashed."""
    from stacks.errors import ArtifactError

    class Tampering:
        def __init__(self, client):
            self._client = client

        def put_object(self, **kwargs):
            if kwargs["Key"].endswith(".safetensors"):
                kwargs["Body"] = os.urandom(len(kwargs["Body"].read()))
            return self._client.put_object(**kwargs)

        def __getattr__(self, name):
            return getattr(self._client, name)

    with pytest.raises(ArtifactError, match="changed while being uploaded"):
        upload_model(Tampering(cli_env.s3), WEIGHTS, QWEN, model_dir(tmp_path))


def test_s3_refusing_an_upload_is_one_line_exit_2(cli_env, tmp_path, capsys, monkeypatch):
    from botocore.exceptions import ClientError

    from stacks.publishing import aws as aws_module

    class Refusing:
        def __init__(self, client):
            self._client = client

        def put_object(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")

        def __getattr__(self, name):
            return getattr(self._client, name)

    real = aws_module.s3_client
    monkeypatch.setattr(aws_module, "s3_client", lambda region: Refusing(real(region)))
    assert main(["upload-model", "--env", "dev", "--model", QWEN, "--from", str(model_dir(tmp_path))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: Failed to upload") and "AccessDenied" in err[0]


@pytest.mark.parametrize(
    "config",
    [b"[" * 100_000, b"[1, 2]", b'{"r": true, "base_model_name_or_path": "a\\nb"}'],
    ids=["deep", "not-an-object", "odd-values"],
)
def test_list_adapters_survives_a_hostile_published_config(cli_env, capsys, config):
    cli_env.s3.put_object(Bucket=LORA, Key=f"adapters/{QWEN}/odd/adapter_config.json", Body=config)
    try:
        capsys.readouterr()
        assert main(["list-adapters", "--env", "dev", "--model", QWEN]) == 0
        (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{QWEN}:odd ")]
        assert line.split()[1] == "-" and line.endswith(" -")  # no rank, no base model
    finally:
        assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "odd"]) == 0


# ---------------------------------------------------------------- files that change between the scan and the read

SWAP_TO_FIFO = """
import os, sys
import boto3
from pathlib import Path
from stacks.errors import ArtifactError
from stacks.publishing.aws import transfer_config
from stacks.publishing.files import with_digests
from stacks.publishing.objects import put_file
from stacks.publishing.scan import local_files

directory = Path(sys.argv[1])
(f,) = [f for f in local_files(directory) if f.name == "tokenizer.json"]
(hashed,) = with_digests([f], transfer_config())
f.path.unlink()
os.mkfifo(f.path)  # same name, now a FIFO: a plain open for reading would wait forever
for step in (lambda: with_digests([f], transfer_config()),
             lambda: put_file(boto3.client("s3", endpoint_url=sys.argv[2]), "llm-dev-weights-111111111111", "key", hashed,
                              transfer_config=transfer_config())):
    try:
        step()
    except ArtifactError as exc:
        print(exc)
"""


def test_a_file_swapped_for_a_fifo_after_the_scan_never_blocks(aws, s3_endpoint, tmp_path):
    directory = model_dir(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", SWAP_TO_FIFO, str(directory), s3_endpoint],
        check=False,
        capture_output=True,
        text=True,
        env=aws.env,
        timeout=TIMEOUT,
        preexec_fn=_limit_memory,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("tokenizer.json: changed while being published" in line for line in lines), lines


def test_a_file_removed_or_cut_short_after_the_scan_is_one_error(tmp_path, monkeypatch):
    import io

    from stacks.errors import ArtifactError
    from stacks.publishing import files
    from stacks.publishing.aws import transfer_config
    from stacks.publishing.scan import local_files

    directory = model_dir(tmp_path)
    scanned = {f.name: f for f in local_files(directory)}
    (directory / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match=r"tokenizer.json: cannot be read \(No such file or directory\)"):
        files.with_digests([scanned["tokenizer.json"]], transfer_config())
    monkeypatch.setattr(files, "open_regular", lambda f: io.BytesIO(b"{}"))  # shrank while being read
    with pytest.raises(ArtifactError, match="config.json: changed while being read"):
        files.with_digests([scanned["config.json"]], transfer_config())


def test_a_folder_that_cannot_be_listed_is_one_error(tmp_path, monkeypatch):
    from stacks.errors import ArtifactError
    from stacks.publishing import scan

    directory = model_dir(tmp_path)
    (directory / "private").mkdir()
    real = os.scandir

    def scandir(path):
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(scan.os, "scandir", scandir)
    with pytest.raises(ArtifactError, match=r"model/private: cannot be listed \(Permission denied\)"):
        scan.local_files(directory)


def _zip64(path: Path, member: str) -> Path:
    """A ZIP whose end record defers to its ZIP64 records, as one with over 65,535 entries does."""
    import zipfile

    limit = zipfile.ZIP_FILECOUNT_LIMIT
    zipfile.ZIP_FILECOUNT_LIMIT = 0  # writes the ZIP64 end records
    try:
        write_torch_zip(path, member)
    finally:
        zipfile.ZIP_FILECOUNT_LIMIT = limit
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x05\x06")
    data[at + 8 : at + 20] = b"\xff\xff" * 2 + b"\xff" * 8  # entries, directory size and offset: "see ZIP64"
    path.write_bytes(bytes(data))
    assert zipfile.ZipFile(path).namelist()[0] == member
    return path


def _patched_end(path: Path, offset: int, value: bytes) -> bytes:
    """The archive with bytes of its end record replaced (offset 16: the central directory's offset)."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x05\x06")
    data[at + offset : at + offset + len(value)] = value
    return bytes(data)


def _patched_locator(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x06\x07")
    data[at + 8 : at + 16] = (2**40).to_bytes(8, "little")  # where the ZIP64 end record is: far past the end
    return bytes(data)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: _zip64(p, "archive/data.pkl"), "a ZIP archive holding a pickle ('archive/data.pkl'"),
        (lambda p: _zip64(p, "archive/notes.txt"), None),
        (
            lambda p: p.write_bytes(_zip64(p, "a.pkl").read_bytes().replace(b"PK\x06\x07", b"XXXX")),
            "no ZIP64 end of central directory",
        ),
        (
            lambda p: p.write_bytes(write_torch_zip(p).read_bytes().replace(b"PK\x01\x02", b"XXXX")),
            "damaged central directory",
        ),
        (lambda p: p.write_bytes(write_torch_zip(p).read_bytes()[:-30]), "cannot be inspected"),
        (
            lambda p: p.write_bytes(_patched_end(write_torch_zip(p), 16, b"\x00\x00\x00\x7f")),
            "central directory out of range",
        ),
        (lambda p: p.write_bytes(_patched_locator(_zip64(p, "a.pkl"))), "ZIP64 end record out of range"),
    ],
    ids=[
        "zip64-with-pickle",
        "zip64-without",
        "zip64-locator-missing",
        "directory-damaged",
        "truncated",
        "directory-out-of-range",
        "zip64-record-out-of-range",
    ],
)
def test_zip_archives_are_read_from_their_central_directory(tmp_path, make, problem):
    from stacks.publishing.sniff import content_problem

    path = tmp_path / "weights.data"
    make(path)
    with path.open("rb") as f:
        found = content_problem(f, path.stat().st_size)
    assert (found is None) if problem is None else (problem in found), found


def test_a_device_file_is_refused_without_being_opened(aws, tmp_path):
    import stat

    directory = model_dir(tmp_path)
    try:
        os.mknod(directory / "null.json", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device file needs CAP_MKNOD")
    before = versions(aws.s3)
    result = llmstacks(aws, "upload-model", "--env", "dev", "--model", QWEN, "--from", str(directory))
    assert_refused(result, "null.json: a character device; only regular files are published")
    assert versions(aws.s3) == before
