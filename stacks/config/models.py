"""The models an environment serves: where weights come from and how they load, replicas, LoRA,
engine settings, request routing, the workload the load targets are sized for, and the
Ray Serve settings a deployment may need to change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.spec import (
    HF_ID_PATTERN,
    MODEL_ID_PATTERN,
    SERVER_CLS_PATTERN,
    SNAPSHOT_PATTERN,
    LoraRank,
    Pattern,
    env_var_problem,
    load_targets_problem,
    pattern_problem,
    replicas_problem,
    weights_source_problem,
)
from infra import rules
from stacks.config.fields import (
    ENGINE_KEY_PATTERN,
    MAX_FREE_KEYS,
    ROUTING_PATTERN,
    JsonLike,
    Name,
    Strict,
    Text,
    max_items,
    rule,
)

# The request routers offered by name; any other router is named "module:Class".
ROUTING_POLICIES = ("prefix_aware", "power_of_two")
MAX_ENV_VARS = 32


class Weights(Strict):
    """Where a model's weights come from: the weights bucket (default) or the Hugging Face Hub."""

    # bucket: published to models/<model id>/<snapshot>/ in the weights bucket (llmstacks upload-model).
    source: Literal["bucket", "huggingface"] = "bucket"
    # bucket: the snapshot every replica loads, as upload-model printed it (llmstacks list-models
    # shows them). Changing it is the reviewed weights update; the previous one is the rollback.
    snapshot: Annotated[str, Field(pattern=SNAPSHOT_PATTERN)] | None = None
    hf_id: Annotated[str, Field(pattern=HF_ID_PATTERN)] | None = None
    # Name of an AWS Secrets Manager secret holding the Hugging Face token for gated models.
    hf_token_secret: Annotated[str, rule(rules.secret_name_problem)] | None = None
    # stream: vLLM streams the safetensors from S3 into GPU memory (default for bucket weights);
    # download: Ray copies the whole folder to local disk first (the only way for Hugging Face weights).
    load: Literal["stream", "download"] | None = None
    # Parallel S3 reads per replica while streaming; default: the streamer's own.
    stream_concurrency: Annotated[int, Field(ge=1, le=256)] | None = None

    @model_validator(mode="after")
    def _source_fields(self) -> Weights:
        if problem := weights_source_problem(self.source, self.hf_id, self.hf_token_secret):
            raise ValueError(problem)
        if self.source == "huggingface" and self.snapshot is not None:
            raise ValueError("snapshot names a published upload in the weights bucket; Hugging Face weights have none")
        if self.source == "huggingface" and self.load == "stream":
            raise ValueError(
                "load 'stream' reads the weights bucket; Hugging Face weights are downloaded (load: download)"
            )
        if self.stream_concurrency is not None and self.load_mode != "stream":
            raise ValueError("stream_concurrency applies only to streamed weights (load: stream)")
        return self

    @property
    def load_mode(self) -> Literal["stream", "download"]:
        return self.load or ("stream" if self.source == "bucket" else "download")


class Replicas(Strict):
    min: Annotated[int, Field(ge=0)] = 1  # 0 allows scale to zero
    max: Annotated[int, Field(ge=1)] = 1
    # How long load must stay above / below target before Ray Serve adds / removes a replica
    # (Ray's defaults: 30 s and 600 s).
    upscale_delay_s: Annotated[float, Field(ge=0, le=3600)] | None = None
    downscale_delay_s: Annotated[float, Field(ge=0, le=86400)] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        if problem := replicas_problem(self.min, self.max, ("min", "max")):
            raise ValueError(problem)
        return self


class Lora(Strict):
    enabled: bool = False
    max_adapters_per_replica: Annotated[int, Field(ge=1, le=256)] = 16
    max_rank: LoraRank = 16
    # What adapters trained on this model give as base_model_name_or_path (e.g. the
    # Hugging Face id it came from); upload-adapter also accepts the model id and hf_id.
    base_model: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")] | None = None


class EngineKwargs(BaseModel):
    """vLLM engine settings, passed to vLLM as given. The ones the capacity planner
    reads are typed (vLLM 0.29's names and values); any other key passes through."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[Annotated[str, Field(pattern=ENGINE_KEY_PATTERN)], JsonLike]

    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | None = None
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = None
    # vLLM 0.29's CacheDType.
    kv_cache_dtype: (
        Literal[
            "auto",
            "float16",
            "bfloat16",
            "fp8",
            "fp8_e4m3",
            "fp8_e5m2",
            "fp8_inc",
            "fp8_ds_mla",
            "turboquant_k8v4",
            "turboquant_4bit_nc",
            "turboquant_k3v4_nc",
            "turboquant_3bit_nc",
            "int4_per_token_head",
            "int8_per_token_head",
            "fp8_per_token_head",
            "nvfp4",
            "nvfp4_4over6",
        ]
        | None
    ) = None
    quantization: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    max_num_batched_tokens: Annotated[int, Field(ge=1)] | None = None
    max_num_seqs: Annotated[int, Field(ge=1)] | None = None
    # vLLM 0.29 caches prefixes by default; the default routing follows this setting.
    enable_prefix_caching: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        """What the user wrote, as vLLM receives it."""
        return self.model_dump(exclude_unset=True)


class TokenCounts(Strict):
    typical: Annotated[int, Field(ge=1, le=10_485_760)]
    p95: Annotated[int, Field(ge=1, le=10_485_760)]

    @model_validator(mode="after")
    def _ordered(self) -> TokenCounts:
        if self.typical > self.p95:
            raise ValueError(f"typical {self.typical} is greater than p95 {self.p95}")
        return self


class Workload(Strict):
    """The requests a model serves. The planner sizes its load targets from them; the defaults
    describe a chat workload (README: "Load targets")."""

    prompt_tokens: TokenCounts = TokenCounts(typical=1000, p95=4000)
    output_tokens: TokenCounts = TokenCounts(typical=250, p95=1000)
    # The time-to-first-token objective (p95 over 10 minutes) that an alert holds the model to.
    ttft_p95_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0

    @property
    def typical_tokens(self) -> int:
        return self.prompt_tokens.typical + self.output_tokens.typical

    @property
    def p95_tokens(self) -> int:
        return self.prompt_tokens.p95 + self.output_tokens.p95


class PrefixEviction(Strict):
    """Bound the prefix router's memory: every interval_s, a replica's prompts in its prefix tree
    are trimmed to target_chars once they exceed threshold_chars (per replica)."""

    threshold_chars: Annotated[int, Field(ge=1_000, le=1_000_000_000)] = 1_000_000
    target_chars: Annotated[int, Field(ge=1_000, le=1_000_000_000)] = 900_000
    interval_s: Annotated[int, Field(ge=1, le=3600)] = 10

    @model_validator(mode="after")
    def _ordered(self) -> PrefixEviction:
        if self.target_chars > self.threshold_chars:
            raise ValueError(f"target_chars {self.target_chars} is greater than threshold_chars {self.threshold_chars}")
        return self


class Routing(Strict):
    """Which replica a request goes to. prefix_aware: Ray Serve LLM's PrefixCacheAffinityRouter
    (requests sharing a prompt prefix go to the replica whose cache holds it); power_of_two:
    Ray Serve's default (the less loaded of two random replicas); or a router class "module:Class"."""

    policy: Annotated[str, Field(pattern=ROUTING_PATTERN)]
    # prefix_aware: balance load instead of following the prefix once two replicas' queues differ by
    # this much; default: a quarter of target_ongoing_requests, at least 4.
    imbalanced_threshold: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # prefix_aware: follow a prefix only when at least this share of the prompt matches a replica's.
    match_rate_threshold: Annotated[float, Field(ge=0, le=1)] = 0.1
    # prefix_aware: bound the router's prefix tree (always on).
    eviction: PrefixEviction = PrefixEviction()
    # A router class's own keyword arguments.
    kwargs: Annotated[dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")], JsonLike], max_items(32)] = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `routing: prefix_aware` is `routing: {policy: prefix_aware}`.
        return {"policy": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _knobs(self) -> Routing:
        knobs = [k for k in ("imbalanced_threshold", "match_rate_threshold", "eviction") if k in self.model_fields_set]
        if knobs and self.policy != "prefix_aware":
            raise ValueError(f"{', '.join(knobs)} tune prefix_aware routing, not {self.policy}")
        if self.kwargs and self.policy in ROUTING_POLICIES:
            raise ValueError(f"kwargs are for a router class of your own; {self.policy} has typed settings")
        if self.policy.rpartition(":")[2] == "KVAwareRouter":
            raise ValueError(
                "Ray 2.60's KVAwareRouter routes only in direct-streaming mode (one model per app, "
                "HAProxy, the ai-dynamo package); behind this app's shared ingress it picks replicas "
                "at random: use prefix_aware"
            )
        return self


class HealthCheck(Strict):
    """Ray Serve's replica health check (Ray's defaults: every 10 s, 30 s timeout)."""

    period_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=3600)] | None = None


def _env_vars_problem(value: dict[str, str]) -> str | None:
    return next((problem for name, text in value.items() if (problem := env_var_problem(name, text))), None)


class Part(Strict):
    """One side of a disaggregated model: its node pool, tensor parallelism and replica bounds."""

    node_pool: Name
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    replicas: Replicas = Replicas()


class KvTransfer(Strict):
    """How a disaggregated model's prefill engines hand their KV caches to decode engines:
    vLLM's NIXL connector (over EFA between nodes where the pools have it)."""

    connector: Literal["nixl"] = "nixl"


@dataclass(frozen=True)
class Deployment:
    """One Ray Serve deployment of a model, as written: what the planner sizes and places."""

    role: Literal["model", "prefill", "decode"]
    field: str  # where it is written, e.g. "models[2].decode"
    node_pool: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    replicas: Replicas


# Settings of one deployment, written on the model unless it is disaggregated (then per part).
DEPLOYMENT_FIELDS = ("node_pool", "tensor_parallel_size", "pipeline_parallel_size", "replicas")


class Model(Strict):
    id: Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
    weights: Weights = Weights()
    # How it is served (README: "Serving patterns"): standard (one node per replica), multi_node
    # (tensor parallel within a node x pipeline parallel across nodes), data_parallel (a gang of
    # engines with data-parallel attention, for mixture-of-experts models) or disaggregated
    # (prefill and decode on deployments of their own).
    pattern: Pattern = "standard"
    # Every pattern but disaggregated: the pool, parallelism and replicas of its one deployment.
    node_pool: Name | None = None
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    pipeline_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    replicas: Replicas = Replicas()
    # data_parallel: engines per replica, each with tensor_parallel_size GPUs, all on one node;
    # replicas count these gangs.
    data_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    # data_parallel: spread the experts over the gang's GPUs (default on).
    expert_parallel: bool | None = None
    # disaggregated: the prefill and decode deployments, and how KV caches move between them.
    prefill: Part | None = None
    decode: Part | None = None
    kv_transfer: KvTransfer | None = None
    max_model_len: Annotated[int, Field(ge=16, le=10_485_760)]
    lora: Lora = Lora()
    # Passed to vLLM as is (quantization, prefix caching, reasoning parser, ...).
    engine_kwargs: Annotated[EngineKwargs, max_items(MAX_FREE_KEYS)] = EngineKwargs()
    # For the capacity planner: a catalog model (Hugging Face id) or a config.json path.
    # Default: weights.hf_id, lora.base_model, or the catalog model whose name is the id.
    architecture: Text | None = None
    # The requests it serves: load targets are sized from them.
    workload: Workload = Workload()
    # Default: prefix_aware where prefix caching is on (vLLM's default), else power_of_two.
    routing: Routing | None = None
    # The model ships Python code (auto_map in config.json) that vLLM must run: off unless set here,
    # and upload-model refuses such a directory unless asked with --trust-remote-code too.
    trust_remote_code: bool = False
    # Ray Serve load targets per replica; default: derived from the planned KV-cache concurrency.
    target_ongoing_requests: Annotated[float, Field(gt=0)] | None = None
    max_ongoing_requests: Annotated[int, Field(ge=1)] | None = None
    # Escape hatches (Ray Serve deployment settings): extra replica environment variables
    # (not credentials: specs are published and Ray logs them), the health check, how long a
    # stopping replica may finish its requests (Ray's default 20 s), and an LLMServer subclass.
    env_vars: Annotated[dict[str, Text], max_items(MAX_ENV_VARS), rule(_env_vars_problem)] = {}
    health_check: HealthCheck = HealthCheck()
    graceful_shutdown_s: Annotated[float, Field(ge=0, le=86400)] | None = None
    server_cls: Annotated[str, Field(pattern=SERVER_CLS_PATTERN)] | None = None

    @model_validator(mode="after")
    def _load_targets(self) -> Model:
        if self.target_ongoing_requests is not None and self.max_ongoing_requests is not None:
            if problem := load_targets_problem(self.target_ongoing_requests, self.max_ongoing_requests):
                raise ValueError(problem)
        return self

    def pattern_problem(self) -> tuple[str, str] | None:
        """(field, why) if the fields written do not make the model's pattern, else None: which fields
        a disaggregated model takes, then the app contract's rule (`app.spec.pattern_problem`) on what
        the model renders, then what Ray's servers and vLLM allow."""
        written = self.model_fields_set
        pattern = self.pattern
        if pattern == "disaggregated":
            if stray := [f for f in (*DEPLOYMENT_FIELDS, "data_parallel_size") if f in written]:
                return stray[
                    0
                ], "a disaggregated model sets its pool, parallelism and replicas per part, under prefill and decode"
            if self.prefill is None or self.decode is None:
                return ("decode" if self.prefill else "prefill"), "pattern disaggregated needs both prefill and decode"
        # A prefill or decode part stands for the contract's prefill part, kv_transfer for its connector.
        if problem := pattern_problem(
            pattern,
            data_parallel_size=self.data_parallel_size,
            pipeline_parallel_size=self.pipeline_parallel_size,
            expert_parallel=bool(self.expert_parallel) or self.uses_expert_parallel,
            has_prefill=self.prefill is not None or self.decode is not None,
            has_kv_connector=self.kv_transfer is not None or self.connector is not None,
        ):
            field, why = problem
            return {"prefill": "prefill" if self.prefill else "decode", "kv_connector": "kv_transfer"}.get(
                field, field
            ), why
        if pattern != "disaggregated" and self.node_pool is None:
            return "node_pool", "required: the GPU node pool the model runs on"
        if self.weights.hf_token_secret and pattern in ("data_parallel", "disaggregated"):
            return "weights.hf_token_secret", (
                f"gated Hugging Face weights are served by app.gated_server, a standard "
                f"server; pattern {pattern} runs Ray's own servers: publish the weights "
                "to the bucket (llmstacks upload-model)"
            )
        if self.lora.enabled and self.uses_expert_parallel:
            engine = self.engine_kwargs.as_dict()
            if engine.get("all2all_backend", "allgather_reducescatter") != "allgather_reducescatter" or engine.get(
                "fully_sharded_loras"
            ):
                return "lora.enabled", (
                    "vLLM 0.29's mixture-of-experts LoRA with expert parallelism works only with "
                    "all2all_backend allgather_reducescatter and without fully_sharded_loras; "
                    "drop those engine_kwargs or set expert_parallel: false"
                )
        return None

    @property
    def uses_expert_parallel(self) -> bool:
        return self.pattern == "data_parallel" and self.expert_parallel is not False

    @property
    def connector(self) -> KvTransfer | None:
        return (self.kv_transfer or KvTransfer()) if self.pattern == "disaggregated" else None

    def deployments(self, index: int) -> tuple[Deployment, ...]:
        """The model's Ray Serve deployments in serving order (prefill before decode); `index` is
        its position in the environment file, for the fields named in messages."""
        where = f"models[{index}]"
        if self.prefill is not None and self.decode is not None:
            return tuple(
                Deployment(role, f"{where}.{role}", part.node_pool, part.tensor_parallel_size, 1, 1, part.replicas)
                for role, part in (("prefill", self.prefill), ("decode", self.decode))
            )
        assert self.node_pool is not None  # _pattern
        return (
            Deployment(
                "model",
                where,
                self.node_pool,
                self.tensor_parallel_size,
                self.pipeline_parallel_size,
                self.data_parallel_size,
                self.replicas,
            ),
        )

    @property
    def prefix_caching(self) -> bool:
        return self.engine_kwargs.enable_prefix_caching is not False

    @property
    def routing_policy(self) -> Routing:
        """The routing as written, else the default for this model's prefix caching."""
        return self.routing or Routing(policy="prefix_aware" if self.prefix_caching else "power_of_two")
