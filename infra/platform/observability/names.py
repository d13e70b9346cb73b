"""Names the monitoring objects, the chart values and the dashboards share (pure data)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The model id pattern is the serving app's contract (`app.spec`): the app checks its args with it on the
# cluster and imports nothing from infra, so it is written there once and read here.
from app.spec import MODEL_ID_PATTERN

MONITORING_NAMESPACE = "monitoring"
MANAGED_BY = {"app.kubernetes.io/managed-by": "llm-serving-stacks"}
ENVIRONMENT_LABEL = "llm-serving-stacks/environment"

# kube-prometheus-stack's own Prometheus datasource in Grafana (grafana.sidecar.datasources.name/uid);
# the values pin both, and the dashboards select it by uid.
GRAFANA_DATASOURCE_NAME = "Prometheus"
GRAFANA_DATASOURCE_UID = "prometheus"
# What the kube-prometheus-stack Grafana sidecar looks for on ConfigMaps (grafana.sidecar.dashboards.label/labelValue).
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"

_MODEL_ID = re.compile(MODEL_ID_PATTERN)


@dataclass(frozen=True)
class ModelObjective:
    """A served model and the time-to-first-token objective its alert holds it to (p95, seconds)."""

    id: str
    ttft_p95_seconds: float = 2.0

    def __post_init__(self):
        if not isinstance(self.id, str) or not _MODEL_ID.fullmatch(self.id):
            raise ValueError(f"model id {self.id!r} must match {MODEL_ID_PATTERN}")
        if (
            isinstance(self.ttft_p95_seconds, bool)
            or not isinstance(self.ttft_p95_seconds, (int, float))
            or not 0 < self.ttft_p95_seconds <= 600
        ):
            raise ValueError(f"{self.id}: ttft_p95_seconds must be a number in (0, 600], not {self.ttft_p95_seconds!r}")


def metadata(name: str, namespace: str, environment: str, labels: dict[str, str] | None = None) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**MANAGED_BY, ENVIRONMENT_LABEL: environment, **(labels or {})},
    }
