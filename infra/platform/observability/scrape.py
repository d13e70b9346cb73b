"""PodMonitors for Ray's metrics endpoint on the head and worker pods KubeRay creates.

Following KubeRay v1.7.0's own example (github.com/ray-project/kuberay, tag v1.7.0,
config/prometheus/podMonitor.yaml): one PodMonitor per node type, the `metrics`
container port, and `ray_io_cluster` copied from the pod's `ray.io/cluster` label
(Ray's dashboards filter on it). KubeRay v1.7.0 labels Ray pods
`ray.io/is-ray-node: "yes"` and `ray.io/node-type: head|worker`, and adds the
container port `metrics` (8080) with `--metrics-export-port=8080` when a pod
template does not declare one (ray-operator/controllers/ray/utils/constant.go:
`MetricsPortName`, `DefaultMetricsPort`; common/pod.go). The head also serves the
autoscaler's metrics (44217, `autoscaler_*`: the Serve dashboard's node panels)
and the dashboard's (44227); as in the example, they are scraped through the
container ports `as-metrics` and `dash-metrics`, which the head pod template
must declare (KubeRay adds neither): until it does, Prometheus drops those
targets and only the `metrics` port is scraped.
"""

from __future__ import annotations

from typing import Any

from infra.platform.observability.names import metadata

RAY_METRICS_PORT_NAME = "metrics"
# Head-only ports, by the names KubeRay's example gives them (a port name is at most 15 characters).
HEAD_METRICS_PORTS = {"as-metrics": 44217, "dash-metrics": 44227}
RAY_NODE_TYPES = ("head", "worker")


def _endpoints(node_type: str) -> list[dict[str, Any]]:
    ports = [RAY_METRICS_PORT_NAME, *(HEAD_METRICS_PORTS if node_type == "head" else ())]
    return [
        {
            "port": port,
            "relabelings": [
                {
                    "action": "replace",
                    "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                    "targetLabel": "ray_io_cluster",
                }
            ],
        }
        for port in ports
    ]


def pod_monitors(environment: str, serving_namespace: str) -> list[dict[str, Any]]:
    """One PodMonitor per Ray node type, selecting only the serving namespace's Ray pods."""
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": metadata(f"ray-{node_type}", serving_namespace, environment),
            "spec": {
                "namespaceSelector": {"matchNames": [serving_namespace]},
                "selector": {"matchLabels": {"ray.io/is-ray-node": "yes", "ray.io/node-type": node_type}},
                "podMetricsEndpoints": _endpoints(node_type),
            },
        }
        for node_type in RAY_NODE_TYPES
    ]
