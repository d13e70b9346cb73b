"""What differs between a base and a head synthesis: Terraform resources, serving facts, specs."""

from __future__ import annotations

import difflib
import json

import yaml
from dataclasses import dataclass, field
from typing import Any

from stacks.planning.plan import EnvironmentPlan
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
            for path in sorted(old.keys() | new.keys()) if old.get(path, None) != new.get(path, None)
        ]
        changes.append(ResourceChange(address, "changed", attributes))
    return changes


# ------------------------------------------------------------------ serving

def model_facts(plan: EnvironmentPlan | None) -> dict[str, dict[str, Any]]:
    if plan is None:
        return {}
    facts = {}
    for m in plan.models:
        lora = m.config.lora
        facts[m.id] = {
            "node pool": m.pool.name,
            "GPUs per replica": f"{m.gpus_per_replica} x {m.pool.gpu.name}",
            "replicas": f"{m.config.replicas.min}-{m.config.replicas.max}",
            "max_model_len": m.config.max_model_len,
            "weights": weights_source(plan, m),
            "LoRA": (f"up to {lora.max_adapters_per_replica}, rank <= {lora.max_rank}, from {plan.names.model_adapters_uri(m.id)}"
                     if lora.enabled else "off"),
            "engine_kwargs": json.dumps(m.config.engine_kwargs.as_dict(), sort_keys=True),
            "load target": f"{m.target_ongoing_requests:g} / {m.max_ongoing_requests}",
            "routing": json.dumps(m.config.routing_policy.model_dump(exclude_defaults=True), sort_keys=True),
            "workload": json.dumps(m.config.workload.model_dump(), sort_keys=True),
        }
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
    lines = []
    for key in sorted(after.keys() - before.keys()):
        lines.append(f"{kind} `{key}` added: " + ", ".join(f"{k} {v}" for k, v in after[key].items()))
    for key in sorted(before.keys() - after.keys()):
        lines.append(f"{kind} `{key}` removed")
    for key in sorted(before.keys() & after.keys()):
        changed = [f"{k} {before[key].get(k)} -> {v}" for k, v in after[key].items() if before[key].get(k) != v]
        if changed:
            lines.append(f"{kind} `{key}`: " + "; ".join(changed))
    return lines


def capacity_rows(base: EnvironmentPlan | None, head: EnvironmentPlan | None) -> list[dict[str, Any]]:
    before = {m.id: m.capacity for m in base.models} if base else {}
    after = {m.id: m.capacity for m in head.models} if head else {}
    rows = []
    for model in sorted(before.keys() | after.keys()):
        b, a = before.get(model), after.get(model)
        rows.append({
            "model": model,
            "concurrency_before": round(b.max_concurrency, 2) if b else None,
            "concurrency_after": round(a.max_concurrency, 2) if a else None,
            "kv_tokens_before": b.kv_cache_tokens if b else None,
            "kv_tokens_after": a.kv_cache_tokens if a else None,
        })
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
        lines += difflib.unified_diff(before.get(name, "").splitlines(), after.get(name, "").splitlines(),
                                      f"base/{name}", f"head/{name}", lineterm="", n=2)
    if len(lines) > SPEC_DIFF_LINES:
        lines = lines[:SPEC_DIFF_LINES] + [f"... {len(lines) - SPEC_DIFF_LINES} more lines"]
    return "\n".join(lines)
