"""Request routing as a user sees it, on a local Ray (CPU): `build_app` serves one model on two replicas,
once with Ray Serve LLM's PrefixCacheAffinityRouter and once with Serve's power-of-two router, and the
same interleaved multi-turn chat workload goes through the official `openai` client to both. The engine
(`tests/prefix_engine.py`) says in each reply which replica served it and whether that replica already
held the conversation so far, the way vLLM's prefix cache would. No S3 and no GPU: nothing is downloaded.
"""

from __future__ import annotations

import pytest
import waits

from app.spec import ROUTER_CLASSES
from stacks.config.models import Routing
from stacks.specs.app_args import routing

MODEL = "routing-test"
# What `routing: prefix_aware` renders for a replica with load target 16 (app_args below): a finite
# load-balance threshold, and eviction on but far above what this workload stores.
PREFIX_KWARGS = routing(Routing(policy="prefix_aware"), 16).request_router_kwargs
APPS = {"prefix": (ROUTER_CLASSES["prefix_aware"], PREFIX_KWARGS), "pow2": (ROUTER_CLASSES["power_of_two"], {})}
# 8 conversations with distinct 2,000-character system prompts, 5 turns each, 4 requests at a time.
WORKLOAD = {"conversations": 8, "turns": 5, "concurrency": 4}


@pytest.fixture(scope="module")
def engine():
    """tests/prefix_engine.py, imported when a test runs rather than at collection: it loads Ray Serve
    LLM and vLLM (~25 s), which every xdist worker would otherwise pay whether it runs these or not."""
    import prefix_engine

    return prefix_engine


@pytest.fixture(scope="module")
def port(engine):
    import ray
    from ray import serve

    port = engine.start_local_serve()
    try:
        # A reply takes 20 ms, so concurrent requests overlap on the replicas.
        engine.deploy(
            {
                name: engine.app_args(MODEL, cls, kwargs, env_vars={engine.DECODE_MS_ENV: "20"})
                for name, (cls, kwargs) in APPS.items()
            }
        )
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def results(engine, port):
    """The workload's summary per app (see prefix_engine.summarize), both apps replaying the same chats."""
    return {name: engine.run_workload(f"http://127.0.0.1:{port}/{name}/v1", MODEL, **WORKLOAD) for name in APPS}


def test_each_deployment_runs_the_router_its_args_name(engine, port):
    for name, (cls, kwargs) in APPS.items():
        deployment, details = engine.llm_deployment(name)
        assert deployment == f"PrefixLLMServer:{MODEL}"
        config = details["deployment_config"]["request_router_config"]
        assert (config["request_router_class"], config["request_router_kwargs"]) == (cls, kwargs)
        assert details["status"] == "HEALTHY" and len(details["replicas"]) == 2


def test_prefix_router_tracks_what_each_replica_served_and_power_of_two_has_no_tree(engine, results):
    deployment, details = engine.llm_deployment("prefix")
    tenants = engine.prefix_tree_tenants("prefix", deployment)
    assert tenants is not None, "no LlmPrefixTreeActor: the prefix-aware router never ran"
    served_by = set(results["prefix"]["per_replica"])
    assert (
        {tenant.rsplit("#", 1)[1] for tenant in tenants} == served_by == {r["replica_id"] for r in details["replicas"]}
    )
    assert all(chars > 0 for chars in tenants.values())
    assert engine.prefix_tree_tenants("pow2", engine.llm_deployment("pow2")[0]) is None


def test_prefix_aware_routing_keeps_each_conversation_on_the_replica_holding_it(results):
    summary = results["prefix"]
    assert summary["requests"] == 40 and summary["followups"] == 32
    assert summary["hit_share"] >= 0.9, summary
    # Conversations are spread, not piled on one replica: each serves at least one whole conversation.
    assert len(summary["per_replica"]) == 2 and min(summary["per_replica"].values()) >= WORKLOAD["turns"], summary


def test_power_of_two_routing_moves_conversations_between_replicas(results):
    summary = results["pow2"]
    assert summary["requests"] == 40
    # About half the follow-ups land where the conversation was (two replicas, load-based pick).
    assert summary["hit_share"] < 0.8, summary
    assert results["prefix"]["hit_share"] - summary["hit_share"] >= 0.2, results
    assert len(summary["per_replica"]) == 2 and min(summary["per_replica"].values()) >= WORKLOAD["turns"], summary
    assert summary["cached_char_share"] < results["prefix"]["cached_char_share"], results


def test_a_chat_without_text_is_answered_with_prefix_aware_routing(port, results):
    # Ray 2.60's PrefixCacheAffinityRouter divides by the prompt text's length and never routes such a
    # request (the client waits until it times out); app.routing.PrefixAwareRouter routes it by load.
    from openai import OpenAI

    client = OpenAI(
        base_url=f"http://127.0.0.1:{port}/prefix/v1", api_key="not-needed", max_retries=0, timeout=waits.RAY_REQUEST
    )
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ""}])
    assert reply.choices[0].message.content.startswith("replica=")


def test_a_chat_without_text_is_answered_with_power_of_two_routing(port, results):
    from openai import OpenAI

    client = OpenAI(
        base_url=f"http://127.0.0.1:{port}/pow2/v1", api_key="not-needed", max_retries=0, timeout=waits.RAY_REQUEST
    )
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ""}])
    assert reply.choices[0].message.content.startswith("replica=")
