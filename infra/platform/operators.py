"""The cluster's operators: Cluster Autoscaler, KubeRay and Anyscale's. Helm releases go in the
platform stack and take plain names (it is a separate Terraform state); roles go in the AWS stack.
Each release is a `ChartRelease`, so replacing a `ChartRelease` of the same id keeps its address.

Sources (values files vendored in tests/schemas/): Cluster Autoscaler, see infra.compute.autoscaling;
github.com/ray-project/kuberay v1.7.0, helm-chart/kuberay-operator; github.com/anyscale/helm-charts
anyscale-operator-1.8.0, charts/anyscale-operator (values.yaml, README.md, templates/);
github.com/anyscale/terraform-kubernetes-anyscale-foundation-modules, examples/aws (eks-hyperpod-
new_cluster binds anyscale-operator/anyscale-operator through Pod Identity); and
https://docs.anyscale.com/clouds/aws/create-eks, https://docs.anyscale.com/clouds/kubernetes.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import ITerraformDependable
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy

from infra.catalog import Gpu, gpu_instance
from infra.compute import autoscaling
from infra.compute.autoscaling import RAY_POD_ANNOTATIONS
from infra.compute.scheduling import node_selector, pod_size, tolerations
from infra.identity.roles import Identity, PodIdentityRole
from infra.platform.charts import CHARTS
from infra.platform.helm import ChartRelease
from infra.rules import (
    account_id_problem,
    cloud_deployment_id_problem,
    ingress_class_problem,
    instance_type_name_problem,
    labels_problem,
    namespace_problem,
    organization_id_problem,
    partition_problem,
    region_problem,
    repeated,
    require,
    service_account_problem,
    watch_namespaces_problem,
)
from infra.storage.bucket import ModelBucket

if TYPE_CHECKING:
    from infra.compute.node_pool import NodePool

KUBERAY_NAMESPACE = "kuberay-system"
# The chart's operator.serviceAccount.name, in the namespace Anyscale's EKS examples install to.
ANYSCALE_NAMESPACE = ANYSCALE_SERVICE_ACCOUNT = "anyscale-operator"


class ClusterAutoscalerIdentity(PodIdentityRole):
    """Cluster Autoscaler's role (AWS stack): reads groups and instance types, scales only this cluster's groups.

    Scaling is allowed only on Auto Scaling groups tagged `k8s.io/cluster-autoscaler/<cluster>=owned`
    and `k8s.io/cluster-autoscaler/enabled=true` (node pools with `autoscaler_cluster_name`);
    the statements are `infra.compute.autoscaling.autoscaler_statements`.

    Props:
        role_name: the IAM role name.
        cluster_name: the EKS cluster (a reference to a created cluster is fine).
        account_id, region: where the cluster's node groups are.
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
        namespace, service_account: the autoscaler's pods; default kube-system/cluster-autoscaler,
            as in `ClusterAutoscaler`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        role_name: str,
        cluster_name: str,
        account_id: str,
        region: str,
        partition: str = "aws",
        namespace: str = autoscaling.NAMESPACE,
        service_account: str = autoscaling.SERVICE_ACCOUNT,
    ):
        statements = autoscaling.autoscaler_statements(
            cluster_name=cluster_name, account_id=account_id, region=region, partition=partition
        )
        super().__init__(
            scope,
            id,
            role_name=role_name,
            cluster_name=cluster_name,
            namespace=namespace,
            service_account=service_account,
            kind="node-autoscaler",
            description=f"Cluster Autoscaler ({namespace}/{service_account}): scales the cluster's node groups",
        )
        self.policy = self.add_policy("cluster-autoscaler", statements)


class ClusterAutoscaler(ChartRelease):
    """Cluster Autoscaler's Helm release (platform stack), tuned for GPU serving.

    Finds node groups by their auto-discovery tags and authenticates through EKS Pod Identity
    (`ClusterAutoscalerIdentity` in the AWS stack, same namespace and service account).

    Props (the why of each default: `infra.compute.autoscaling.autoscaler_values`):
        cluster_name: the EKS cluster's name (a literal).
        region: its region.
        namespace, service_account: default kube-system/cluster-autoscaler.
        expander: which group grows for pending pods; default least-waste.
        scale_down_unneeded_minutes: how long a node stays unneeded before removal; default 15.
        scale_down_delay_after_add_minutes: no scale-down this long after a scale-up; default 15.
        balance_similar_node_groups: spread nodes over similar groups (e.g. one per zone); default True.
        skip_nodes_with_local_storage: never remove a node whose pods use emptyDir; default False.
        depends_on: what must be installed first.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster_name: str,
        region: str,
        namespace: str = autoscaling.NAMESPACE,
        service_account: str = autoscaling.SERVICE_ACCOUNT,
        expander: str = "least-waste",
        scale_down_unneeded_minutes: int = 15,
        scale_down_delay_after_add_minutes: int = 15,
        balance_similar_node_groups: bool = True,
        skip_nodes_with_local_storage: bool = False,
        depends_on: Sequence[ITerraformDependable] = (),
    ):
        values = autoscaling.autoscaler_values(
            cluster_name=cluster_name,
            region=region,
            service_account=service_account,
            expander=expander,
            scale_down_unneeded_minutes=scale_down_unneeded_minutes,
            skip_nodes_with_local_storage=skip_nodes_with_local_storage,
            scale_down_delay_after_add_minutes=scale_down_delay_after_add_minutes,
            balance_similar_node_groups=balance_similar_node_groups,
        )
        super().__init__(
            scope, id, chart=CHARTS["cluster-autoscaler"], namespace=namespace, values=values, depends_on=depends_on
        )
        self.service_account = service_account


class KubeRayOperator(ChartRelease):
    """The KubeRay operator's Helm release (platform stack), managing Ray only in the namespaces listed.

    Props:
        watch_namespaces: the namespaces whose RayServices and RayClusters it manages (at least
            one). The chart then grants it namespaced Roles there instead of cluster-wide ones
            (`singleNamespaceInstall`), so these namespaces must exist before this release.
        namespace: where the operator runs; default kuberay-system.
        annotate_ray_pods: put RAY_POD_ANNOTATIONS on every Ray pod it creates, so Cluster
            Autoscaler never evicts one (the chart's `configuration` mode with
            `defaultPodAnnotations`, new in KubeRay 1.7); default True.
        depends_on: what must be installed first.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        watch_namespaces: Sequence[str],
        namespace: str = KUBERAY_NAMESPACE,
        annotate_ray_pods: bool = True,
        depends_on: Sequence[ITerraformDependable] = (),
    ):
        watch_namespaces = list(watch_namespaces)
        require("watch_namespaces", watch_namespaces_problem(watch_namespaces))
        values: dict[str, Any] = {
            "singleNamespaceInstall": True,
            "watchNamespace": watch_namespaces,
            "crNamespacedRbacEnable": True,
            # Requests equal to the chart's limits: the scheduler reserves what it may use.
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
        }
        if annotate_ray_pods:
            values["configuration"] = {"enabled": True, "defaultPodAnnotations": dict(RAY_POD_ANNOTATIONS)}
        super().__init__(
            scope, id, chart=CHARTS["kuberay-operator"], namespace=namespace, values=values, depends_on=depends_on
        )
        self.watch_namespaces = watch_namespaces


@dataclass(frozen=True)
class AnyscaleInstanceType:
    """One instance type the Anyscale operator offers: a pod shape on one node pool.

    A compute config's `instance_type` names it. `resources`, `nodeSelector` and `tolerations`
    follow the chart's instance type schema (values.yaml, workloads.instanceTypes). The operator
    adds the GPU product node selector for `gpu` itself (workloads.accelerator.nodeSelectors.aws).
    """

    name: str
    cpu: int  # whole cores (the chart refuses fractions)
    memory_gib: int
    node_selector: Mapping[str, str]
    tolerations: Sequence[Mapping[str, str]] = field(default_factory=tuple)
    gpu: Gpu | None = None
    gpus: int = 0

    def __post_init__(self):
        require("name", instance_type_name_problem(self.name))
        if self.cpu < 1 or self.memory_gib < 1:
            raise ValueError(f"cpu/memory_gib: instance type {self.name!r} needs at least 1 core and 1 GiB")
        if (self.gpu is None) != (self.gpus == 0) or self.gpus < 0:
            raise ValueError(
                f"gpu/gpus: instance type {self.name!r} needs both a GPU model and a GPU count, or neither"
            )
        require(
            "node_selector", labels_problem(self.node_selector) if self.node_selector else "select the pool's nodes"
        )

    @classmethod
    def from_pool(
        cls, pool: NodePool, *, name: str | None = None, cpu: int | None = None, memory_gib: int | None = None
    ) -> AnyscaleInstanceType:
        """A pod taking a whole node of `pool` but for daemon-set room, sized by its smallest instance type.

        name defaults to the pool's first instance type (what a compute config names by default).
        GPU pools are sized from `infra.catalog`; CPU pools need `cpu` and `memory_gib`.
        """
        if pool.gpu is not None:
            smallest = min((gpu_instance(t) for t in pool.instance_types), key=lambda e: (e.vcpus, e.memory_gib))
            default_cpu, default_memory = pod_size(smallest)
            cpu, memory_gib = cpu or default_cpu, memory_gib or default_memory
        elif cpu is None or memory_gib is None:
            raise ValueError(
                f"cpu/memory_gib: give the pod size for CPU pool {pool.pool_name!r} (not in infra.catalog)"
            )
        return cls(
            name=name or pool.instance_types[0],
            cpu=cpu,
            memory_gib=memory_gib,
            node_selector=node_selector(pool.pool_name, pool.gpu),
            tolerations=tolerations(pool.taints),
            gpu=pool.gpu,
            gpus=pool.gpus_per_node,
        )

    def values(self) -> dict[str, Any]:
        resources: dict[str, Any] = {"CPU": self.cpu, "memory": f"{self.memory_gib}Gi"}
        if self.gpu is not None:
            resources |= {"GPU": self.gpus, "accelerators": [self.gpu.name]}
        out: dict[str, Any] = {"resources": resources, "nodeSelector": dict(self.node_selector)}
        if self.tolerations:
            out["tolerations"] = [dict(t) for t in self.tolerations]
        return out


class AnyscaleOperatorIdentity(PodIdentityRole):
    """The Anyscale operator's role (AWS stack): EKS Pod Identity, read and write on the cloud's bucket only.

    Register the cloud with this role (`operator_iam_identity`, `register_command`): the control
    plane checks the operator's identity against it. Anyscale's EKS examples give the operator
    nothing else but EFS, which this kit does not use; its registration is signed with STS
    (the chart's deployment template), and sts:GetCallerIdentity needs no permission.

    Props:
        role_name: the IAM role name.
        cluster_name: the EKS cluster (a reference to a created cluster is fine).
        account_id: the owning account (12 digits).
        storage: the cloud's object storage, a `ModelBucket` made for Anyscale (secure defaults:
            SSE-KMS, TLS only, versioned, private).
        organization_id: the Anyscale organization (org_...). Anyscale keeps a cloud's objects
            under `<organization_id>/<cloud_id>/` (anyscale SDK 0.26.112, utils/runtime_env.py),
            so the grants cover that prefix only.
        namespace, service_account: the operator's pods; default anyscale-operator/anyscale-operator.
        partition: `aws` (default), `aws-cn` or `aws-us-gov`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        role_name: str,
        cluster_name: str,
        account_id: str,
        storage: ModelBucket,
        organization_id: str,
        namespace: str = ANYSCALE_NAMESPACE,
        service_account: str = ANYSCALE_SERVICE_ACCOUNT,
        partition: str = "aws",
    ):
        require("partition", partition_problem(partition))
        require("account_id", account_id_problem(account_id))
        require("organization_id", organization_id_problem(organization_id))
        super().__init__(
            scope,
            id,
            role_name=role_name,
            cluster_name=cluster_name,
            namespace=namespace,
            service_account=service_account,
            kind="anyscale-operator",
            description=f"Anyscale operator ({namespace}/{service_account}): the cloud's object storage",
        )
        self.storage, self.organization_id = storage, organization_id
        self._arn = f"arn:{partition}:iam::{account_id}:role/{role_name}"
        self.storage_policies = self.grant_storage(self)

    def grant_storage(self, identity: Identity) -> list[IamRolePolicy]:
        """Read, write and delete (versions stay recoverable) under the organization's prefix; returns the policies.

        Anyscale's Ray pods need the same ("readable and writable by all pods", Anyscale on Kubernetes).
        """
        return [
            self.storage.grant_read(identity, self.organization_id),
            self.storage.grant_write(identity, self.organization_id),
            self.storage.grant_delete(identity, self.organization_id),
        ]

    @property
    def operator_iam_identity(self) -> str:
        """The role's ARN, known at synth: `--anyscale-operator-iam-identity` when registering the cloud."""
        return self._arn

    def register_command(self, *, cloud_name: str, region: str, kubernetes_zones: Sequence[str]) -> str:
        """`anyscale cloud register` for this cluster (docs.anyscale.com/clouds/aws/create-eks); prints the cloud deployment id."""
        require("region", region_problem(region))
        if not cloud_name or not kubernetes_zones:
            raise ValueError("cloud_name/kubernetes_zones: give the cloud's name and the zones its pods may run in")
        arguments = {
            "--name": cloud_name,
            "--provider": "aws",
            "--compute-stack": "k8s",
            "--region": region,
            "--s3-bucket-id": self.storage.bucket_name,
            "--kubernetes-zones": ",".join(kubernetes_zones),
            "--anyscale-operator-iam-identity": self._arn,
        }
        return " ".join(["anyscale cloud register", *(f"{k} {shlex.quote(v)}" for k, v in arguments.items())])


class AnyscaleOperator(ChartRelease):
    """The Anyscale operator's Helm release (platform stack), offering exactly the pools' instance types.

    Authenticates through EKS Pod Identity (`AnyscaleOperatorIdentity`, same namespace and service
    account), so `global.auth.iamIdentity` stays unset: the chart would otherwise annotate the
    service account for IRSA, whose credentials the SDKs prefer. The chart's default instance
    types are off (their shapes, e.g. a T4, match no pool). Every pod it manages carries
    RAY_POD_ANNOTATIONS. Anyscale services also need an ingress controller (e.g. ingress-nginx
    with snippet annotations allowed) or a gateway, which this release does not install.

    Props:
        cloud_deployment_id: from `anyscale cloud register` (cldrsrc_...).
        region: the cluster's region.
        instance_types: what compute configs may ask for, at least one (`AnyscaleInstanceType`).
        workload_service_account: the service account Anyscale's Ray pods run as (its Pod Identity
            role needs `AnyscaleOperatorIdentity.grant_storage`).
        namespace, operator_service_account: default anyscale-operator/anyscale-operator.
        ingress_class: the ingress class for Anyscale's Ingresses; default the chart's (nginx).
        depends_on: what must be installed first.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cloud_deployment_id: str,
        region: str,
        instance_types: Sequence[AnyscaleInstanceType],
        workload_service_account: str,
        namespace: str = ANYSCALE_NAMESPACE,
        operator_service_account: str = ANYSCALE_SERVICE_ACCOUNT,
        ingress_class: str | None = None,
        depends_on: Sequence[ITerraformDependable] = (),
    ):
        require("cloud_deployment_id", cloud_deployment_id_problem(cloud_deployment_id))
        require("region", region_problem(region))
        require("namespace", namespace_problem(namespace))
        require("operator_service_account", service_account_problem(operator_service_account))
        require("workload_service_account", service_account_problem(workload_service_account))
        if not instance_types:
            raise ValueError("instance_types: give at least one (AnyscaleInstanceType.from_pool(pool))")
        if duplicates := repeated(t.name for t in instance_types):
            raise ValueError(f"instance_types: {', '.join(duplicates)} appears twice")
        if ingress_class is not None:
            require("ingress_class", ingress_class_problem(ingress_class))
        # Accelerators the chart's AWS table lacks (H200, B200) map like the rest: to the GPU product label.
        gpus = {t.gpu.name: t.gpu.product_label for t in instance_types if t.gpu is not None}
        values: dict[str, Any] = {
            "global": {"cloudDeploymentId": cloud_deployment_id, "cloudProvider": "aws", "aws": {"region": region}},
            "operator": {"serviceAccount": {"name": operator_service_account}},
            "workloads": {
                "serviceAccount": {"name": workload_service_account},
                "instanceTypes": {"enableDefaults": False, "additional": {t.name: t.values() for t in instance_types}},
                "accelerator": {"nodeSelectors": {"additional": gpus}},
            },
            "patches": [
                {
                    "kind": "Pod",
                    "patch": [
                        {"op": "add", "path": f"/metadata/annotations/{_pointer(key)}", "value": value}
                        for key, value in RAY_POD_ANNOTATIONS.items()
                    ],
                }
            ],
        }
        if ingress_class is not None:
            values["networking"] = {"ingress": {"classNameOverride": ingress_class}}
        super().__init__(
            scope, id, chart=CHARTS["anyscale-operator"], namespace=namespace, values=values, depends_on=depends_on
        )
        self.instance_types = list(instance_types)


def _pointer(key: str) -> str:
    """A JSON Pointer token (RFC 6901): `~` and `/` escaped."""
    return key.replace("~", "~0").replace("/", "~1")
