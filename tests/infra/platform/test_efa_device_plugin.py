"""The EFA device plugin's release: the pinned chart, on the EFA pools' nodes only."""

from __future__ import annotations

import yaml
from cdktf import TerraformStack
from cdktf_cdktf_provider_helm.provider import HelmProvider

import conftest
from conftest import cdktf_app, TESTS, resources
from infra import EfaDevicePlugin
from infra.compute.efa.plugin import device_plugin_values
from infra.platform.charts import CHARTS

SCHEMAS = TESTS / "schemas"


def test_the_chart_is_pinned_with_its_source():
    chart = CHARTS["aws-efa-k8s-device-plugin"]
    assert (chart.repository, chart.version, chart.chosen_on) == (
        "https://aws.github.io/eks-charts",
        "v0.5.30",
        "2026-11-26",
    )
    assert "github.com/aws/eks-charts" in chart.source
    header = (SCHEMAS / "aws-efa-k8s-device-plugin-values.yaml").read_text().splitlines()[1]
    assert chart.version in header


def test_the_release_installs_the_pinned_chart_with_the_pools_values():
    stack = TerraformStack(cdktf_app(), "platform")
    HelmProvider(stack, "helm")
    gpu = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    EfaDevicePlugin(stack, "efa", pool_names=["prefill", "decode"], tolerations=[gpu])
    (release,) = resources(conftest.synth_stack(stack), "helm_release").values()
    chart = CHARTS["aws-efa-k8s-device-plugin"]
    assert (release["name"], release["repository"], release["chart"], release["version"], release["namespace"]) == (
        chart.name,
        chart.repository,
        chart.name,
        chart.version,
        "kube-system",
    )
    assert yaml.safe_load(release["values"][0]) == device_plugin_values(["prefill", "decode"], [gpu])
