"""End to end on CPU, on the infrastructure Terraform built: the shipped dev environment applied
against a local AWS (moto over TLS, `local_deployments`), a model and two adapters published
into its buckets with `upload-model`/`upload-adapter` as the writer role, then `build_app` on a
local Ray reading them as the serving role: Ray Serve LLM's real OpenAI ingress, Ray's real S3
model and LoRA downloads, and the official `openai` client. Only vLLM is replaced, by the echo
engine in `tests/cpu_engine.py`.
"""

from __future__ import annotations

import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from artifact_fixtures import adapter_dir, model_dir
from conftest import TESTS
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.planning.plan import plan_file
from stacks.specs.app_args import app_args

ENV_FILE = ENVIRONMENTS_DIR / "dev.yaml"
MODEL = "qwen2.5-7b-instruct"  # dev's LoRA model
ADAPTERS = {"support": 8, "legal": 16}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def role_env(deployment, role_arn: str) -> dict[str, str]:
    """The emulator's environment with the credentials of `role_arn`, assumed through STS."""
    credentials = deployment.emulator.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="e2e")["Credentials"]
    return {**deployment.emulator.env, "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"], "AWS_SESSION_TOKEN": credentials["SessionToken"]}


@pytest.fixture(scope="module")
def dev(local_deployments):
    return local_deployments["dev"]


@pytest.fixture(scope="module")
def writer_env(dev):
    """This process (the llmstacks commands) as the artifact writer; restored afterwards."""
    env = role_env(dev, dev.outputs["writer_role_arn"])
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def env_file(writer_env, tmp_path_factory):
    """A small model and two LoRA adapters, published as a user would, into the buckets Terraform created."""
    from stacks.cli import main

    root = tmp_path_factory.mktemp("fixtures")
    model = model_dir(root, shards=1, model_type="tiny-test")
    assert main(["upload-model", "--config", str(ENV_FILE), "--model", MODEL, "--from", str(model)]) == 0
    for name, rank in ADAPTERS.items():
        adapter = adapter_dir(root, name, rank=rank, base_model=MODEL)
        assert main(["upload-adapter", "--config", str(ENV_FILE), "--model", MODEL, "--adapter", name, "--from", str(adapter)]) == 0
    return ENV_FILE


@pytest.fixture(scope="module")
def served(dev, env_file):
    import ray
    from openai import OpenAI
    from ray import serve

    from app.serving import build_app

    serving_env = role_env(dev, dev.outputs["serving_role_arn"])
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {**serving_env, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # The app's args as the service spec renders them from dev.yaml; only the engine (CPU stand-in),
    # the S3 endpoint and the load targets differ, and only the model with published weights is served.
    args = app_args(plan_file(env_file)).model_dump()
    assert (args["weights_bucket"], args["lora_bucket"]) == (dev.outputs["weights_bucket"], dev.outputs["lora_bucket"])
    args["s3_endpoint_url"] = dev.emulator.endpoint
    args["models"] = [m for m in args["models"] if m["id"] == MODEL]
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
