"""`llmstacks plan-capacity`: GPU memory, KV cache and concurrency of a model, as vLLM will report them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infra.catalog import GPUS
from stacks.cli.arguments import fraction, positive
from stacks.errors import ConfigError
from stacks.config.models import Workload
from stacks.planning.capacity import KV_DTYPE_BYTES, WEIGHT_DTYPE_BYTES, CapacityPlan, LoadTargets, load_targets, options, plan
from stacks.planning.model_catalog import CATALOG, Architecture, find, from_config


def register(commands) -> None:
    capacity = commands.add_parser("plan-capacity", help="GPU memory, KV cache and concurrency of a model, as vLLM will report them")
    capacity.add_argument("--model", metavar="NAME_OR_CONFIG_JSON", help="a catalog model (Hugging Face id) or a config.json")
    capacity.add_argument("--gpu", metavar="GPU", help="A10G, L4, L40S, A100-40G, A100-80G, H100, H200 or B200")
    capacity.add_argument("--tensor-parallel", type=positive, default=1, metavar="N")
    capacity.add_argument("--pipeline-parallel", type=positive, default=1, metavar="P")
    capacity.add_argument("--max-model-len", type=positive, metavar="L")
    capacity.add_argument("--gpu-memory-utilization", type=fraction, default=0.9, metavar="U")
    capacity.add_argument("--dtype", default="auto", metavar="D", help="weights: auto, bfloat16, float16, float32")
    capacity.add_argument("--kv-cache-dtype", default="auto", metavar="K", help="auto, fp8, ...")
    capacity.add_argument("--quantization", metavar="Q", help="fp8, awq, gptq, bitsandbytes")
    capacity.add_argument("--max-num-batched-tokens", type=positive, metavar="T")
    capacity.add_argument("--max-num-seqs", type=positive, metavar="S")
    chat = Workload()
    capacity.add_argument("--prompt-tokens", type=positive, default=chat.prompt_tokens.typical, metavar="N",
                          help=f"typical prompt length (default {chat.prompt_tokens.typical}, a chat workload)")
    capacity.add_argument("--prompt-tokens-p95", type=positive, default=chat.prompt_tokens.p95, metavar="N")
    capacity.add_argument("--output-tokens", type=positive, default=chat.output_tokens.typical, metavar="N")
    capacity.add_argument("--output-tokens-p95", type=positive, default=chat.output_tokens.p95, metavar="N")
    capacity.add_argument("--json", action="store_true", help="one JSON object")
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
        raise ConfigError("--model", "", f"{name!r} is not in the catalog (`llmstacks plan-capacity --list`); "
                                         "pass the model's config.json instead")
    return arch


def cmd_plan_capacity(args: argparse.Namespace) -> int:
    if args.list:
        for arch in CATALOG.values():
            print(f"{arch.hf_id:45s} {arch.params / 1e9:7.1f}B  {arch.layers} layers, {arch.kv_heads} KV heads")
        print("GPUs: " + ", ".join(f"{g.name} ({g.usable_gib} GiB)" for g in GPUS.values()))
        return 0
    if not args.model or not args.gpu or not args.max_model_len:
        raise ConfigError("plan-capacity", "", "give --model, --gpu and --max-model-len (or --list)")
    arch = _architecture(args.model)
    gpu = GPUS.get(args.gpu) or next((g for g in GPUS.values() if g.name.lower() == args.gpu.lower()), None)
    if gpu is None:
        raise ConfigError("--gpu", "", f"unknown GPU {args.gpu!r} (known: {', '.join(GPUS)})")
    if args.dtype not in WEIGHT_DTYPE_BYTES:
        raise ConfigError("--dtype", "", f"{args.dtype!r}: one of {', '.join(WEIGHT_DTYPE_BYTES)}")
    if args.kv_cache_dtype not in KV_DTYPE_BYTES:
        raise ConfigError("--kv-cache-dtype", "", f"{args.kv_cache_dtype!r}: one of {', '.join(KV_DTYPE_BYTES)}")
    capacity = plan(arch, gpu, tensor_parallel=args.tensor_parallel, pipeline_parallel=args.pipeline_parallel,
                    max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
                    dtype=args.dtype, kv_cache_dtype=args.kv_cache_dtype, quantization=args.quantization,
                    max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs)
    for kind in ("prompt", "output"):
        if getattr(args, f"{kind}_tokens") > getattr(args, f"{kind}_tokens_p95"):
            raise ConfigError(f"--{kind}-tokens", "", f"the typical length is longer than --{kind}-tokens-p95")
    targets = load_targets(capacity, typical_tokens=args.prompt_tokens + args.output_tokens,
                           p95_tokens=args.prompt_tokens_p95 + args.output_tokens_p95) if capacity.fits else None
    if args.json:
        data = capacity.as_dict()
        if targets is not None:
            data["load_targets"] = {"target_ongoing_requests": targets.target_ongoing_requests,
                                    "max_ongoing_requests": targets.max_ongoing_requests, "reasoning": targets.reasoning}
        print(json.dumps(data, indent=2))
    else:
        print(_report(arch, capacity, targets))
    return 0


def _report(arch: Architecture, c: CapacityPlan, targets: LoadTargets | None) -> str:
    lines = [
        f"{c.model} on {c.tensor_parallel * c.pipeline_parallel} x {c.gpu} (tp {c.tensor_parallel} x pp {c.pipeline_parallel}), "
        f"max_model_len {c.max_model_len:,}, gpu_memory_utilization {c.gpu_memory_utilization}",
        f"  per GPU: {c.requested_gib_per_gpu:.2f} GiB usable = weights {c.weights_gib_per_gpu:.2f} + activations "
        f"{c.activation_gib_per_gpu:.2f} + non-torch {c.non_torch_gib_per_gpu:.2f} + CUDA graphs {c.cuda_graph_gib_per_gpu:.2f} "
        f"+ KV cache {c.kv_cache_gib_per_gpu:.2f}",
        f"  KV cache: {c.kv_bytes_per_token:,} bytes per token per GPU, {c.kv_cache_tokens:,} tokens",
        f"  maximum concurrency for {c.max_model_len:,} tokens per request: {c.max_concurrency:.2f}x",
        *(f"  note: {note}" for note in c.notes),
    ]
    if c.fits:
        lines.append("  fits")
        if targets is not None:
            lines.append(f"  load targets: target_ongoing_requests {targets.target_ongoing_requests:g}, "
                         f"max_ongoing_requests {targets.max_ongoing_requests}: {targets.reasoning}")
    else:
        lines += [f"  does not fit: {c.problems[0]}", f"  options: {options(arch, GPUS[c.gpu], c)}"]
    return "\n".join(lines)
