"""The typed environment file: one per environment, the single source of truth.

Structure and per-field rules live here; rules that relate fields to each
other (a model's node pool exists, parallelism fits the GPUs, ...) live in
`stacks.checks` so they can name the exact field that is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from app.spec import HF_ID_PATTERN, LORA_RANKS, MODEL_ID_PATTERN, model_id_problem
from infra.catalog import GPUS, REGIONS

# Kubernetes-safe DNS label; also safe in S3 keys, IAM names and Ray model ids.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
ARN_ROLE_PATTERN = r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"
ARN_PRINCIPAL_PATTERN = r"^arn:aws(-cn|-us-gov)?:(iam|sts)::\d{12}:(role|user|assumed-role)/[\w+=,.@/-]{1,512}$"
KMS_KEY_ARN_PATTERN = r"^arn:aws(-cn|-us-gov)?:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,64}$"
# AWS tag syntax; the "aws:" prefix is reserved.
TAG_KEY_PATTERN = r"^(?!aws:)[\w .:/=+\-@]{1,128}$"
TAG_VALUE_PATTERN = r"^[\w .:/=+\-@]{0,256}$"
SUBNET_PATTERN = r"^subnet-[0-9a-f]{8,17}$"

ACCOUNT_ID_PATTERN = r"^\d{12}$"
PREFIX_PATTERN = r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$"
EKS_VERSION_PATTERN = r"^1\.\d{2}$"
CLUSTER_NAME_PATTERN = r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$"
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"

# What each pattern means, for error messages.
PATTERN_HELP = {
    NAME_PATTERN: "lowercase letters, digits and '-', 1-32 characters, starting and ending with a letter or digit",
    MODEL_ID_PATTERN: "letters, digits, '.', '_' and '-', 1-63 characters, starting with a letter or digit (no ':' or '/')",
    ACCOUNT_ID_PATTERN: "a 12-digit AWS account id in quotes",
    PREFIX_PATTERN: "lowercase letters, digits and '-', 2-20 characters, starting with a letter",
    EKS_VERSION_PATTERN: "a Kubernetes minor version in quotes, e.g. \"1.33\"",
    HF_ID_PATTERN: "a Hugging Face repository id, e.g. meta-llama/Llama-3.1-8B-Instruct",
    CLUSTER_NAME_PATTERN: "an EKS cluster name: letters, digits, '-' and '_', up to 100 characters",
    INSTANCE_TYPE_PATTERN: "an EC2 instance type, e.g. g6e.xlarge",
    SUBNET_PATTERN: "a subnet id, e.g. subnet-0123456789abcdef0",
    ARN_ROLE_PATTERN: "an IAM role ARN, e.g. arn:aws:iam::123456789012:role/ci",
    ARN_PRINCIPAL_PATTERN: "an IAM role or user ARN",
    KMS_KEY_ARN_PATTERN: "a KMS key ARN, e.g. arn:aws:kms:us-west-2:123456789012:key/<id>",
    LABEL_KEY_PATTERN: "a Kubernetes label key, e.g. example.com/team",
    LABEL_VALUE_PATTERN: "a Kubernetes label value: up to 63 letters, digits, '-', '_' or '.'",
    TAG_KEY_PATTERN: "an AWS tag key: up to 128 letters, digits, spaces and _.:/=+-@, not starting with 'aws:'",
    TAG_VALUE_PATTERN: "an AWS tag value: up to 256 letters, digits, spaces and _.:/=+-@",
}

# Engine settings the kit derives from typed fields; setting them through
# engine_kwargs would silently disagree with the node pool or the LoRA config.
RESERVED_ENGINE_KWARGS = {
    "tensor_parallel_size": "tensor_parallel_size",
    "pipeline_parallel_size": "pipeline_parallel_size",
    "max_model_len": "max_model_len",
    "enable_lora": "lora.enabled",
    "max_lora_rank": "lora.max_rank",
    "max_loras": "lora.max_adapters_per_replica",
    "model": "weights",
    "served_model_name": "id",
}


def adapter_name_problem(name: str) -> str | None:
    """Why `name` cannot be a LoRA adapter name, or None.

    Requests address an adapter as "<model id>:<adapter>" and Ray caches
    adapters by name under one directory, so the rules are the model id's.
    """
    return model_id_problem(name, "adapter name")


class Strict(BaseModel):
    # python-re: tag keys need a lookahead, which the default Rust engine lacks.
    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re")


def _known_region(value: str) -> str:
    if value not in REGIONS:
        raise ValueError(f"unknown AWS region {value!r}")
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Region = Annotated[str, AfterValidator(_known_region)]
ModelId = Annotated[str, Field(pattern=MODEL_ID_PATTERN)]


class Aws(Strict):
    account_id: Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]
    region: Region

    @field_validator("account_id", mode="before")
    @classmethod
    def _account_as_text(cls, value: Any) -> Any:
        # YAML reads 012345678901 as a number and drops the leading zero.
        if isinstance(value, int):
            raise ValueError("quote the account id (YAML reads an unquoted one as a number)")
        return value


class RemoteState(Strict):
    """An existing S3 bucket holding Terraform state; the key is derived per stack."""

    bucket: Annotated[str, Field(min_length=3, max_length=63)]
    region: Region | None = None  # defaults to aws.region
    key_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")] = "llm-serving-stacks"


class ExistingClusterConfig(Strict):
    name: Annotated[str, Field(pattern=CLUSTER_NAME_PATTERN)]
    # Subnets for the node pools; default: the cluster's own subnets.
    node_subnet_ids: list[Annotated[str, Field(pattern=SUBNET_PATTERN)]] = []
    install_pod_identity_agent: bool = False


class NewClusterConfig(Strict):
    name: Annotated[str, Field(pattern=CLUSTER_NAME_PATTERN)] | None = None
    version: Annotated[str, Field(pattern=EKS_VERSION_PATTERN)]
    subnet_ids: Annotated[list[Annotated[str, Field(pattern=SUBNET_PATTERN)]], Field(min_length=2)]
    endpoint_public_access: bool = False
    public_access_cidrs: list[str] = []
    admin_principal_arns: list[Annotated[str, Field(pattern=ARN_PRINCIPAL_PATTERN)]] = []
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] = 365

    @model_validator(mode="after")
    def _public_endpoint_needs_cidrs(self) -> NewClusterConfig:
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise ValueError("endpoint_public_access needs public_access_cidrs (the networks allowed to reach the API)")
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
    key: Annotated[str, Field(pattern=LABEL_KEY_PATTERN)]
    value: Annotated[str, Field(pattern=LABEL_VALUE_PATTERN)] = ""
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
    ami_type: str | None = None  # default: Bottlerocket NVIDIA for GPU pools, AL2023 for CPU pools
    root_volume_gib: Annotated[int, Field(ge=20, le=16384)] | None = None
    labels: dict[Annotated[str, Field(pattern=LABEL_KEY_PATTERN)], Annotated[str, Field(pattern=LABEL_VALUE_PATTERN)]] = {}
    taints: list[Taint] = []

    @field_validator("accelerator")
    @classmethod
    def _known_gpu(cls, value: str | None) -> str | None:
        if value is not None and value not in GPUS:
            raise ValueError(f"unknown accelerator {value!r} (known: {', '.join(GPUS)})")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> NodePool:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} is greater than max_size {self.max_size}")
        if self.desired_size is not None and not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(f"desired_size {self.desired_size} is outside min_size..max_size ({self.min_size}..{self.max_size})")
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
    kms_key_arn: Annotated[str, Field(pattern=KMS_KEY_ARN_PATTERN)] | None = None
    # Terraform refuses to destroy the data buckets (and the key) when set.
    prevent_destroy: bool = False


class Weights(Strict):
    """Where a model's weights come from: the weights bucket (default) or the Hugging Face Hub."""

    # bucket: published to models/<model id>/ in the weights bucket (llmstacks upload-model).
    source: Literal["bucket", "huggingface"] = "bucket"
    hf_id: Annotated[str, Field(pattern=HF_ID_PATTERN)] | None = None
    # Name of an AWS Secrets Manager secret holding the Hugging Face token for gated models.
    hf_token_secret: Annotated[str, Field(pattern=r"^[A-Za-z0-9/_+=.@-]{1,512}$")] | None = None

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


class Model(Strict):
    id: ModelId
    weights: Weights = Weights()
    node_pool: Name
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    pipeline_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    max_model_len: Annotated[int, Field(ge=16, le=10_485_760)]
    replicas: Replicas = Replicas()
    lora: Lora = Lora()
    # Passed to vLLM as is (quantization, prefix caching, reasoning parser, ...).
    engine_kwargs: dict[str, Any] = {}
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

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


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
    namespace: Name = "llm-serving"
    service_account: Name = "ray-serving"
    anyscale: Anyscale = Anyscale()
    kuberay: KubeRay = KubeRay()


class Writer(Strict):
    """Who may publish weights and adapters (CI or training jobs)."""

    # GitHub Actions OIDC subjects, e.g. "repo:acme/models:ref:refs/heads/main".
    github_subjects: list[Annotated[str, Field(pattern=r"^repo:[A-Za-z0-9_.-]+/[A-Za-z0-9_.*-]+:.+$")]] = []
    role_arns: list[Annotated[str, Field(pattern=ARN_ROLE_PATTERN)]] = []

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

