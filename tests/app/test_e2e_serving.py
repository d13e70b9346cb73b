"""End to end on CPU, on the infrastructure Terraform built: the shipped dev environment applied
against a local AWS (moto over TLS, `local_deployments`), dev's models and two adapters published
into its buckets with `upload-model`/`upload-adapter` as the writer role, then `build_app` on a
local Ray reading them as the serving role: Ray Serve LLM's real OpenAI ingress, Ray's real S3
model and LoRA downloads (or vLLM's Run:ai streaming of the weights, when the rendered args say
`load_format: runai_streamer`), and the official `openai` client. Only vLLM's engine is replaced,
by the echo engine in `tests/cpu_engine.py`, which runs vLLM's own request handling around it.

dev's second model (`FEATURES`) is served too, with its weights published under its own id and
the engine settings of the request features Ray Serve LLM documents: images
(`limit_mm_per_prompt`), a reasoning parser, and streamed weights (`load: stream`) whatever the
default load is. Structured output needs no engine setting and is asked of dev's LoRA model.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import waits
import yaml

from app.spec import weights_uri
from artifact_fixtures import adapter_dir, model_dir
from conftest import TESTS
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.planning.plan import plan_file
from stacks.specs.app_args import app_args
from streamed_load import local_digest

ENV_FILE = ENVIRONMENTS_DIR / "dev.yaml"
MODEL = "qwen2.5-7b-instruct"  # dev's LoRA model
ADAPTERS = {"support": 8, "legal": 16}
FEATURES = "llama-3.2-1b-instruct"  # dev's other model, served with the request features' engine settings
FEATURE_ENGINE_KWARGS = {"limit_mm_per_prompt": {"image": 2}, "reasoning_parser": "deepseek_r1"}
MODEL_TYPES = {MODEL: "tiny-test", FEATURES: "tiny-features"}
PINS: dict[str, tuple[str, str]] = {}  # model id -> (the field upload-model names, the snapshot it printed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def role_env(deployment, role_arn: str) -> dict[str, str]:
    """The emulator's environment with the credentials of `role_arn`, assumed through STS."""
    credentials = deployment.emulator.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="e2e")["Credentials"]
    return {
        **deployment.emulator.env,
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }


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
def published(writer_env, tmp_path_factory):
    """Model id -> the local folder published, as a user would, into the weights bucket Terraform
    created; and two LoRA adapters of MODEL into the LoRA bucket."""
    from stacks.cli import main

    root = tmp_path_factory.mktemp("fixtures")
    models = {
        MODEL: model_dir(root, shards=1, model_type=MODEL_TYPES[MODEL]),
        FEATURES: model_dir(root, shards=2, model_type=MODEL_TYPES[FEATURES], name="features"),
    }
    for model_id, folder in models.items():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["upload-model", "--config", str(ENV_FILE), "--model", model_id, "--from", str(folder)]) == 0
        # The line upload-model prints for the environment file, as a user copies it.
        (pin,) = [line for line in out.getvalue().splitlines() if line.startswith("pin it: models[")]
        field, snapshot = pin.removeprefix("pin it: ").split(": ")
        PINS[model_id] = (field, snapshot)
    for name, rank in ADAPTERS.items():
        adapter = adapter_dir(root, name, rank=rank, base_model=MODEL)
        assert (
            main(
                [
                    "upload-adapter",
                    "--config",
                    str(ENV_FILE),
                    "--model",
                    MODEL,
                    "--adapter",
                    name,
                    "--from",
                    str(adapter),
                ]
            )
            == 0
        )
    return models


@pytest.fixture(scope="module")
def env_file(published, tmp_path_factory):
    """dev.yaml with each model pinned to the snapshot upload-model printed for it."""
    data = yaml.safe_load(ENV_FILE.read_text())
    for model_id, (field, snapshot) in PINS.items():
        index = int(field.split("[", 1)[1].split("]", 1)[0])
        assert data["models"][index]["id"] == model_id and field.endswith(".weights.snapshot")
        data["models"][index]["weights"]["snapshot"] = snapshot
    path = tmp_path_factory.mktemp("pinned") / "dev.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def served_args(dev, env_file):
    """The app's args as the service spec renders them from dev.yaml; only the engine (CPU stand-in),
    the S3 endpoint and the load targets differ, and FEATURES gets the request features' settings."""
    args = app_args(plan_file(env_file)).model_dump()
    assert (args["weights_bucket"], args["lora_bucket"]) == (dev.outputs["weights_bucket"], dev.outputs["lora_bucket"])
    args["s3_endpoint_url"] = dev.emulator.endpoint
    assert {m["id"] for m in args["models"]} == {MODEL, FEATURES}
    for model in args["models"]:
        model.update(
            server_cls="cpu_engine:CpuLLMServer",
            accelerator_type=None,
            target_ongoing_requests=16,
            max_ongoing_requests=32,
        )
        if model["id"] == FEATURES:
            model["engine_kwargs"] = {**model["engine_kwargs"], **FEATURE_ENGINE_KWARGS}
            model["load"] = "stream"
    return args


@pytest.fixture(scope="module")
def served(dev, served_args):
    import ray
    from openai import OpenAI
    from ray import serve

    from app.serving import build_app

    serving_env = role_env(dev, dev.outputs["serving_role_arn"])
    os.environ.update(waits.RAY_LIVENESS_ENV)
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {**serving_env, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(served_args), name="llm", route_prefix="/", blocking=False)
    client = OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed", max_retries=0, timeout=waits.RAY_REQUEST
    )
    try:
        yield client
    finally:
        serve.shutdown()
        ray.shutdown()


def test_models_lists_the_base_model_and_the_adapters_read_from_s3(served):
    ids = {m.id for m in served.models.list().data}
    assert ids == {MODEL, f"{MODEL}:support", f"{MODEL}:legal", FEATURES}


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
        stream = served.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"n{i}"}], stream=True
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    with ThreadPoolExecutor(max_workers=20) as pool:
        texts = list(pool.map(one, range(20)))
    assert all(text.endswith(f"echo=n{i}") for i, text in enumerate(texts))


def test_an_adapter_published_while_serving_is_listed_and_served(served, env_file, tmp_path):
    from stacks.cli import main

    adapter = adapter_dir(tmp_path, "billing", rank=16, base_model=MODEL)
    assert (
        main(
            [
                "upload-adapter",
                "--config",
                str(env_file),
                "--model",
                MODEL,
                "--adapter",
                "billing",
                "--from",
                str(adapter),
            ]
        )
        == 0
    )
    assert f"{MODEL}:billing" in {m.id for m in served.models.list().data}
    reply = served.chat.completions.create(model=f"{MODEL}:billing", messages=[{"role": "user", "content": "new"}])
    assert reply.choices[0].message.content == f"model={MODEL}:billing base=tiny-test rank=16 echo=new"


# --- Weights: streamed from S3 or downloaded by Ray, as the rendered args say ---


def load_report(model_id: str) -> dict:
    """What the model's replica says about loading its weights (`CpuLLMServer.load_report`)."""
    from ray import serve

    deployments = serve.status().applications["llm"].deployments
    (name,) = [n for n in deployments if n.split(":", 1)[-1] == model_id.replace(".", "_")]
    return serve.get_deployment_handle(name, app_name="llm").load_report.remote().result(timeout_s=waits.RAY_REQUEST)


@pytest.mark.parametrize("model_id", [MODEL, FEATURES])
def test_each_replica_holds_the_published_tensors_loaded_the_way_its_args_say(served, served_args, published, model_id):
    """`load: stream` renders `load_format: runai_streamer`: Ray downloads nothing and vLLM's Run:ai
    streamer reads the safetensors from the emulator's S3 into memory; `download`: Ray's S3 download.
    Either way the replica holds exactly the tensors published (count, bytes, digest of names and bytes)."""
    from app.serving import llm_config_dict, parse_args

    spec = parse_args(served_args)
    (model,) = [m for m in spec.models if m.id == model_id]
    rendered = llm_config_dict(spec, model)["engine_kwargs"].get("load_format")
    assert (rendered == "runai_streamer") == (model.load == "stream")
    report = load_report(model_id)
    # Exactly the pinned snapshot: the one upload-model printed, and nothing else of the model's folder.
    assert model.snapshot == PINS[model_id][1]
    assert report == {
        "load": model.load,
        "source": weights_uri(served_args["weights_bucket"], model_id, model.snapshot),
        **local_digest(published[model_id]),
    }
    assert report["tensors"] == {MODEL: 1, FEATURES: 2}[model_id]
    if model_id == FEATURES:
        assert report["load"] == "stream"


def test_the_streamed_model_answers_with_the_config_it_streamed(served):
    reply = served.chat.completions.create(model=FEATURES, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == f"model={FEATURES} base={MODEL_TYPES[FEATURES]} rank=None echo=hi"


# --- Structured output: response_format reaches the engine as vLLM's SamplingParams.structured_outputs ---


def person_schema() -> tuple[dict, str]:
    """A JSON schema with a marker only a reply built from this very schema can carry."""
    marker = f"schema-{uuid.uuid4().hex[:8]}"
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 3},
            "age": {"type": "integer", "minimum": 18},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2},
            "marker": {"const": marker},
        },
        "required": ["name", "age", "tags", "marker"],
        "additionalProperties": False,
    }, marker


@pytest.mark.parametrize("model", [MODEL, f"{MODEL}:support"])
def test_json_schema_response_format_streaming_and_not(served, model):
    import jsonschema

    schema, marker = person_schema()
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "who?"}]
    reply = served.chat.completions.create(model=model, messages=messages, response_format=response_format)
    stream = served.chat.completions.create(
        model=model, messages=messages, response_format=response_format, stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    for text in (reply.choices[0].message.content, streamed):
        value = json.loads(text)
        jsonschema.validate(value, schema)
        assert value["marker"] == marker


def test_json_object_response_format(served):
    reply = served.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "obj"}], response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content) == {"model": MODEL, "base": MODEL_TYPES[MODEL], "echo": "obj"}


def test_a_schema_no_grammar_backend_compiles_is_a_400(served):
    """vLLM's request validation (xgrammar, then guidance) refuses it before generation: a 400, not a 500."""
    import openai

    with pytest.raises(openai.BadRequestError, match="nosuchtype"):
        served.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "nosuchtype"}}},
        )


# --- Images: image_url parts, up to the model's limit_mm_per_prompt ---


def png_url(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_message(text: str, sizes: list[tuple[int, int]]) -> list[dict]:
    parts = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": png_url(w, h)}} for w, h in sizes]
    return [{"role": "user", "content": parts}]


def test_images_up_to_the_limit_reach_the_engine_decoded(served):
    reply = served.chat.completions.create(model=FEATURES, messages=image_message("what is this?", [(7, 5), (3, 4)]))
    message = reply.choices[0].message
    assert (
        message.content == f"model={FEATURES} base={MODEL_TYPES[FEATURES]} rank=None echo=what is this? images=7x5,3x4"
    )
    assert message.model_extra["reasoning"] == "2 image(s); the user wrote: what is this?"


def test_more_images_than_the_limit_is_a_400(served):
    import openai

    for stream in (False, True):
        with pytest.raises(openai.BadRequestError, match=r"At most 2 image\(s\) may be provided in one prompt"):
            served.chat.completions.create(model=FEATURES, messages=image_message("three", [(2, 2)] * 3), stream=stream)


def test_images_to_a_text_only_model_are_a_400(served):
    import openai

    with pytest.raises(openai.BadRequestError, match="is not a multimodal model"):
        served.chat.completions.create(model=MODEL, messages=image_message("look", [(2, 2)]))


# --- Reasoning: vLLM's reasoning parser splits <think>...</think> from the answer ---


def test_reasoning_is_separate_from_content(served):
    reply = served.chat.completions.create(model=FEATURES, messages=[{"role": "user", "content": "why?"}])
    message = reply.choices[0].message
    assert message.content == f"model={FEATURES} base={MODEL_TYPES[FEATURES]} rank=None echo=why?"
    assert message.model_extra["reasoning"] == "0 image(s); the user wrote: why?"


def test_streamed_reasoning_deltas_come_before_the_content_deltas(served):
    stream = served.chat.completions.create(model=FEATURES, messages=[{"role": "user", "content": "why?"}], stream=True)
    kinds, reasoning, content = [], "", ""
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if piece := (delta.model_extra or {}).get("reasoning"):
            kinds.append("reasoning")
            reasoning += piece
        if delta.content:
            kinds.append("content")
            content += delta.content
    assert reasoning == "0 image(s); the user wrote: why?"
    assert content == f"model={FEATURES} base={MODEL_TYPES[FEATURES]} rank=None echo=why?"
    assert "<think>" not in reasoning + content and "</think>" not in reasoning + content
    assert kinds == sorted(kinds, key=lambda kind: kind == "content") and kinds.count("reasoning") > 1


def test_include_reasoning_false_drops_the_reasoning(served):
    reply = served.chat.completions.create(
        model=FEATURES, messages=[{"role": "user", "content": "why?"}], extra_body={"include_reasoning": False}
    )
    assert reply.choices[0].message.content.endswith("echo=why?")
    assert reply.choices[0].message.model_extra.get("reasoning") is None


def test_a_model_without_a_reasoning_parser_has_no_reasoning(served):
    reply = served.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "why?"}])
    assert reply.choices[0].message.model_extra.get("reasoning") is None
