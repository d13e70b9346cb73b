"""A CPU stand-in for vLLM, for the end-to-end test only.

It plugs into Ray Serve LLM where vLLM does (the `LLMEngine` protocol), so
the test exercises Ray's real OpenAI ingress, LoRA multiplexing, Ray's S3
adapter download and Ray's S3 model download. It "generates" a reply that
proves what it was given: the served model name, the base model's
`model_type` from the config.json it loaded, and the LoRA rank from the
adapter_config.json Ray downloaded.

What vLLM's OpenAI serving layer does around generation runs here with
vLLM's own code, on the request object Ray's ingress built:

- weights: `engine_kwargs.load_format == "runai_streamer"` streams the
  safetensors from `s3://` with vLLM's Run:ai loader (`streamed_load`;
  Ray downloads nothing then); otherwise Ray's own S3 download, as
  VLLMEngine's node initialization does. `load_report` says which, with
  the tensors' count, bytes and digest.
- structured output: `request.to_sampling_params(...)` (max tokens from
  vLLM's `get_max_tokens`) turns `response_format` into
  `SamplingParams.structured_outputs`, which vLLM's own request validation
  (`SamplingParams._validate_structured_outputs`, backend "auto": xgrammar,
  then guidance) checks; the reply is a JSON value built from the schema
  the engine received (a model would be constrained to it by the grammar).
- images: `image_url` parts are decoded by vLLM's `MediaConnector` (data:
  URLs); the per-prompt limit is vLLM's `MultiModalConfig` built from
  `engine_kwargs.limit_mm_per_prompt` (see `_images`).
- reasoning: with `engine_kwargs.reasoning_parser` the engine "thinks"
  (`<think>...</think>` before the answer) and splits its output with the
  parser vLLM's chat serving builds (`vllm.parser.ParserManager`, wrapping
  `vllm.reasoning`'s parser): `parse` for a whole reply, `parse_delta`
  token by token when streaming, into `reasoning` and `content`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import time
import types
import uuid
import zlib
from pathlib import Path
from typing import Any

from ray.llm._internal.common.utils.download_utils import download_model_files
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionResponse,
    CompletionResponse,
    ErrorInfo,
    ErrorResponse,
)
from ray.llm._internal.serve.core.engine.protocol import LLMEngine
from ray.serve.llm.deployment import DPServer  # the public class the app requires a data-parallel server to extend
from ray.serve.llm import LLMServer
from vllm.entrypoints.generate.base.protocol import DeltaMessage
from vllm.entrypoints.openai.chat_completion.protocol import (
    ChatCompletionResponseChoice,
    ChatCompletionResponseStreamChoice,
    ChatCompletionStreamResponse,
    ChatMessage,
)
from vllm.entrypoints.openai.completion.protocol import (
    CompletionResponseChoice,
    CompletionResponseStreamChoice,
    CompletionStreamResponse,
)
from vllm.entrypoints.serve.engine.protocol import UsageInfo

STREAM_LOAD_FORMAT = "runai_streamer"


class WordTokenizer:
    """The echo "model's" tokenizer: whitespace-led words, with `<think>` and `</think>` as single
    special tokens (as they are in DeepSeek-R1's and Qwen3's vocabularies). vLLM's reasoning parsers
    read only `get_vocab()` to find the markers' ids, then follow token ids and text deltas."""

    SPECIAL = {"<think>": 1, "</think>": 2}
    PIECES = re.compile(r"</?think>|\s*(?:(?!</?think>)\S)+|\s+")

    def get_vocab(self) -> dict[str, int]:
        return dict(self.SPECIAL)

    def encode(self, text: str) -> list[tuple[str, int]]:
        """(text, id) of each token; the texts concatenate back to `text`."""
        pieces = self.PIECES.findall(text)
        assert "".join(pieces) == text
        return [(p, self.SPECIAL.get(p, 1000 + zlib.crc32(p.encode()) % 1_000_000)) for p in pieces]


class EchoEngine(LLMEngine):
    def __init__(self, llm_config):
        self.llm_config = llm_config
        self.adapter_ranks: dict[str, int] = {}
        self.model_type = None
        self.load_report: dict[str, Any] = {}
        self.tokenizer = WordTokenizer()
        self.parser_cls = None
        self.mm_config = None

    async def start(self):
        kwargs = self.llm_config.engine_kwargs
        source = self.llm_config.model_loading_config.model_source
        if kwargs.get("load_format") == STREAM_LOAD_FORMAT:
            # Ray skips its download for streaming formats; vLLM reads s3:// itself.
            from streamed_load import load_streamed

            loaded = await asyncio.to_thread(load_streamed, source)
            config = loaded["config"]
            self.load_report = {
                "load": "stream",
                "source": source,
                **{k: loaded[k] for k in ("tensors", "bytes", "sha256")},
            }
        else:
            # Ray's own S3 download of the weights, as VLLMEngine does at start.
            from streamed_load import local_digest

            local = await asyncio.to_thread(download_model_files, model_id=source, mirror_config=None)
            config = json.loads((Path(local) / "config.json").read_text())
            self.load_report = {
                "load": "download",
                "source": source,
                **await asyncio.to_thread(local_digest, Path(local)),
            }
        self.model_type = config["model_type"]
        if name := kwargs.get("reasoning_parser"):
            from vllm.parser import ParserManager

            # As OpenAIServingChat: an unknown name fails the replica's start.
            self.parser_cls = ParserManager.get_parser(reasoning_parser_name=name)
        if "limit_mm_per_prompt" in kwargs:
            from vllm.config.multimodal import MultiModalConfig

            self.mm_config = MultiModalConfig(limit_per_prompt=kwargs["limit_mm_per_prompt"])

    def routing_stats(self) -> dict:
        return {}

    async def resolve_lora(self, lora_model):
        # Ray downloaded the adapter from S3 into lora_model.local_path.
        adapter = json.loads((Path(lora_model.local_path) / "adapter_config.json").read_text())
        self.adapter_ranks[lora_model.model_id] = adapter["r"]

    def _reply(self, model: str, prompt: str, images: list | None = None) -> str:
        rank = self.adapter_ranks.get(model)
        text = f"model={model} base={self.model_type} rank={rank} echo={prompt}"
        if images:
            text += " images=" + ",".join(f"{image.width}x{image.height}" for image in images)
        return text

    async def _images(self, model: str, urls: list[str]) -> list:
        """The request's images, decoded; the limit checked first, as vLLM's chat parsing does.

        vLLM enforces `limit_mm_per_prompt` in its OpenAI serving layer, which this engine replaces
        (Ray's ingress passes image parts through unchecked): `MultiModalItemTracker` refuses the
        item past `MultiModalConfig.get_limit_per_prompt(modality)` with the message of
        `BaseProcessingInfo.validate_num_items`, and a model without a multimodal config refuses
        images altogether. Here a model is multimodal when its engine_kwargs set the limit.
        """
        from vllm.exceptions import VLLMValidationError
        from vllm.multimodal.media import MediaConnector

        if not urls:
            return []
        if self.mm_config is None:
            raise ValueError(f"{model} is not a multimodal model")
        limit = self.mm_config.get_limit_per_prompt("image")
        if len(urls) > limit:
            raise VLLMValidationError(f"At most {limit} image(s) may be provided in one prompt.", parameter="image")
        connector = MediaConnector()
        return [await connector.fetch_image_async(url) for url in urls]

    def _sampling_params(self, request, prompt_tokens: int):
        """vLLM's SamplingParams for the request, validated as vLLM's input processor does."""
        from vllm.config.structured_outputs import StructuredOutputsConfig
        from vllm.entrypoints.serve.utils.api_utils import get_max_tokens

        max_model_len = self.llm_config.engine_kwargs["max_model_len"]
        requested = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
        max_tokens = get_max_tokens(max_model_len, requested, prompt_tokens, {})
        params = request.to_sampling_params(max_tokens, {})
        params._validate_structured_outputs(
            types.SimpleNamespace(is_diffusion=False), StructuredOutputsConfig(), self.tokenizer
        )
        return params

    def _answer(self, model: str, prompt: str, images: list, structured) -> str:
        if structured is None:
            return self._reply(model, prompt, images)
        if structured.json is not None:
            schema = json.loads(structured.json) if isinstance(structured.json, str) else structured.json
            return json.dumps(instance_of(schema))
        if structured.json_object:
            return json.dumps({"model": model, "base": self.model_type, "echo": prompt})
        raise NotImplementedError("the test engine generates only json schema and json object structured outputs")

    async def chat(self, request, raw_request_info=None):
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        try:
            prompt, urls = message_parts(request.messages[-1])
            images = await self._images(request.model, urls)
            prompt_ids = [i for _, i in self.tokenizer.encode(rendered(request.messages))]
            params = self._sampling_params(request, len(prompt_ids) + len(images))
            answer = self._answer(request.model, prompt, images, params.structured_outputs)
        except Exception as exc:  # noqa: BLE001  (vLLM's mapping decides: 400 for client errors)
            yield error_response(exc)
            return
        text = f"<think>{len(images)} image(s); the user wrote: {prompt}</think>{answer}" if self.parser_cls else answer
        tokens = self.tokenizer.encode(text)
        if request.stream:
            first = True
            for delta in self._deltas(request, tokens, prompt_ids):
                if first:
                    delta.role, first = "assistant", False
                chunk = ChatCompletionStreamResponse(
                    id=rid,
                    created=int(time.time()),
                    model=request.model,
                    choices=[ChatCompletionResponseStreamChoice(index=0, delta=delta, finish_reason=None)],
                )
                yield f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"
                await asyncio.sleep(0.01)
            done = ChatCompletionStreamResponse(
                id=rid,
                created=int(time.time()),
                model=request.model,
                choices=[ChatCompletionResponseStreamChoice(index=0, delta=DeltaMessage(), finish_reason="stop")],
            )
            yield f"data: {done.model_dump_json(exclude_none=True)}\n\n"
            yield "data: [DONE]\n\n"
            return
        reasoning, content = None, text
        if self.parser_cls is not None:
            reasoning, content, _ = self._parser(request).parse(
                text, request, enable_auto_tools=False, model_output_token_ids=[i for _, i in tokens]
            )
            if not request.include_reasoning:
                reasoning = None
        yield ChatCompletionResponse(
            id=rid,
            created=int(time.time()),
            model=request.model,
            choices=[
                ChatCompletionResponseChoice(
                    index=0,
                    message=ChatMessage(role="assistant", content=content, reasoning=reasoning),
                    finish_reason="stop",
                )
            ],
            usage=UsageInfo(
                prompt_tokens=len(prompt_ids), completion_tokens=len(tokens), total_tokens=len(prompt_ids) + len(tokens)
            ),
        )

    def _parser(self, request):
        """A parser per request, as OpenAIServingChat builds it."""
        return self.parser_cls(
            self.tokenizer, request.tools, chat_template_kwargs=request.chat_template_kwargs or {}, model_config=None
        )

    def _deltas(self, request, tokens: list[tuple[str, int]], prompt_ids: list[int]):
        """The stream's deltas: a word at a time, or vLLM's parser fed one token at a time."""
        if self.parser_cls is None:
            text = "".join(t for t, _ in tokens)
            for i, word in enumerate(text.split(" ")):
                yield DeltaMessage(content=("" if i == 0 else " ") + word)
            return
        parser = self._parser(request)
        for n, (piece, token_id) in enumerate(tokens):
            delta = parser.parse_delta(
                delta_text=piece,
                delta_token_ids=[token_id],
                request=request,
                prompt_token_ids=prompt_ids,
                finished=n == len(tokens) - 1,
            )
            if delta is not None:
                yield delta

    async def completions(self, request, raw_request_info=None):
        text = self._reply(request.model, request.prompt if isinstance(request.prompt, str) else str(request.prompt))
        usage = UsageInfo(prompt_tokens=1, completion_tokens=len(text.split()), total_tokens=1 + len(text.split()))
        for event in completion_events(request, text, usage):
            yield event

    async def embeddings(self, request, raw_request_info=None):
        raise NotImplementedError("the test engine does not embed")
        yield  # pragma: no cover

    async def transcriptions(self, request, raw_request_info=None):
        raise NotImplementedError("the test engine does not transcribe")
        yield  # pragma: no cover

    async def reset_prefix_cache(self) -> None:
        return None

    async def check_health(self) -> None:
        return None


def message_parts(message: Any) -> tuple[str, list[str]]:
    """A chat message's text (its text parts joined) and the URLs of its image parts."""
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
    if content is None or isinstance(content, str):
        return content or "", []
    texts, urls = [], []
    for part in content:
        part = part if isinstance(part, dict) else part.model_dump()
        if part.get("type") == "text":
            texts.append(part["text"])
        elif part.get("type") == "image_url":
            image_url = part["image_url"]
            urls.append(image_url if isinstance(image_url, str) else image_url["url"])
        else:
            raise ValueError(f"the test engine does not take {part.get('type')!r} content parts")
    return " ".join(texts), urls


def rendered(messages: list[Any]) -> str:
    """The prompt as a chat template would lay it out (its length counts against max_model_len)."""
    return "".join(f"<|{m['role'] if isinstance(m, dict) else m.role}|>{message_parts(m)[0]}\n" for m in messages)


def error_response(exc: Exception) -> ErrorResponse:
    """What Ray's VLLMEngine yields for an exception of vLLM's serving layer (VLLMEngine._make_error_response)."""
    from vllm.entrypoints.serve.exception_handling.error_response import (
        create_error_response,
    )

    return ErrorResponse(error=ErrorInfo(**create_error_response(exc).error.model_dump()))


def instance_of(schema: dict[str, Any]) -> Any:
    """A JSON value valid against `schema` (the subset of JSON Schema a request would use)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return instance_of(schema[key][0])
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for sub in schema["allOf"]:
            merged = {
                **merged,
                **sub,
                "properties": {**merged.get("properties", {}), **sub.get("properties", {})},
                "required": [*merged.get("required", []), *sub.get("required", [])],
            }
        return instance_of(merged)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: instance_of(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance_of(schema.get("items", {})) for _ in range(max(schema.get("minItems", 1), 1))]
    if kind == "string":
        return "x" * max(schema.get("minLength", 1), 1)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return True
    return None


def completion_events(request, text: str, usage: UsageInfo):
    """A completion of `text` as the engine protocol yields it: SSE chunks word by word, or one response."""
    rid = f"cmpl-{uuid.uuid4().hex}"
    if request.stream:
        for i, word in enumerate(text.split(" ")):
            chunk = CompletionStreamResponse(
                id=rid,
                created=int(time.time()),
                model=request.model,
                choices=[CompletionResponseStreamChoice(index=0, text=("" if i == 0 else " ") + word)],
            )
            yield f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"
        yield "data: [DONE]\n\n"
        return
    yield CompletionResponse(
        id=rid,
        created=int(time.time()),
        model=request.model,
        choices=[CompletionResponseChoice(index=0, text=text, finish_reason="stop")],
        usage=usage,
    )


class CpuLLMServer(LLMServer):
    """LLMServer with the echo engine and a plain CPU placement (no vLLM engine config)."""

    _default_engine_cls = EchoEngine

    @classmethod
    def get_deployment_options(cls, llm_config):
        options = copy.deepcopy(llm_config.deployment_config)
        options["ray_actor_options"] = {"num_cpus": 0.1, "runtime_env": dict(llm_config.runtime_env or {})}
        return options

    async def load_report(self) -> dict[str, Any]:
        """How this replica's engine loaded its weights (`EchoEngine.load_report`), for a deployment handle."""
        return dict(self.engine.load_report)


class CpuDPServer(DPServer):
    """Ray's DPServer with the echo engine: a gang of data parallel "engines" on CPU.

    Everything but the engine is Ray's: DPServer's deployment options (replicas multiplied by
    data_parallel_size, gang scheduling, the placement group from `placement_group_config`, here
    CPU bundles with `accelerator_type=None`), and its start in each replica (the gang's rank, rank 0
    publishing the DP master address, the others reading it, the replica's bundles in the gang's
    placement group).
    """

    _default_engine_cls = EchoEngine

    async def gang(self) -> dict[str, Any]:
        """This replica's place in its gang, as DPServer set it up, for a deployment handle."""
        kwargs = self._llm_config.engine_kwargs
        return {
            "rank": self.dp_rank,
            "size": self.dp_size,
            "gang_id": self.gang_id,
            "master": [self.dp_address, self.dp_rpc_port],
            "engine_kwargs": {
                k: kwargs.get(k)
                for k in ("data_parallel_size", "data_parallel_rank", "data_parallel_address", "data_parallel_rpc_port")
            },
            "bundle_indices": os.environ.get("VLLM_RAY_BUNDLE_INDICES"),
        }

    async def load_report(self) -> dict[str, Any]:
        return dict(self.engine.load_report)
