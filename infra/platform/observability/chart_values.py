"""Values for the pinned kube-prometheus-stack chart (infra.platform.charts: 88.5.3).

Every key exists in that chart's values.yaml (github.com/prometheus-community/helm-charts,
tag kube-prometheus-stack-88.5.3) or, under `grafana`, in its Grafana subchart's
(github.com/grafana-community/helm-charts, tag grafana-12.11.1); a test checks
them against the copies vendored under tests/schemas/.
"""

from __future__ import annotations

from typing import Any

from infra.platform.observability.names import (
    DASHBOARD_LABEL,
    DASHBOARD_LABEL_VALUE,
    GRAFANA_DATASOURCE_NAME,
    GRAFANA_DATASOURCE_UID,
)

# Prometheus keeps data on the pod's emptyDir (no storage class is assumed): bound it in time and size.
PROMETHEUS_RETENTION = "7d"
PROMETHEUS_RETENTION_SIZE = "8GiB"
_CLUSTER_IP = {"type": "ClusterIP"}
_NO_INGRESS = {"enabled": False}
_NO_ROUTE = {"main": {"enabled": False}}


def kube_prometheus_stack_values() -> dict[str, Any]:
    """Prometheus that picks up PodMonitors and PrometheusRules from every namespace, whatever their labels;
    Grafana's dashboard sidecar on, searching every namespace; nothing reachable from outside the cluster."""
    return {
        "prometheus": {
            "prometheusSpec": {
                # Without these the chart selects only objects labeled with its own Helm release.
                "podMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelector": {},
                "podMonitorNamespaceSelector": {},
                "ruleSelectorNilUsesHelmValues": False,
                "ruleSelector": {},
                "ruleNamespaceSelector": {},
                "retention": PROMETHEUS_RETENTION,
                "retentionSize": PROMETHEUS_RETENTION_SIZE,
            },
            "service": _CLUSTER_IP,
            "ingress": _NO_INGRESS,
            "route": _NO_ROUTE,
            "thanosServiceExternal": _NO_INGRESS,
        },
        "alertmanager": {"service": _CLUSTER_IP, "ingress": _NO_INGRESS, "route": _NO_ROUTE},
        "prometheusOperator": {"service": _CLUSTER_IP},
        "grafana": {
            # The Grafana chart's default is ClusterIP already: set so a default change cannot expose it.
            "service": _CLUSTER_IP,
            "ingress": _NO_INGRESS,
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL,
                    "labelValue": DASHBOARD_LABEL_VALUE,
                    "searchNamespace": "ALL",
                },
                # The dashboards select this datasource by uid.
                "datasources": {
                    "enabled": True,
                    "defaultDatasourceEnabled": True,
                    "isDefaultDatasource": True,
                    "name": GRAFANA_DATASOURCE_NAME,
                    "uid": GRAFANA_DATASOURCE_UID,
                },
            },
        },
    }
