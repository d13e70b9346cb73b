"""Monitoring for LLM serving: what the platform stack installs for Prometheus and Grafana.

Pure Python (no cdktf, no Ray): plain dicts the platform stack installs.

- `kube_prometheus_stack_values()`: values for the pinned kube-prometheus-stack chart.
- `monitoring_objects(...)`: our own objects: PodMonitors for Ray's head and
  worker pods, the PrometheusRule with the alerts, and one ConfigMap per Grafana
  dashboard (Ray's own Serve and Serve LLM dashboards, generated from Ray's
  dashboard factory by `make dashboards`). They use the Prometheus operator's
  CRDs, so install them after the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.platform.observability.alerts import prometheus_rule
from infra.platform.observability.chart_values import kube_prometheus_stack_values
from infra.platform.observability.dashboards import dashboard_config_maps
from infra.platform.observability.names import MONITORING_NAMESPACE, ModelObjective
from infra.platform.observability.scrape import pod_monitors
from infra.rules import label_value_problem, namespace_problem, repeated, require

__all__ = ["MONITORING_NAMESPACE", "ModelObjective", "kube_prometheus_stack_values", "monitoring_objects"]


def monitoring_objects(
    *, environment: str, serving_namespace: str, models: Sequence[ModelObjective]
) -> list[dict[str, Any]]:
    """Every Kubernetes object of ours for monitoring one environment, in a fixed order.

    PodMonitors (head, workers) and the PrometheusRule live in the serving
    namespace; the dashboard ConfigMaps in MONITORING_NAMESPACE.
    """
    require("environment", label_value_problem(environment) or (None if environment else "must not be empty"))
    require("serving_namespace", namespace_problem(serving_namespace))
    models = list(models)
    for model in models:
        if not isinstance(model, ModelObjective):
            raise TypeError(f"models: expected ModelObjective, got {type(model).__name__}")
    if duplicates := repeated(m.id for m in models):
        raise ValueError(f"models: duplicate ids {duplicates}")
    return [
        *pod_monitors(environment, serving_namespace),
        prometheus_rule(environment, serving_namespace, models),
        *dashboard_config_maps(environment),
    ]
