"""The Helm charts the platform stack installs, pinned in one place with the day each was chosen.

A version bump is a one-line change here and shows in `llmstacks preview` (the
helm_release's version). Pure data: no cdktf import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chart:
    name: str  # the chart's name in its repository
    repository: str  # a Helm repository URL
    version: str
    chosen_on: str  # the day this version was picked (YYYY-MM-DD)
    app_version: str  # what it deploys, for people reading the catalog
    source: str  # where the version was read


CHARTS: dict[str, Chart] = {
    c.name: c
    for c in (
        # The autoscaler's minor version follows the cluster's (1.35 here, the created clusters' default).
        Chart(
            "cluster-autoscaler",
            "https://kubernetes.github.io/autoscaler",
            "9.59.0",
            "2026-11-26",
            "1.35.0",
            "github.com/kubernetes/autoscaler, tag cluster-autoscaler-chart-9.59.0",
        ),
        Chart(
            "kuberay-operator",
            "https://ray-project.github.io/kuberay-helm",
            "1.7.0",
            "2026-11-26",
            "1.7.0",
            "github.com/ray-project/kuberay, tag v1.7.0, helm-chart/kuberay-operator",
        ),
        # No appVersion in the chart: it pins the operator image (kubernetes_manager) by build tag.
        Chart(
            "anyscale-operator",
            "https://anyscale.github.io/helm-charts",
            "1.8.0",
            "2026-11-26",
            "kubernetes_manager ci-52a05abd5073d2f973e41f23cf5a4076ea033579",
            "github.com/anyscale/helm-charts, tag anyscale-operator-1.8.0, charts/anyscale-operator",
        ),
        Chart(
            "kube-prometheus-stack",
            "https://prometheus-community.github.io/helm-charts",
            "88.5.3",
            "2026-11-26",
            "v0.93.1 (Prometheus operator)",
            "github.com/prometheus-community/helm-charts, charts/kube-prometheus-stack",
        ),
        # Installed only where a node pool has efa. The chart's versions carry a leading "v".
        Chart(
            "aws-efa-k8s-device-plugin",
            "https://aws.github.io/eks-charts",
            "v0.5.30",
            "2026-11-26",
            "v0.5.20",
            "github.com/aws/eks-charts, stable/aws-efa-k8s-device-plugin (Chart.yaml; the gh-pages index.yaml)",
        ),
    )
}
