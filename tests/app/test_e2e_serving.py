"""End to end on CPU: `build_app` on a local Ray, Ray Serve LLM's real OpenAI
ingress, Ray's real S3 model and LoRA downloads from a moto S3 server on
127.0.0.1, and the official `openai` client. Only vLLM is replaced, by the
echo engine in `tests/cpu_engine.py`.
"""

from __future__ import annotations

import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from artifact_fixtures import adapter_dir, model_dir
from stacks.planning.plan import plan_file
from stacks.specs.app_args import app_args

TESTS = Path(__file__).resolve().parents[1]
MODEL = "tiny-chat"
ADAPTERS = {"support": 8, "legal": 16}
REGION = "us-west-2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV_FILE = f"""
name: e2e
aws: {{account_id: "123456789012", region: {REGION}}}
state: {{bucket: e2e-tfstate}}
cluster: {{existing: {{name: e2e}}}}
node_pools:
  - {{name: system, instance_types: [m7i.xlarge]}}
  - {{name: l4, accelerator: L4, instance_types: [g6.2xlarge], max_size: 2}}
models:
  - id: {MODEL}
    node_pool: l4
    max_model_len: 2048
    architecture: Qwen/Qwen3-0.6B  # sized as a small model; the CPU engine stands in for it
    lora: {{enabled: true, max_adapters_per_replica: 4, max_rank: 16}}
writer: {{role_arns: ["arn:aws:iam::123456789012:role/ci"]}}
"""


def publish_fixtures(root: Path, env_file: Path) -> None:
    """A small model and two LoRA adapters, published as a user would: with the llmstacks commands."""
    from stacks.cli import main

    model = model_dir(root, shards=1, model_type="tiny-test")
    assert main(["upload-model", "--config", str(env_file), "--model", MODEL, "--from", str(model)]) == 0
    for name, rank in ADAPTERS.items():
        adapter = adapter_dir(root, name, rank=rank, base_model=MODEL)
        assert main(["upload-adapter", "--config", str(env_file), "--model", MODEL, "--adapter", name, "--from", str(adapter)]) == 0


E2E_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
}


@pytest.fixture(scope="module")
def aws_env(s3_endpoint):
    env = {**E2E_ENV, "AWS_ENDPOINT_URL_S3": s3_endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def env_file(aws_env, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fixtures")
    path = root / "e2e.yaml"
    path.write_text(ENV_FILE)
    names = plan_file(path).names
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (names.weights_bucket, names.lora_bucket):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    publish_fixtures(root, path)
    return path


@pytest.fixture(scope="module")
def served(aws_env, env_file, s3_endpoint):
    import ray
    from openai import OpenAI
    from ray import serve

    from app.serving import build_app

    ray.init(
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {**aws_env, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # The app's args as the service spec renders them from the environment file; only the
    # engine (CPU stand-in), the S3 endpoint and the load targets differ.
    args = app_args(plan_file(env_file)).model_dump()
    args["s3_endpoint_url"] = s3_endpoint
    args["models"][0].update(server_cls="cpu_engine:CpuLLMServer", accelerator_type=None,
                             target_ongoing_requests=16, max_ongoing_requests=32)
    serve.run(build_app(args), name="llm", route_prefix="/", blocking=False)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed", max_retries=0, timeout=60)
    try:
        yield client
    finally:
        serve.shutdown()
        ray.shutdown()


def test_models_lists_the_base_model_and_the_adapters_read_from_s3(served):
    ids = {m.id for m in served.models.list().data}
    assert ids == {MODEL, f"{MODEL}:support", f"{MODEL}:legal"}


def test_base_model_chat_uses_the_weights_ray_downloaded(served):
    reply = served.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == f"model={MODEL} base=tiny-test rank=None echo=hello"


def test_adapter_chat_uses_the_adapter_ray_downloaded(served):
    for name, rank in ADAPTERS.items():
        reply = served.chat.completions.create(model=f"{MODEL}:{name}", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == f"model={MODEL}:{name} base=tiny-test rank={rank} echo=hi"


def test_streaming_chat_for_base_and_adapter(served):
    for model, rank in ((MODEL, None), (f"{MODEL}:legal", 16)):
        stream = served.chat.completions.create(model=model, messages=[{"role": "user", "content": "go"}], stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == f"model={model} base=tiny-test rank={rank} echo=go"


def test_completions_streaming_and_not(served):
    reply = served.completions.create(model=f"{MODEL}:support", prompt="abc")
    assert reply.choices[0].text == f"model={MODEL}:support base=tiny-test rank=8 echo=abc"
    stream = served.completions.create(model=MODEL, prompt="xyz", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == f"model={MODEL} base=tiny-test rank=None echo=xyz"


def test_unknown_adapter_and_unknown_model_are_404(served):
    import openai

    for model in (f"{MODEL}:nope", "no-such-model"):
        with pytest.raises(openai.NotFoundError):
            served.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])


def test_twenty_concurrent_streams_all_complete(served):
    def one(i: int) -> str:
        model = f"{MODEL}:support" if i % 2 else MODEL
        stream = served.chat.completions.create(model=model, messages=[{"role": "user", "content": f"n{i}"}], stream=True)
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    with ThreadPoolExecutor(max_workers=20) as pool:
        texts = list(pool.map(one, range(20)))
    assert all(text.endswith(f"echo=n{i}") for i, text in enumerate(texts))


def test_an_adapter_published_while_serving_is_listed_and_served(served, env_file, tmp_path):
    from stacks.cli import main

    adapter = adapter_dir(tmp_path, "billing", rank=16, base_model=MODEL)
    assert main(["upload-adapter", "--config", str(env_file), "--model", MODEL, "--adapter", "billing", "--from", str(adapter)]) == 0
    assert f"{MODEL}:billing" in {m.id for m in served.models.list().data}
    reply = served.chat.completions.create(model=f"{MODEL}:billing", messages=[{"role": "user", "content": "new"}])
    assert reply.choices[0].message.content == f"model={MODEL}:billing base=tiny-test rank=16 echo=new"
