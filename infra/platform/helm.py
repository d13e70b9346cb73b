"""Helm on an EKS cluster: the provider (authenticated the standard way, `aws eks get-token`),
charts from the catalog, and our own Kubernetes objects as a local chart.

Our objects (namespace, service account, quota, monitors, rules, dashboards) go
in a chart generated at synth time and shipped with the stack as an asset, so
one provider (Helm) installs everything and Terraform needs no cluster access to
plan. The Kubernetes provider's `kubernetes_manifest` would read each custom
resource's CRD at plan time, so a first deploy (the CRDs come from charts in the
same apply) could not even plan; its bindings would also add ~7 s to every synth. The chart never templates them: `templates/` only includes the raw files,
so `{{ ... }}` in a Grafana legend or an alert description reaches the cluster
as written.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf)
from cdktf import AssetType, Fn, ITerraformDependable, TerraformAsset
from cdktf_cdktf_provider_aws.data_aws_eks_cluster import DataAwsEksCluster
from cdktf_cdktf_provider_helm.provider import HelmProvider, HelmProviderKubernetes, HelmProviderKubernetesExec
from cdktf_cdktf_provider_helm.release import Release

from infra.platform.charts import Chart
from infra.rules import cluster_name_problem, namespace_problem, region_problem, require

RELEASE_TIMEOUT_SECONDS = 900
_INCLUDE_RAW = '{{- range $path, $_ := .Files.Glob "manifests/*.yaml" }}\n---\n{{ $.Files.Get $path }}\n{{- end }}\n'
_WORKDIRS: list[Path] = []


class EksHelm(Construct):
    """The Helm provider for an EKS cluster, authenticated with `aws eks get-token` (the caller's AWS identity).

    Props:
        cluster_name: the EKS cluster (looked up by name at plan time).
        region: its region.
    """

    def __init__(self, scope: Construct, id: str, *, cluster_name: str, region: str):
        super().__init__(scope, id)
        require("cluster_name", cluster_name_problem(cluster_name))
        require("region", region_problem(region))
        self.cluster = DataAwsEksCluster(self, "cluster", name=cluster_name)
        self.provider = HelmProvider(
            self,
            "helm",
            kubernetes=HelmProviderKubernetes(
                host=self.cluster.endpoint,
                cluster_ca_certificate=Fn.base64decode(self.cluster.certificate_authority.get(0).data),
                exec=HelmProviderKubernetesExec(
                    api_version="client.authentication.k8s.io/v1beta1",
                    command="aws",
                    args=["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
                ),
            ),
        )


class ChartRelease(Construct):
    """A pinned chart from `infra.platform.charts`, installed atomically (a failed upgrade rolls back).

    Props:
        chart: the catalog entry (repository, name, version).
        namespace: where the release lives; created if missing.
        values: the chart values, rendered as one YAML document.
        depends_on: what must be installed first (e.g. the release that brings a CRD).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        chart: Chart,
        namespace: str,
        values: Mapping[str, Any] | None = None,
        depends_on: Sequence[ITerraformDependable] = (),
    ):
        super().__init__(scope, id)
        require("namespace", namespace_problem(namespace))
        self.chart, self.namespace, self.values = chart, namespace, dict(values or {})
        self.release = Release(
            self,
            "release",
            name=chart.name,
            repository=chart.repository,
            chart=chart.name,
            version=chart.version,
            namespace=namespace,
            create_namespace=True,
            atomic=True,
            cleanup_on_fail=True,
            wait=True,
            timeout=RELEASE_TIMEOUT_SECONDS,
            max_history=10,
            values=[yaml.safe_dump(self.values, sort_keys=True)] if self.values else None,
            depends_on=list(depends_on) or None,
        )


class ManifestsRelease(Construct):
    """Kubernetes objects of our own, installed as a local chart that ships with the stack.

    Props:
        name: the release (and chart) name.
        namespace: where the release's own record lives (the objects name their namespaces).
        manifests: the objects, as dicts; written in order, never templated.
        depends_on: what must be installed first (e.g. the release that brings the CRDs they use).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        namespace: str,
        manifests: Sequence[Mapping[str, Any]],
        depends_on: Sequence[ITerraformDependable] = (),
    ):
        super().__init__(scope, id)
        require("namespace", namespace_problem(namespace))
        self.manifests = [dict(m) for m in manifests]
        directory = write_chart(name, self.manifests)
        self.asset = TerraformAsset(self, "chart", path=str(directory), type=AssetType.DIRECTORY)
        self.release = Release(
            self,
            "release",
            name=name,
            chart=self.asset.path,
            namespace=namespace,
            create_namespace=True,
            atomic=True,
            cleanup_on_fail=True,
            wait=True,
            timeout=RELEASE_TIMEOUT_SECONDS,
            max_history=10,
            depends_on=list(depends_on) or None,
        )


def chart_files(name: str, manifests: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """A chart's files (path -> text): Chart.yaml, one raw file per object, and the include template.

    The chart version carries a digest of the objects, so a change is an upgrade Helm sees.
    """
    documents = [yaml.safe_dump(dict(m), sort_keys=False, width=120) for m in manifests]
    digest = hashlib.sha256("\0".join(documents).encode()).hexdigest()[:12]
    files = {
        "Chart.yaml": yaml.safe_dump(
            {"apiVersion": "v2", "name": name, "version": f"0.1.0+{digest}", "type": "application"}, sort_keys=False
        ),
        "templates/manifests.yaml": _INCLUDE_RAW,
    }
    files.update(
        {
            f"manifests/{i:03d}-{m['kind'].lower()}-{m['metadata']['name']}.yaml": text
            for i, (m, text) in enumerate(zip(manifests, documents, strict=True))
        }
    )
    return files


def write_chart(name: str, manifests: Sequence[Mapping[str, Any]]) -> Path:
    """The chart on disk (a directory kept until the process exits: the asset is copied at synth)."""
    root = Path(tempfile.mkdtemp(prefix=f"llmstacks-chart-{name}-"))
    if not _WORKDIRS:
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _WORKDIRS])
    _WORKDIRS.append(root)
    for relative, text in chart_files(name, manifests).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
