"""Capacity planner: what vLLM 0.29 will report at start-up, computed before anything is deployed.

It follows `Worker.determine_available_memory` and `kv_cache_utils`:

    requested   = total GPU memory x gpu_memory_utilization
    KV cache    = requested - weights - activation peak - non-torch memory - CUDA graphs
    blocks      = KV cache // (16 tokens x KV bytes per token)
    concurrency = blocks / ceil(max_model_len / 16)        ("Maximum concurrency for N tokens")

Weights, KV bytes per token and block arithmetic are exact for the catalog's
architectures, on the most loaded GPU: a pipeline stage holds ceil(layers / pp)
layers and, with pp > 1, one vocab x hidden matrix (embedding or LM head), all
divided by tensor parallelism, except that with expert parallelism over E GPUs
a mixture-of-experts layer's routed experts (layers x experts x 3 x hidden x
moe_intermediate parameters) are not divided: each GPU holds ceil(experts / E)
of them whole. Checkpoints given by size (MXFP4) are taken to keep all but the
experts in 16 bits. The activation peak (a profile run of max_num_batched_tokens
tokens and a sampler pass of max_num_seqs), non-torch memory (CUDA context,
NCCL buffers) and CUDA graph memory are estimated; README documents the method
and its expected error. Sliding-window layers need only their window
(+ a batch of new tokens) per request; MLA models keep one latent per token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from infra.catalog import GPUS, Gpu
from stacks.planning.model_catalog import GIB, Architecture

BLOCK_SIZE = 16
# KV-cache dtypes the planner models (others count as 16 bits: fewer tokens, never more).
KV_DTYPE_BYTES = {"auto": None, "bfloat16": 2.0, "float16": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}
WEIGHT_DTYPE_BYTES = {"auto": None, "bfloat16": 2.0, "float16": 2.0, "half": 2.0, "float32": 4.0, "float": 4.0}
QUANTIZATION_BYTES = {"fp8": 1.0, "awq": 0.5, "gptq": 0.5, "bitsandbytes": 0.5}
DEFAULT_UTILIZATION = 0.9


@dataclass(frozen=True)
class CapacityPlan:
    model: str
    gpu: str
    tensor_parallel: int
    pipeline_parallel: int
    expert_parallel: int  # GPUs the routed experts are spread over (1: divided by tensor parallelism)
    max_model_len: int
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    dtype: str
    kv_cache_dtype: str
    quantization: str | None
    requested_gib_per_gpu: float
    weights_gib_per_gpu: float
    activation_gib_per_gpu: float
    non_torch_gib_per_gpu: float
    cuda_graph_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    kv_bytes_per_token: int  # per GPU, across its layers
    kv_cache_tokens: int
    max_concurrency: float  # requests of max_model_len tokens, as vLLM logs it
    fits: bool
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        data = asdict(self)
        data["problems"], data["notes"] = list(self.problems), list(self.notes)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 3)
        return data


def batch_defaults(gpu: Gpu) -> tuple[int, int]:
    """vLLM's defaults for an OpenAI server (max_num_batched_tokens, max_num_seqs) on this GPU."""
    if gpu.usable_gib >= 160:
        return 16384, 1024
    if gpu.usable_gib >= 70 and not gpu.name.startswith("A100"):
        return 8192, 1024
    return 2048, 256


def plan(
    arch: Architecture,
    gpu: Gpu,
    *,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    max_model_len: int,
    gpu_memory_utilization: float = DEFAULT_UTILIZATION,
    dtype: str = "auto",
    kv_cache_dtype: str = "auto",
    quantization: str | None = None,
    max_num_batched_tokens: int | None = None,
    max_num_seqs: int | None = None,
    expert_parallel: int = 1,
) -> CapacityPlan:
    """What vLLM will report for one engine. `expert_parallel`: the GPUs a mixture-of-experts
    model's experts are spread over (data_parallel x tensor_parallel with expert parallelism);
    1: experts are split like every other layer, by tensor parallelism."""
    tp, pp = tensor_parallel, pipeline_parallel
    problems, notes = [], []
    if arch.heads % tp:
        problems.append(f"{arch.heads} attention heads do not divide by tensor_parallel_size {tp} (vLLM requires it)")
    if pp > arch.layers:
        problems.append(f"pipeline_parallel_size {pp} exceeds the model's {arch.layers} layers")
    default_tokens, default_seqs = batch_defaults(gpu)
    tokens = max_num_batched_tokens or default_tokens
    seqs = max_num_seqs or default_seqs

    if quantization and quantization not in QUANTIZATION_BYTES:
        notes.append(f"quantization {quantization!r} is not modelled: weights are taken at the checkpoint's size")
    moe = arch.experts > 0 and arch.moe_intermediate > 0
    ep = expert_parallel if moe else 1
    if expert_parallel > 1 and not moe:
        notes.append(f"expert_parallel {expert_parallel} has no effect: {arch.hf_id} is not a mixture-of-experts model")
    weights = _weights_per_gpu(arch, tp, pp, ep, quantization, dtype, notes)

    act_bytes = 2.0
    # Expert parallelism keeps each expert whole on its GPU: its MLP width is not divided by tp.
    moe_width = arch.moe_intermediate * min(arch.experts, 8) / (1 if ep > 1 else tp) if arch.experts else 0
    mlp_width = max(arch.intermediate / tp, moe_width)
    per_token = (4 * arch.hidden + 2 * mlp_width + 2 * (arch.heads * arch.dim_per_head) / tp) * act_bytes
    # The sampler's profile pass: fp32 logits (and their softmax) for max_num_seqs requests.
    activation = tokens * per_token + 2 * seqs * arch.vocab / tp * 4
    non_torch = 0.45 * GIB + (0.35 * GIB if tp * pp > 1 or ep > 1 else 0.0)
    cuda_graphs = min(1.5 * GIB, (0.15 + 0.008 * math.ceil(arch.layers / pp)) * GIB)

    requested = gpu.usable_gib * GIB * gpu_memory_utilization
    kv_cache = requested - weights - activation - non_torch - cuda_graphs

    kv_bytes = KV_DTYPE_BYTES.get(kv_cache_dtype) or 2.0
    layers_per_gpu = math.ceil(arch.layers / pp)
    sliding_per_gpu = math.ceil(arch.sliding_layers / pp) if arch.sliding_window else 0
    per_layer = arch.kv_bytes_per_token_per_layer(kv_bytes, tp)
    kv_per_token = per_layer * layers_per_gpu
    full_blocks = math.ceil(max_model_len / BLOCK_SIZE)
    if sliding_per_gpu:
        # A sliding layer holds its window plus the tokens being added, never more than the request.
        window_blocks = min(full_blocks, math.ceil((arch.sliding_window + tokens) / BLOCK_SIZE))
        per_request = (
            BLOCK_SIZE
            * per_layer
            * ((layers_per_gpu - sliding_per_gpu) * full_blocks + sliding_per_gpu * window_blocks)
        )
        concurrency = max(0.0, kv_cache) / per_request
        cache_tokens = int(max(0.0, kv_cache) // (per_layer * (layers_per_gpu - sliding_per_gpu) or 1))
        notes.append(f"{arch.sliding_layers} of {arch.layers} layers attend to a {arch.sliding_window}-token window")
    else:
        blocks = int(max(0.0, kv_cache) // (BLOCK_SIZE * kv_per_token))
        concurrency = blocks / full_blocks
        cache_tokens = blocks * BLOCK_SIZE
    if arch.is_mla:
        notes.append("MLA: one latent KV vector per token, replicated on every tensor-parallel rank")
    if tp > arch.kv_heads and not arch.is_mla:
        notes.append(f"{arch.kv_heads} KV heads on {tp} ranks: vLLM replicates them")

    if kv_cache <= 0:
        problems.append(
            f"the weights and runtime need {(requested - kv_cache) / GIB:.1f} GiB per GPU but "
            f"{gpu_memory_utilization:.2f} x {gpu.usable_gib} GiB = {requested / GIB:.1f} GiB is available: no room for a KV cache"
        )
    elif concurrency < 1:
        problems.append(
            f"the KV cache holds {cache_tokens:,} tokens, less than one request of max_model_len {max_model_len:,}"
        )
    return CapacityPlan(
        model=arch.hf_id,
        gpu=gpu.name,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        expert_parallel=ep,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        max_num_batched_tokens=tokens,
        max_num_seqs=seqs,
        dtype=dtype,
        kv_cache_dtype=kv_cache_dtype,
        quantization=quantization,
        requested_gib_per_gpu=requested / GIB,
        weights_gib_per_gpu=weights / GIB,
        activation_gib_per_gpu=activation / GIB,
        non_torch_gib_per_gpu=non_torch / GIB,
        cuda_graph_gib_per_gpu=cuda_graphs / GIB,
        kv_cache_gib_per_gpu=kv_cache / GIB,
        kv_bytes_per_token=int(kv_per_token),
        kv_cache_tokens=cache_tokens,
        max_concurrency=concurrency,
        fits=not problems,
        problems=tuple(problems),
        notes=tuple(notes),
    )


def _weights_per_gpu(
    arch: Architecture, tp: int, pp: int, ep: int, quantization: str | None, dtype: str, notes: list[str]
) -> float:
    """Weight bytes on the most loaded GPU of one engine.

    A pipeline stage holds ceil(layers / pp) decoder layers (vLLM gives the first stages any
    remainder) and, when pp > 1, one vocab x hidden matrix (the embedding on the first stage,
    the LM head on the last); with pp = 1 the one stage holds both (one if they are tied).
    Tensor parallelism divides a stage by tp. With expert parallelism (ep > 1) a mixture-of-experts
    layer's routed experts are not divided by tp: the ep GPUs each hold ceil(experts / ep) experts
    whole (vLLM's enable_expert_parallel); attention, embeddings, router and shared experts
    stay divided by tp.
    """
    quantized = quantization in QUANTIZATION_BYTES
    bytes_per_param = (
        QUANTIZATION_BYTES[quantization] if quantized else WEIGHT_DTYPE_BYTES.get(dtype) or arch.weight_bytes_per_param
    )
    # Quantized checkpoints keep embeddings and the LM head in 16 bits.
    embedding_per_param = 2.0 if quantized else bytes_per_param
    embedding_bytes = arch.embedding_params * embedding_per_param
    if arch.weights_gib is not None and not quantization and dtype == "auto":
        total = arch.weight_bytes
        notes.append("weights from the published checkpoint size (mixed-precision format)")
        # Mixed-precision MoE checkpoints (MXFP4) pack the routed experts and keep everything else
        # in 16 bits: the experts are what the checkpoint holds beyond the rest at 16 bits.
        rest_16 = (arch.params - arch.expert_params) * 2.0
        expert_bytes = (
            total - rest_16 if arch.expert_params and total > rest_16 else total * arch.expert_params / arch.params
        )
        if ep > 1:
            notes.append(
                f"experts taken as {expert_bytes / GIB:.1f} GiB of the checkpoint: its size less the "
                "non-expert parameters at 16 bits"
            )
    else:
        expert_bytes = arch.expert_params * bytes_per_param
        total = (arch.params - arch.embedding_params) * bytes_per_param + embedding_bytes
    layer_bytes = total - embedding_bytes - expert_bytes  # attention, norms, routers, shared experts
    stage_share = math.ceil(arch.layers / pp) / arch.layers
    stage_embedding = arch.vocab * arch.hidden * embedding_per_param if pp > 1 else embedding_bytes
    dense = (layer_bytes * stage_share + stage_embedding) / tp
    if ep > 1:
        held = math.ceil(arch.experts / ep)
        notes.append(
            f"expert parallel over {ep} GPUs: each holds {held} of the {arch.experts} experts of a layer "
            f"whole; attention and embeddings are divided by tensor_parallel_size {tp}"
        )
        return dense + expert_bytes * stage_share * held / arch.experts
    return dense + expert_bytes * stage_share / tp


# Scale out while the replicas still have room: a new replica takes minutes to start.
SCALE_OUT_AT = 0.8


@dataclass(frozen=True)
class LoadTargets:
    """Ray Serve's load targets for a replica, and how they were derived (for people)."""

    target_ongoing_requests: float
    max_ongoing_requests: int
    reasoning: str


def requests_held(capacity: CapacityPlan, tokens: int) -> int:
    """How many requests of `tokens` tokens (prompt + output) the KV cache holds at once."""
    return capacity.kv_cache_tokens // (math.ceil(tokens / BLOCK_SIZE) * BLOCK_SIZE)


def load_targets(capacity: CapacityPlan, *, typical_tokens: int, p95_tokens: int) -> LoadTargets:
    """(target_ongoing_requests, max_ongoing_requests) from the KV cache and the workload's request lengths.

    A replica holds `kv_cache_tokens / typical` typical requests at once; Ray Serve adds replicas
    once they average SCALE_OUT_AT of that. It admits at most as many as still fit with one of
    them at the p95 length (the rest typical), so a long request does not make vLLM preempt.
    Both are capped by vLLM's max_num_seqs, the most sequences it runs at once.
    """
    seqs = capacity.max_num_seqs
    held = requests_held(capacity, typical_tokens)
    p95_room = capacity.kv_cache_tokens - math.ceil(p95_tokens / BLOCK_SIZE) * BLOCK_SIZE
    maximum = max(1, min(seqs, 1 + p95_room // (math.ceil(typical_tokens / BLOCK_SIZE) * BLOCK_SIZE)))
    target = max(1, min(maximum, math.floor(held * SCALE_OUT_AT)))
    reasoning = (
        f"KV cache {capacity.kv_cache_tokens:,} tokens holds {held:,} typical requests ({typical_tokens:,} tokens); "
        f"target {target} = {SCALE_OUT_AT:.0%} of that, max {maximum} = one p95 request ({p95_tokens:,} tokens) "
        f"plus typical ones; both at most max_num_seqs {seqs}"
    )
    return LoadTargets(float(target), maximum, reasoning)


def options(arch: Architecture, gpu: Gpu, capacity: CapacityPlan) -> str:
    """Concrete changes that make a model fit, each checked with the planner."""
    c = capacity

    def fits(**change) -> bool:
        settings = dict(
            tensor_parallel=c.tensor_parallel,
            pipeline_parallel=c.pipeline_parallel,
            expert_parallel=c.expert_parallel,
            max_model_len=c.max_model_len,
            gpu_memory_utilization=c.gpu_memory_utilization,
            dtype=c.dtype,
            kv_cache_dtype=c.kv_cache_dtype,
            quantization=c.quantization,
            max_num_batched_tokens=c.max_num_batched_tokens,
            max_num_seqs=c.max_num_seqs,
        )
        target = change.pop("gpu", gpu)
        return plan(arch, target, **{**settings, **change}).fits

    ways = []
    # Experts spread over data_parallel x tensor_parallel GPUs: as many more as tp grows.
    tp = next(
        (
            t
            for t in (2, 4, 8)
            if t > c.tensor_parallel
            and arch.heads % t == 0
            and fits(tensor_parallel=t, expert_parallel=max(1, c.expert_parallel * t // c.tensor_parallel))
        ),
        None,
    )
    if tp:
        ways.append(f"tensor_parallel_size {tp} (a pool with {tp * c.pipeline_parallel} GPUs per node)")
    larger = next(
        (g for g in sorted(GPUS.values(), key=lambda g: g.usable_gib) if g.usable_gib > gpu.usable_gib and fits(gpu=g)),
        None,
    )
    if larger:
        ways.append(f"a larger GPU ({larger.name}, {larger.usable_gib} GiB)")
    if (
        c.quantization is None
        and arch.weights_gib is None
        and arch.weight_bytes_per_param >= 2
        and fits(quantization="fp8")
    ):
        ways.append("fp8 weights (engine_kwargs.quantization: fp8)")
    if c.kv_cache_dtype == "auto" and fits(kv_cache_dtype="fp8"):
        ways.append("an fp8 KV cache (engine_kwargs.kv_cache_dtype: fp8)")
    if c.kv_cache_tokens >= BLOCK_SIZE:
        ways.append(f"max_model_len at most {c.kv_cache_tokens:,}")
    return "; ".join(ways) or "none alone: combine a larger GPU with more tensor parallelism"
