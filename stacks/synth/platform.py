"""The per-environment platform stack, `<env>-platform`: what runs inside the cluster.

Deployed after the AWS stack (a cdktf dependency: `cdktf deploy` orders them), it
reads nothing from that stack's state: every name it needs is derived from the
plan, and the cluster is looked up by name. It installs, with Helm and in this order:
our namespace objects (`stacks.specs.platform`); the node autoscaler, monitoring, the EFA
device plugin (where a pool has efa) and the serving target's operator; then the RayService
(kuberay) and monitoring objects.
"""

from __future__ import annotations

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf: picks the Node runtime)
from cdktf import TerraformStack

from infra import (
    AnyscaleInstanceType,
    AnyscaleOperator,
    ChartRelease,
    ClusterAutoscaler,
    EfaAnyscaleInstanceType,
    EfaDevicePlugin,
    EksHelm,
    KubeRayOperator,
    ManifestsRelease,
)
from infra.compute.efa.plugin import pool_efa_interfaces
from infra.compute.scheduling import pod_size
from infra.platform.charts import CHARTS
from infra.platform.observability import MONITORING_NAMESPACE, kube_prometheus_stack_values
from stacks.planning.plan import EnvironmentPlan
from stacks.specs.anyscale import instance_type_name
from stacks.specs.platform import PlatformObjects
from stacks.specs.render import ServiceSpecs
from stacks.synth.provider import aws_provider_and_state
from stacks.synth.stack import ANYSCALE_OPERATOR_ACCOUNT

PLATFORM_RELEASE = "llm-serving-platform"
NAMESPACE_RELEASE = "llm-serving-namespace"
# Where the release records of our own objects live (the objects name their own namespaces).
PLATFORM_NAMESPACE = "kube-system"


class PlatformStack(TerraformStack):
    """Everything one environment needs inside its cluster to serve: `PlatformStack(app, plan, specs, objects)`.

    `objects` are our own Kubernetes objects (`stacks.specs.platform.platform_objects`).
    """

    def __init__(self, scope: Construct, plan: EnvironmentPlan, specs: ServiceSpecs, objects: PlatformObjects):
        super().__init__(scope, plan.names.platform_stack)
        self.plan, self.names = plan, plan.names
        env = plan.env
        aws_provider_and_state(self, env, state_key=self.names.state_key_of(self.names.platform_stack))
        self.helm = EksHelm(self, "cluster", cluster_name=self.names.cluster, region=env.aws.region)
        # The namespace first: the operator runs in it (anyscale) or is granted only it (kuberay).
        self.namespace = ManifestsRelease(
            self, "namespace", name=NAMESPACE_RELEASE, namespace=PLATFORM_NAMESPACE, manifests=objects.namespace
        )
        self.autoscaler = self._node_autoscaler()
        self.monitoring = self._monitoring()
        self.efa_device_plugin = self._efa_device_plugin()
        self.operator = self._operator()
        # The RayService and monitoring objects need the operator's and the monitoring chart's CRDs
        # (and pods on EFA pools the device plugin's resource).
        prerequisites = [
            r.release for r in (self.namespace, self.monitoring, self.efa_device_plugin, self.operator) if r is not None
        ]
        self.objects = (
            ManifestsRelease(
                self,
                "serving",
                name=PLATFORM_RELEASE,
                namespace=PLATFORM_NAMESPACE,
                manifests=objects.serving,
                depends_on=prerequisites,
            )
            if objects.serving
            else None
        )

    def _node_autoscaler(self) -> ClusterAutoscaler | None:
        if self.plan.env.cluster.node_autoscaler != "cluster-autoscaler":
            return None
        # Its role and the node groups' discovery tags are in the AWS stack (same namespace and account).
        return ClusterAutoscaler(
            self, "cluster-autoscaler", cluster_name=self.names.cluster, region=self.plan.env.aws.region
        )

    def _monitoring(self) -> ChartRelease | None:
        if self.plan.env.serving.monitoring != "kube-prometheus-stack":
            return None
        # Brings the Prometheus operator's CRDs (PodMonitor, PrometheusRule) our objects use.
        return ChartRelease(
            self,
            "monitoring",
            chart=CHARTS["kube-prometheus-stack"],
            namespace=MONITORING_NAMESPACE,
            values=kube_prometheus_stack_values(),
        )

    def _efa_device_plugin(self) -> EfaDevicePlugin | None:
        """The EFA device plugin on the EFA pools' nodes, tolerating their taints; none without EFA pools."""
        pools = [p for p in self.plan.pools if p.config.efa]
        if not pools:
            return None
        return EfaDevicePlugin(
            self,
            "efa-device-plugin",
            pool_names=[p.name for p in pools],
            tolerations=[t for p in pools for t in p.tolerations()],
        )

    def _operator(self) -> ChartRelease | None:
        serving = self.plan.env.serving
        if serving.target == "kuberay":
            # Ray pods carry RAY_POD_ANNOTATIONS in the RayService itself (stacks.specs.pods).
            return KubeRayOperator(
                self,
                "kuberay-operator",
                watch_namespaces=[serving.namespace],
                annotate_ray_pods=False,
                depends_on=[self.namespace.release],
            )
        if serving.anyscale.cloud_deployment_id is None:
            return None  # not registered yet: a plan warning says how
        return AnyscaleOperator(
            self,
            "anyscale-operator",
            cloud_deployment_id=serving.anyscale.cloud_deployment_id,
            region=self.plan.env.aws.region,
            instance_types=self._anyscale_instance_types(),
            workload_service_account=serving.service_account,
            namespace=serving.namespace,
            operator_service_account=ANYSCALE_OPERATOR_ACCOUNT,
            depends_on=[self.namespace.release],
        )

    def _anyscale_instance_types(self) -> list[AnyscaleInstanceType]:
        """One per pool the service config names, sized and placed as the KubeRay pods would be (with
        the node's EFA interfaces on an EFA pool)."""
        types = {}
        for pool in (self.plan.head_pool, *self.plan.serving_pools):
            cpu, memory_gib = pod_size(pool.smallest)
            name = instance_type_name(self.plan, pool)
            shape = {
                "name": name,
                "cpu": cpu,
                "memory_gib": memory_gib,
                "node_selector": pool.selector(),
                "tolerations": pool.tolerations(),
                "gpu": pool.gpu,
                "gpus": pool.gpus_per_node,
            }
            types[name] = (
                EfaAnyscaleInstanceType(**shape, efa_interfaces=pool_efa_interfaces(pool.config.instance_types))
                if pool.config.efa
                else AnyscaleInstanceType(**shape)
            )
        return list(types.values())
