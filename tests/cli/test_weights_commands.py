"""Bad input to the weights commands through the real `llmstacks` (upload-model, verify-model,
list-models, delete-snapshot, pin): one line, exit 2, nothing written to the weights bucket."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import waits
from artifact_fixtures import environment_dir, model_dir

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
REGION, MODEL = "us-west-2", "qwen2.5-7b-instruct"
BUCKET = "cli-dev-weights-111111111111"


@pytest.fixture(scope="module")
def aws(s3_endpoint, tmp_path_factory):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
    }
    s3 = boto3.client(
        "s3", region_name=REGION, endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    try:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    root = tmp_path_factory.mktemp("weights-cli")
    envs = environment_dir(root, prefix="cli", only=[MODEL], snapshots={MODEL: None})
    return s3, env, envs, model_dir(root)


def llmstacks(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LLMSTACKS, *args], env=env, capture_output=True, text=True, timeout=waits.COMMAND)


def versions(s3) -> set[tuple]:
    page = s3.list_object_versions(Bucket=BUCKET)
    return {(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])}


def broken_dir(root: Path) -> Path:
    """dev (pinning nothing) beside a file that does not load: what it pins cannot be known."""
    directory = environment_dir(root, prefix="cli", only=[MODEL], snapshots={MODEL: None})
    (directory / "canary.yaml").write_text("name: canary\naws: [unclosed\n")
    return directory


CASES = [
    ("model-id", ["upload-model", "--model", "qwen:7b", "--from", "{model}"], "--model: "),
    (
        "missing-directory",
        ["upload-model", "--model", MODEL, "--from", "/nonexistent/dir"],
        "/nonexistent/dir: not a directory",
    ),
    ("snapshot-id", ["verify-model", "--model", MODEL, "--snapshot", "ABC"], "--snapshot: 'ABC' is not a snapshot id"),
    (
        "snapshot-id-delete",
        ["delete-snapshot", "--model", MODEL, "--snapshot", "0123"],
        "--snapshot: '0123' is not a snapshot id",
    ),
    ("model-id-list", ["list-models", "--model", "a/b"], "--model: "),
    (
        "huggingface-model",
        ["delete-snapshot", "--config", "{prod}", "--model", "llama-3.1-70b-instruct", "--legacy"],
        "'llama-3.1-70b-instruct' takes its weights from huggingface, not the weights bucket",
    ),
    ("unknown-environment", ["pin", "--env", "nosuch"], "--env: no environment 'nosuch' (known: "),
    ("pin-without-snapshot", ["pin"], "models[0].weights.snapshot: required for bucket weights"),
    (
        "unreadable-neighbour",
        ["delete-snapshot", "--env-dir", "{broken}", "--model", MODEL, "--snapshot", "0123456789abcdef"],
        "canary.yaml: invalid YAML",
    ),
]


@pytest.mark.parametrize(("args", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(aws, tmp_path, args, needle):
    s3, env, envs, directory = aws
    from stacks.config.loader import ENVIRONMENTS_DIR

    values = {
        "{model}": str(directory),
        "{prod}": str(ENVIRONMENTS_DIR / "prod.yaml"),
        "{broken}": str(broken_dir(tmp_path)),
    }
    args = [values.get(a, a) for a in args]
    if "--config" not in args and "--env" not in args:
        args = [args[0], *([] if "--env-dir" in args else ["--env-dir", str(envs)]), "--env", "dev", *args[1:]]
    before = versions(s3)
    result = llmstacks(env, *args)
    assert result.returncode == 2, result
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert "Traceback" not in result.stderr and versions(s3) == before


def test_no_credentials_is_one_line_exit_2(aws, tmp_path):
    s3, env, envs, _ = aws
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_")} | {
        "AWS_ENDPOINT_URL_S3": env["AWS_ENDPOINT_URL_S3"],
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for command in (["list-models"], ["verify-model", "--model", MODEL, "--snapshot", "0123456789abcdef"]):
        result = llmstacks(bare, command[0], "--env-dir", str(envs), "--env", "dev", *command[1:])
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "error: no AWS credentials (standard chain: AWS_* variables, a profile, SSO, or an instance role)"
        )


def test_help_names_every_weights_command():
    result = subprocess.run([LLMSTACKS, "--help"], capture_output=True, text=True, timeout=waits.COMMAND)
    for command in ("upload-model", "verify-model", "list-models", "delete-snapshot", "pin"):
        assert command in result.stdout
