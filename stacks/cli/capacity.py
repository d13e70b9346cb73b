"""`llmstacks plan-capacity`: GPU memory, KV cache and concurrency of a model, as vLLM will report them.

Two ways to ask: a model and its parallelism from flags (one GPU type, optionally an instance
type for nodes and cost), or the models of an environment file as planned for synth, each of
their deployments (a disaggregated model's prefill and decode) on its own pool.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infra.catalog import GPUS, INSTANCE_TYPES, PRICES_AS_OF, InstanceType, gpu_instance
from stacks.cli.arguments import ENV_DIR_HELP, environment_file, fraction, positive
from stacks.cli.status_codes import SUCCESS
from stacks.config.models import Workload
from stacks.errors import ConfigError
from stacks.planning.capacity import (
    KV_DTYPE_BYTES,
    WEIGHT_DTYPE_BYTES,
    CapacityPlan,
    LoadTargets,
    load_targets,
    options,
    plan,
)
from stacks.planning.model_catalog import CATALOG, Architecture, find, from_config
from stacks.planning.plan import EnvironmentPlan, ModelPlan, PartPlan, plan_file
from stacks.planning.pools import nodes_per_replica

EPILOG = """\
From flags: --model, --gpu (or --instance-type) and --max-model-len; a replica is
--data-parallel engines of --tensor-parallel x --pipeline-parallel GPUs each
(GPUs per replica = dp x tp x pp). --expert-parallel spreads a mixture-of-experts
model's experts over the dp x tp GPUs of a pipeline stage instead of dividing them by tp.
--instance-type adds nodes per replica and its on-demand cost.

From an environment (--env NAME or --config PATH, --model ID to pick one model): every
model as synth plans it, each deployment (prefill and decode of a disaggregated model)
on its own pool, with its cost at min and max replicas.

--json, from flags: the engine's figures (model, gpu, tensor_parallel, pipeline_parallel,
expert_parallel, max_model_len, weights_gib_per_gpu, kv_cache_gib_per_gpu,
kv_bytes_per_token, kv_cache_tokens, max_concurrency, fits, problems, notes, ...),
"load_targets" {target_ongoing_requests, max_ongoing_requests, reasoning} when it fits,
and "replica" {data_parallel, gpus_per_engine, gpus_per_replica, max_concurrency,
instance_type, nodes_per_replica, cost_per_hour} (the last three null without
--instance-type).
--json, from an environment: {environment, source, cost_per_hour: {min, max}, models:
[{id, pattern, architecture, max_model_len, parts: [{role, field, node_pool,
instance_type, shape, replicas: {min, max}, gpus_per_engine, gpus_per_replica,
nodes_per_replica, max_concurrency_per_replica, cost_per_hour: {min, max},
load_targets: {...}, capacity: {the engine's figures, as from flags}}]}]}.
Costs are on-demand USD per hour; a part's cost counts the nodes its own replicas take,
the environment's counts every pool (min_size included)."""

# The flags that describe a model by hand; an environment's models are planned as written.
FLAG_DEFAULTS = {
    "gpu": None,
    "instance_type": None,
    "tensor_parallel": 1,
    "pipeline_parallel": 1,
    "data_parallel": 1,
    "expert_parallel": False,
    "max_model_len": None,
    "gpu_memory_utilization": 0.9,
    "dtype": "auto",
    "kv_cache_dtype": "auto",
    "quantization": None,
    "max_num_batched_tokens": None,
    "max_num_seqs": None,
    "prompt_tokens": None,
    "prompt_tokens_p95": None,
    "output_tokens": None,
    "output_tokens_p95": None,
}


def register(commands) -> None:
    capacity = commands.add_parser(
        "plan-capacity",
        help="GPU memory, KV cache and concurrency of a model, as vLLM will report them",
        description="GPU memory, KV cache and concurrency of a model, as vLLM will report them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    capacity.add_argument(
        "--model",
        metavar="NAME_OR_CONFIG_JSON",
        help="a catalog model (Hugging Face id) or a config.json; "
        "with --env/--config, the id of one of the environment's models",
    )
    capacity.add_argument("--gpu", metavar="GPU", help="A10G, L4, L40S, A100-40G, A100-80G, H100, H200 or B200")
    capacity.add_argument(
        "--instance-type",
        metavar="TYPE",
        help="an EC2 GPU instance type (p5.48xlarge): its GPU, GPUs per node and price",
    )
    capacity.add_argument("--tensor-parallel", type=positive, metavar="N")
    capacity.add_argument("--pipeline-parallel", type=positive, metavar="P")
    capacity.add_argument("--data-parallel", type=int, metavar="D", help="engines per replica (default 1)")
    capacity.add_argument(
        "--expert-parallel",
        action="store_true",
        default=None,
        help="mixture-of-experts: spread the experts over data-parallel x tensor-parallel GPUs",
    )
    capacity.add_argument("--max-model-len", type=positive, metavar="L")
    capacity.add_argument("--gpu-memory-utilization", type=fraction, metavar="U", help="default 0.9")
    capacity.add_argument("--dtype", metavar="D", help="weights: auto, bfloat16, float16, float32")
    capacity.add_argument("--kv-cache-dtype", metavar="K", help="auto, fp8, ...")
    capacity.add_argument("--quantization", metavar="Q", help="fp8, awq, gptq, bitsandbytes")
    capacity.add_argument("--max-num-batched-tokens", type=positive, metavar="T")
    capacity.add_argument("--max-num-seqs", type=positive, metavar="S")
    chat = Workload()
    capacity.add_argument(
        "--prompt-tokens",
        type=positive,
        metavar="N",
        help=f"typical prompt length (default {chat.prompt_tokens.typical}, a chat workload)",
    )
    capacity.add_argument("--prompt-tokens-p95", type=positive, metavar="N", help=f"default {chat.prompt_tokens.p95}")
    capacity.add_argument("--output-tokens", type=positive, metavar="N", help=f"default {chat.output_tokens.typical}")
    capacity.add_argument("--output-tokens-p95", type=positive, metavar="N", help=f"default {chat.output_tokens.p95}")
    capacity.add_argument("--env", metavar="NAME", help="plan the models of this environment")
    capacity.add_argument("--config", metavar="PATH", help="plan the models of this environment file")
    capacity.add_argument("--env-dir", metavar="DIR", help=ENV_DIR_HELP)
    capacity.add_argument("--json", action="store_true", help="one JSON object (shape below)")
    capacity.add_argument("--list", action="store_true", help="list the catalog's models and GPUs")
    capacity.set_defaults(func=cmd_plan_capacity)


def _architecture(name: str) -> Architecture:
    if name.endswith(".json"):
        try:
            return from_config(Path(name))
        except FileNotFoundError:
            raise ConfigError(name, "", "no such file") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(name, "", f"not a usable config.json ({exc})".replace(f"{name}: ", "")) from None
    arch = find(name)
    if arch is None:
        raise ConfigError(
            "--model",
            "",
            f"{name!r} is not in the catalog (`llmstacks plan-capacity --list`); pass the model's config.json instead",
        )
    return arch


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def cmd_plan_capacity(args: argparse.Namespace) -> int:
    if args.list:
        for arch in CATALOG.values():
            moe = f", {arch.experts} experts" if arch.experts else ""
            print(f"{arch.hf_id:45s} {arch.params / 1e9:7.1f}B  {arch.layers} layers, {arch.kv_heads} KV heads{moe}")
        print("GPUs: " + ", ".join(f"{g.name} ({g.usable_gib} GiB)" for g in GPUS.values()))
        return SUCCESS
    if args.env or args.config:
        return _environment(args)
    for name, default in FLAG_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return _from_flags(args)


# ------------------------------------------------------------------ from flags


def _instance(args: argparse.Namespace) -> InstanceType | None:
    if args.instance_type is None:
        return None
    instance = gpu_instance(args.instance_type)
    if instance is None:
        gpus = sorted(name for name in INSTANCE_TYPES if gpu_instance(name))
        raise ConfigError(
            "--instance-type",
            "",
            f"{args.instance_type!r} is not a GPU instance type of the catalog (e.g. {', '.join(gpus[:4])}, ...)",
        )
    return instance


def _from_flags(args: argparse.Namespace) -> int:
    instance = _instance(args)
    if not args.model or not (args.gpu or instance) or not args.max_model_len:
        raise ConfigError("plan-capacity", "", "give --model, --gpu and --max-model-len (or --list, or --env/--config)")
    arch = _architecture(args.model)
    if args.gpu:
        gpu = GPUS.get(args.gpu) or next((g for g in GPUS.values() if g.name.lower() == args.gpu.lower()), None)
        if gpu is None:
            raise ConfigError("--gpu", "", f"unknown GPU {args.gpu!r} (known: {', '.join(GPUS)})")
        if instance is not None and instance.gpu.name != gpu.name:
            raise ConfigError(
                "--gpu", "", f"{gpu.name}, but --instance-type {instance.name} has {instance.gpu.name} GPUs"
            )
    else:
        gpu = instance.gpu
    if args.dtype not in WEIGHT_DTYPE_BYTES:
        raise ConfigError("--dtype", "", f"{args.dtype!r}: one of {', '.join(WEIGHT_DTYPE_BYTES)}")
    if args.kv_cache_dtype not in KV_DTYPE_BYTES:
        raise ConfigError("--kv-cache-dtype", "", f"{args.kv_cache_dtype!r}: one of {', '.join(KV_DTYPE_BYTES)}")
    tp, pp, dp = args.tensor_parallel, args.pipeline_parallel, args.data_parallel
    if dp < 1:
        raise ConfigError("--data-parallel", "", f"{dp}: a replica runs at least 1 engine")
    if args.expert_parallel and not arch.experts:
        raise ConfigError(
            "--expert-parallel", "", f"{arch.hf_id} is not a mixture-of-experts model: it has no experts to spread"
        )
    if instance is not None and dp * tp > instance.gpus:
        raise ConfigError(
            "--data-parallel" if dp > 1 else "--tensor-parallel",
            "",
            f"data_parallel {dp} x tensor_parallel {tp} = {dp * tp} GPUs do not fit one {instance.name} "
            f"({instance.gpus} x {instance.gpu.name}): tensor parallelism and a data-parallel gang stay within a node",
        )
    if instance is not None and dp * tp * pp > instance.gpus and (dp > 1 or tp != instance.gpus):
        # As pattern multi_node places it: one pipeline stage per whole node.
        raise ConfigError(
            "--tensor-parallel",
            "",
            f"{dp * tp * pp} GPUs per replica span {instance.name} nodes "
            f"({instance.gpus} GPUs each): a replica wider than a node runs one pipeline stage per node, "
            f"so --tensor-parallel must be {instance.gpus} (and --data-parallel 1)",
        )
    chat = Workload()
    tokens = {
        "prompt": (args.prompt_tokens or chat.prompt_tokens.typical, args.prompt_tokens_p95 or chat.prompt_tokens.p95),
        "output": (args.output_tokens or chat.output_tokens.typical, args.output_tokens_p95 or chat.output_tokens.p95),
    }
    for kind, (typical, p95) in tokens.items():
        if typical > p95:
            raise ConfigError(f"--{kind}-tokens", "", f"the typical length is longer than --{kind}-tokens-p95")
    capacity = plan(
        arch,
        gpu,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        dtype=args.dtype,
        kv_cache_dtype=args.kv_cache_dtype,
        quantization=args.quantization,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_num_seqs=args.max_num_seqs,
        expert_parallel=dp * tp if args.expert_parallel else 1,
    )
    (prompt, prompt_p95), (output, output_p95) = tokens["prompt"], tokens["output"]
    targets = (
        load_targets(capacity, typical_tokens=prompt + output, p95_tokens=prompt_p95 + output_p95)
        if capacity.fits
        else None
    )
    replica = _replica(capacity, dp, instance)
    if args.json:
        data = capacity.as_dict()
        if targets is not None:
            data["load_targets"] = _targets(targets)
        data["replica"] = replica
        print(json.dumps(data, indent=2))
    else:
        print(_report(arch, capacity, targets, replica))
    return SUCCESS


def _replica(c: CapacityPlan, dp: int, instance: InstanceType | None) -> dict:
    engine = c.tensor_parallel * c.pipeline_parallel
    nodes = nodes_per_replica(engine * dp, instance.gpus) if instance else None
    return {
        "data_parallel": dp,
        "gpus_per_engine": engine,
        "gpus_per_replica": engine * dp,
        "max_concurrency": round(c.max_concurrency * dp, 3),
        "instance_type": instance.name if instance else None,
        "nodes_per_replica": nodes,
        "cost_per_hour": round(nodes * instance.price_per_hour, 4) if instance else None,
    }


def _targets(t: LoadTargets) -> dict:
    return {
        "target_ongoing_requests": t.target_ongoing_requests,
        "max_ongoing_requests": t.max_ongoing_requests,
        "reasoning": t.reasoning,
    }


def _shape(c: CapacityPlan, dp: int) -> str:
    shape = f"tp {c.tensor_parallel} x pp {c.pipeline_parallel}"
    if dp > 1:
        shape = f"dp {dp} x tp {c.tensor_parallel}" + (
            f" x pp {c.pipeline_parallel}" if c.pipeline_parallel > 1 else ""
        )
    if c.expert_parallel > 1:
        shape += f", experts over {c.expert_parallel} GPUs"
    return shape


def _report(arch: Architecture, c: CapacityPlan, targets: LoadTargets | None, replica: dict) -> str:
    dp = replica["data_parallel"]
    lines = [
        f"{c.model} on {replica['gpus_per_replica']} x {c.gpu} ({_shape(c, dp)}), "
        f"max_model_len {c.max_model_len:,}, gpu_memory_utilization {c.gpu_memory_utilization}",
        *_engine_lines(c, dp),
        *(f"  note: {note}" for note in c.notes),
    ]
    if replica["instance_type"]:
        lines.append(
            f"  replica: {replica['gpus_per_replica']} GPUs on {replica['nodes_per_replica']} x "
            f"{replica['instance_type']}, ${replica['cost_per_hour']:,.2f}/h on demand"
        )
    if c.fits:
        lines.append("  fits")
        if targets is not None:
            lines.append(
                f"  load targets: target_ongoing_requests {targets.target_ongoing_requests:g}, "
                f"max_ongoing_requests {targets.max_ongoing_requests}: {targets.reasoning}"
            )
    else:
        lines += [f"  does not fit: {c.problems[0]}", f"  options: {options(arch, GPUS[c.gpu], c)}"]
    return "\n".join(lines)


def _engine_lines(c: CapacityPlan, dp: int, indent: str = "  ") -> list[str]:
    per_replica = f", {c.max_concurrency * dp:.2f}x per replica of {dp} engines" if dp > 1 else ""
    return [
        f"{indent}per GPU: {c.requested_gib_per_gpu:.2f} GiB usable = weights {c.weights_gib_per_gpu:.2f} + activations "
        f"{c.activation_gib_per_gpu:.2f} + non-torch {c.non_torch_gib_per_gpu:.2f} + CUDA graphs {c.cuda_graph_gib_per_gpu:.2f} "
        f"+ KV cache {c.kv_cache_gib_per_gpu:.2f}",
        f"{indent}KV cache: {c.kv_bytes_per_token:,} bytes per token per GPU, {c.kv_cache_tokens:,} tokens"
        + (" per engine" if dp > 1 else ""),
        f"{indent}maximum concurrency for {c.max_model_len:,} tokens per request: {c.max_concurrency:.2f}x"
        + (" per engine" if dp > 1 else "")
        + per_replica,
    ]


# ------------------------------------------------------------------ from an environment


def _environment(args: argparse.Namespace) -> int:
    if args.env and args.config:
        raise ConfigError("--env", "", "give --env or --config, not both")
    given = [_flag(name) for name in FLAG_DEFAULTS if getattr(args, name) is not None]
    if given:
        raise ConfigError(
            given[0],
            "",
            "describes a model by hand; an environment's models are planned as written "
            "(drop it, or drop --env/--config)",
        )
    env_plan = plan_file(environment_file(args))
    models = list(env_plan.models)
    if args.model:
        models = [m for m in models if m.id == args.model]
        if not models:
            raise ConfigError(
                "--model",
                "",
                f"{args.model!r} is not a model of {env_plan.source} "
                f"(its models: {', '.join(m.id for m in env_plan.models) or 'none'})",
            )
    if args.json:
        print(json.dumps(_environment_json(env_plan, models), indent=2))
    else:
        print(_environment_report(env_plan, models, every=not args.model))
    return SUCCESS


def _part_json(part: PartPlan) -> dict:
    return {
        "role": part.role,
        "field": part.field,
        "node_pool": part.pool.name,
        "instance_type": part.pool.config.instance_types[0],
        "shape": part.shape,
        "replicas": {"min": part.replicas.min, "max": part.replicas.max},
        "gpus_per_engine": part.gpus_per_engine,
        "gpus_per_replica": part.gpus_per_replica,
        "nodes_per_replica": part.nodes_per_replica,
        "max_concurrency_per_replica": round(part.capacity.max_concurrency * part.deployment.data_parallel_size, 3),
        "cost_per_hour": {at: round(part.cost_per_hour(at), 4) for at in ("min", "max")},
        "load_targets": _targets(part.load),
        "capacity": part.capacity.as_dict(),
    }


def _environment_json(env_plan: EnvironmentPlan, models: list[ModelPlan]) -> dict:
    return {
        "environment": env_plan.env.name,
        "source": env_plan.source,
        "cost_per_hour": {at: round(env_plan.cost_per_hour(at), 4) for at in ("min", "max")},
        "models": [
            {
                "id": m.id,
                "pattern": m.pattern,
                "architecture": m.architecture.hf_id,
                "max_model_len": m.config.max_model_len,
                "parts": [_part_json(p) for p in m.parts],
            }
            for m in models
        ],
    }


def _environment_report(env_plan: EnvironmentPlan, models: list[ModelPlan], every: bool) -> str:
    lines = [f"environment {env_plan.env.name} ({env_plan.source})"]
    for m in models:
        lines.append(f"{m.id} ({m.pattern}, {m.architecture.hf_id}), max_model_len {m.config.max_model_len:,}")
        for part in m.parts:
            c, dp = part.capacity, part.deployment.data_parallel_size
            pool = part.pool
            lines += [
                f"  {part.role} ({part.field}): pool {pool.name} ({pool.config.instance_types[0]}, "
                f"{pool.gpus_per_node} x {pool.gpu.name}), {_shape(c, dp)}: {part.gpus_per_replica} GPUs and "
                f"{part.nodes_per_replica} node{'s' if part.nodes_per_replica > 1 else ''} per replica, "
                f"replicas {part.replicas.min}-{part.replicas.max}",
                *_engine_lines(c, dp, indent="    "),
                *(f"    note: {note}" for note in c.notes),
                f"    load targets: target_ongoing_requests {part.load.target_ongoing_requests:g}, "
                f"max_ongoing_requests {part.load.max_ongoing_requests}: {part.load.reasoning}",
                f"    cost: ${part.cost_per_hour('min'):,.2f}/h at min replicas, ${part.cost_per_hour('max'):,.2f}/h at max "
                "(the nodes its replicas take)",
            ]
    if every:
        lines.append(
            f"GPU cost: ${env_plan.cost_per_hour('min'):,.2f}/h at min replicas, "
            f"${env_plan.cost_per_hour('max'):,.2f}/h at max (every pool, min_size included; on-demand, "
            f"us-east-1 prices of {PRICES_AS_OF})"
        )
    return "\n".join(lines)
