"""The per-stack summary `llmstacks synth` prints: resources, node pools, models (one row per
Ray Serve deployment: a disaggregated model's prefill and decode apart), cost per model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from infra.catalog import PRICES_AS_OF
from stacks.planning.plan import EnvironmentPlan, ModelPlan, PartPlan
from stacks.specs.render import SPEC_FILES


def resource_counts(tf_json: dict) -> Counter[str]:
    return Counter({kind: len(items) for kind, items in tf_json.get("resource", {}).items()})


def weights_source(plan: EnvironmentPlan, model: ModelPlan, snapshot: bool = True) -> str:
    """How and where from a model's weights load: its pinned snapshot (or, `snapshot` False, its
    folder of snapshots), or its Hugging Face repository."""
    weights = model.config.weights
    if weights.snapshot:
        uri = plan.names.model_weights_uri(model.id, weights.snapshot)
        source = uri if snapshot else uri.rsplit("/", 1)[0]
    else:
        source = f"hf:{weights.hf_id}"
    return f"{weights.load_mode} {source}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    return [
        "    " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def part_label(model: ModelPlan, part: PartPlan) -> str:
    """The model's id, with the part's role for a disaggregated model: "llama (prefill)"."""
    return model.id if part.role == "model" else f"{model.id} ({part.role})"


def _engines(part: PartPlan) -> str:
    dp = part.deployment.data_parallel_size
    return f" (each of {dp} engines)" if dp > 1 else ""


def _per_engine(part: PartPlan, text: str) -> str:
    """A per-engine figure, as "4 x <figure>" where a replica is a gang of engines."""
    dp = part.deployment.data_parallel_size
    return f"{dp} x {text}" if dp > 1 else text


def _models_table(plan: EnvironmentPlan) -> list[str]:
    """One row per Ray Serve deployment: a disaggregated model's prefill and decode apart."""
    spans = any(part.nodes_per_replica > 1 for part in plan.parts)
    header = [
        "ID",
        "PATTERN",
        "POOL",
        "GPUS/REPLICA",
        *(["NODES/REPLICA"] if spans else []),
        "REPLICAS",
        "MAX LEN",
        "KV CACHE",
        "CONCURRENCY",
        "LOAD TARGET",
        "ROUTING",
        "LORA",
        "WEIGHTS",
    ]
    rows = []
    for m in plan.models:
        lora = m.config.lora
        for part in m.parts:
            per_engine = " per engine" if part.deployment.data_parallel_size > 1 else ""
            rows.append(
                [
                    part_label(m, part),
                    m.pattern,
                    part.pool.name,
                    f"{part.gpus_per_replica} ({part.shape})",
                    *([str(part.nodes_per_replica)] if spans else []),
                    f"{part.replicas.min}-{part.replicas.max}",
                    str(m.config.max_model_len),
                    _per_engine(part, f"{part.capacity.kv_cache_tokens:,} tok"),
                    _per_engine(part, f"{part.capacity.max_concurrency:.1f}x"),
                    f"{part.load.target_ongoing_requests:g} / {part.load.max_ongoing_requests}{per_engine}",
                    m.config.routing_policy.policy,
                    f"up to {lora.max_adapters_per_replica}, rank <= {lora.max_rank}" if lora.enabled else "off",
                    weights_source(plan, m),
                ]
            )
    return _table(header, rows)


def _cost_table(plan: EnvironmentPlan) -> list[str]:
    rows = [
        [
            m.id,
            str(m.nodes("min")),
            str(m.nodes("max")),
            f"${m.cost_per_hour('min'):,.2f}",
            f"${m.cost_per_hour('max'):,.2f}",
        ]
        for m in plan.models
    ]
    low, high = plan.idle("min"), plan.idle("max")
    if low[0] or high[0]:
        rows.append(["(idle: pools' min_size)", str(low[0]), str(high[0]), f"${low[1]:,.2f}", f"${high[1]:,.2f}"])
    return [
        "  GPU cost per model (the nodes its replicas take):",
        *_table(["MODEL", "NODES AT MIN", "NODES AT MAX", "COST/H AT MIN", "COST/H AT MAX"], rows),
    ]


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
        lines += _models_table(plan)
        lines.append(
            "  load targets (target / max ongoing requests per Ray Serve replica: per engine for data_parallel):"
        )
        lines += [
            f"    {part_label(m, part)}{_engines(part)}: {part.load.reasoning}" for m in plan.models for part in m.parts
        ]
        lines.append(
            f"  GPU cost: ${plan.cost_per_hour('min'):,.2f}/h at min replicas, "
            f"${plan.cost_per_hour('max'):,.2f}/h at max (on-demand, us-east-1 prices of {PRICES_AS_OF})"
        )
        lines += _cost_table(plan)
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
    lines = [
        f"stack {plan.names.platform_stack} (deployed after {plan.names.stack}): cluster {plan.names.cluster} -> {stack_file}"
    ]
    lines += _table(
        ["RELEASE", "CHART", "VERSION", "NAMESPACE"],
        [
            [
                r["name"],
                r["chart"] if r.get("repository") else "(ours, in the stack)",
                r.get("version", "-"),
                r["namespace"],
            ]
            for r in sorted(releases, key=lambda r: r["name"])
        ],
    )
    return "\n".join(lines)
