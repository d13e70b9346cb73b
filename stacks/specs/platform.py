"""The Kubernetes objects of ours the platform stack installs, rendered from the plan.

The serving namespace and service account (the one the Pod Identity association
binds), a GPU quota if the environment sets one, and for the kuberay target the
RayService itself: the platform stack applies it, so a deploy of `<env>-platform`
is how a KubeRay environment's service changes (`llmstacks publish` says so).
Written beside the specs as `platform.yaml` for review, and diffed by the preview.
"""

from __future__ import annotations

from typing import Any

import yaml

from stacks.planning.plan import EnvironmentPlan
from stacks.specs.render import RAYSERVICE_FILE, ServiceSpecs

PLATFORM_FILE = "platform.yaml"
MANAGED_BY = {"app.kubernetes.io/managed-by": "llm-serving-stacks"}


def _metadata(name: str, plan: EnvironmentPlan, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {**MANAGED_BY, "llm-serving-stacks/environment": plan.env.name}
    return metadata


def serving_objects(plan: EnvironmentPlan, specs: ServiceSpecs) -> list[dict[str, Any]]:
    """Namespace, service account, quota, and (kuberay) the RayService."""
    serving = plan.env.serving
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _metadata(serving.namespace, plan)},
        # EKS Pod Identity binds the serving role to this account by name: no annotation needed.
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(serving.service_account, plan, serving.namespace),
         "automountServiceAccountToken": True},
    ]
    if serving.gpu_quota is not None:
        objects.append({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _metadata("gpus", plan, serving.namespace),
                        "spec": {"hard": {"requests.nvidia.com/gpu": str(serving.gpu_quota)}}})
    if serving.target == "kuberay":
        objects.append(specs.documents[RAYSERVICE_FILE])
    return objects


def platform_objects(plan: EnvironmentPlan, specs: ServiceSpecs) -> list[dict[str, Any]]:
    """Every object of ours the platform stack installs, in order."""
    return serving_objects(plan, specs)


def platform_text(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, width=120)
