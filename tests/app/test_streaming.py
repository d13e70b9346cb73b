"""`load: stream`: vLLM's runai_streamer load (tests/streamed_load.py, on CPU) against the local
AWS (moto over HTTPS, stacks/emulator) holding models published by upload-model: each load reads
the snapshot the upload reported (`models/<id>/<snapshot>/`), as a replica reads the one its
environment pins.

Each load runs in a process of its own whose environment is exactly the replica's:
`app.streaming.streamer_env(...)` plus credentials.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import waits
from artifact_fixtures import write_safetensors
from boto3.s3.transfer import TransferConfig
from streamed_load import Loads, Outcome, local_digest

from app.spec import snapshot_prefix, weights_uri
from app.streaming import streamer_env
from stacks.emulator.server import TEST_CREDENTIALS, Emulator
from stacks.publishing.models import upload_model

ACCOUNT, REGION = "111111111111", "us-west-2"
BUCKET = f"llm-dev-weights-{ACCOUNT}"
MiB = 1024 * 1024
# Publish shards over 5 MiB as multipart objects: ranged reads then cross part boundaries.
SMALL_PARTS = TransferConfig(
    multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4, preferred_transfer_client="classic"
)
# The serving role's read grant on the weights bucket (infra/storage/bucket.py: grant_read(..., "models")),
# without its kms:Decrypt (the emulator does not encrypt).
SERVING_ROLE_S3 = [
    {
        "Sid": "ReadObjects",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{BUCKET}/models/*"],
    },
    {
        "Sid": "ListPrefix",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{BUCKET}"],
        "Condition": {"StringLike": {"s3:prefix": ["models", "models/*"]}},
    },
]


def model_folder(root: Path, name: str, shards: list[dict[str, tuple[str, list[int]]]]) -> Path:
    """A Hugging Face folder: config, tokenizer and the given shards (bf16/fp16/f32/u8 tensors)."""
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 64, "name": name}))
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}))
    (directory / "tokenizer_config.json").write_text("{}")
    for i, tensors in enumerate(shards):
        write_safetensors(directory / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors", tensors)
    return directory


ONE_SHARD = [
    {
        "model.embed_tokens.weight": ("BF16", [256, 64]),
        "model.layers.0.input_layernorm.weight": ("F16", [63]),  # 126 bytes: what follows is unaligned
        "model.layers.0.flag": ("U8", [5]),
        "model.layers.0.self_attn.q_proj.weight": ("BF16", [64, 64]),
        "model.norm.weight": ("F32", [64]),
        "lm_head.weight": ("F16", [256, 64]),
    }
]
SHARDED = [
    {
        f"model.layers.{i}.mlp.up_proj.weight": ("BF16", [1536, 1024]),  # 3 MiB
        f"model.layers.{i}.mlp.down_proj.weight": ("F16", [1024, 1536]),
        f"model.layers.{i}.post_attention_layernorm.weight": ("BF16", [1023]),
    }
    for i in range(4)
]


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    with Emulator(ACCOUNT, REGION, tmp_path_factory.mktemp("aws")) as emulator:
        emulator.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield emulator


@pytest.fixture(scope="module")
def loads(tmp_path_factory):
    with Loads(tmp_path_factory.mktemp("loads")) as server:
        yield server


@dataclass(frozen=True)
class Published:
    folder: Path  # the local model folder
    snapshot: str  # the snapshot upload-model made of it
    uri: str  # what the app serves for it: weights_uri(bucket, id, snapshot)


@pytest.fixture(scope="module")
def models(aws, tmp_path_factory) -> dict[str, Published]:
    """Model id -> its local folder and snapshot, published with upload-model's code (files, `hash`,
    `manifest.json` under models/<id>/<snapshot>/)."""
    root = tmp_path_factory.mktemp("models")
    folders = {
        "one-shard": model_folder(root, "one-shard", ONE_SHARD),
        "sharded": model_folder(root, "sharded", SHARDED),
    }
    s3 = aws.client("s3")
    published = {}
    for model_id, folder in folders.items():
        snapshot = upload_model(s3, BUCKET, model_id, folder, transfer_config=SMALL_PARTS).snapshot
        published[model_id] = Published(folder, snapshot, weights_uri(BUCKET, model_id, snapshot))
    return published


def replica_env(aws: Emulator, concurrency: int | None = None) -> dict[str, str]:
    return streamer_env(region=REGION, endpoint_url=aws.endpoint, concurrency=concurrency, ca_bundle=str(aws.ca_bundle))


def loaded(outcome: Outcome, folder: Path) -> dict:
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert outcome.result["config"] == json.loads((folder / "config.json").read_text())
    assert {k: outcome.result[k] for k in ("tensors", "bytes", "sha256")} == local_digest(folder)
    return outcome.result


def failed(outcome: Outcome, error: str, *in_log: str) -> None:
    assert outcome.returncode != 0 and outcome.result is None, outcome.stderr[-3000:]
    assert error in outcome.error, outcome.error
    for text in in_log:
        assert text in outcome.stderr, outcome.stderr[-3000:]


def test_real_aws_needs_only_the_region_and_the_set_concurrency():
    """Credentials come from the replica's identity (Pod Identity), S3 from the region."""
    assert streamer_env(region=REGION, endpoint_url=None, concurrency=None) == {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "RUNAI_STREAMER_LOG_TO_STDERR": "1",
    }
    assert streamer_env(region=REGION, endpoint_url=None, concurrency=12, memory_limit=8 * 1024**3) == {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "RUNAI_STREAMER_LOG_TO_STDERR": "1",
        "RUNAI_STREAMER_CONCURRENCY": "12",
        "RUNAI_STREAMER_MEMORY_LIMIT": str(8 * 1024**3),
    }


def test_streams_a_published_model_with_the_replica_env(aws, models, loads):
    """Exactly streamer_env + credentials: the tensors are the local safetensors' (bf16, fp16,
    f32, an odd-sized u8 that leaves the next tensor unaligned); `hash` and `manifest.json` in the
    folder are pulled with the config and change nothing."""
    outcome = loads.run(models["one-shard"].uri, replica_env(aws) | TEST_CREDENTIALS)
    assert loaded(outcome, models["one-shard"].folder)["tensors"] == len(ONE_SHARD[0])


def test_streams_several_multipart_shards_with_the_set_concurrency(aws, models, loads):
    env = replica_env(aws, concurrency=3) | TEST_CREDENTIALS | {"RUNAI_STREAMER_LOG_LEVEL": "DEBUG"}
    outcome = loads.run(models["sharded"].uri, env)
    result = loaded(outcome, models["sharded"].folder)
    assert result["tensors"] == 12 and result["bytes"] > 4 * 6 * MiB
    # The C++ reader took RUNAI_STREAMER_CONCURRENCY, and read the shards in ranges.
    assert "s3 concurrency 3 " in outcome.stderr


def test_reaches_a_local_s3_by_host_name_over_http(s3_endpoint, models, loads):
    """A local S3 addressed by name has no <bucket>.<host> names: streamer_env asks for path-style."""
    endpoint = s3_endpoint.replace("127.0.0.1", "localhost")
    s3 = boto3.client(
        "s3", region_name=REGION, endpoint_url=s3_endpoint, **{k.lower(): v for k, v in TEST_CREDENTIALS.items()}
    )
    bucket = "streamed-by-host-name"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    snapshot = upload_model(s3, bucket, "one-shard", models["one-shard"].folder).snapshot
    env = streamer_env(region=REGION, endpoint_url=endpoint, concurrency=None) | TEST_CREDENTIALS
    loaded(loads.run(weights_uri(bucket, "one-shard", snapshot), env), models["one-shard"].folder)


def test_a_load_reads_its_snapshot_alone_while_another_is_published_beside_it(aws, models, loads, tmp_path):
    """Another snapshot of the same model, with more shards, in the model's folder: the streamer
    reads the top-level *.safetensors of the pinned snapshot's prefix, never those of its neighbour."""
    other = model_folder(tmp_path, "sharded-v2", [*SHARDED[:2], ONE_SHARD[0], SHARDED[3]])
    report = upload_model(aws.client("s3"), BUCKET, "sharded", other, transfer_config=SMALL_PARTS)
    assert report.snapshot != models["sharded"].snapshot
    env = replica_env(aws) | TEST_CREDENTIALS
    assert loaded(loads.run(models["sharded"].uri, env), models["sharded"].folder)["tensors"] == 12
    assert loaded(loads.run(weights_uri(BUCKET, "sharded", report.snapshot), env), other)["tensors"] == 9 + len(
        ONE_SHARD[0]
    )


# --- Identity and permissions: moto checks IAM while `enforced_iam` holds ------------------------


@contextmanager
def enforced_iam(aws: Emulator):
    def set_count(value: str):
        request = urllib.request.Request(
            f"{aws.endpoint}/moto-api/reset-auth",
            data=value.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(
            request, context=ssl.create_default_context(cafile=str(aws.ca_bundle)), timeout=waits.COMMAND
        ).read()

    set_count("0")
    try:
        yield
    finally:
        set_count("inf")


def role_credentials(aws: Emulator, name: str, statements: list[dict]) -> dict:
    """Session credentials of a role that has exactly `statements` (as EKS Pod Identity hands out)."""
    iam = aws.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
    }
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName=name,
        PolicyName="weights",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    return aws.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", RoleSessionName="replica")[
        "Credentials"
    ]


@contextmanager
def pod_identity_agent(credentials: dict, tmp_path: Path):
    """The EKS Pod Identity agent: credentials over HTTP for the token in the pod's token file.
    Yields the pod's environment and the User-Agent of every request that presented the token."""
    token = "eks-pod-identity-token"
    callers: list[str] = []
    body = json.dumps(
        {
            "AccessKeyId": credentials["AccessKeyId"],
            "SecretAccessKey": credentials["SecretAccessKey"],
            "Token": credentials["SessionToken"],
            "Expiration": credentials["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ).encode()

    class Agent(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != token:
                self.send_response(401)
                self.end_headers()
                return
            callers.append(self.headers.get("User-Agent", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text(token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            {
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{server.server_port}/v1/credentials",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
            },
            callers,
        )
    finally:
        server.shutdown()
        server.server_close()


def test_pod_identity_and_the_serving_roles_permissions_are_enough(aws, models, loads, tmp_path):
    """Both readers take Pod Identity credentials (boto3 lists and pulls the config, the C++ SDK
    reads the shards), and s3:ListBucket + s3:GetObject under models/ is all they need."""
    credentials = role_credentials(aws, "serving", SERVING_ROLE_S3)
    with pod_identity_agent(credentials, tmp_path) as (pod_env, callers), enforced_iam(aws):
        outcome = loads.run(models["sharded"].uri, replica_env(aws) | pod_env)
    loaded(outcome, models["sharded"].folder)
    assert any(c.startswith("aws-sdk-cpp/") for c in callers), callers
    assert any("urllib3" in c or "Boto" in c for c in callers), callers


@pytest.mark.parametrize(
    ("name", "statements", "error", "in_log"),
    [
        # No s3:ListBucket: vLLM's listing of the folder fails.
        ("no-list", SERVING_ROLE_S3[:1], "AccessDenied", ()),
        # The config but not the weights: the C++ reader's 403 reaches the replica's log.
        (
            "no-weights",
            [
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{BUCKET}/models/*.json", f"arn:aws:s3:::{BUCKET}/models/*/hash"],
                },
                SERVING_ROLE_S3[1],
            ],
            "File access error",
            ("http_status=403", "model-00001-of-00001.safetensors"),
        ),
    ],
)
def test_access_denied_is_an_error(aws, models, loads, tmp_path, name, statements, error, in_log):
    credentials = role_credentials(aws, name, statements)
    with pod_identity_agent(credentials, tmp_path) as (pod_env, _), enforced_iam(aws):
        outcome = loads.run(models["one-shard"].uri, replica_env(aws) | pod_env)
    failed(outcome, error, *in_log)


def test_no_credentials_is_an_error(aws, models, loads):
    failed(loads.run(models["one-shard"].uri, replica_env(aws)), "NoCredentialsError")


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (lambda snap: weights_uri("llm-dev-weights-222222222222", "one-shard", snap), "NoSuchBucket"),
        # Nothing to pull: vLLM then finds no config.json (this stand-in says so itself).
        (lambda snap: weights_uri(BUCKET, "not-published", snap), "no config.json"),
        (lambda snap: weights_uri(BUCKET, "one-shard", "0123456789abcdef"), "no config.json"),
        # A prefix of a model id or of a snapshot id is not it: the folder is matched with its trailing '/'.
        (lambda snap: weights_uri(BUCKET, "one", snap), "no config.json"),
        (lambda snap: f"s3://{BUCKET}/{snapshot_prefix('one-shard', snap)[:-5]}", "no config.json"),
    ],
    ids=["bucket", "model", "snapshot", "model-id-prefix", "snapshot-id-prefix"],
)
def test_a_wrong_bucket_model_or_snapshot_is_an_error(aws, models, loads, source, error):
    failed(loads.run(source(models["one-shard"].snapshot), replica_env(aws) | TEST_CREDENTIALS), error)


def test_a_folder_without_safetensors_is_an_error(aws, models, loads):
    s3 = aws.client("s3")
    prefix = snapshot_prefix("no-weights", "0123456789abcdef")
    for name in ("config.json", "tokenizer.json"):
        s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=(models["one-shard"].folder / name).read_bytes())
    s3.put_object(Bucket=BUCKET, Key=prefix + "pytorch_model.bin", Body=b"\0" * 64)
    failed(
        loads.run(weights_uri(BUCKET, "no-weights", "0123456789abcdef"), replica_env(aws) | TEST_CREDENTIALS),
        "Cannot find any safetensors model weights",
    )


@pytest.mark.parametrize(
    ("dropped", "error", "in_log"),
    [
        # The C++ reader ignores AWS_ENDPOINT_URL_S3: it goes to AWS's S3 instead of the local one.
        ("AWS_ENDPOINT_URL", "File access error", ("model-00001-of-00001.safetensors",)),
        ("AWS_CA_BUNDLE", "SSLError", ()),
    ],
)
def test_the_emulator_needs_the_endpoint_and_the_ca(aws, models, loads, dropped, error, in_log):
    env = {k: v for k, v in (replica_env(aws) | TEST_CREDENTIALS).items() if k != dropped}
    failed(loads.run(models["one-shard"].uri, env), error, *in_log)
