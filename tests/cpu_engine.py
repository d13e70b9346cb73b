"""A CPU stand-in for vLLM, for the end-to-end test only.

It plugs into Ray Serve LLM where vLLM does (the `LLMEngine` protocol), so
the test exercises Ray's real OpenAI ingress, LoRA multiplexing, Ray's S3
adapter download and Ray's S3 model download. It "generates" a reply that
proves what it was given: the served model name, the base model's
`model_type` from the config.json Ray downloaded, and the LoRA rank from the
adapter_config.json Ray downloaded.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from pathlib import Path

from ray.llm._internal.common.utils.download_utils import download_model_files
from ray.llm._internal.serve.core.configs.openai_api_models import ChatCompletionResponse, CompletionResponse
from ray.llm._internal.serve.core.engine.protocol import LLMEngine
from ray.serve.llm import LLMServer
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
from vllm.entrypoints.generate.base.protocol import DeltaMessage
from vllm.entrypoints.serve.engine.protocol import UsageInfo


class EchoEngine(LLMEngine):
    def __init__(self, llm_config):
        self.llm_config = llm_config
        self.adapter_ranks: dict[str, int] = {}
        self.model_type = None

    async def start(self):
        # Ray's own S3 download of the weights, as VLLMEngine does at start.
        source = self.llm_config.model_loading_config.model_source
        local = await asyncio.to_thread(download_model_files, model_id=source, mirror_config=None)
        config = json.loads((Path(local) / "config.json").read_text())
        self.model_type = config["model_type"]

    def routing_stats(self) -> dict:
        return {}

    async def resolve_lora(self, lora_model):
        # Ray downloaded the adapter from S3 into lora_model.local_path.
        adapter = json.loads((Path(lora_model.local_path) / "adapter_config.json").read_text())
        self.adapter_ranks[lora_model.model_id] = adapter["r"]

    def _reply(self, model: str, prompt: str) -> str:
        rank = self.adapter_ranks.get(model)
        return f"model={model} base={self.model_type} rank={rank} echo={prompt}"

    async def chat(self, request, raw_request_info=None):
        prompt = request.messages[-1]["content"]
        text = self._reply(request.model, prompt)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if request.stream:
            for i, word in enumerate(text.split(" ")):
                chunk = ChatCompletionStreamResponse(
                    id=rid, created=int(time.time()), model=request.model,
                    choices=[ChatCompletionResponseStreamChoice(
                        index=0, delta=DeltaMessage(role="assistant" if i == 0 else None, content=("" if i == 0 else " ") + word),
                        finish_reason=None,
                    )],
                )
                yield f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"
                await asyncio.sleep(0.01)
            done = ChatCompletionStreamResponse(
                id=rid, created=int(time.time()), model=request.model,
                choices=[ChatCompletionResponseStreamChoice(index=0, delta=DeltaMessage(), finish_reason="stop")],
            )
            yield f"data: {done.model_dump_json(exclude_none=True)}\n\n"
            yield "data: [DONE]\n\n"
            return
        yield ChatCompletionResponse(
            id=rid, created=int(time.time()), model=request.model,
            choices=[ChatCompletionResponseChoice(index=0, message=ChatMessage(role="assistant", content=text), finish_reason="stop")],
            usage=UsageInfo(prompt_tokens=1, completion_tokens=len(text.split()), total_tokens=1 + len(text.split())),
        )

    async def completions(self, request, raw_request_info=None):
        text = self._reply(request.model, request.prompt if isinstance(request.prompt, str) else str(request.prompt))
        rid = f"cmpl-{uuid.uuid4().hex}"
        if request.stream:
            for i, word in enumerate(text.split(" ")):
                chunk = CompletionStreamResponse(
                    id=rid, created=int(time.time()), model=request.model,
                    choices=[CompletionResponseStreamChoice(index=0, text=("" if i == 0 else " ") + word)],
                )
                yield f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"
            yield "data: [DONE]\n\n"
            return
        yield CompletionResponse(
            id=rid, created=int(time.time()), model=request.model,
            choices=[CompletionResponseChoice(index=0, text=text, finish_reason="stop")],
            usage=UsageInfo(prompt_tokens=1, completion_tokens=len(text.split()), total_tokens=1 + len(text.split())),
        )

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


class CpuLLMServer(LLMServer):
    """LLMServer with the echo engine and a plain CPU placement (no vLLM engine config)."""

    _default_engine_cls = EchoEngine

    @classmethod
    def get_deployment_options(cls, llm_config):
        options = copy.deepcopy(llm_config.deployment_config)
        options["ray_actor_options"] = {"num_cpus": 0.1, "runtime_env": dict(llm_config.runtime_env or {})}
        return options
