"""The per-stack summary `llmstacks synth` prints: resources, node pools, models."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from infra.catalog import INSTANCE_TYPES, PRICES_AS_OF
from stacks.app_args import model_load_targets
from stacks.capacity import plan_for
from stacks.checks import gpus_per_node, nodes_needed
from stacks.environment import Environment
from stacks.names import Names


def gpu_cost_per_hour(env: Environment, at: str) -> float:
    """On-demand cost of the GPU nodes the models need with every model at its `min` or `max` replicas."""
    total = 0.0
    for pool in env.node_pools:
        instance = INSTANCE_TYPES.get(pool.instance_types[0])
        if gpus_per_node(pool) and instance is not None:
            total += max(nodes_needed(env, pool, at), pool.min_size) * instance.price_per_hour
    return total


def resource_counts(tf_json: dict) -> Counter[str]:
    return Counter({kind: len(items) for kind, items in tf_json.get("resource", {}).items()})


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    return ["    " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def summarize(env: Environment, stack_file: Path) -> str:
    names = Names(env)
    counts = resource_counts(json.loads(stack_file.read_text()))
    lines = [
        f"stack {names.stack}: account {env.aws.account_id}, {env.aws.region}, cluster {names.cluster} -> {stack_file}",
        f"  {sum(counts.values())} resources: " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())),
        "  node pools:",
    ]
    lines += _table(
        ["NAME", "NODE GROUP", "INSTANCE TYPES", "GPUS/NODE", "NODES", "CAPACITY"],
        [
            [
                p.name,
                names.node_group(p.name),
                ",".join(p.instance_types),
                f"{gpus_per_node(p)} x {p.accelerator}" if p.accelerator else "-",
                f"{p.min_size}-{p.max_size}",
                p.capacity_type,
            ]
            for p in env.node_pools
        ],
    )
    if env.models:
        lines.append("  models:")
        lines += _table(
            ["ID", "POOL", "GPUS/REPLICA", "REPLICAS", "MAX LEN", "KV CACHE", "CONCURRENCY", "LOAD TARGET", "LORA", "WEIGHTS"],
            [
                [
                    m.id,
                    m.node_pool,
                    f"{m.gpus_per_replica} (tp {m.tensor_parallel_size} x pp {m.pipeline_parallel_size})",
                    f"{m.replicas.min}-{m.replicas.max}",
                    str(m.max_model_len),
                    *_capacity_cells(env, m),
                    f"up to {m.lora.max_adapters_per_replica}, rank <= {m.lora.max_rank}" if m.lora.enabled else "off",
                    names.model_weights_uri(m.id) if m.weights.source == "bucket" else f"hf:{m.weights.hf_id}",
                ]
                for m in env.models
            ],
        )
        lines.append(f"  GPU cost: ${gpu_cost_per_hour(env, 'min'):,.2f}/h at min replicas, "
                     f"${gpu_cost_per_hour(env, 'max'):,.2f}/h at max (on-demand, us-east-1 prices of {PRICES_AS_OF})")
    else:
        lines.append("  models: none")
    specs = stack_file.parent.parent.parent / "specs" / names.stack
    lines.append(f"  service specs ({env.serving.target} target): {specs}/{{anyscale-service,serve-config,rayservice}}.yaml")
    return "\n".join(lines)


def _capacity_cells(env: Environment, model) -> list[str]:
    capacity = plan_for(env, model)
    target, maximum = model_load_targets(model, capacity)
    if capacity is None:
        return ["?", "?", f"{target:g} / {maximum}"]
    return [f"{capacity.kv_cache_tokens:,} tok", f"{capacity.max_concurrency:.1f}x", f"{target:g} / {maximum}"]
