"""The Kubernetes objects of ours the platform stack installs, rendered from the plan.

The serving namespace and service account (the one the Pod Identity association
binds), a GPU quota if the environment sets one, monitoring (`infra.platform.observability`:
PodMonitors, alert rules with each model's objective, Ray's dashboards), and for
the kuberay target the RayService itself: the platform stack applies it, so a deploy of `<env>-platform`
is how a KubeRay environment's service changes (`llmstacks publish` says so).
Written beside the specs as `platform.yaml` for review, and diffed by the preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from infra.platform.observability import ModelObjective, monitoring_objects
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


@dataclass(frozen=True)
class PlatformObjects:
    """Our objects, in the two installs the platform stack makes of them.

    `namespace`: the serving namespace, its service account and quota, first, because the
    serving operator runs in (KubeRay: watches) that namespace. `serving`: the RayService and
    monitoring, last, once the operators and the CRDs they use exist.
    """

    namespace: list[dict[str, Any]]
    serving: list[dict[str, Any]]

    @property
    def all(self) -> list[dict[str, Any]]:
        return [*self.namespace, *self.serving]


def namespace_objects(plan: EnvironmentPlan) -> list[dict[str, Any]]:
    """Namespace, service account, and the GPU quota if the environment sets one."""
    serving = plan.env.serving
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _metadata(serving.namespace, plan)},
        # EKS Pod Identity binds the serving role to this account by name: no annotation needed.
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(serving.service_account, plan, serving.namespace),
            "automountServiceAccountToken": True,
        },
    ]
    if serving.gpu_quota is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": _metadata("gpus", plan, serving.namespace),
                "spec": {"hard": {"requests.nvidia.com/gpu": str(serving.gpu_quota)}},
            }
        )
    return objects


def platform_objects(plan: EnvironmentPlan, specs: ServiceSpecs) -> PlatformObjects:
    """Every object of ours the platform stack installs: the namespace's, then the RayService (kuberay) and monitoring."""
    serving: list[dict[str, Any]] = []
    if plan.env.serving.target == "kuberay":
        serving.append(specs.documents[RAYSERVICE_FILE])
    if plan.env.serving.monitoring == "kube-prometheus-stack":
        serving += monitoring_objects(
            environment=plan.env.name,
            serving_namespace=plan.env.serving.namespace,
            models=[ModelObjective(m.id, m.config.workload.ttft_p95_seconds) for m in plan.models],
        )
    return PlatformObjects(namespace_objects(plan), serving)


def platform_text(objects: PlatformObjects) -> str:
    return yaml.safe_dump_all(objects.all, sort_keys=False, width=120)
