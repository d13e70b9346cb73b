"""The models an environment serves: where weights come from, replicas, LoRA, engine settings."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.spec import HF_ID_PATTERN, LORA_RANKS, MODEL_ID_PATTERN, load_targets_problem, weights_source_problem
from infra import rules
from stacks.config.fields import ENGINE_KEY_PATTERN, MAX_FREE_KEYS, JsonLike, Name, Strict, Text, max_items, rule


class Weights(Strict):
    """Where a model's weights come from: the weights bucket (default) or the Hugging Face Hub."""

    # bucket: published to models/<model id>/ in the weights bucket (llmstacks upload-model).
    source: Literal["bucket", "huggingface"] = "bucket"
    hf_id: Annotated[str, Field(pattern=HF_ID_PATTERN)] | None = None
    # Name of an AWS Secrets Manager secret holding the Hugging Face token for gated models.
    hf_token_secret: Annotated[str, rule(rules.secret_name_problem)] | None = None

    @model_validator(mode="after")
    def _source_fields(self) -> Weights:
        if problem := weights_source_problem(self.source, self.hf_id, self.hf_token_secret):
            raise ValueError(problem)
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
    __pydantic_extra__: dict[Annotated[str, Field(pattern=ENGINE_KEY_PATTERN)], JsonLike]

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
    engine_kwargs: Annotated[EngineKwargs, max_items(MAX_FREE_KEYS)] = EngineKwargs()
    # For the capacity planner: a catalog model (Hugging Face id) or a config.json path.
    # Default: weights.hf_id, lora.base_model, or the catalog model whose name is the id.
    architecture: Text | None = None
    # The objective an alert holds this model to: time to first token, p95, over 10 minutes.
    ttft_p95_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0
    # The model ships Python code (auto_map in config.json) that vLLM must run: off unless set here,
    # and upload-model refuses such a directory unless asked with --trust-remote-code too.
    trust_remote_code: bool = False
    # Ray Serve load targets per replica; default: derived from the planned KV-cache concurrency.
    target_ongoing_requests: Annotated[float, Field(gt=0)] | None = None
    max_ongoing_requests: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _load_targets(self) -> Model:
        if self.target_ongoing_requests is not None and self.max_ongoing_requests is not None:
            if problem := load_targets_problem(self.target_ongoing_requests, self.max_ongoing_requests):
                raise ValueError(problem)
        return self
