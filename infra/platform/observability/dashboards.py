"""The committed Grafana dashboards (Ray's own, from `generate_dashboards`) as ConfigMaps for the Grafana sidecar.

Pure: reads the JSON shipped in this package and never imports Ray.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from infra.platform.observability.names import DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE, MONITORING_NAMESPACE, metadata

DASHBOARD_DIRECTORY = "dashboards"


def dashboard_files() -> dict[str, str]:
    """File name -> JSON text of every committed dashboard, sorted by name."""
    directory = resources.files("infra.platform.observability").joinpath(DASHBOARD_DIRECTORY)
    files = {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in directory.iterdir()
        if entry.name.endswith(".json") and entry.is_file()
    }
    if not files:
        raise FileNotFoundError("no dashboards in infra/platform/observability/dashboards: run `make dashboards`")
    return dict(sorted(files.items()))


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> the parsed dashboard."""
    return {name: json.loads(text) for name, text in dashboard_files().items()}


def dashboard_config_maps(environment: str) -> list[dict[str, Any]]:
    """One ConfigMap per dashboard in the monitoring namespace, labeled for the Grafana sidecar.

    The data key is the file name: the sidecar writes it as the dashboard's file.
    """
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(
                f"grafana-dashboard-{name.removesuffix('.json')}",
                MONITORING_NAMESPACE,
                environment,
                {DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE},
            ),
            "data": {name: text},
        }
        for name, text in dashboard_files().items()
    ]
