"""The Anyscale operator's instance type for pods on an EFA pool (platform stack): its pods ask for
every EFA interface of the node, which the device plugin (`infra.platform.efa_device_plugin`)
registers. A module of its own: it builds on `infra.platform.operators`, which refers to node pools,
and node pools refer to `infra.compute.efa.network`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.compute.efa.plugin import EFA_RESOURCE
from infra.platform.operators import AnyscaleInstanceType


@dataclass(frozen=True)
class EfaAnyscaleInstanceType(AnyscaleInstanceType):
    """An Anyscale instance type on an EFA pool: its pods also ask for every EFA interface of the node.

    The operator's instance types take any extended resource registered in the cluster beside
    CPU, GPU and memory (the chart's values.yaml, workloads.instanceTypes schema), and its pods
    request it; the device plugin registers `vpc.amazonaws.com/efa`.
    """

    efa_interfaces: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.efa_interfaces < 1 or self.gpu is None:
            raise ValueError(
                f"efa_interfaces: instance type {self.name!r} is on an EFA pool: give its GPUs and "
                "at least one EFA interface"
            )

    def values(self) -> dict[str, Any]:
        out = super().values()
        out["resources"][EFA_RESOURCE] = self.efa_interfaces  # a whole number, like CPU and GPU
        return out
