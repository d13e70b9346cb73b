"""`llmstacks preview`: what a change does, in serving terms, offline.

The base revision is checked out in a temporary git worktree and synthesized
by its own code (a subprocess, in parallel with the working tree's synth in
this process); then the two outputs are compared per environment: Terraform
resources, models and node pools, capacity and cost (both sides planned by
this revision's planner), the rendered specs, and the policy gate's verdict
on the working tree.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.environment import Environment
from stacks.loader import ConfigError, environment_files, load_environment

MARKER = "<!-- llmstacks-preview -->"
DETAILS_OVER = 12  # longer lists go in a collapsed <details> block
SPEC_DIFF_LINES = 400


@dataclass
class ResourceChange:
    address: str
    action: str  # added, removed, changed
    attributes: list[str] = field(default_factory=list)  # "path: before -> after"


@dataclass
class EnvironmentPreview:
    name: str
    status: str  # added, removed, changed, unchanged
    resources: list[ResourceChange] = field(default_factory=list)
    serving: list[str] = field(default_factory=list)
    capacity: list[dict[str, Any]] = field(default_factory=list)
    cost: dict[str, dict[str, float | None]] = field(default_factory=dict)
    gpus: dict[str, int | None] = field(default_factory=dict)
    spec_diff: str = ""
    policy: str = ""
    policy_ok: bool = True
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status,
            "resources": {
                action: [{"address": r.address, "attributes": r.attributes} for r in self.resources if r.action == action]
                for action in ("added", "removed", "changed")
            },
            "serving": self.serving, "capacity": self.capacity, "cost_per_hour": self.cost, "gpus_at_max": self.gpus,
            "spec_diff": self.spec_diff, "policy": {"passed": self.policy_ok, "summary": self.policy}, "notes": self.notes,
        }


@dataclass
class Preview:
    base: str
    environments: list[EnvironmentPreview]
    base_error: str | None = None

    @property
    def policy_ok(self) -> bool:
        return all(e.policy_ok for e in self.environments)


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

def _model_facts(env: Environment) -> dict[str, dict[str, Any]]:
    from stacks.app_args import model_load_targets  # noqa: PLC0415
    from stacks.capacity import plan_for  # noqa: PLC0415
    from stacks.names import Names  # noqa: PLC0415

    names = Names(env)
    facts = {}
    for m in env.models:
        pool = env.node_pool(m.node_pool)
        target, maximum = model_load_targets(m, plan_for(env, m))
        facts[m.id] = {
            "node pool": m.node_pool,
            "GPUs per replica": f"{m.gpus_per_replica} x {pool.accelerator if pool else '?'}",
            "replicas": f"{m.replicas.min}-{m.replicas.max}",
            "max_model_len": m.max_model_len,
            "weights": names.model_weights_uri(m.id) if m.weights.source == "bucket" else f"hf:{m.weights.hf_id}",
            "LoRA": (f"up to {m.lora.max_adapters_per_replica}, rank <= {m.lora.max_rank}, from {names.model_adapters_uri(m.id)}"
                     if m.lora.enabled else "off"),
            "engine_kwargs": json.dumps(m.engine_kwargs, sort_keys=True),
            "load target": f"{target:g} / {maximum}",
        }
    return facts


def _pool_facts(env: Environment) -> dict[str, dict[str, Any]]:
    from stacks.checks import gpus_per_node  # noqa: PLC0415

    return {
        p.name: {
            "instance types": ",".join(p.instance_types),
            "GPUs per node": f"{gpus_per_node(p)} x {p.accelerator}" if p.accelerator else "none",
            "nodes": f"{p.min_size}-{p.max_size}",
            "capacity": p.capacity_type,
        }
        for p in env.node_pools
    }


def _compare(kind: str, before: dict[str, dict], after: dict[str, dict]) -> list[str]:
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


def _capacity_rows(base: Environment | None, head: Environment | None) -> list[dict[str, Any]]:
    from stacks.capacity import plan_for  # noqa: PLC0415

    def planned(env: Environment | None) -> dict[str, Any]:
        # Loaded environments passed their checks, so every architecture is readable.
        return {m.id: plan_for(env, m) for m in env.models} if env else {}

    before, after = planned(base), planned(head)
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


def _gpus_at_max(env: Environment | None) -> int | None:
    return sum(m.gpus_per_replica * m.replicas.max for m in env.models) if env else None


# ------------------------------------------------------------------ synthesis

def _load_all(directory: Path) -> tuple[dict[str, Environment], list[str]]:
    envs, problems = {}, []
    for path in environment_files(directory):
        try:
            env = load_environment(path)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        envs[env.name] = env
    return envs, problems


def _start_base_synth(repo: Path, ref: str, workdir: Path) -> tuple[subprocess.Popen, Path]:
    """Check out `ref` in a worktree and start its own synth; (process, its worktree)."""
    tree = workdir / "base"
    result = subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(tree), ref],
                            capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["git worktree failed"])[-1]
        raise ConfigError("--base", "", f"cannot check out {ref!r}: {message}")
    env = {**os.environ, "PYTHONPATH": str(tree), "CDKTF_OUTDIR": str(workdir / "base.out")}
    process = subprocess.Popen([sys.executable, "-m", "stacks"], cwd=tree, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, tree


def _read_out(outdir: Path, env: str) -> tuple[dict | None, dict[str, str]]:
    stack = outdir / "stacks" / env / "cdk.tf.json"
    tf = json.loads(stack.read_text()) if stack.is_file() else None
    specs_dir = outdir / "specs" / env
    specs = {p.name: p.read_text() for p in sorted(specs_dir.glob("*.yaml"))} if specs_dir.is_dir() else {}
    return tf, specs


def _spec_diff(before: dict[str, str], after: dict[str, str]) -> str:
    lines: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        lines += difflib.unified_diff(before.get(name, "").splitlines(), after.get(name, "").splitlines(),
                                      f"base/{name}", f"head/{name}", lineterm="", n=2)
    if len(lines) > SPEC_DIFF_LINES:
        lines = lines[:SPEC_DIFF_LINES] + [f"... {len(lines) - SPEC_DIFF_LINES} more lines"]
    return "\n".join(lines)


def preview(base_ref: str, *, repo: Path | None = None, env_dir: Path | None = None, policy: bool = True) -> Preview:
    """Compare `base_ref` with the working tree of `repo` (default: the current directory's repository)."""
    from stacks.cli import synthesize_checked  # noqa: PLC0415
    from stacks.loader import ENVIRONMENTS_DIR  # noqa: PLC0415

    repo = Path(repo or Path.cwd()).resolve()
    top = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0:
        raise ConfigError(repo, "", "not a git repository (preview compares a base revision with the working tree)")
    repo = Path(top.stdout.strip())
    env_dir = Path(env_dir or ENVIRONMENTS_DIR)
    relative_env_dir = env_dir.resolve().relative_to(repo) if env_dir.resolve().is_relative_to(repo) else Path("stacks/environments")
    # The working tree must be valid: its errors are the user's to fix (exit 2).
    head_envs = {env.name: env for env in (load_environment(p) for p in environment_files(env_dir))}

    with tempfile.TemporaryDirectory(prefix="llmstacks-preview-") as tmp:
        workdir = Path(tmp)
        process, tree = _start_base_synth(repo, base_ref, workdir)
        try:
            # This revision, in this process, while the base synthesizes in another.
            head_out = workdir / "head.out"
            ordered = sorted(head_envs.values(), key=lambda e: e.name)
            synthesize_checked([(env, env.name) for env in ordered], head_out, replace_all=True)
            verdicts: dict[str, tuple[bool, str]] = {}
            if policy and ordered:
                from stacks.policy_gate import run_gate  # noqa: PLC0415

                report = run_gate(head_out, [e.name for e in ordered], workdir / "policy")
                for env in ordered:
                    failed = [f for f in report.failures if f.environment == env.name]
                    specs = report.spec_problems.get(env.name, [])
                    ok = not failed and not specs and not report.missing_checks
                    text = "passed" if ok else "; ".join([f"{f.check} {f.resource}" for f in failed] + [f"{p} {m}" for p, m in specs]
                                                         + [f"{c} did not run" for c in report.missing_checks])
                    verdicts[env.name] = (ok, text)
            _, stderr = process.communicate(timeout=900)
            base_error = None
            if process.returncode != 0:
                base_error = f"the base revision does not synthesize: {(stderr.strip().splitlines() or ['no output'])[-1]}"
            base_envs, base_problems = _load_all(tree / relative_env_dir) if (tree / relative_env_dir).is_dir() else ({}, [])
            if base_problems and not base_error:
                base_error = f"some base environment files do not load with this revision's schema: {base_problems[0]}"
            from stacks.summary import gpu_cost_per_hour  # noqa: PLC0415

            environments = []
            for name in sorted(head_envs.keys() | base_envs.keys()):
                head, base = head_envs.get(name), base_envs.get(name)
                head_tf, head_specs = _read_out(head_out, name)
                base_tf, base_specs = _read_out(workdir / "base.out", name)
                item = EnvironmentPreview(name, "added" if base_tf is None and base is None else "removed" if head is None else "changed")
                item.resources = diff_resources(base_tf, head_tf)
                item.serving = (_compare("model", _model_facts(base) if base else {}, _model_facts(head) if head else {})
                                + _compare("node pool", _pool_facts(base) if base else {}, _pool_facts(head) if head else {}))
                item.capacity = _capacity_rows(base, head)
                item.cost = {at: {"before": round(gpu_cost_per_hour(base, at), 2) if base else None,
                                  "after": round(gpu_cost_per_hour(head, at), 2) if head else None} for at in ("min", "max")}
                item.gpus = {"before": _gpus_at_max(base), "after": _gpus_at_max(head)}
                item.spec_diff = _spec_diff(base_specs, head_specs)
                if item.status == "changed" and not (item.resources or item.serving or item.spec_diff):
                    item.status = "unchanged"
                item.policy_ok, item.policy = verdicts.get(name, (True, "n/a (removed)" if head is None else "not run"))
                environments.append(item)
            return Preview(base_ref, environments, base_error)
        finally:
            if process.poll() is None:
                process.kill()
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], capture_output=True)


# ------------------------------------------------------------------ output

def _times(value: float | None) -> str:
    return "-" if value is None else f"{value}x"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _details(summary: str, lines: list[str], fence: str | None = None) -> list[str]:
    body = [f"```{fence}", *lines, "```"] if fence is not None else lines
    if len(lines) <= DETAILS_OVER and fence is None:
        return [f"**{summary}**", "", *body, ""]
    return [f"<details><summary>{summary}</summary>", "", *body, "", "</details>", ""]


def to_markdown(result: Preview) -> str:
    out = [MARKER, f"## llm-serving-stacks preview: `{result.base}` → this change", ""]
    if result.base_error:
        out += [f"> ⚠️ {result.base_error}", ""]
    out += ["| environment | change | resources (+/~/-) | GPUs at max | GPU cost/h at min | GPU cost/h at max | policy |",
            "|---|---|---|---|---|---|---|"]
    for e in result.environments:
        counts = {a: sum(r.action == a for r in e.resources) for a in ("added", "changed", "removed")}
        gpus = f"{e.gpus['before'] if e.gpus['before'] is not None else '-'} → {e.gpus['after'] if e.gpus['after'] is not None else '-'}"
        cost = [f"{_money(e.cost[at]['before'])} → {_money(e.cost[at]['after'])}" for at in ("min", "max")]
        verdict = "✅ passed" if e.policy_ok else "❌ failed"
        out.append(f"| {e.name} | {e.status} | +{counts['added']} ~{counts['changed']} -{counts['removed']} | {gpus} | "
                   f"{cost[0]} | {cost[1]} | {verdict} |")
    out.append("")
    for e in result.environments:
        if e.status == "unchanged":
            continue
        out += [f"### {e.name}", ""]
        if e.serving:
            out += _details("Serving changes", [f"- {line}" for line in e.serving])
        rows = [r for r in e.capacity if r["concurrency_before"] != r["concurrency_after"]]
        if rows:
            out += ["**Capacity** (requests of max_model_len a replica holds, planned)", "",
                    "| model | before | after |", "|---|---|---|"]
            out += [f"| {r['model']} | {_times(r['concurrency_before'])} | {_times(r['concurrency_after'])} |" for r in rows]
            out.append("")
        if not e.policy_ok:
            out += [f"**Policy gate failed:** {e.policy}", ""]
        if e.resources:
            lines = []
            for r in e.resources:
                sign = {"added": "+", "removed": "-", "changed": "~"}[r.action]
                lines.append(f"- `{sign} {r.address}`")
                lines += [f"  - `{a}`" for a in r.attributes[:20]]
                if len(r.attributes) > 20:
                    lines.append(f"  - ... {len(r.attributes) - 20} more")
            counts = ", ".join(f"{sum(r.action == a for r in e.resources)} {a}" for a in ("added", "changed", "removed"))
            out += _details(f"Terraform resources: {counts}", lines)
        if e.spec_diff:
            out += _details("Service spec diff", e.spec_diff.splitlines(), fence="diff")
    return "\n".join(out).rstrip() + "\n"


def to_json(result: Preview) -> str:
    return json.dumps({"base": result.base, "base_error": result.base_error, "policy_passed": result.policy_ok,
                       "environments": [e.as_dict() for e in result.environments]}, indent=2)
