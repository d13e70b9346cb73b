"""The per-stack summary `llmstacks synth` prints: resources, node pools, models, cost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from infra.catalog import PRICES_AS_OF
from stacks.planning.plan import EnvironmentPlan, ModelPlan
from stacks.specs.render import SPEC_FILES


def resource_counts(tf_json: dict) -> Counter[str]:
    return Counter({kind: len(items) for kind, items in tf_json.get("resource", {}).items()})


def weights_source(plan: EnvironmentPlan, model: ModelPlan) -> str:
    weights = model.config.weights
    source = plan.names.model_weights_uri(model.id) if weights.source == "bucket" else f"hf:{weights.hf_id}"
    return f"{weights.load_mode} {source}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    return ["    " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def summarize(plan: EnvironmentPlan, stack_file: Path) -> str:
    env, names = plan.env, plan.names
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
                ",".join(p.config.instance_types),
                f"{p.gpus_per_node} x {p.gpu.name}" if p.has_gpus else "-",
                f"{p.config.min_size}-{p.config.max_size}",
                p.config.capacity_type,
            ]
            for p in plan.pools
        ],
    )
    if plan.models:
        lines.append("  models:")
        lines += _table(
            ["ID", "POOL", "GPUS/REPLICA", "REPLICAS", "MAX LEN", "KV CACHE", "CONCURRENCY", "LOAD TARGET", "ROUTING", "LORA",
             "WEIGHTS"],
            [
                [
                    m.id,
                    m.pool.name,
                    f"{m.gpus_per_replica} (tp {m.config.tensor_parallel_size} x pp {m.config.pipeline_parallel_size})",
                    f"{m.config.replicas.min}-{m.config.replicas.max}",
                    str(m.config.max_model_len),
                    f"{m.capacity.kv_cache_tokens:,} tok",
                    f"{m.capacity.max_concurrency:.1f}x",
                    f"{m.target_ongoing_requests:g} / {m.max_ongoing_requests}",
                    m.config.routing_policy.policy,
                    f"up to {m.config.lora.max_adapters_per_replica}, rank <= {m.config.lora.max_rank}" if m.config.lora.enabled else "off",
                    weights_source(plan, m),
                ]
                for m in plan.models
            ],
        )
        lines.append("  load targets (target / max ongoing requests per replica):")
        lines += [f"    {m.id}: {m.load.reasoning}" for m in plan.models]
        lines.append(f"  GPU cost: ${plan.cost_per_hour('min'):,.2f}/h at min replicas, "
                     f"${plan.cost_per_hour('max'):,.2f}/h at max (on-demand, us-east-1 prices of {PRICES_AS_OF})")
    else:
        lines.append("  models: none")
    specs = stack_file.parent.parent.parent / "specs" / names.stack
    files = ",".join(f.removesuffix(".yaml") for f in SPEC_FILES)
    lines.append(f"  service specs ({env.serving.target} target): {specs}/{{{files}}}.yaml")
    return "\n".join(lines)


def summarize_platform(plan: EnvironmentPlan, stack_file: Path) -> str:
    """The in-cluster stack: its Helm releases (chart and version, or our own objects) and where they go."""
    tf = json.loads(stack_file.read_text())
    releases = tf.get("resource", {}).get("helm_release", {}).values()
    lines = [f"stack {plan.names.platform_stack} (deployed after {plan.names.stack}): cluster {plan.names.cluster} -> {stack_file}"]
    lines += _table(
        ["RELEASE", "CHART", "VERSION", "NAMESPACE"],
        [[r["name"], r["chart"] if r.get("repository") else "(ours, in the stack)", r.get("version", "-"), r["namespace"]]
         for r in sorted(releases, key=lambda r: r["name"])],
    )
    return "\n".join(lines)
