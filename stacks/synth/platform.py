"""The per-environment platform stack, `<env>-platform`: what runs inside the cluster.

Deployed after the AWS stack (a cdktf dependency: `cdktf deploy` orders them), it
reads nothing from that stack's state: every name it needs is derived from the
plan, and the cluster is looked up by name. It installs, with Helm, the node
autoscaler, the operator of the serving target, monitoring, and our own objects
(`stacks.specs.platform`) as one local chart.
"""

from __future__ import annotations

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf: picks the Node runtime)
from cdktf import S3Backend, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags

from infra.charts import CHARTS
from infra.helm import ChartRelease, EksHelm, ManifestsRelease
from stacks.planning.plan import EnvironmentPlan
from stacks.specs.render import ServiceSpecs
from stacks.synth.stack import MANAGED_BY

PLATFORM_RELEASE = "llm-serving-platform"
OPERATOR_NAMESPACE = "kuberay-system"
# Where the release record of our own objects lives (they name their own namespaces).
PLATFORM_NAMESPACE = "kube-system"


class PlatformStack(TerraformStack):
    """Everything one environment needs inside its cluster to serve: `PlatformStack(app, plan, specs, objects)`.

    `objects` are our own Kubernetes objects (`stacks.specs.platform`), installed last.
    """

    def __init__(self, scope: Construct, plan: EnvironmentPlan, specs: ServiceSpecs, objects: list[dict]):
        super().__init__(scope, plan.names.platform_stack)
        self.plan, self.names = plan, plan.names
        env = plan.env
        AwsProvider(self, "aws", region=env.aws.region, allowed_account_ids=[env.aws.account_id],
                    default_tags=[AwsProviderDefaultTags(tags={**env.tags, "llm-serving-stacks:environment": env.name,
                                                               "managed-by": MANAGED_BY})])
        backend = S3Backend(self, bucket=env.state.bucket, key=self.names.state_key_of(self.names.platform_stack),
                            region=env.state.region or env.aws.region, encrypt=True)
        backend.add_override("use_lockfile", True)
        self.helm = EksHelm(self, "cluster", cluster_name=self.names.cluster, region=env.aws.region)
        prerequisites = []
        if env.serving.target == "kuberay":
            self.operator = ChartRelease(self, "kuberay-operator", chart=CHARTS["kuberay-operator"], namespace=OPERATOR_NAMESPACE)
            prerequisites.append(self.operator.release)
        self.objects = ManifestsRelease(self, "serving", name=PLATFORM_RELEASE, namespace=PLATFORM_NAMESPACE,
                                        manifests=objects, depends_on=prerequisites)
