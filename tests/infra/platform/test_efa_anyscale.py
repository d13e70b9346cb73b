"""The Anyscale operator's instance type for pods on an EFA pool."""

from __future__ import annotations

import pytest

from infra import EfaAnyscaleInstanceType
from infra.catalog import GPUS
from infra.compute.efa.plugin import EFA_RESOURCE
from infra.compute.scheduling import POOL_LABEL


def test_an_efa_instance_type_needs_its_gpus_and_interfaces():
    shape = {"name": "p5.48xlarge", "cpu": 190, "memory_gib": 1638, "node_selector": {POOL_LABEL: "p5"}}
    assert EfaAnyscaleInstanceType(**shape, gpu=GPUS["H100"], gpus=8, efa_interfaces=32).values()["resources"] == {
        "CPU": 190,
        "memory": "1638Gi",
        "GPU": 8,
        "accelerators": ["H100"],
        EFA_RESOURCE: 32,
    }
    for wrong in ({"gpu": GPUS["H100"], "gpus": 8, "efa_interfaces": 0}, {"efa_interfaces": 32}):
        with pytest.raises(ValueError, match="efa_interfaces"):
            EfaAnyscaleInstanceType(**shape, **wrong)
