"""Node labels, taints and the pod side that matches them, as pure functions.

`NodePool`/`GpuNodePool` put these on nodes; service specs (Anyscale,
KubeRay) derive their node selectors and tolerations from the same
functions, and `schedulable` checks a pod against a pool, so a model can
only be placed where its pods can actually run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infra.catalog import Gpu, InstanceType
from infra.rules import label_key_problem, label_value_problem, labels_problem, repeated, require, taint_effect_problem

POOL_LABEL = "llm-serving-stacks/node-pool"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
EKS_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def __post_init__(self):
        require("taint key", label_key_problem(self.key))
        require("taint value", label_value_problem(self.value))
        require("taint effect", taint_effect_problem(self.effect))

    @property
    def eks_effect(self) -> str:
        return EKS_TAINT_EFFECTS[self.effect]

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


def node_labels(
    pool_name: str, extra: Mapping[str, str] | None = None, gpu: Gpu | None = None, gpus_per_node: int = 0
) -> dict[str, str]:
    labels = dict(extra or {})
    if gpu is not None:
        labels[GPU_PRODUCT_LABEL] = gpu.product_label
        labels[GPU_COUNT_LABEL] = str(gpus_per_node)
    labels[POOL_LABEL] = pool_name
    return labels


def node_taints(extra: Iterable[Taint] = (), *, gpu: bool = False, capacity_type: str = "ON_DEMAND") -> list[Taint]:
    """The pool's taints: the caller's, then the ones the NVIDIA stack and the Anyscale operator expect."""
    taints = list(extra)
    if gpu:
        taints += [
            Taint("nvidia.com/gpu", "present"),
            Taint("node.anyscale.com/accelerator-type", "GPU"),
            Taint("node.anyscale.com/capacity-type", capacity_type),
        ]
    return taints


def pool_labels_problem(labels: Mapping[str, str], derived: Mapping[str, str]) -> str | None:
    """The caller's node labels: valid Kubernetes syntax, and none of the ones the pool sets itself."""
    if clash := sorted(k for k in labels if k in derived and labels[k] != derived[k]):
        return f"{', '.join(clash)} {'is' if len(clash) == 1 else 'are'} set by the pool itself"
    return labels_problem(labels)


def pool_taints_problem(taints: Iterable[Taint]) -> str | None:
    """A pool's taints (the caller's and its own): one per key and effect."""
    if twice := repeated(f"{t.key}:{t.effect}" for t in taints):
        return (
            f"{', '.join(twice)} appears twice (GPU pools add nvidia.com/gpu and node.anyscale.com taints themselves)"
        )
    return None


def node_selector(pool_name: str, gpu: Gpu | None = None) -> dict[str, str]:
    selector = {POOL_LABEL: pool_name}
    if gpu is not None:
        selector[GPU_PRODUCT_LABEL] = gpu.product_label
    return selector


# Room a whole-node pod leaves for the kubelet and daemon sets (CNI, Pod Identity agent, device plugin).
RESERVED_VCPUS, RESERVED_MEMORY_SHARE = 2, 0.2
# A pod's size where the pool's instance types are not in the catalog (CPU pools): a Ray head's.
DEFAULT_POD_SIZE = (2, 8)


def pod_size(smallest: InstanceType | None) -> tuple[int, int]:
    """Cores and GiB of memory of a Ray pod taking a whole node of a pool whose smallest type is `smallest`."""
    if smallest is None:
        return DEFAULT_POD_SIZE
    return max(1, smallest.vcpus - RESERVED_VCPUS), max(4, int(smallest.memory_gib * (1 - RESERVED_MEMORY_SHARE)))


def tolerations(taints: Iterable[Taint]) -> list[dict[str, str]]:
    return [t.toleration() for t in taints]


def schedulable(
    selector: Mapping[str, str],
    pod_tolerations: Iterable[Mapping[str, str]],
    labels: Mapping[str, str],
    taints: Iterable[Taint],
) -> list[str]:
    """Why a pod with this selector and these tolerations cannot run on such a node ([] if it can)."""
    problems = [
        f"node selector {k}={v} does not match the node label ({labels.get(k)!r})"
        for k, v in selector.items()
        if labels.get(k) != v
    ]
    pod_tolerations = list(pod_tolerations)
    for taint in taints:
        if taint.effect == "PreferNoSchedule":
            continue
        if not any(_tolerates(t, taint) for t in pod_tolerations):
            problems.append(f"taint {taint.key}={taint.value}:{taint.effect} is not tolerated")
    return problems


def _tolerates(toleration: Mapping[str, str], taint: Taint) -> bool:
    if toleration.get("effect") not in (None, "", taint.effect):
        return False
    if toleration.get("operator") == "Exists":
        return toleration.get("key") in (None, "", taint.key)
    return toleration.get("key") == taint.key and toleration.get("value", "") == taint.value
