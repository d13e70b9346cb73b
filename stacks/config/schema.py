"""The typed environment file: one per environment, the single source of truth.

Structure and per-value rules live here (and in `models` for the served
models). A value's rule is a function of `infra.rules` (or, for what the
serving app also checks, `app.spec`) that the constructs call too, so the
schema and the constructs can never disagree. Rules that relate fields to
each other live in `stacks.config.checks`; those that need pool arithmetic
or the capacity planner in `stacks.planning`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from infra import rules
from infra.catalog import DEFAULT_EKS_VERSION, GPUS
from infra.compute.efa.rules import efa_instance_types_problem
from stacks.config.fields import (
    INSTANCE_TYPE_PATTERN,
    MAX_LABELS,
    PREFIX_PATTERN,
    AccountId,
    ClusterName,
    KmsKeyArn,
    LabelKey,
    LabelValue,
    Name,
    PrincipalArn,
    Region,
    RoleArn,
    Strict,
    SubnetId,
    TagKey,
    TagValue,
    Text,
    max_items,
    rule,
)
from stacks.config.models import Model

# AWS allows 50 tags per resource; the stack adds a few of its own.
USER_TAGS_MAX = 40


class Aws(Strict):
    account_id: AccountId
    region: Region


class RemoteState(Strict):
    """An existing S3 bucket holding Terraform state; the key is derived per stack."""

    bucket: Annotated[str, rule(rules.bucket_name_problem)]
    region: Region | None = None  # defaults to aws.region
    key_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")] = "llm-serving-stacks"


class ExistingClusterConfig(Strict):
    name: ClusterName
    # Subnets for the node pools; default: the cluster's own subnets.
    node_subnet_ids: list[SubnetId] = []
    install_pod_identity_agent: bool = False


class NewClusterConfig(Strict):
    name: ClusterName | None = None
    # Default: a version in standard support when this kit was released (infra.catalog.EKS_VERSIONS).
    version: Annotated[str, rule(rules.eks_version_problem)] = DEFAULT_EKS_VERSION
    subnet_ids: Annotated[list[SubnetId], rule(rules.cluster_subnets_problem)]
    endpoint_public_access: bool = False
    public_access_cidrs: list[Annotated[str, rule(rules.cidr_problem)]] = []
    admin_principal_arns: list[PrincipalArn] = []
    log_retention_days: Annotated[int, rule(rules.log_retention_problem)] = 365

    @model_validator(mode="after")
    def _public_endpoint(self) -> NewClusterConfig:
        if problem := rules.public_endpoint_problem(self.endpoint_public_access, self.public_access_cidrs):
            raise ValueError(problem)
        return self


class Cluster(Strict):
    """Exactly one of `existing` (look it up by name) or `create`."""

    existing: ExistingClusterConfig | None = None
    create: NewClusterConfig | None = None
    # What scales node groups: the platform stack installs Cluster Autoscaler, or none when the
    # cluster already runs one (Karpenter, say).
    node_autoscaler: Literal["cluster-autoscaler", "none"] = "cluster-autoscaler"

    @model_validator(mode="after")
    def _exactly_one(self) -> Cluster:
        if (self.existing is None) == (self.create is None):
            raise ValueError("set exactly one of 'existing' or 'create'")
        return self


class Taint(Strict):
    key: LabelKey
    value: LabelValue = ""
    effect: Annotated[str, rule(rules.taint_effect_problem)] = "NoSchedule"


class NodePool(Strict):
    name: Name
    instance_types: Annotated[list[Annotated[str, Field(pattern=INSTANCE_TYPE_PATTERN)]], Field(min_length=1)]
    # A Ray accelerator type from the GPU catalog, or none for a CPU pool.
    accelerator: str | None = None
    capacity_type: Literal["on_demand", "spot"] = "on_demand"
    min_size: Annotated[int, Field(ge=0)] = 0
    max_size: Annotated[int, Field(ge=1)] = 1
    desired_size: Annotated[int, Field(ge=0)] | None = None
    # Default: Bottlerocket NVIDIA for GPU pools, AL2023 for CPU pools (the constructs' defaults).
    ami_type: str | None = None
    root_volume_gib: Annotated[int, Field(ge=rules.MIN_ROOT_VOLUME_GIB, le=16384)] | None = None
    labels: Annotated[dict[LabelKey, LabelValue], max_items(MAX_LABELS)] = {}
    taints: Annotated[list[Taint], max_items(MAX_LABELS)] = []
    # Elastic Fabric Adapter on every node (instance types that support it): the fast network
    # that disaggregated serving moves KV caches over between nodes (README: "Serving patterns").
    efa: bool = False

    @field_validator("accelerator")
    @classmethod
    def _known_gpu(cls, value: str | None) -> str | None:
        if value is not None and value not in GPUS:
            raise ValueError(f"unknown accelerator {value!r} (known: {', '.join(GPUS)})")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> NodePool:
        if problem := rules.pool_size_problem(self.min_size, self.desired_size, self.max_size):
            raise ValueError(problem)
        return self

    @field_validator("efa")
    @classmethod
    def _efa_instance_types(cls, value: bool, info: ValidationInfo) -> bool:
        # Reported at node_pools[i].efa; instance_types is validated first (it comes earlier).
        if value and "instance_types" in info.data:
            if problem := efa_instance_types_problem(info.data["instance_types"]):
                raise ValueError(problem)
        return value

    @property
    def has_gpus(self) -> bool:
        return self.accelerator is not None


class Bucket(Strict):
    noncurrent_version_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    abort_incomplete_uploads_days: Annotated[int, Field(ge=1, le=365)] = 7


class WeightsBucket(Bucket):
    # Expire snapshots no environment ever pinned (llmstacks pin) this many days after upload;
    # None keeps them until delete-snapshot. A pinned snapshot never expires (README: "Snapshots").
    unpinned_snapshot_days: Annotated[int, Field(ge=1, le=3650)] | None = 30


class AccessLogs(Strict):
    """S3 server access logs of the weights and LoRA buckets, in a log bucket of their own."""

    enabled: bool = True
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 365


class Buckets(Strict):
    weights: WeightsBucket = WeightsBucket()
    lora: Bucket = Bucket()
    access_logs: AccessLogs = AccessLogs()
    # Reuse an existing KMS key; by default the stack creates one per environment.
    kms_key_arn: KmsKeyArn | None = None
    # Terraform refuses to destroy the data buckets (and the key) when set.
    prevent_destroy: bool = False


class Anyscale(Strict):
    """The Anyscale cloud this cluster is registered as (docs.anyscale.com/clouds/aws/create-eks).

    The AWS stack creates the cloud's storage bucket and the operator's role and prints the
    `anyscale cloud register` command; its cloud deployment id, set here, lets the platform
    stack install the operator.
    """

    cloud: Text | None = None  # required with target anyscale (stacks.config.checks)
    organization_id: Annotated[str, rule(rules.organization_id_problem)] | None = None  # ditto
    # The zones the node pools' subnets are in: where the cloud may place pods (ditto).
    kubernetes_zones: Annotated[list[Annotated[str, Field(max_length=32)]], max_items(MAX_LABELS)] = []
    cloud_deployment_id: Annotated[str, rule(rules.cloud_deployment_id_problem)] | None = None
    project: Text | None = None
    service_name: Name | None = None  # default: <prefix>-<environment>
    image_uri: Text = "anyscale/ray-llm:2.60.0-py311-cu128"
    # Anyscale instance type per node pool, where the operator's names differ
    # from the pool's EC2 instance type (the default).
    instance_types: Annotated[dict[Name, Text], max_items(MAX_LABELS)] = {}

    def instance_type_of(self, pool: NodePool) -> str:
        """The Anyscale instance type of the pool's pods: what compute configs name and the operator offers."""
        return self.instance_types.get(pool.name, pool.instance_types[0])


class KubeRay(Strict):
    ray_image: Text = "rayproject/ray-llm:2.60.0-py311-cu128"


class Serving(Strict):
    """Where the Ray Serve application runs and the pods' Kubernetes identity."""

    target: Literal["anyscale", "kuberay"] = "anyscale"
    # Extra nodes each GPU pool must hold during a rollout, as a share of its nodes at max replicas.
    rollout_surge_percent: Annotated[int, Field(ge=0, le=100)] = 20
    namespace: Annotated[Name, rule(rules.namespace_problem)] = "llm-serving"
    service_account: Annotated[Name, rule(rules.service_account_problem)] = "ray-serving"
    # At most this many GPUs requested in the namespace (a ResourceQuota); default: no quota.
    gpu_quota: Annotated[int, Field(ge=1, le=10_000)] | None = None
    # Metrics, dashboards and alerts in the cluster: kube-prometheus-stack, or none when the
    # cluster already has a Prometheus (then scrape Ray's metrics port yourself).
    monitoring: Literal["kube-prometheus-stack", "none"] = "kube-prometheus-stack"
    anyscale: Anyscale = Anyscale()
    kuberay: KubeRay = KubeRay()


class Writer(Strict):
    """Who may publish weights and adapters (CI or training jobs)."""

    # GitHub Actions OIDC subjects, each one repository and one context,
    # e.g. "repo:acme/models:ref:refs/heads/main" (checked in `checks`, which sees the opt-in below).
    github_subjects: Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], max_items(MAX_LABELS)] = []
    # Opt in to `*`/`?` in the subjects' context (every release tag: repo:org/repo:ref:refs/tags/v*).
    allow_context_wildcards: bool = False
    role_arns: Annotated[list[RoleArn], max_items(MAX_LABELS)] = []

    @model_validator(mode="after")
    def _someone(self) -> Writer:
        if not self.github_subjects and not self.role_arns:
            raise ValueError("list at least one of github_subjects or role_arns (who publishes artifacts)")
        return self


class Environment(Strict):
    name: Name
    aws: Aws
    prefix: Annotated[str, Field(pattern=PREFIX_PATTERN)] = "llm"
    tags: Annotated[dict[TagKey, TagValue], max_items(USER_TAGS_MAX)] = {}
    state: RemoteState
    cluster: Cluster
    node_pools: Annotated[list[NodePool], Field(min_length=1)]
    buckets: Buckets = Buckets()
    models: list[Model] = []
    serving: Serving = Serving()
    writer: Writer

    def node_pool(self, name: str) -> NodePool | None:
        return next((p for p in self.node_pools if p.name == name), None)

    @property
    def partition(self) -> str:
        return rules.REGIONS[self.aws.region]
