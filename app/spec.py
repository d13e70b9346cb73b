"""The serving application's arguments: the contract between the spec and `app.serving`.

Pure pydantic, no Ray import: the stacks render these arguments from the
environment file, and `app.serving.build_app` receives them from Ray Serve.
It also owns the bucket layout both sides rely on:

    s3://<weights bucket>/models/<model id>/<snapshot>/  one published upload of the weights (config.json,
                                                          *.safetensors, tokenizer, hash, manifest.json last),
                                                          content-addressed and never modified
    s3://<lora bucket>/adapters/<model id>/<adapter>/   adapter_config.json + weights
    s3://<lora bucket>/staging/...                      uploads in progress (never read by Ray)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# The replica environment variable naming the Hugging Face token's secret (app.gated_server).
HF_TOKEN_SECRET_ENV = "LLMSTACKS_HF_TOKEN_SECRET"
WEIGHTS_PREFIX = "models"
ADAPTERS_PREFIX = "adapters"
STAGING_PREFIX = "staging"

# What the OpenAI API calls a model. No ":" (Ray splits "<model>:<adapter>" at
# the first colon) and no "/" (an S3 key level).
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
HF_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
SECRET_NAME_PATTERN = r"^[A-Za-z0-9/_+=.@-]{1,512}$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
SERVER_CLS_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
# vLLM accepts only these values for max_lora_rank (LoraRank).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# Engine settings derived from typed fields (engine setting -> the field it comes
# from); passing them through engine_kwargs would silently disagree with the node
# pool or the LoRA config.
RESERVED_ENGINE_KWARGS = {
    "tensor_parallel_size": "tensor_parallel_size",
    "pipeline_parallel_size": "pipeline_parallel_size",
    "max_model_len": "max_model_len",
    "enable_lora": "lora",
    "max_lora_rank": "lora.max_rank",
    "max_loras": "lora.max_adapters_per_replica",
    "model": "weights",
    "served_model_name": "id",
    "trust_remote_code": "trust_remote_code",
    "load_format": "weights.load",
    "kv_transfer_config": "kv_transfer",
    "enable_expert_parallel": "expert_parallel",
}
# Engine settings that change how many GPUs or nodes a replica uses (vLLM 0.29's
# ParallelConfig: world size = tensor x pipeline x prefill-context parallel;
# data parallelism runs more engines). GPUs, node pools and specs are sized from
# the typed fields, so these are refused rather than silently miscounted.
GPU_COUNT_ENGINE_KWARGS = (
    "prefill_context_parallel_size",
    "data_parallel_size",
    "data_parallel_size_local",
    "data_parallel_rank",
    "data_parallel_rank_local",
    "data_parallel_backend",
    "data_parallel_external_lb",
    "data_parallel_hybrid_lb",
    "data_parallel_address",
    "data_parallel_rpc_port",
    "data_parallel_start_rank",
    "distributed_executor_backend",
    "nnodes",
    "node_rank",
)


def engine_kwarg_problem(key: str) -> str | None:
    """Why `key` may not be passed through engine_kwargs, or None."""
    if key in RESERVED_ENGINE_KWARGS:
        return f"set from the model's {RESERVED_ENGINE_KWARGS[key]!r} field; remove it from engine_kwargs"
    if key in GPU_COUNT_ENGINE_KWARGS:
        return (
            "changes the GPUs or nodes a replica uses, which node pools and specs are sized from; "
            "use tensor_parallel_size, pipeline_parallel_size, or pattern: data_parallel with data_parallel_size, "
            "and remove it from engine_kwargs"
        )
    return None


# Replica environment variables: names that look like credentials are refused (a spec is
# published and Ray logs runtime envs), and so are the ones the app sets itself.
ENV_VAR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
CREDENTIAL_NAME_PATTERN = r"(?i)(SECRET|TOKEN|PASSW|CREDENTIAL|PRIVATE|ACCESS_KEY|API_KEY|SESSION|AUTH)"
CREDENTIAL_VALUE_PATTERN = r"(AKIA|ASIA)[A-Z0-9]{16}|hf_[A-Za-z0-9]{30,}|-----BEGIN"
APP_ENV_VARS = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CA_BUNDLE",
    HF_TOKEN_SECRET_ENV,
)


def env_var_problem(name: str, value: str) -> str | None:
    """Why `name=value` may not be set in a replica's environment, or None."""
    if re.fullmatch(ENV_VAR_NAME_PATTERN, name) is None:
        return f"{name[:64]!r} is not an environment variable name (letters, digits and '_')"
    if re.search(CREDENTIAL_NAME_PATTERN, name):
        return (
            f"{name} looks like a credential: specs are published and Ray logs runtime environments; "
            "give the replicas an identity (serving role) or a Secrets Manager secret instead"
        )
    if name.upper() in APP_ENV_VARS or name.upper().startswith(("RUNAI_STREAMER_", "AWS_")):
        return f"{name} is set by the app from the environment's own fields"
    if re.search(CREDENTIAL_VALUE_PATTERN, value):
        return f"the value of {name} looks like a credential; specs are published and Ray logs runtime environments"
    return None


# A snapshot's id: the first 16 hex digits of its manifest's SHA-256 (stacks.publishing.models).
SNAPSHOT_PATTERN = r"^[0-9a-f]{16}$"
# Every object of a snapshot is published with this tag; the weights bucket's lifecycle rule
# expires tagged objects after the environment's age, and `llmstacks pin` removes the tag, for
# good, from each snapshot an environment pins. So only snapshots never pinned can expire.
UNPINNED_TAG = ("llmstacks-unpinned", "true")


def snapshot_prefix(model_id: str, snapshot: str) -> str:
    """The key prefix of one snapshot, ending in "/"."""
    return f"{WEIGHTS_PREFIX}/{model_id}/{snapshot}/"


def weights_uri(bucket: str, model_id: str, snapshot: str) -> str:
    """What Ray downloads from (every object under it) and vLLM's streamer reads: one snapshot."""
    return f"s3://{bucket}/{snapshot_prefix(model_id, snapshot).rstrip('/')}"


def adapters_uri(bucket: str, model_id: str) -> str:
    return f"s3://{bucket}/{ADAPTERS_PREFIX}/{model_id}"


def model_id_problem(value: str, what: str = "model id") -> str | None:
    if not isinstance(value, str) or re.fullmatch(MODEL_ID_PATTERN, value) is None:
        return (
            f"{what} {value!r} is not valid: letters, digits, '.', '_' and '-', 1-63 characters, "
            "starting with a letter or digit (no ':' or '/')"
        )
    return None


def weights_source_problem(source: str, hf_id: str | None, hf_token_secret: str | None) -> str | None:
    """Hugging Face weights name their repository; bucket weights name none."""
    if source == "huggingface" and hf_id is None:
        return "'huggingface' weights need hf_id (e.g. meta-llama/Llama-3.1-8B-Instruct)"
    if source == "bucket" and (hf_id or hf_token_secret):
        return "hf_id and hf_token_secret apply only to 'huggingface' weights"
    return None


def load_targets_problem(target_ongoing_requests: float, max_ongoing_requests: int) -> str | None:
    if target_ongoing_requests > max_ongoing_requests:
        return (
            f"target_ongoing_requests {target_ongoing_requests} exceeds max_ongoing_requests "
            f"{max_ongoing_requests}: replicas could never reach the scale-up target"
        )
    return None


def replicas_problem(
    minimum: int, maximum: int, names: tuple[str, str] = ("min_replicas", "max_replicas")
) -> str | None:
    """Autoscaling bounds in order; `names` are the two fields as the caller's input spells them."""
    if minimum > maximum:
        return f"{names[0]} {minimum} is greater than {names[1]} {maximum}"
    return None


def lora_rank_problem(rank: int) -> str | None:
    if rank not in LORA_RANKS:
        return f"max_rank must be one of {', '.join(map(str, LORA_RANKS))} (vLLM's allowed values)"
    return None


def adapter_name_problem(name: str) -> str | None:
    """Why `name` cannot be a LoRA adapter name, or None.

    Requests address an adapter as "<model id>:<adapter>", it is an S3 key
    level, and Ray caches adapters by name under one directory: the rules are
    the model id's.
    """
    return model_id_problem(name, "adapter name")


def rule(check: Callable[[Any], str | None]) -> AfterValidator:
    """A field validator from a `*_problem` function: its problem becomes the field's error."""

    def validate(value: Any) -> Any:
        if problem := check(value):
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


LoraRank = Annotated[int, rule(lora_rank_problem)]


class Strict(BaseModel):
    """Unknown keys refused, values frozen: the base of the app contract and of the environment schema
    (`stacks.config`), so both check a pattern the same way. Pydantic's default regex engine (Rust's)
    matches `$` only at the end of the text, as JSON Schema does; Python's `re` would let a trailing
    newline through, so Python code matches these patterns with `re.fullmatch`."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSpec(Strict):
    max_adapters_per_replica: Annotated[int, Field(ge=1, le=256)] = 16
    max_rank: LoraRank = 16


class PlacementSpec(Strict):
    """Ray placement group of one replica: vLLM's workers, one bundle per GPU."""

    strategy: Literal["STRICT_PACK", "PACK", "STRICT_SPREAD", "SPREAD"] = "STRICT_PACK"
    bundles: Annotated[
        list[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_:./-]{1,128}$")], Annotated[float, Field(ge=0)]]],
        Field(min_length=1, max_length=64),
    ]


# The routers by the names an environment file uses: Ray Serve LLM's prefix-cache-aware router
# (app.routing: with requests without text routed by load) and Ray Serve's default, named by
# the path Ray itself uses for it (DEFAULT_REQUEST_ROUTER_PATH).
ROUTER_CLASSES = {
    "prefix_aware": "app.routing:PrefixAwareRouter",
    "power_of_two": "ray.serve._private.request_router:PowerOfTwoChoicesRequestRouter",
}


class RoutingSpec(Strict):
    """Ray Serve's request router for the model's replicas (`request_router_config`)."""

    request_router_class: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*[:.][A-Za-z_]\w*$")]
    request_router_kwargs: dict[Annotated[str, Field(pattern=r"^[A-Za-z_]\w{0,63}$")], Any] = {}


# How a model is served (README: "Serving patterns"). standard: one engine per replica on one node;
# multi_node: tensor parallel within a node x pipeline parallel across nodes; data_parallel: a
# gang of data_parallel_size engines (Ray's DPServer), for mixture-of-experts models;
# disaggregated: prefill and decode engines, KV caches moved between them (Ray's PD servers).
PATTERNS = ("standard", "multi_node", "data_parallel", "disaggregated")
Pattern = Literal["standard", "multi_node", "data_parallel", "disaggregated"]
# vLLM's KV connectors by the names an environment file uses.
KV_CONNECTORS = {"nixl": "NixlConnector"}


class PrefillSpec(Strict):
    """The prefill deployment of a disaggregated model; the model's own fields describe decode."""

    accelerator_type: str | None = None
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 1
    target_ongoing_requests: Annotated[float, Field(gt=0)] = 32
    max_ongoing_requests: Annotated[int, Field(ge=1)] = 64
    placement: PlacementSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PrefillSpec:
        if problem := replicas_problem(self.min_replicas, self.max_replicas):
            raise ValueError(f"prefill {problem}")
        if problem := load_targets_problem(self.target_ongoing_requests, self.max_ongoing_requests):
            raise ValueError(f"prefill {problem}")
        return self


def pattern_problem(
    pattern: str,
    *,
    data_parallel_size: int,
    pipeline_parallel_size: int,
    expert_parallel: bool,
    has_prefill: bool,
    has_kv_connector: bool,
) -> tuple[str, str] | None:
    """(field, why) if these settings do not make the pattern, else None.

    The one rule of which settings make which pattern: the contract checks its args with it, and the
    environment file's models (`stacks.config.models`) check what they will render, naming their own
    field for `field`. `why` reads after the field's name.
    """
    if pattern == "data_parallel" and data_parallel_size < 2:
        return "data_parallel_size", "pattern data_parallel needs data_parallel_size of at least 2"
    if pattern != "data_parallel" and data_parallel_size > 1:
        return "data_parallel_size", f"applies to pattern data_parallel (this model's pattern is {pattern})"
    if expert_parallel and pattern != "data_parallel":
        return "expert_parallel", f"applies to pattern data_parallel (this model's pattern is {pattern})"
    if pattern == "disaggregated" and not (has_prefill and has_kv_connector):
        return (
            "kv_connector" if has_prefill else "prefill"
        ), "pattern disaggregated needs a prefill part and a KV connector"
    if pattern != "disaggregated" and (has_prefill or has_kv_connector):
        return (
            "prefill" if has_prefill else "kv_connector"
        ), f"only for pattern disaggregated (this model's pattern is {pattern})"
    if pattern == "multi_node" and pipeline_parallel_size < 2:
        return "pipeline_parallel_size", "pattern multi_node needs at least 2 (one pipeline stage per node)"
    if pattern in ("data_parallel", "disaggregated") and pipeline_parallel_size > 1:
        return "pipeline_parallel_size", f"pattern {pattern} runs each engine on one node: it must be 1"
    return None


class ModelSpec(Strict):
    id: Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
    # "bucket": weights_uri(weights_bucket, id, snapshot). "huggingface": hf_id, downloaded by vLLM.
    weights: Literal["bucket", "huggingface"] = "bucket"
    # The pinned snapshot of bucket weights: every replica loads exactly these bytes.
    snapshot: Annotated[str, Field(pattern=SNAPSHOT_PATTERN)] | None = None
    hf_id: Annotated[str, Field(pattern=HF_ID_PATTERN)] | None = None
    # Secrets Manager secret holding the Hugging Face token; only its name is here.
    hf_token_secret: Annotated[str, Field(pattern=SECRET_NAME_PATTERN)] | None = None
    accelerator_type: str | None = None  # a Ray accelerator type, e.g. "L40S"
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    pipeline_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    max_model_len: Annotated[int, Field(ge=16)]
    min_replicas: Annotated[int, Field(ge=0)] = 1  # 0: scale to zero
    max_replicas: Annotated[int, Field(ge=1)] = 1
    # Load-based autoscaling: scale up when replicas average more ongoing
    # requests than this; a replica never takes more than max_ongoing_requests.
    target_ongoing_requests: Annotated[float, Field(gt=0)] = 32
    max_ongoing_requests: Annotated[int, Field(ge=1)] = 64
    lora: LoraSpec | None = None
    engine_kwargs: dict[str, Any] = {}
    # Run the Python code that ships with the model (auto_map); off unless the environment opts in.
    trust_remote_code: bool = False
    # An LLMServer subclass, "module:Class", importable on the cluster.
    server_cls: Annotated[str, Field(pattern=SERVER_CLS_PATTERN)] | None = None
    # "stream": vLLM streams the safetensors from S3 into memory (Run:ai Model Streamer);
    # "download": Ray downloads the whole folder to local disk first. Bucket weights only.
    load: Literal["stream", "download"] = "download"
    # Parallel S3 reads of the streamer (RUNAI_STREAMER_CONCURRENCY); None: the streamer's default.
    stream_concurrency: Annotated[int, Field(ge=1, le=256)] | None = None
    placement: PlacementSpec | None = None
    routing: RoutingSpec | None = None
    env_vars: Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=32)] = {}
    health_check_period_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    health_check_timeout_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    upscale_delay_s: Annotated[float, Field(ge=0, le=86400)] | None = None
    downscale_delay_s: Annotated[float, Field(ge=0, le=86400)] | None = None
    graceful_shutdown_timeout_s: Annotated[float, Field(ge=0, le=86400)] | None = None
    pattern: Pattern = "standard"
    # data_parallel: engines per replica (Ray's gang); min/max_replicas count gangs.
    data_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    # data_parallel: experts spread across the gang's GPUs (vLLM's enable_expert_parallel).
    expert_parallel: bool = False
    # disaggregated: the prefill deployment and the connector moving KV caches to decode.
    prefill: PrefillSpec | None = None
    kv_connector: Literal["nixl"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if problem := pattern_problem(
            self.pattern,
            data_parallel_size=self.data_parallel_size,
            pipeline_parallel_size=self.pipeline_parallel_size,
            expert_parallel=self.expert_parallel,
            has_prefill=self.prefill is not None,
            has_kv_connector=self.kv_connector is not None,
        ):
            raise ValueError(": ".join(problem))
        if problem := weights_source_problem(self.weights, self.hf_id, self.hf_token_secret):
            raise ValueError(problem)
        if (self.weights == "bucket") != (self.snapshot is not None):
            raise ValueError(
                "bucket weights are served from a pinned snapshot (snapshot); Hugging Face weights have none"
            )
        if problem := replicas_problem(self.min_replicas, self.max_replicas):
            raise ValueError(problem)
        if problem := load_targets_problem(self.target_ongoing_requests, self.max_ongoing_requests):
            raise ValueError(problem)
        for key in self.engine_kwargs:
            if problem := engine_kwarg_problem(key):
                raise ValueError(f"engine_kwargs.{key}: {problem}")
        if self.load == "stream" and self.weights != "bucket":
            raise ValueError("load 'stream' reads the weights bucket; Hugging Face weights are downloaded")
        for name, value in self.env_vars.items():
            if problem := env_var_problem(name, value):
                raise ValueError(f"env_vars.{name[:64]}: {problem}")
        return self


class AppArgs(Strict):
    """`args` of the Ray Serve application `app.serving:build_app`."""

    region: Annotated[str, Field(pattern=REGION_PATTERN)]
    weights_bucket: Annotated[str, Field(pattern=BUCKET_PATTERN)]
    lora_bucket: Annotated[str, Field(pattern=BUCKET_PATTERN)]
    # Another S3 endpoint (a VPC interface endpoint, or a local S3 in tests).
    s3_endpoint_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    models: Annotated[list[ModelSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_ids(self) -> AppArgs:
        seen: set[str] = set()
        for model in self.models:
            if model.id in seen:
                raise ValueError(f"model id {model.id!r} appears more than once")
            seen.add(model.id)
        return self
