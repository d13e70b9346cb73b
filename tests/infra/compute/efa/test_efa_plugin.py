"""What EFA (Elastic Fabric Adapter) needs as plain data: the interfaces of a node's launch template,
the resource pods ask for, and the device plugin's chart values."""

from __future__ import annotations

import pytest
import yaml

from conftest import TESTS
from infra.compute.efa.plugin import EFA_RESOURCE, device_plugin_values, interface_layout, pod_resources
from infra.compute.scheduling import POOL_LABEL

SCHEMAS = TESTS / "schemas"


def test_one_efa_per_network_card_the_primary_at_device_0():
    layout = interface_layout(4)
    assert [(i.network_card_index, i.device_index, i.interface_type) for i in layout] == [
        (0, 0, "efa"),
        (1, 1, "efa"),
        (2, 1, "efa"),
        (3, 1, "efa"),
    ]
    with pytest.raises(ValueError, match="at least one"):
        interface_layout(0)
    assert pod_resources(32) == {EFA_RESOURCE: "32"} and pod_resources(0) == {}


def test_the_device_plugin_runs_on_the_efa_pools_only_and_tolerates_their_taints():
    gpu = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    spot = {"key": "node.anyscale.com/capacity-type", "operator": "Equal", "value": "SPOT", "effect": "NoSchedule"}
    values = device_plugin_values(["prefill", "decode", "prefill"], [gpu, spot, gpu])
    assert values == {
        "supportedInstanceLabels": {"keys": [POOL_LABEL], "values": ["decode", "prefill"]},
        "tolerations": [gpu, spot],
    }
    with pytest.raises(ValueError, match="at least one EFA pool"):
        device_plugin_values([])


def test_device_plugin_keys_are_in_the_charts_values_file():
    chart = yaml.safe_load((SCHEMAS / "aws-efa-k8s-device-plugin-values.yaml").read_text())
    values = device_plugin_values(["p5"])
    assert set(values) <= set(chart)
    assert set(values["supportedInstanceLabels"]) == set(chart["supportedInstanceLabels"])
    assert chart["tolerations"] == [] and chart["nodeSelector"] == {}
