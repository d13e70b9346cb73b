"""kube_prometheus_stack_values() sets only keys the pinned chart has, and what it sets does what it says."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import TESTS
from infra.platform.charts import CHARTS
from infra.platform.observability import kube_prometheus_stack_values
from infra.platform.observability.names import DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE

SCHEMAS = TESTS / "schemas" / "monitoring"
CHART_VALUES = SCHEMAS / f"kube-prometheus-stack-{CHARTS['kube-prometheus-stack'].version}-values.yaml"
GRAFANA_VALUES = SCHEMAS / "grafana-12.11.1-values.yaml"


@cache
def defaults(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def paths(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path set, down to the leaves (an empty mapping is a leaf: the chart takes it whole)."""
    out = []
    for key, value in values.items():
        path = (*prefix, key)
        out += paths(value, path) if isinstance(value, dict) and value else [path]
    return out


def exists(tree: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def unknown_keys(values: dict[str, Any]) -> list[str]:
    chart, grafana = defaults(CHART_VALUES), defaults(GRAFANA_VALUES)
    return [
        ".".join(p)
        for p in paths(values)
        if not exists(chart, p) and not (p[0] == "grafana" and exists(grafana, p[1:]))
    ]


def test_the_vendored_values_are_the_pinned_charts():
    # Named after the version infra/platform/charts.py pins: a chart bump needs its values vendored again.
    assert CHART_VALUES.exists(), f"vendor {CHART_VALUES.name} (see tests/schemas/monitoring/README.md)"
    assert GRAFANA_VALUES.name in (SCHEMAS / "README.md").read_text()


def test_every_key_set_exists_in_the_chart():
    values = kube_prometheus_stack_values()
    assert len(paths(values)) > 20
    assert unknown_keys(values) == []


@pytest.mark.parametrize(
    "path",
    [
        ("prometheus", "prometheusSpec", "podMonitorSelectorNilUsesHelmValue"),
        ("prometheus", "prometheusSpec", "retentionTime"),
        ("grafana", "sidecar", "dashboards", "searchNamespaces"),
        ("alertmanager", "serviceType"),
    ],
)
def test_a_planted_unknown_key_is_refused(path):
    values = copy.deepcopy(kube_prometheus_stack_values())
    tree = values
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = "x"
    assert unknown_keys(values) == [".".join(path)]


def test_prometheus_selects_monitors_and_rules_from_every_namespace_whatever_their_labels():
    spec = kube_prometheus_stack_values()["prometheus"]["prometheusSpec"]
    for kind in ("podMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
        assert spec[f"{kind}Selector"] == {} and spec[f"{kind}NamespaceSelector"] == {}


def test_retention_is_bounded_in_time_and_size():
    spec = kube_prometheus_stack_values()["prometheus"]["prometheusSpec"]
    assert re.fullmatch(r"[0-9]+(ms|s|m|h|d|w|y)", spec["retention"])
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)?(K|M|G|T|E|P)i?B", spec["retentionSize"])


def test_grafana_loads_labeled_dashboards_from_every_namespace_with_the_datasource_they_name():
    grafana = kube_prometheus_stack_values()["grafana"]
    dashboards = grafana["sidecar"]["dashboards"]
    assert dashboards == {
        "enabled": True,
        "label": DASHBOARD_LABEL,
        "labelValue": DASHBOARD_LABEL_VALUE,
        "searchNamespace": "ALL",
    }
    datasource = grafana["sidecar"]["datasources"]
    assert (datasource["name"], datasource["uid"], datasource["isDefaultDatasource"]) == (
        "Prometheus",
        "prometheus",
        True,
    )


def test_nothing_is_exposed_outside_the_cluster():
    values = kube_prometheus_stack_values()
    for component in ("prometheus", "alertmanager", "prometheusOperator", "grafana"):
        assert values[component]["service"]["type"] == "ClusterIP", component
    for path in paths(values):
        if set(path) & {"ingress", "route", "thanosServiceExternal"}:
            assert path[-1] == "enabled" and values_at(values, path) is False, path
    # What is left at the chart's defaults is closed too.
    chart = defaults(CHART_VALUES)
    for component in ("prometheus", "alertmanager", "thanosRuler"):
        assert chart[component]["ingress"]["enabled"] is False
        assert chart[component].get("servicePerReplica", {}).get("enabled", False) is False
    assert defaults(GRAFANA_VALUES)["service"]["type"] == "ClusterIP"


def values_at(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree
