"""What differs between a base and a head synthesis: Terraform resources, serving facts, specs."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from stacks.planning.plan import EnvironmentPlan, PartPlan
from stacks.specs.platform import PLATFORM_FILE
from stacks.specs.render import RAYSERVICE_FILE
from stacks.synth.summary import weights_source

SPEC_DIFF_LINES = 400


@dataclass
class ResourceChange:
    address: str
    action: str  # added, removed, changed
    attributes: list[str] = field(default_factory=list)  # "path: before -> after"


# ------------------------------------------------------------------ resources


def _resources(tf: dict | None) -> dict[str, dict]:
    found = {}
    for kind, items in (tf or {}).get("resource", {}).items():
        for name, body in items.items():
            found[f"{kind}.{name}"] = {k: v for k, v in body.items() if k != "//"}
    return found


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    if "\n" in text:
        return f"(text, {text.count(chr(10)) + 1} lines)"
    if text.startswith("{") and len(text) > 60 and "Statement" in text:
        return "(policy document)"
    return text if len(text) <= 60 else text[:57] + "..."


def diff_resources(base: dict | None, head: dict | None) -> list[ResourceChange]:
    before, after = _resources(base), _resources(head)
    changes = [ResourceChange(a, "added") for a in sorted(after.keys() - before.keys())]
    changes += [ResourceChange(a, "removed") for a in sorted(before.keys() - after.keys())]
    for address in sorted(before.keys() & after.keys()):
        if before[address] == after[address]:
            continue
        old, new = _flatten(before[address]), _flatten(after[address])
        attributes = [
            f"{path}: {_short(old[path]) if path in old else '(none)'} -> {_short(new[path]) if path in new else '(none)'}"
            for path in sorted(old.keys() | new.keys())
            if old.get(path, None) != new.get(path, None)
        ]
        changes.append(ResourceChange(address, "changed", attributes))
    return changes


# ------------------------------------------------------------------ serving

# A fact a model omits has this value: what is the same for most models is not listed for each.
MODEL_DEFAULTS = {"pattern": "standard", "nodes per replica": 1, "expert parallel": "off", "KV connector": "none"}


def _default(kind: str, key: str) -> Any:
    if kind == "model":
        for fact, value in MODEL_DEFAULTS.items():
            if key == fact or key.endswith(f" {fact}"):
                return value
    return "(none)"


def _part_facts(part: PartPlan) -> dict[str, Any]:
    """Where a part runs and how wide it is; its keys are prefixed with its role ("prefill node
    pool") for a disaggregated model."""
    prefix = "" if part.role == "model" else f"{part.role} "
    # The shape only where it says more than the GPU count: "16 x H100 (tp 8 x pp 2)", but "1 x L4".
    shape = "" if part.shape == f"tp {part.gpus_per_replica}" else f" ({part.shape})"
    facts: dict[str, Any] = {
        f"{prefix}node pool": part.pool.name,
        f"{prefix}GPUs per replica": f"{part.gpus_per_replica} x {part.pool.gpu.name}{shape}",
    }
    if part.nodes_per_replica > 1:
        facts[f"{prefix}nodes per replica"] = part.nodes_per_replica
    facts[f"{prefix}replicas"] = f"{part.replicas.min}-{part.replicas.max}"
    return facts


# (region, weights bucket, model id, snapshot) -> its size and publication date, read from the bucket.
DescribeSnapshot = Callable[[str, str, str, str], str]


def model_facts(plan: EnvironmentPlan | None, describe: DescribeSnapshot | None = None) -> dict[str, dict[str, Any]]:
    """Per model, what a reviewer reads a change in: its pattern (where not standard), each part's
    pool, GPUs, nodes and replicas, its settings (the weights snapshot it pins, described by
    `describe` when given), and each part's load targets."""
    if plan is None:
        return {}
    facts = {}
    for m in plan.models:
        lora = m.config.lora
        model: dict[str, Any] = {}
        if m.pattern != "standard":
            model["pattern"] = m.pattern
        for part in m.parts:
            model.update(_part_facts(part))
        if m.config.uses_expert_parallel:
            model["expert parallel"] = "on"
        if m.config.connector is not None:
            model["KV connector"] = m.config.connector.connector
        model.update(
            {
                "max_model_len": m.config.max_model_len,
                "weights": weights_source(plan, m, snapshot=False),
                "LoRA": (
                    f"up to {lora.max_adapters_per_replica}, rank <= {lora.max_rank}, from {plan.names.model_adapters_uri(m.id)}"
                    if lora.enabled
                    else "off"
                ),
                "engine_kwargs": json.dumps(m.config.engine_kwargs.as_dict(), sort_keys=True),
            }
        )
        for part in m.parts:
            prefix = "" if part.role == "model" else f"{part.role} "
            per_engine = " per engine" if part.deployment.data_parallel_size > 1 else ""
            model[f"{prefix}load target"] = (
                f"{part.load.target_ongoing_requests:g} / {part.load.max_ongoing_requests}{per_engine}"
            )
        if snapshot := m.config.weights.snapshot:
            detail = describe(plan.env.aws.region, plan.names.weights_bucket, m.id, snapshot) if describe else None
            model["weights snapshot"] = f"{snapshot} ({detail})" if detail else snapshot
        model.update(
            {
                "routing": json.dumps(m.config.routing_policy.model_dump(exclude_defaults=True), sort_keys=True),
                "workload": json.dumps(m.config.workload.model_dump(), sort_keys=True),
            }
        )
        facts[m.id] = model
    return facts


def pool_facts(plan: EnvironmentPlan | None) -> dict[str, dict[str, Any]]:
    if plan is None:
        return {}
    return {
        p.name: {
            "instance types": ",".join(p.config.instance_types),
            "GPUs per node": f"{p.gpus_per_node} x {p.gpu.name}" if p.has_gpus else "none",
            "nodes": f"{p.config.min_size}-{p.config.max_size}",
            "capacity": p.config.capacity_type,
        }
        for p in plan.pools
    }


def compare(kind: str, before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Lines of what was added, removed or changed. A fact one side omits has its default
    (`MODEL_DEFAULTS`), or is listed as new ("now ...") or gone ("was ..."): a model going standard
    -> disaggregated gets its prefill and decode facts, and its single deployment's go."""
    lines = []
    for key in sorted(after.keys() - before.keys()):
        lines.append(f"{kind} `{key}` added: " + ", ".join(f"{k} {v}" for k, v in after[key].items()))
    for key in sorted(before.keys() - after.keys()):
        lines.append(f"{kind} `{key}` removed")
    for key in sorted(before.keys() & after.keys()):
        old, new = before[key], after[key]
        changed, now, was = [], [], []
        for k in [*new, *(k for k in old if k not in new)]:
            b, a = old.get(k, _default(kind, k)), new.get(k, _default(kind, k))
            if b == a:
                continue
            if a == "(none)":
                was.append(f"{k} {b}")
            elif b == "(none)":
                now.append(f"{k} {a}")
            else:
                changed.append(f"{k} {b} -> {a}")
        if now:
            changed.append("now " + ", ".join(now))
        if was:
            changed.append("was " + ", ".join(was))
        if changed:
            lines.append(f"{kind} `{key}`: " + "; ".join(changed))
    return lines


def _replica_capacity(part: PartPlan) -> tuple[float, int]:
    """(requests of max_model_len, KV cache tokens) one replica holds: every engine of a
    data-parallel gang has its own KV cache."""
    dp = part.deployment.data_parallel_size
    return part.capacity.max_concurrency * dp, part.capacity.kv_cache_tokens * dp


def capacity_rows(base: EnvironmentPlan | None, head: EnvironmentPlan | None) -> list[dict[str, Any]]:
    """Per model and part (a disaggregated model's prefill and decode apart), before and after."""

    def parts(plan: EnvironmentPlan | None) -> dict[tuple[str, str], tuple[float, int]]:
        return {(m.id, p.role): _replica_capacity(p) for m in plan.models for p in m.parts} if plan else {}

    before, after = parts(base), parts(head)
    rows = []
    roles = ("model", "prefill", "decode")  # serving order
    for model, role in sorted(before.keys() | after.keys(), key=lambda k: (k[0], roles.index(k[1]))):
        b, a = before.get((model, role)), after.get((model, role))
        rows.append(
            {
                "model": model,
                "part": role,
                "concurrency_before": round(b[0], 2) if b else None,
                "concurrency_after": round(a[0], 2) if a else None,
                "kv_tokens_before": b[1] if b else None,
                "kv_tokens_after": a[1] if a else None,
            }
        )
    return rows


def readable(specs: dict[str, str]) -> dict[str, str]:
    """Spec files as a reviewer reads them: a RayService's `serveConfigV2` (a YAML document kept
    as one escaped string) becomes a file of its own, `<file> serveConfigV2`; the copy of the
    RayService among the platform objects is not shown twice."""
    out = {}
    for name, text in specs.items():
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            out[name] = text
            continue
        rayservices = [d for d in documents if isinstance(d, dict) and d.get("kind") == "RayService"]
        if not rayservices:
            out[name] = text
            continue
        for document in rayservices:
            spec = document.get("spec") or {}
            if name == PLATFORM_FILE:
                document.clear()
                document.update(kind="RayService", note=f"the same as {RAYSERVICE_FILE}")
            elif isinstance(spec.get("serveConfigV2"), str):
                out[f"{name} serveConfigV2"] = spec["serveConfigV2"]
                spec["serveConfigV2"] = "(diffed as YAML below)"
        out[name] = yaml.safe_dump_all(documents, sort_keys=False, width=120)
    return out


def spec_diff(before: dict[str, str], after: dict[str, str]) -> str:
    before, after = readable(before), readable(after)
    lines: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        lines += difflib.unified_diff(
            before.get(name, "").splitlines(),
            after.get(name, "").splitlines(),
            f"base/{name}",
            f"head/{name}",
            lineterm="",
            n=2,
        )
    if len(lines) > SPEC_DIFF_LINES:
        lines = lines[:SPEC_DIFF_LINES] + [f"... {len(lines) - SPEC_DIFF_LINES} more lines"]
    return "\n".join(lines)
