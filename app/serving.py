"""The Ray Serve application: `app.serving:build_app` is the spec's import_path.

Ray Serve calls `build_app(args)` on the cluster with the spec's `args`
(`app.spec.AppArgs`).  Gated Hugging Face models: the args name a Secrets
Manager secret; `build_app` checks it is readable and each replica reads it
itself (`app.gated_server`), so the token is in no spec, config or log. Each model becomes a vLLM-backed `LLMServer`
deployment behind Ray Serve LLM's OpenAI-compatible ingress, with weights
from the weights bucket and LoRA adapters loaded on demand from the LoRA
bucket.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from app.secrets import read_secret_string
from app.spec import HF_TOKEN_SECRET_ENV, AppArgs, ModelSpec, adapters_uri, weights_uri
from app.streaming import STREAM_LOAD_FORMAT, streamer_env

logger = logging.getLogger(__name__)

# Inside the replicas: the gated-model server reads the token itself.
GATED_SERVER_CLS = "app.gated_server:GatedModelServer"


class InvalidAppArgs(ValueError):
    """The application's args do not match `AppArgs`; the message names the model and field."""


def parse_args(args: dict[str, Any]) -> AppArgs:
    try:
        return AppArgs.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidAppArgs(f"invalid application args: {_where(args, first['loc'])}: {_message(first)}") from None


def llm_config_dict(spec: AppArgs, model: ModelSpec) -> dict[str, Any]:
    """The `LLMConfig` of one model, as the dict Ray Serve LLM validates."""
    engine_kwargs = {
        **model.engine_kwargs,
        "tensor_parallel_size": model.tensor_parallel_size,
        "pipeline_parallel_size": model.pipeline_parallel_size,
        "max_model_len": model.max_model_len,
    }
    if model.trust_remote_code:
        engine_kwargs["trust_remote_code"] = True
    # Ray skips its own download for streaming formats and vLLM reads s3:// directly; "auto" is
    # vLLM's default, from the files Ray downloaded (or Hugging Face).
    engine_kwargs["load_format"] = STREAM_LOAD_FORMAT if model.load == "stream" else "auto"
    lora_config = None
    if model.lora is not None:
        # Ray loads adapters from S3 but leaves the engine's LoRA switches to us.
        engine_kwargs.update(
            enable_lora=True,
            max_lora_rank=model.lora.max_rank,
            max_loras=model.lora.max_adapters_per_replica,
        )
        lora_config = {
            "dynamic_lora_loading_path": adapters_uri(spec.lora_bucket, model.id),
            "max_num_adapters_per_replica": model.lora.max_adapters_per_replica,
        }
    source = weights_uri(spec.weights_bucket, model.id) if model.weights == "bucket" else model.hf_id
    # Replicas read S3 with boto3: without a region, LoRA reads can fail.
    env_vars = {**model.env_vars, "AWS_REGION": spec.region, "AWS_DEFAULT_REGION": spec.region}
    if spec.s3_endpoint_url:
        env_vars["AWS_ENDPOINT_URL_S3"] = spec.s3_endpoint_url
    if model.load == "stream":
        env_vars.update(streamer_env(region=spec.region, endpoint_url=spec.s3_endpoint_url,
                                     concurrency=model.stream_concurrency))
    if model.hf_token_secret:
        # The secret's name only: Ray logs runtime envs.
        env_vars[HF_TOKEN_SECRET_ENV] = model.hf_token_secret
    autoscaling: dict[str, Any] = {
        "min_replicas": model.min_replicas,
        "initial_replicas": max(model.min_replicas, 1),
        "max_replicas": model.max_replicas,
        "target_ongoing_requests": model.target_ongoing_requests,
    }
    for key in ("upscale_delay_s", "downscale_delay_s"):
        if (value := getattr(model, key)) is not None:
            autoscaling[key] = value
    # Ray's defaults (1e9 for both load targets) never scale up under load.
    deployment: dict[str, Any] = {"max_ongoing_requests": model.max_ongoing_requests, "autoscaling_config": autoscaling}
    for key in ("health_check_period_s", "health_check_timeout_s", "graceful_shutdown_timeout_s"):
        if (value := getattr(model, key)) is not None:
            deployment[key] = value
    if model.routing is not None:
        deployment["request_router_config"] = model.routing.model_dump()
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": model.id, "model_source": source},
        "engine_kwargs": engine_kwargs,
        "accelerator_type": model.accelerator_type,
        "deployment_config": deployment,
        "runtime_env": {"env_vars": env_vars},
        "log_engine_metrics": True,
    }
    if model.placement is not None:
        config["placement_group_config"] = model.placement.model_dump()
    if lora_config is not None:
        config["lora_config"] = lora_config
    if model.server_cls is not None:
        config["server_cls"] = model.server_cls
    elif model.hf_token_secret:
        config["server_cls"] = GATED_SERVER_CLS
    return config


def llm_configs(args: dict[str, Any]) -> list[Any]:
    """Validate `args` and build one `ray.serve.llm.LLMConfig` per model."""
    from ray.serve.llm import LLMConfig  # noqa: PLC0415  (needs vLLM installed)

    from app.gated_server import GatedModelServer  # noqa: PLC0415

    spec = parse_args(args)
    # Fail the deploy now, not at each replica start, if a token is unreadable.
    for name in sorted({m.hf_token_secret for m in spec.models if m.hf_token_secret}):
        read_secret_string(name, spec.region)
    configs = []
    for i, model in enumerate(spec.models):
        where = f"invalid application args: models[{i}] ({model.id})"
        try:
            config = LLMConfig(**llm_config_dict(spec, model))
        except ValidationError as exc:
            raise InvalidAppArgs(f"{where}: {exc.errors()[0]['msg']}") from None
        except (ValueError, ImportError, AttributeError) as exc:
            raise InvalidAppArgs(f"{where}: {exc}") from None
        if model.hf_token_secret and not issubclass(config.server_cls, GatedModelServer):
            raise InvalidAppArgs(f"{where}.server_cls: a gated model's server must subclass app.gated_server.GatedModelServer")
        configs.append(config)
    logger.info("serving %d model(s): %s", len(configs), ", ".join(m.id for m in spec.models))
    return configs


def build_app(args: dict[str, Any]):
    """Ray Serve application builder: OpenAI-compatible ingress over one LLMServer per model."""
    from ray.serve.llm import build_openai_app  # noqa: PLC0415

    return build_openai_app({"llm_configs": llm_configs(args)})


def _where(args: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """`models[1] (llama-8b).max_model_len`: the field, with the model's id when there is one."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if loc[:i] == ("models",):
                models = args.get("models")
                if isinstance(models, list) and part < len(models) and isinstance(models[part], dict) and "id" in models[part]:
                    out += f" ({models[part]['id']})"
        else:
            out += f".{part}" if out else str(part)
    return out or "args"


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required field is missing"
    return error["msg"].removeprefix("Value error, ")
