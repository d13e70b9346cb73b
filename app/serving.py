"""The Ray Serve application: `app.serving:build_app` is the spec's import_path.

Ray Serve calls `build_app(args)` on the cluster with the spec's `args`
(`app.spec.AppArgs`) and gets one application: Ray Serve LLM's
OpenAI-compatible ingress over every model, whatever its serving pattern,
each model's deployments built by Ray's own builders and server classes:

- standard, multi_node: one `LLMServer` deployment (`build_llm_deployment`);
  multi_node is only its pipeline_parallel_size and placement.
- data_parallel: a `DPServer` deployment (`build_dp_deployment`): gangs of
  data_parallel_size replicas, one engine each.
- disaggregated: a `PDPrefillServer` and a `PDDecodeServer` deployment (as
  `build_pd_openai_app`), KV caches moved by vLLM's KV connector; the
  ingress calls decode, which calls prefill.

Weights come from the weights bucket and LoRA adapters are loaded on demand
from the LoRA bucket. Gated Hugging Face models: the args name a Secrets
Manager secret; `build_app` checks it is readable and each replica reads it
itself (`app.gated_server`), so the token is in no spec, config or log.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import types
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.secrets import read_secret_string
from app.spec import (
    HF_TOKEN_SECRET_ENV,
    KV_CONNECTORS,
    AppArgs,
    ModelSpec,
    PrefillSpec,
    adapters_uri,
    weights_uri,
)
from app.streaming import STREAM_LOAD_FORMAT, streamer_env

logger = logging.getLogger(__name__)

# Inside the replicas: the gated-model server reads the token itself.
GATED_SERVER_CLS = "app.gated_server:GatedModelServer"
# Ray Serve LLM's switch making each LLM server its own ingress: one model per application only.
DIRECT_STREAMING_ENV = "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING"
# The deployment name prefixes of a disaggregated model's legs, as `build_pd_openai_app` names them.
PREFILL_PREFIX = "Prefill:"
DECODE_PREFIX = "Decode:"


class InvalidAppArgs(ValueError):
    """The application's args do not match `AppArgs`; the message names the model and field."""


@functools.cache
def ray_serve_llm() -> types.SimpleNamespace:
    """Ray Serve LLM's pieces this app composes (needs vLLM installed): from its public facade,
    `ray.serve.llm`, wherever Ray 2.60 offers them there."""
    # The ingress, its routes (as build_openai_app wires them), and the builders and server classes
    # of each pattern: one LLMServer deployment (standard, multi_node), the DPServer deployment
    # (data_parallel), a prefill and a decode deployment (disaggregated).
    from ray.serve.llm import LLMConfig, LLMServer, build_dp_deployment, build_llm_deployment
    from ray.serve.llm.deployment import DPServer, PDDecodeServer, PDPrefillServer
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    # Not in the facade of Ray 2.60, which uses them inside build_openai_app and build_pd_openai_app:
    # the /v1/models card of a config (Ray's own OpenAiIngress example imports it from here too), and
    # build_pd_openai_app's checks of a prefill and decode pair.
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.serving_patterns.prefill_decode.builder import PDServingArgs

    return types.SimpleNamespace(
        LLMConfig=LLMConfig,
        OpenAiIngress=OpenAiIngress,
        make_fastapi_ingress=make_fastapi_ingress,
        to_model_metadata=to_model_metadata,
        build_llm_deployment=build_llm_deployment,
        LLMServer=LLMServer,
        build_dp_deployment=build_dp_deployment,
        DPServer=DPServer,
        PDServingArgs=PDServingArgs,
        PDPrefillServer=PDPrefillServer,
        PDDecodeServer=PDDecodeServer,
    )


def parse_args(args: dict[str, Any]) -> AppArgs:
    try:
        return AppArgs.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidAppArgs(f"invalid application args: {_where(args, first['loc'])}: {_message(first)}") from None


def llm_config_dict(spec: AppArgs, model: ModelSpec) -> dict[str, Any]:
    """The `LLMConfig` of one model, as the dict Ray Serve LLM validates: a disaggregated model's decode leg."""
    return _config_dict(spec, model, model)


def prefill_config_dict(spec: AppArgs, model: ModelSpec) -> dict[str, Any]:
    """The `LLMConfig` of a disaggregated model's prefill leg: the decode leg's, with the
    prefill part's accelerator, tensor parallelism, replicas, load targets and placement."""
    if model.prefill is None:
        raise ValueError(f"model {model.id} has no prefill part (pattern {model.pattern})")
    return _config_dict(spec, model, model.prefill)


def _config_dict(spec: AppArgs, model: ModelSpec, part: ModelSpec | PrefillSpec) -> dict[str, Any]:
    """The LLMConfig dict of `model`, with the GPUs, replicas and load targets of `part` (the model or its prefill)."""
    engine_kwargs = {
        **model.engine_kwargs,
        "tensor_parallel_size": part.tensor_parallel_size,
        "pipeline_parallel_size": model.pipeline_parallel_size,
        "max_model_len": model.max_model_len,
    }
    if model.trust_remote_code:
        engine_kwargs["trust_remote_code"] = True
    # Ray skips its own download for streaming formats and vLLM reads s3:// directly; "auto" is
    # vLLM's default, from the files Ray downloaded (or Hugging Face).
    engine_kwargs["load_format"] = STREAM_LOAD_FORMAT if model.load == "stream" else "auto"
    if model.pattern == "data_parallel":
        # DPServer sets each engine's rank and the gang's address itself.
        engine_kwargs["data_parallel_size"] = model.data_parallel_size
        if model.expert_parallel:
            engine_kwargs["enable_expert_parallel"] = True
    if model.kv_connector is not None:
        # Each leg both sends and receives KV caches, as Ray's P/D examples set it.
        engine_kwargs["kv_transfer_config"] = {"kv_connector": KV_CONNECTORS[model.kv_connector], "kv_role": "kv_both"}
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
    source = weights_uri(spec.weights_bucket, model.id, model.snapshot) if model.snapshot else model.hf_id
    # Replicas read S3 with boto3: without a region, LoRA reads can fail.
    env_vars = {**model.env_vars, "AWS_REGION": spec.region, "AWS_DEFAULT_REGION": spec.region}
    if spec.s3_endpoint_url:
        env_vars["AWS_ENDPOINT_URL_S3"] = spec.s3_endpoint_url
    if model.load == "stream":
        env_vars.update(
            streamer_env(region=spec.region, endpoint_url=spec.s3_endpoint_url, concurrency=model.stream_concurrency)
        )
    if model.hf_token_secret:
        # The secret's name only: Ray logs runtime envs.
        env_vars[HF_TOKEN_SECRET_ENV] = model.hf_token_secret
    autoscaling: dict[str, Any] = {
        "min_replicas": part.min_replicas,
        "initial_replicas": max(part.min_replicas, 1),
        "max_replicas": part.max_replicas,
        "target_ongoing_requests": part.target_ongoing_requests,
    }
    for key in ("upscale_delay_s", "downscale_delay_s"):
        if (value := getattr(model, key)) is not None:
            autoscaling[key] = value
    # Ray's defaults (1e9 for both load targets) never scale up under load.
    deployment: dict[str, Any] = {"max_ongoing_requests": part.max_ongoing_requests, "autoscaling_config": autoscaling}
    for key in ("health_check_period_s", "health_check_timeout_s", "graceful_shutdown_timeout_s"):
        if (value := getattr(model, key)) is not None:
            deployment[key] = value
    if model.routing is not None:
        deployment["request_router_config"] = model.routing.model_dump()
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": model.id, "model_source": source},
        "engine_kwargs": engine_kwargs,
        "accelerator_type": part.accelerator_type,
        "deployment_config": deployment,
        "runtime_env": {"env_vars": env_vars},
        "log_engine_metrics": True,
    }
    if part.placement is not None:
        config["placement_group_config"] = part.placement.model_dump()
    if lora_config is not None:
        config["lora_config"] = lora_config
    if model.server_cls is not None:
        config["server_cls"] = model.server_cls
    elif model.hf_token_secret and model.pattern in ("standard", "multi_node"):
        # data_parallel and disaggregated get the token fetch mixed into Ray's server classes (_gated).
        config["server_cls"] = GATED_SERVER_CLS
    return config


@dataclass(frozen=True)
class ServedModel:
    """One model as Ray Serve LLM takes it: its LLMConfig (decode's, if disaggregated), the prefill
    leg's, and the server class of each deployment."""

    index: int
    model: ModelSpec
    config: Any  # LLMConfig
    server_cls: type
    prefill_config: Any = None  # LLMConfig of the prefill leg, disaggregated only
    prefill_server_cls: type | None = None


def served_models(args: dict[str, Any]) -> list[ServedModel]:
    """Validate `args` with the app contract and Ray's own config checks, one `ServedModel` per model."""
    llm = ray_serve_llm()
    spec = parse_args(args)
    # Fail the deploy now, not at each replica start, if a token is unreadable.
    for name in sorted({m.hf_token_secret for m in spec.models if m.hf_token_secret}):
        read_secret_string(name, spec.region)
    served = []
    for i, model in enumerate(spec.models):
        with _naming(i, model):
            config = llm.LLMConfig(**llm_config_dict(spec, model))
            if model.pattern == "disaggregated":
                if model.server_cls is not None:
                    raise _Field(
                        "server_cls",
                        "pattern disaggregated is served by Ray's PDPrefillServer and "
                        "PDDecodeServer; remove server_cls",
                    )
                # Ray's own P/D checks: one model id, LoRA on both legs from one path, a KV connector on
                # both; and it moves decode's NIXL side channel off prefill's default port.
                pd = llm.PDServingArgs.model_validate(
                    {"prefill_config": llm.LLMConfig(**prefill_config_dict(spec, model)), "decode_config": config}
                )
                served.append(
                    ServedModel(
                        i,
                        model,
                        pd.decode_config,
                        _gated(model, llm.PDDecodeServer),
                        pd.prefill_config,
                        _gated(model, llm.PDPrefillServer),
                    )
                )
                continue
            if model.pattern == "data_parallel":
                server_cls = config.server_cls or _gated(model, llm.DPServer)
                if not (isinstance(server_cls, type) and issubclass(server_cls, llm.DPServer)):
                    raise _Field(
                        "server_cls",
                        "pattern data_parallel needs a subclass of Ray's DPServer (ray.serve.llm.deployment.DPServer)",
                    )
            else:
                server_cls = config.server_cls or llm.LLMServer
            if model.hf_token_secret and not _is_gated(server_cls):
                raise _Field("server_cls", "a gated model's server must subclass app.gated_server.GatedModelServer")
            served.append(ServedModel(i, model, config, server_cls))
    logger.info("serving %d model(s): %s", len(served), ", ".join(f"{s.model.id} ({s.model.pattern})" for s in served))
    return served


def llm_configs(args: dict[str, Any]) -> list[Any]:
    """Validate `args` and build one `ray.serve.llm.LLMConfig` per model (a disaggregated model's decode leg)."""
    return [s.config for s in served_models(args)]


def build_app(args: dict[str, Any]):
    """Ray Serve application builder: one OpenAI-compatible ingress over every model's deployments."""
    if os.environ.get(DIRECT_STREAMING_ENV, "0") == "1":
        raise InvalidAppArgs(
            f"invalid application args: {DIRECT_STREAMING_ENV}=1 is set in the environment: this app composes "
            "several models behind one OpenAI ingress, and Ray Serve LLM's direct streaming (each model's server "
            "as its own ingress) is not supported; unset it"
        )
    from ray import serve

    llm = ray_serve_llm()
    served = served_models(args)
    llm_deployments = {s.model.id: _deployment(llm, s) for s in served}
    configs = [s.config for s in served]  # what the ingress serves: decode, for a disaggregated model
    # As build_openai_app wires its ingress.
    options = llm.OpenAiIngress.get_deployment_options(configs)
    ingress_cls = llm.make_fastapi_ingress(llm.OpenAiIngress)
    return serve.deployment(ingress_cls, **options).bind(
        llm_deployments=llm_deployments,
        model_cards={c.model_id: llm.to_model_metadata(c.model_id, c) for c in configs},
        lora_paths={c.model_id: c.lora_config.dynamic_lora_loading_path for c in configs if c.lora_config is not None},
    )


def _deployment(llm: types.SimpleNamespace, served: ServedModel):
    """The model's deployment the ingress calls, built by Ray's builder for its pattern."""
    with _naming(served.index, served.model):
        if served.model.pattern == "data_parallel":
            return llm.build_dp_deployment(served.config, deployment_cls=served.server_cls)
        if served.model.pattern == "disaggregated":
            # As build_pd_openai_app (without data parallel legs).
            prefill = llm.build_llm_deployment(
                served.prefill_config, name_prefix=PREFILL_PREFIX, deployment_cls=served.prefill_server_cls
            )
            return llm.build_llm_deployment(
                served.config,
                name_prefix=DECODE_PREFIX,
                bind_kwargs={"prefill_server": prefill},
                deployment_cls=served.server_cls,
            )
        return llm.build_llm_deployment(served.config, deployment_cls=served.server_cls)


def _is_gated(server_cls: type) -> bool:
    from app.gated_server import GatedModelServer

    return issubclass(server_cls, GatedModelServer)


def _gated(model: ModelSpec, server_cls: type) -> type:
    """Ray's server class, with the gated-model token fetch before its engine starts when `model` is gated."""
    return _with_token_fetch(server_cls) if model.hf_token_secret else server_cls


@functools.cache
def _with_token_fetch(server_cls: type) -> type:
    from app.gated_server import GatedModelServer

    # GatedModelServer.__init__ stores the token, then runs server_cls's __init__ (the MRO's next).
    return type(f"Gated{server_cls.__name__}", (GatedModelServer, server_cls), {"__module__": __name__})


class _Field(ValueError):
    """A problem with one field of the model, named after the model."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@contextlib.contextmanager
def _naming(index: int, model: ModelSpec):
    """Turns what Ray (or this module) refuses about model `index` into a one-line `InvalidAppArgs` naming it."""
    where = f"invalid application args: models[{index}] ({model.id})"
    try:
        yield
    except InvalidAppArgs:
        raise
    except _Field as exc:
        raise InvalidAppArgs(f"{where}.{exc.field}: {exc}") from None
    except ValidationError as exc:
        raise InvalidAppArgs(f"{where}: {_one_line(exc.errors()[0]['msg'])}") from None
    except (ValueError, TypeError, ImportError, AttributeError) as exc:
        raise InvalidAppArgs(f"{where}: {_one_line(str(exc))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _where(args: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """`models[1] (llama-8b).max_model_len`: the field, with the model's id when there is one."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if loc[:i] == ("models",):
                models = args.get("models")
                if (
                    isinstance(models, list)
                    and part < len(models)
                    and isinstance(models[part], dict)
                    and "id" in models[part]
                ):
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
