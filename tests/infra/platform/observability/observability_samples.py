"""What the observability tests check: the objects for a sample environment, their queries, the dashboards'."""

from __future__ import annotations

from typing import Any

from infra.platform.observability import ModelObjective, monitoring_objects
from infra.platform.observability.dashboards import dashboards

ENVIRONMENT = "dev"
NAMESPACE = "llm-serving"
MODELS = (ModelObjective("qwen2.5-7b-instruct", 1.5), ModelObjective("llama-3.2-1b-instruct"))


def sample_objects() -> list[dict[str, Any]]:
    return monitoring_objects(environment=ENVIRONMENT, serving_namespace=NAMESPACE, models=MODELS)


def rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        rule
        for o in objects
        if o["kind"] == "PrometheusRule"
        for group in o["spec"]["groups"]
        for rule in group["rules"]
    ]


def rule_queries(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(where, PromQL) for every alert rule."""
    return [(f"alert {rule['alert']}", rule["expr"]) for rule in rules(objects)]


def dashboard_queries(boards: dict[str, dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """(where, Grafana query) for every panel target and query variable of the committed dashboards."""
    found: list[tuple[str, str]] = []

    def panels(file: str, items: list[dict[str, Any]]) -> None:
        for panel in items:
            for target in panel.get("targets", []):
                found.append((f"{file} panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]))
            panels(file, panel.get("panels", []))

    for file, board in (boards if boards is not None else dashboards()).items():
        panels(file, board["panels"])
        for variable in board["templating"]["list"]:
            if variable.get("type") == "query":
                query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                found.append((f"{file} variable {variable['name']}", query))
    return found
