"""End to end on CPU: `build_app` on a local Ray, Ray Serve LLM's real OpenAI
ingress, Ray's real S3 model and LoRA downloads from a moto S3 server on
127.0.0.1, and the official `openai` client. Only vLLM is replaced, by the
echo engine in `tests/cpu_engine.py`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

TESTS = Path(__file__).resolve().parent
MODEL = "tiny-chat"
ADAPTERS = {"support": 8, "legal": 16}
REGION = "us-west-2"
WEIGHTS, LORA = "e2e-weights", "e2e-lora"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_fixture_files(root: Path) -> tuple[Path, dict[str, Path]]:
    """A small model directory and two LoRA adapters, as a user would publish them."""
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "tiny-test", "architectures": ["TinyForCausalLM"]}))
    (model / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}))
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    adapters = {}
    for name, rank in ADAPTERS.items():
        adapter = root / name
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "base_model_name_or_path": MODEL,
            "target_modules": ["q_proj", "v_proj"],
        }))
        (adapter / "adapter_model.safetensors").write_bytes(os.urandom(1024))
        adapters[name] = adapter
    return model, adapters


@pytest.fixture(scope="module")
def served(s3_endpoint, tmp_path_factory):
    import ray
    from openai import OpenAI
    from ray import serve

    from app.serving import build_app

    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_S3": s3_endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)

    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (WEIGHTS, LORA):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    model_dir, adapters = write_fixture_files(tmp_path_factory.mktemp("fixtures"))
    for f in model_dir.iterdir():
        s3.upload_file(str(f), WEIGHTS, f"models/{MODEL}/{f.name}")
    for name, adapter in adapters.items():
        for f in adapter.iterdir():
            s3.upload_file(str(f), LORA, f"adapters/{MODEL}/{name}/{f.name}")

    ray.init(
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {**env, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "region": REGION,
        "weights_bucket": WEIGHTS,
        "lora_bucket": LORA,
        "s3_endpoint_url": s3_endpoint,
        "models": [{
            "id": MODEL,
            "max_model_len": 2048,
            "min_replicas": 1,
            "max_replicas": 1,
            "target_ongoing_requests": 16,
            "max_ongoing_requests": 32,
            "lora": {"max_adapters_per_replica": 4, "max_rank": 16},
            "server_cls": "cpu_engine:CpuLLMServer",
        }],
    }
    serve.run(build_app(args), name="llm", route_prefix="/", blocking=False)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed", max_retries=0, timeout=60)
    try:
        yield client
    finally:
        serve.shutdown()
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
