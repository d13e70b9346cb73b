"""The AWS EFA Kubernetes device plugin's release (platform stack): it makes the EFA devices of the
EFA pools' nodes requestable. Its values are plain data, `infra.compute.efa.plugin.device_plugin_values`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import ITerraformDependable

from infra.compute.efa.plugin import DEVICE_PLUGIN_NAMESPACE, device_plugin_values
from infra.platform.charts import CHARTS
from infra.platform.helm import ChartRelease


class EfaDevicePlugin(ChartRelease):
    """The AWS EFA Kubernetes device plugin (platform stack), on the EFA pools' nodes only.

    It advertises each node's EFA devices as `vpc.amazonaws.com/efa` (`infra.compute.efa.plugin.EFA_RESOURCE`);
    the EKS AMIs carry the EFA software but not the plugin. Values: `infra.compute.efa.plugin.device_plugin_values`.

    Props:
        pool_names: the EFA pools (their nodes carry the pool label).
        tolerations: the pools' taints as tolerations, so the plugin reaches tainted GPU nodes.
        namespace: default kube-system (the DaemonSet asks for the system-node-critical priority).
        depends_on: what must be installed first.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        pool_names: Iterable[str],
        tolerations: Iterable[Mapping[str, str]] = (),
        namespace: str = DEVICE_PLUGIN_NAMESPACE,
        depends_on: Sequence[ITerraformDependable] = (),
    ):
        super().__init__(
            scope,
            id,
            chart=CHARTS["aws-efa-k8s-device-plugin"],
            namespace=namespace,
            values=device_plugin_values(pool_names, tolerations),
            depends_on=depends_on,
        )
