"""A preview as a pull-request comment (Markdown) or for tools (JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stacks.preview.diff import ResourceChange

MARKER = "<!-- llmstacks-preview -->"
DETAILS_OVER = 12  # longer lists go in a collapsed <details> block


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
            "name": self.name,
            "status": self.status,
            "resources": {
                action: [
                    {"address": r.address, "attributes": r.attributes} for r in self.resources if r.action == action
                ]
                for action in ("added", "removed", "changed")
            },
            "serving": self.serving,
            "capacity": self.capacity,
            "cost_per_hour": self.cost,
            "gpus_at_max": self.gpus,
            "spec_diff": self.spec_diff,
            "policy": {"passed": self.policy_ok, "summary": self.policy},
            "notes": self.notes,
        }


@dataclass
class Preview:
    base: str
    environments: list[EnvironmentPreview]
    base_error: str | None = None
    # The kit version each side pins (requirements.txt) and the one installed: {"base", "head", "installed"}.
    kit: dict[str, str | None] | None = None

    @property
    def policy_ok(self) -> bool:
        return all(e.policy_ok for e in self.environments)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value}x"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _part(row: dict[str, Any]) -> str:
    """A capacity row's model, with its part where it is one side of a disaggregated model."""
    return row["model"] if row.get("part", "model") == "model" else f"{row['model']} ({row['part']})"


def _details(summary: str, lines: list[str], fence: str | None = None) -> list[str]:
    body = [f"```{fence}", *lines, "```"] if fence is not None else lines
    if len(lines) <= DETAILS_OVER and fence is None:
        return [f"**{summary}**", "", *body, ""]
    return [f"<details><summary>{summary}</summary>", "", *body, "", "</details>", ""]


def to_markdown(result: Preview) -> str:
    out = [MARKER, f"## llm-serving-stacks preview: `{result.base}` → this change", ""]
    if result.base_error:
        out += [f"> ⚠️ {result.base_error}", ""]
    out += [f"> {line}" for line in kit_notes(result.kit)] + ([""] if kit_notes(result.kit) else [])
    out += [
        "| environment | change | resources (+/~/-) | GPUs at max | GPU cost/h at min | GPU cost/h at max | policy |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in result.environments:
        counts = {a: sum(r.action == a for r in e.resources) for a in ("added", "changed", "removed")}
        gpus = f"{e.gpus['before'] if e.gpus['before'] is not None else '-'} → {e.gpus['after'] if e.gpus['after'] is not None else '-'}"
        cost = [f"{_money(e.cost[at]['before'])} → {_money(e.cost[at]['after'])}" for at in ("min", "max")]
        verdict = "✅ passed" if e.policy_ok else "❌ failed"
        out.append(
            f"| {e.name} | {e.status} | +{counts['added']} ~{counts['changed']} -{counts['removed']} | {gpus} | "
            f"{cost[0]} | {cost[1]} | {verdict} |"
        )
    out.append("")
    for e in result.environments:
        if e.status == "unchanged":
            continue
        out += [f"### {e.name}", ""]
        if e.serving:
            out += _details("Serving changes", [f"- {line}" for line in e.serving])
        rows = [r for r in e.capacity if r["concurrency_before"] != r["concurrency_after"]]
        if rows:
            out += [
                "**Capacity** (requests of max_model_len a replica holds, planned)",
                "",
                "| model | before | after |",
                "|---|---|---|",
            ]
            out += [
                f"| {_part(r)} | {_times(r['concurrency_before'])} | {_times(r['concurrency_after'])} |" for r in rows
            ]
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
            counts = ", ".join(
                f"{sum(r.action == a for r in e.resources)} {a}" for a in ("added", "changed", "removed")
            )
            out += _details(f"Terraform resources: {counts}", lines)
        if e.spec_diff:
            out += _details("Service spec diff", e.spec_diff.splitlines(), fence="diff")
    return "\n".join(out).rstrip() + "\n"


def kit_notes(kit: dict[str, str | None] | None) -> list[str]:
    """What the preview says about the kit version: a changed pin (both versions named), and an
    installed kit that is not the pinned one."""
    if not kit:
        return []
    notes = []
    if kit["base"] != kit["head"]:
        notes.append(
            f"📦 This change moves the kit pin (requirements.txt) from llm-serving-stacks {kit['base'] or 'unpinned'} "
            f"to {kit['head'] or 'unpinned'}. Both revisions' environment files were synthesized with the "
            f"installed kit {kit['installed']}: what the upgrade itself changes in the stacks is not in this diff; "
            "read the kit's release notes."
        )
    if kit["head"] and kit["head"] != kit["installed"]:
        notes.append(
            f"⚠️ requirements.txt pins llm-serving-stacks {kit['head']}, but {kit['installed']} is installed: "
            "install the pinned version for a faithful preview."
        )
    return notes


def to_json(result: Preview) -> str:
    return json.dumps(
        {
            "base": result.base,
            "base_error": result.base_error,
            "kit": result.kit,
            "policy_passed": result.policy_ok,
            "environments": [e.as_dict() for e in result.environments],
        },
        indent=2,
    )
