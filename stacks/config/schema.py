"""The typed environment file: one per environment, the single source of truth.

Structure and per-value rules live here. A value's rule is a function of
`infra.rules` (or, for what the serving app also checks, `app.spec`) that the
constructs call too, so the schema and the constructs can never disagree.
Rules that relate fields to each other live in `stacks.config.checks`;
those that need pool arithmetic or the capacity planner in `stacks.planning`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from app.spec import HF_ID_PATTERN, LORA_RANKS, MODEL_ID_PATTERN
from infra import rules
from infra.catalog import GPUS, REGIONS

# Kubernetes-safe DNS label; also safe in S3 keys, IAM names and Ray model ids.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
# AWS tag syntax; the "aws:" prefix is reserved.
TAG_KEY_PATTERN = r"^(?!aws:)[\w .:/=+\-@]{1,128}$"
TAG_VALUE_PATTERN = r"^[\w .:/=+\-@]{0,256}$"
PREFIX_PATTERN = r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$"
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"

# What each pattern means, for error messages.
PATTERN_HELP = {
    NAME_PATTERN: "lowercase letters, digits and '-', 1-32 characters, starting and ending with a letter or digit",
    MODEL_ID_PATTERN: "letters, digits, '.', '_' and '-', 1-63 characters, starting with a letter or digit (no ':' or '/')",
    PREFIX_PATTERN: "lowercase letters, digits and '-', 2-20 characters, starting with a letter",
    HF_ID_PATTERN: "a Hugging Face repository id, e.g. meta-llama/Llama-3.1-8B-Instruct",
    INSTANCE_TYPE_PATTERN: "an EC2 instance type, e.g. g6e.xlarge",
    TAG_KEY_PATTERN: "an AWS tag key: up to 128 letters, digits, spaces and _.:/=+-@, not starting with 'aws:'",
    TAG_VALUE_PATTERN: "an AWS tag value: up to 256 letters, digits, spaces and _.:/=+-@",
}


def rule(check: Callable[[Any], str | None]) -> AfterValidator:
    """A field validator from an `infra.rules` function: its problem becomes the field's error."""

    def validate(value: Any) -> Any:
        if problem := check(value):
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


class Strict(BaseModel):
    # python-re: tag keys need a lookahead, which the default Rust engine lacks.
    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re")


def _no_number(value: Any) -> Any:
    # YAML reads 012345678901 as a number and drops the leading zero.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("quote the account id (YAML reads an unquoted one as a number)")
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Region = Annotated[str, rule(rules.known_region_problem)]
AccountId = Annotated[str, BeforeValidator(_no_number), rule(rules.account_id_problem)]
ClusterName = Annotated[str, rule(rules.cluster_name_problem)]
SubnetId = Annotated[str, rule(rules.subnet_id_problem)]
# ARNs are checked in form here and against the environment's partition in `checks`.
RoleArn = Annotated[str, rule(rules.role_arn_problem)]
PrincipalArn = Annotated[str, rule(rules.principal_arn_problem)]
KmsKeyArn = Annotated[str, rule(rules.kms_key_arn_problem)]
LabelKey = Annotated[str, rule(rules.label_key_problem)]
LabelValue = Annotated[str, rule(rules.label_value_problem)]


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
    version: Annotated[str, rule(rules.eks_version_problem)]
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

    @model_validator(mode="after")
    def _exactly_one(self) -> Cluster:
        if (self.existing is None) == (self.create is None):
            raise ValueError("set exactly one of 'existing' or 'create'")
        return self


class Taint(Strict):
    key: LabelKey
    value: LabelValue = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


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
    labels: dict[LabelKey, LabelValue] = {}
    taints: list[Taint] = []

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

    @property
    def has_gpus(self) -> bool:
        return self.accelerator is not None


class Bucket(Strict):
    noncurrent_version_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    abort_incomplete_uploads_days: Annotated[int, Field(ge=1, le=365)] = 7


class Buckets(Strict):
    weights: Bucket = Bucket()
    lora: Bucket = Bucket()
    # Reuse an existing KMS key; by default the stack creates one per environment.
    kms_key_arn: KmsKeyArn | None = None
    # Terraform refuses to destroy the data buckets (and the key) when set.
    prevent_destroy: bool = False


class Weights(Strict):
    """Where a model's weights come from: the weights bucket (default) or the Hugging Face Hub."""

    # bucket: published to models/<model id>/ in the weights bucket (llmstacks upload-model).
    source: Literal["bucket", "huggingface"] = "bucket"
    hf_id: Annotated[str, Field(pattern=HF_ID_PATTERN)] | None = None
    # Name of an AWS Secrets Manager secret holding the Hugging Face token for gated models.
    hf_token_secret: Annotated[str, rule(rules.secret_name_problem)] | None = None

    @model_validator(mode="after")
    def _source_fields(self) -> Weights:
        if self.source == "huggingface" and self.hf_id is None:
            raise ValueError("source 'huggingface' needs hf_id (e.g. meta-llama/Llama-3.1-8B-Instruct)")
        if self.source == "bucket" and (self.hf_id or self.hf_token_secret):
            raise ValueError("hf_id and hf_token_secret apply only to source 'huggingface'")
        return self


class Replicas(Strict):
    min: Annotated[int, Field(ge=0)] = 1  # 0 allows scale to zero
    max: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class Lora(Strict):
    enabled: bool = False
    max_adapters_per_replica: Annotated[int, Field(ge=1, le=256)] = 16
    max_rank: int = 16
    # What adapters trained on this model give as base_model_name_or_path (e.g. the
    # Hugging Face id it came from); upload-adapter also accepts the model id and hf_id.
    base_model: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")] | None = None

    @field_validator("max_rank")
    @classmethod
    def _vllm_rank(cls, value: int) -> int:
        if value not in LORA_RANKS:
            raise ValueError(f"max_rank must be one of {', '.join(map(str, LORA_RANKS))} (vLLM's allowed values)")
        return value


class EngineKwargs(BaseModel):
    """vLLM engine settings, passed to vLLM as given. The ones the capacity planner
    reads are typed (vLLM 0.29's names and values); any other key passes through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | None = None
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = None
    # vLLM 0.29's CacheDType.
    kv_cache_dtype: Literal[
        "auto", "float16", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla", "turboquant_k8v4",
        "turboquant_4bit_nc", "turboquant_k3v4_nc", "turboquant_3bit_nc", "int4_per_token_head",
        "int8_per_token_head", "fp8_per_token_head", "nvfp4", "nvfp4_4over6",
    ] | None = None
    quantization: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    max_num_batched_tokens: Annotated[int, Field(ge=1)] | None = None
    max_num_seqs: Annotated[int, Field(ge=1)] | None = None

    def as_dict(self) -> dict[str, Any]:
        """What the user wrote, as vLLM receives it."""
        return self.model_dump(exclude_unset=True)


class Model(Strict):
    id: Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
    weights: Weights = Weights()
    node_pool: Name
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    pipeline_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    max_model_len: Annotated[int, Field(ge=16, le=10_485_760)]
    replicas: Replicas = Replicas()
    lora: Lora = Lora()
    # Passed to vLLM as is (quantization, prefix caching, reasoning parser, ...).
    engine_kwargs: EngineKwargs = EngineKwargs()
    # For the capacity planner: a catalog model (Hugging Face id) or a config.json path.
    # Default: weights.hf_id, lora.base_model, or the catalog model whose name is the id.
    architecture: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    # Ray Serve load targets per replica; default: derived from the planned KV-cache concurrency.
    target_ongoing_requests: Annotated[float, Field(gt=0)] | None = None
    max_ongoing_requests: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _load_targets(self) -> Model:
        if (self.target_ongoing_requests is not None and self.max_ongoing_requests is not None
                and self.target_ongoing_requests > self.max_ongoing_requests):
            raise ValueError(f"target_ongoing_requests {self.target_ongoing_requests} exceeds max_ongoing_requests "
                             f"{self.max_ongoing_requests}: replicas could never reach the scale-up target")
        return self


class Anyscale(Strict):
    cloud: Annotated[str, Field(min_length=1)] | None = None  # Anyscale cloud name; default: the org's default cloud
    project: Annotated[str, Field(min_length=1)] | None = None
    service_name: Name | None = None  # default: <prefix>-<environment>
    image_uri: Annotated[str, Field(min_length=1)] = "anyscale/ray-llm:2.60.0-py311-cu128"
    # Anyscale instance type per node pool, where the operator's names differ
    # from the pool's EC2 instance type (the default).
    instance_types: dict[Name, Annotated[str, Field(min_length=1)]] = {}


class KubeRay(Strict):
    ray_image: Annotated[str, Field(min_length=1)] = "rayproject/ray-llm:2.60.0-py311-cu128"


class Serving(Strict):
    """Where the Ray Serve application runs and the pods' Kubernetes identity."""

    target: Literal["anyscale", "kuberay"] = "anyscale"
    # Extra nodes each GPU pool must hold during a rollout, as a share of its nodes at max replicas.
    rollout_surge_percent: Annotated[int, Field(ge=0, le=100)] = 20
    namespace: Annotated[Name, rule(rules.namespace_problem)] = "llm-serving"
    service_account: Annotated[Name, rule(rules.service_account_problem)] = "ray-serving"
    anyscale: Anyscale = Anyscale()
    kuberay: KubeRay = KubeRay()


class Writer(Strict):
    """Who may publish weights and adapters (CI or training jobs)."""

    # GitHub Actions OIDC subjects, e.g. "repo:acme/models:ref:refs/heads/main".
    github_subjects: list[Annotated[str, rule(rules.github_subject_problem)]] = []
    role_arns: list[RoleArn] = []

    @model_validator(mode="after")
    def _someone(self) -> Writer:
        if not self.github_subjects and not self.role_arns:
            raise ValueError("list at least one of github_subjects or role_arns (who publishes artifacts)")
        return self


class Environment(Strict):
    name: Name
    aws: Aws
    prefix: Annotated[str, Field(pattern=PREFIX_PATTERN)] = "llm"
    tags: dict[Annotated[str, Field(pattern=TAG_KEY_PATTERN)], Annotated[str, Field(pattern=TAG_VALUE_PATTERN)]] = {}
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
        return REGIONS[self.aws.region]
