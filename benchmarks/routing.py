"""Prefix-aware vs power-of-two request routing, measured on a local Ray (CPU).

`app.serving.build_app` serves one model on two replicas of the CPU engine in
`tests/prefix_engine.py` (no GPU, no S3), each routed differently, and the same
chat workloads go through the official `openai` client to each:

- conversations: 25 chats with distinct 2,000-character system prompts, 8
  turns each (200 requests), interleaved (turn t of every chat, shuffled,
  before turn t+1), 8 requests at a time. Reported per router: the share of
  follow-up requests served by the replica holding the conversation so far
  (target: >= 90% prefix-aware, about 50% power-of-two), the share served by
  a replica holding some earlier turn, the share of prompt characters the
  serving replica already held, requests/s, latency and per-replica load.
- router_overhead: 50 short completions one at a time: what routing adds to
  a request's latency.
- shared_preamble: 48 chats whose system prompts start with the same 3,000
  characters, 3 turns each, 16 at a time: how prefix-aware routing spreads
  load when every prompt shares a prefix, with Ray's default
  imbalanced_threshold (infinite: never balance) and with a finite one.

The engine takes 40 ms per thousand prompt characters its replica did not
hold (about a 7-8B model's prefill on one GPU), one prefill at a time per
replica, then 100 ms overlapping with other replies, so requests/s feels cache
misses and load imbalance. Each app first answers a few short requests (Ray
creates the prefix router's tree actor on the first one). Absolute figures are
this machine's (Ray, the proxy and the client share its cores); compare the
routers with each other.

`run()` returns the figures; as a script it prints them as JSON and writes
bench-results/routing.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# vLLM (imported with Ray Serve LLM) logs to stdout by default; keep stdout for the JSON.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
for path in (ROOT / "tests", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

MODEL = "routing-bench"
ENGINE_ENV = {"PREFIX_ENGINE_DECODE_MS": "100", "PREFIX_ENGINE_PREFILL_MS_PER_KCHAR": "40"}
from stacks.config.models import Routing  # noqa: E402  (after the path set-up)
from stacks.specs.app_args import routing  # noqa: E402

# What `routing: prefix_aware` renders for a replica with load target 16 (prefix_engine.app_args).
PREFIX_KWARGS = routing(Routing(policy="prefix_aware"), 16).request_router_kwargs
CONVERSATIONS = {"conversations": 25, "turns": 8, "concurrency": 8, "system_chars": 2000}
OVERHEAD_REQUESTS = 50
SHARED_PREAMBLE = {
    "conversations": 48,
    "turns": 3,
    "concurrency": 16,
    "system_chars": 200,
    "shared_preamble_chars": 3000,
}


def sequential_latency(base_url: str, requests: int = OVERHEAD_REQUESTS) -> dict[str, float]:
    """Latency of short completions sent one at a time: the engine's fixed 50 ms plus routing and transport."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=60)
    seconds = []
    for i in range(requests):
        started = time.perf_counter()
        client.completions.create(model=MODEL, prompt=f"ping {i}")
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return {"p50_s": round(seconds[len(seconds) // 2], 4), "p95_s": round(seconds[int(len(seconds) * 0.95)], 4)}


def run() -> dict[str, Any]:
    import ray
    from ray import serve

    from prefix_engine import POWER_OF_TWO, PREFIX_AWARE, app_args, deploy, run_workload, start_local_serve

    apps = {
        "prefix_aware": app_args(MODEL, PREFIX_AWARE, PREFIX_KWARGS, env_vars=ENGINE_ENV),
        "prefix_aware_ray_defaults": app_args(MODEL, PREFIX_AWARE, {}, env_vars=ENGINE_ENV),
        "power_of_two": app_args(MODEL, POWER_OF_TWO, {}, env_vars=ENGINE_ENV),
    }
    started = time.perf_counter()
    port = start_local_serve(num_cpus=6)
    try:
        deploy(apps)
        deployed = time.perf_counter() - started
        for app in apps:
            sequential_latency(f"http://127.0.0.1:{port}/{app}/v1", requests=5)

        def workload(app: str, **shape: Any) -> dict[str, Any]:
            return run_workload(f"http://127.0.0.1:{port}/{app}/v1", MODEL, seed=1, **shape)

        conversations = {app: workload(app, **CONVERSATIONS) for app in ("prefix_aware", "power_of_two")}
        shared = {app: workload(app, **SHARED_PREAMBLE) for app in apps}
        overhead = {
            app: sequential_latency(f"http://127.0.0.1:{port}/{app}/v1") for app in ("prefix_aware", "power_of_two")
        }
    finally:
        serve.shutdown()
        ray.shutdown()
    for summary in shared.values():
        summary["busiest_replica_share"] = round(max(summary["per_replica"].values()) / summary["requests"], 3)
    prefix, pow2 = conversations["prefix_aware"], conversations["power_of_two"]
    return {
        "conversations": {"workload": CONVERSATIONS, **conversations},
        "shared_preamble": {"workload": SHARED_PREAMBLE, **shared},
        "router_overhead": {
            "workload": f"{OVERHEAD_REQUESTS} short completions one at a time (no prefill, 100 ms decode)",
            **overhead,
        },
        "prefix_aware_kwargs": PREFIX_KWARGS,
        "engine": ENGINE_ENV,
        "targets": {
            "prefix_aware_hit_share": {
                "target": ">= 0.9",
                "measured": prefix["hit_share"],
                "met": prefix["hit_share"] >= 0.9,
            },
            "power_of_two_hit_share": {
                "target": "about 0.5",
                "measured": pow2["hit_share"],
                "met": abs(pow2["hit_share"] - 0.5) <= 0.15,
            },
        },
        "requests_per_s_prefix_aware_over_power_of_two": round(prefix["requests_per_s"] / pow2["requests_per_s"], 3),
        "deploy_seconds": round(deployed, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    results = run()
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "routing.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
