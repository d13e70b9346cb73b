"""A CPU stand-in engine for request-routing tests and the routing benchmark.

Each replica remembers the prompts it has served, the way vLLM's prefix cache
remembers their KV blocks, and every reply says what a user would notice:
which replica served it and whether that replica already held the
conversation so far.

    replica=<id> hit=<0|1> held=<0|1> cached=<chars>/<chars>

- hit: this replica served the conversation's previous turn (the request's
  messages minus the last assistant reply and user turn), so its cache holds
  the whole conversation so far: what prefix-aware routing is for.
- held: this replica served some earlier turn of the conversation (same system
  messages and first user turn), so it holds at least that prefix.
- cached: the longest prompt this replica served that starts the rendered
  prompt, in characters, over the rendered prompt's length.

For completions the "conversation" is the first `PREFIX_CHARS` characters of
the prompt, and hit is cached >= that many characters.

A reply takes `PREFIX_ENGINE_PREFILL_MS_PER_KCHAR` per thousand prompt
characters the replica did not hold, one prefill at a time per replica (as on
its GPU), then `PREFIX_ENGINE_DECODE_MS`, overlapping with other replies
(replica environment variables; 0 by default), so a benchmark's throughput
feels cache misses and load imbalance. Nothing is
downloaded: `start` reads no weights, so no S3 is needed.

Use it as a model's `server_cls` = "prefix_engine:PrefixLLMServer" with
`accelerator_type=None`, this directory on the replicas' PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import waits
from cpu_engine import CpuLLMServer, EchoEngine, completion_events
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionResponse,
)
from vllm.entrypoints.generate.base.protocol import DeltaMessage
from vllm.entrypoints.openai.chat_completion.protocol import (
    ChatCompletionResponseChoice,
    ChatCompletionResponseStreamChoice,
    ChatCompletionStreamResponse,
    ChatMessage,
)
from vllm.entrypoints.serve.engine.protocol import UsageInfo

from app.spec import ROUTER_CLASSES

PREFIX_CHARS = 256
DECODE_MS_ENV = "PREFIX_ENGINE_DECODE_MS"
PREFILL_MS_PER_KCHAR_ENV = "PREFIX_ENGINE_PREFILL_MS_PER_KCHAR"


def _field(message: Any, name: str) -> Any:
    return message.get(name) if isinstance(message, dict) else getattr(message, name, None)


def _content(message: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    content = _field(message, "content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join((p.get("text") or "") if isinstance(p, dict) else str(p) for p in content)
    return ""


def render(messages: list[Any]) -> str:
    """The prompt as a chat template would lay it out: role tags and contents, in order."""
    return "".join(f"<|{_field(m, 'role')}|>{_content(m)}\n" for m in messages)


def conversation_key(messages: list[Any]) -> str:
    """What identifies a conversation across its turns: the system messages and the first user turn."""
    key = []
    for message in messages:
        key.append(message)
        if _field(message, "role") == "user":
            break
    return render(key)


def previous_turn(messages: list[Any]) -> list[Any] | None:
    """The previous turn's prompt (drop the last user turn and the assistant reply before it), if any."""
    if len(messages) >= 2 and _field(messages[-1], "role") == "user" and _field(messages[-2], "role") == "assistant":
        return messages[:-2]
    return None


def parse_reply(text: str) -> dict[str, Any]:
    """The fields of a reply: {"replica": str, "hit": bool, "held": bool, "cached": int, "prompt": int}."""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    cached, prompt = fields["cached"].split("/")
    return {
        "replica": fields["replica"],
        "hit": fields["hit"] == "1",
        "held": fields["held"] == "1",
        "cached": int(cached),
        "prompt": int(prompt),
    }


class PrefixEngine(EchoEngine):
    """Echo engine whose replies say which replica served them and what its "prefix cache" held."""

    async def start(self):
        from ray import serve
        from ray.serve.exceptions import RayServeException

        try:
            self.replica = serve.get_replica_context().replica_id.unique_id
        except RayServeException:  # outside a Serve replica
            self.replica = uuid.uuid4().hex[:8]
        self.model_type = "prefix-test"
        self.decode_s = float(os.environ.get(DECODE_MS_ENV, "0")) / 1000
        self.prefill_s_per_char = float(os.environ.get(PREFILL_MS_PER_KCHAR_ENV, "0")) / 1e6
        # conversation key -> rendered prompts served here (a KV cache that never evicts)
        self.prompts: dict[str, set[str]] = {}
        self.served = 0
        self.prefill_lane = asyncio.Lock()

    def routing_stats(self) -> dict:
        return {"prefix_engine": {"replica": self.replica, "conversations": len(self.prompts), "served": self.served}}

    async def reset_prefix_cache(self) -> None:
        self.prompts.clear()

    async def _serve(self, key: str, prompt: str, previous: str | None) -> str:
        """Look the prompt up, remember it, take the simulated time, and return the reply text."""
        seen = self.prompts.setdefault(key, set())
        held = bool(seen)
        cached = max((len(p) for p in seen if prompt.startswith(p)), default=0)
        hit = previous in seen if previous is not None else cached >= len(key) and held
        seen.add(prompt)
        self.served += 1
        prefill = self.prefill_s_per_char * (len(prompt) - cached)
        if prefill > 0:
            async with self.prefill_lane:  # one prefill at a time per replica, as on its GPU
                await asyncio.sleep(prefill)
        if self.decode_s > 0:
            await asyncio.sleep(self.decode_s)  # decoding is batched: replies overlap
        return f"replica={self.replica} hit={int(hit)} held={int(held)} cached={cached}/{len(prompt)}"

    async def chat(self, request, raw_request_info=None):
        messages = list(request.messages)
        prior = previous_turn(messages)
        text = await self._serve(conversation_key(messages), render(messages), render(prior) if prior else None)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if request.stream:
            for i, word in enumerate(text.split(" ")):
                delta = DeltaMessage(role="assistant" if i == 0 else None, content=("" if i == 0 else " ") + word)
                chunk = ChatCompletionStreamResponse(
                    id=rid,
                    created=int(time.time()),
                    model=request.model,
                    choices=[ChatCompletionResponseStreamChoice(index=0, delta=delta, finish_reason=None)],
                )
                yield f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"
            done = ChatCompletionStreamResponse(
                id=rid,
                created=int(time.time()),
                model=request.model,
                choices=[ChatCompletionResponseStreamChoice(index=0, delta=DeltaMessage(), finish_reason="stop")],
            )
            yield f"data: {done.model_dump_json(exclude_none=True)}\n\n"
            yield "data: [DONE]\n\n"
            return
        yield ChatCompletionResponse(
            id=rid,
            created=int(time.time()),
            model=request.model,
            choices=[
                ChatCompletionResponseChoice(
                    index=0, message=ChatMessage(role="assistant", content=text), finish_reason="stop"
                )
            ],
            usage=_usage(len(render(messages)), text),
        )

    async def completions(self, request, raw_request_info=None):
        prompt = request.prompt if isinstance(request.prompt, str) else str(request.prompt)
        text = await self._serve(prompt[:PREFIX_CHARS], prompt, None)
        for event in completion_events(request, text, _usage(len(prompt), text)):
            yield event


def _usage(prompt_chars: int, text: str) -> UsageInfo:
    # ~4 characters a token, as for English text.
    prompt_tokens, completion_tokens = max(1, prompt_chars // 4), len(text.split())
    return UsageInfo(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )


class PrefixLLMServer(CpuLLMServer):
    """CpuLLMServer (CPU placement, no vLLM engine config) with the prefix-remembering engine."""

    _default_engine_cls = PrefixEngine


# --- Harness shared by tests/app/test_routing.py and benchmarks/routing.py (driver side only) ---

# The classes an environment's `routing: prefix_aware` / `power_of_two` render to.
PREFIX_AWARE = ROUTER_CLASSES["prefix_aware"]
POWER_OF_TWO = ROUTER_CLASSES["power_of_two"]
SERVER_CLS = "prefix_engine:PrefixLLMServer"
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
_WORDS = [
    "account",
    "billing",
    "cluster",
    "deploy",
    "engine",
    "failover",
    "gateway",
    "harbor",
    "index",
    "journal",
    "kernel",
    "ledger",
    "metric",
    "network",
    "operator",
    "policy",
    "quota",
    "replica",
    "schema",
    "tenant",
    "upgrade",
    "vector",
    "window",
    "yield",
    "zone",
]


def app_args(
    model_id: str,
    router_class: str,
    router_kwargs: dict | None = None,
    *,
    replicas: int = 2,
    env_vars: dict[str, str] | None = None,
    max_ongoing_requests: int = 32,
) -> dict[str, Any]:
    """`app.spec.AppArgs` for one model served by `PrefixLLMServer` on `replicas` fixed replicas."""
    return {
        "region": "us-east-1",
        "weights_bucket": "routing-test-weights",
        "lora_bucket": "routing-test-lora",
        "models": [
            {
                "id": model_id,
                "snapshot": "0123456789abcdef",
                "max_model_len": 32768,
                "server_cls": SERVER_CLS,
                "accelerator_type": None,
                "min_replicas": replicas,
                "max_replicas": replicas,
                "target_ongoing_requests": max_ongoing_requests // 2,
                "max_ongoing_requests": max_ongoing_requests,
                "routing": {"request_router_class": router_class, "request_router_kwargs": router_kwargs or {}},
                "env_vars": env_vars or {},
            }
        ],
    }


def start_local_serve(num_cpus: int = 4) -> int:
    """A local Ray (CPU) with this directory on the replicas' PYTHONPATH, and Serve's HTTP proxy; its port."""
    import socket
    import sys

    import ray
    from ray import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(waits.RAY_LIVENESS_ENV)
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([TESTS_DIR, *sys.path])}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port


def deploy(apps: dict[str, dict[str, Any]]) -> None:
    """Build each app with `app.serving.build_app(args)` and run them all at once, app name = route prefix."""
    from ray import serve

    from app.serving import build_app

    serve.run_many(
        [serve.RunTarget(build_app(args), name=name, route_prefix=f"/{name}") for name, args in apps.items()]
    )


def deployment_details(app_name: str) -> dict[str, dict[str, Any]]:
    """The Serve controller's view of an app's deployments: name -> details (deployment_config, replicas...)."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    details = ray.get(controller.get_serve_instance_details.remote())
    return details["applications"][app_name]["deployments"]


def llm_deployment(app_name: str) -> tuple[str, dict[str, Any]]:
    """(name, details) of the app's one LLMServer deployment (the one whose config names our server)."""
    deployments = deployment_details(app_name)
    (name,) = [
        n
        for n, d in deployments.items()
        if "request_router_config" in d["deployment_config"] and "OpenAiIngress" not in n and "Ingress" not in n
    ]
    return name, deployments[name]


def prefix_tree_tenants(app_name: str, deployment_name: str) -> dict[str, int] | None:
    """PrefixCacheAffinityRouter's detached tree actor of a deployment: replica -> characters held; None if absent."""
    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE

    try:
        actor = ray.get_actor("LlmPrefixTreeActor", namespace=f"{SERVE_NAMESPACE}::{app_name}::{deployment_name}")
    except ValueError:
        return None
    return dict(ray.get(actor.getattr.remote("tenant_to_char_count")))


class Conversation:
    """A chat with a long system prompt of its own, replayed turn by turn; its history grows with each reply."""

    def __init__(self, index: int, turns: int, system_chars: int, rng, preamble: str = "") -> None:
        self.index = index
        words = [rng.choice(_WORDS) for _ in range(system_chars // 6)]
        system = f"Conversation {index:03d}. You are the support assistant for team {index}: " + " ".join(words)
        self.messages: list[dict[str, str]] = [{"role": "system", "content": preamble + system[:system_chars]}]
        self.questions = [
            f"Question {t} of conversation {index}: how do I " + " ".join(rng.choice(_WORDS) for _ in range(12)) + "?"
            for t in range(turns)
        ]
        self.turn = 0


def _one_turn(client, model: str, conversation: Conversation, stream: bool) -> dict[str, Any]:
    messages = [*conversation.messages, {"role": "user", "content": conversation.questions[conversation.turn]}]
    started = time.perf_counter()
    if stream:
        chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model=model, messages=messages).choices[0].message.content
    record = {
        "conversation": conversation.index,
        "turn": conversation.turn,
        "seconds": time.perf_counter() - started,
        **parse_reply(text),
    }
    conversation.messages = [*messages, {"role": "assistant", "content": text}]
    conversation.turn += 1
    return record


def run_workload(
    base_url: str,
    model: str,
    *,
    conversations: int,
    turns: int,
    concurrency: int,
    system_chars: int = 2000,
    shared_preamble_chars: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Replay `conversations` chats of `turns` turns each through the official OpenAI client, interleaved:
    turn t of every conversation (in a shuffled order, `concurrency` at a time) before turn t+1; every
    other conversation streams. Each system prompt is `system_chars` of its own, after a preamble of
    `shared_preamble_chars` common to all (0: none). Returns `summarize` of the replies plus the wall
    time and requests/s."""
    import logging
    import random
    from concurrent.futures import ThreadPoolExecutor

    from openai import OpenAI

    for name in ("httpx", "httpx2"):  # the openai client's HTTP library logs a line per request
        logging.getLogger(name).setLevel(logging.WARNING)
    rng = random.Random(seed)
    preamble = " ".join(rng.choice(_WORDS) for _ in range(shared_preamble_chars // 6 + 1))[:shared_preamble_chars]
    chats = [Conversation(i, turns, system_chars, rng, preamble) for i in range(conversations)]
    client = OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=waits.RAY_REQUEST)
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(turns):
            order = rng.sample(chats, len(chats))
            records += pool.map(lambda c: _one_turn(client, model, c, stream=c.index % 2 == 1), order)
    wall = time.perf_counter() - started
    return {**summarize(records), "seconds": round(wall, 3), "requests_per_s": round(len(records) / wall, 2)}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Shares over the requests after each conversation's first: on the replica holding the conversation so
    far (hit), on a replica holding some earlier turn (held); characters served from "cache"; per-replica load."""
    from collections import Counter

    followups = [r for r in records if r["turn"] > 0]
    per_replica = Counter(r["replica"] for r in records)
    latencies = sorted(r["seconds"] for r in records)
    return {
        "requests": len(records),
        "followups": len(followups),
        "hit_share": round(sum(r["hit"] for r in followups) / len(followups), 3),
        "held_share": round(sum(r["held"] for r in followups) / len(followups), 3),
        "cached_char_share": round(sum(r["cached"] for r in records) / sum(r["prompt"] for r in records), 3),
        "per_replica": dict(sorted(per_replica.items())),
        "p50_s": round(latencies[len(latencies) // 2], 4),
        "p95_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 4),
    }
