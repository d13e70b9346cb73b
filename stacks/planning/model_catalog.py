"""Model architectures the capacity planner knows, under their Hugging Face ids.

The fields are those of each model's config.json (what vLLM reads). A model
not listed here is described by its own config.json (`from_config`).
`published_params_b` is the size its authors state, used only to check the
entry: the planner computes parameters and memory from the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infra.rules import quoted
from stacks.inputs import loads_json, read_bounded

GIB = 1024**3


@dataclass(frozen=True)
class Architecture:
    hf_id: str
    layers: int
    hidden: int
    intermediate: int  # dense MLP width (0 for all-MoE models)
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int = 0  # 0: hidden // heads
    tied_embeddings: bool = False
    qkv_bias: bool = False
    experts: int = 0  # MoE: experts per layer (all loaded), their MLP width below
    moe_intermediate: int = 0
    shared_expert_intermediate: int = 0
    # Layers attending to a window of this many tokens (None: every layer attends fully).
    sliding_window: int | None = None
    sliding_layers: int = 0
    # MLA (DeepSeek-V2/V3): the latent KV replaces per-head K and V.
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    weight_bytes_per_param: float = 2.0  # bf16/fp16 checkpoints
    weights_gib: float | None = None  # measured checkpoint size where the format is mixed (e.g. MXFP4)
    published_params_b: float | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer."""
        q = self.heads * self.dim_per_head
        kv = self.kv_heads * self.dim_per_head
        attention = self.hidden * (q + 2 * kv) + q * self.hidden
        if self.qkv_bias:
            attention += q + 2 * kv
        mlp = 3 * self.hidden * self.intermediate
        if self.experts:
            mlp = self.experts * 3 * self.hidden * self.moe_intermediate + self.hidden * self.experts
            mlp += 3 * self.hidden * self.shared_expert_intermediate
        return attention + mlp + 2 * self.hidden

    @property
    def expert_params(self) -> int:
        """Parameters of the routed experts, every layer (gated MLPs: gate, up and down projections).
        Expert parallelism spreads these over GPUs; 0 for a dense model."""
        return self.layers * self.experts * 3 * self.hidden * self.moe_intermediate if self.experts else 0

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.embedding_params + self.hidden

    @property
    def weight_bytes(self) -> float:
        if self.weights_gib is not None:
            return self.weights_gib * GIB
        return self.params * self.weight_bytes_per_param

    def kv_bytes_per_token_per_layer(self, dtype_bytes: float, tensor_parallel: int) -> float:
        """K and V of one token in one layer, on one GPU."""
        if self.is_mla:  # one latent vector per token, the same on every GPU
            return (self.kv_lora_rank + self.qk_rope_head_dim) * dtype_bytes
        # vLLM splits KV heads across tensor-parallel ranks and replicates them when there are fewer heads than ranks.
        heads_per_gpu = max(1, self.kv_heads // tensor_parallel)
        return 2 * heads_per_gpu * self.dim_per_head * dtype_bytes


def _llama(
    hf_id: str,
    layers: int,
    hidden: int,
    intermediate: int,
    heads: int,
    params: float,
    *,
    head_dim: int = 0,
    tied: bool = False,
    vocab: int = 128256,
) -> Architecture:
    return Architecture(
        hf_id,
        layers,
        hidden,
        intermediate,
        heads,
        8,
        vocab,
        head_dim=head_dim,
        tied_embeddings=tied,
        published_params_b=params,
    )


def _qwen2(
    hf_id: str,
    layers: int,
    hidden: int,
    intermediate: int,
    heads: int,
    kv_heads: int,
    params: float,
    *,
    tied: bool = False,
    vocab: int = 152064,
) -> Architecture:
    return Architecture(
        hf_id,
        layers,
        hidden,
        intermediate,
        heads,
        kv_heads,
        vocab,
        tied_embeddings=tied,
        qkv_bias=True,
        published_params_b=params,
    )


def _qwen3(
    hf_id: str,
    layers: int,
    hidden: int,
    intermediate: int,
    heads: int,
    params: float,
    *,
    tied: bool = False,
    kv_heads: int = 8,
) -> Architecture:
    return Architecture(
        hf_id,
        layers,
        hidden,
        intermediate,
        heads,
        kv_heads,
        151936,
        head_dim=128,
        tied_embeddings=tied,
        published_params_b=params,
    )


CATALOG: dict[str, Architecture] = {
    a.hf_id.lower(): a
    for a in (
        _llama("meta-llama/Llama-3.2-1B-Instruct", 16, 2048, 8192, 32, 1.24, head_dim=64, tied=True),
        _llama("meta-llama/Llama-3.2-3B-Instruct", 28, 3072, 8192, 24, 3.21, head_dim=128, tied=True),
        _llama("meta-llama/Llama-3.1-8B-Instruct", 32, 4096, 14336, 32, 8.03),
        _llama("meta-llama/Llama-3.1-70B-Instruct", 80, 8192, 28672, 64, 70.6),
        _llama("meta-llama/Llama-3.1-405B-Instruct", 126, 16384, 53248, 128, 405.9),
        _qwen2("Qwen/Qwen2.5-0.5B-Instruct", 24, 896, 4864, 14, 2, 0.49, tied=True, vocab=151936),
        _qwen2("Qwen/Qwen2.5-1.5B-Instruct", 28, 1536, 8960, 12, 2, 1.54, tied=True, vocab=151936),
        _qwen2("Qwen/Qwen2.5-3B-Instruct", 36, 2048, 11008, 16, 2, 3.09, tied=True, vocab=151936),
        _qwen2("Qwen/Qwen2.5-7B-Instruct", 28, 3584, 18944, 28, 4, 7.61),
        _qwen2("Qwen/Qwen2.5-14B-Instruct", 48, 5120, 13824, 40, 8, 14.7),
        _qwen2("Qwen/Qwen2.5-32B-Instruct", 64, 5120, 27648, 40, 8, 32.5),
        _qwen2("Qwen/Qwen2.5-72B-Instruct", 80, 8192, 29568, 64, 8, 72.7),
        _qwen3("Qwen/Qwen3-0.6B", 28, 1024, 3072, 16, 0.6, tied=True),
        _qwen3("Qwen/Qwen3-1.7B", 28, 2048, 6144, 16, 1.7, tied=True),
        _qwen3("Qwen/Qwen3-4B", 36, 2560, 9728, 32, 4.0, tied=True),
        _qwen3("Qwen/Qwen3-8B", 36, 4096, 12288, 32, 8.2),
        _qwen3("Qwen/Qwen3-14B", 40, 5120, 17408, 40, 14.8),
        _qwen3("Qwen/Qwen3-32B", 64, 5120, 25600, 64, 32.8),
        Architecture(
            "Qwen/Qwen3-30B-A3B",
            48,
            2048,
            0,
            32,
            4,
            151936,
            head_dim=128,
            experts=128,
            moe_intermediate=768,
            published_params_b=30.5,
        ),
        Architecture(
            "Qwen/Qwen3-235B-A22B",
            94,
            4096,
            0,
            64,
            4,
            151936,
            head_dim=128,
            experts=128,
            moe_intermediate=1536,
            published_params_b=235.0,
        ),
        Architecture("mistralai/Mistral-7B-Instruct-v0.3", 32, 4096, 14336, 32, 8, 32768, published_params_b=7.25),
        Architecture(
            "mistralai/Mixtral-8x7B-Instruct-v0.1",
            32,
            4096,
            0,
            32,
            8,
            32000,
            experts=8,
            moe_intermediate=14336,
            published_params_b=46.7,
        ),
        # gpt-oss: MoE weights in MXFP4 (4.25 bits), the rest bf16; every other layer attends to 128 tokens.
        Architecture(
            "openai/gpt-oss-20b",
            24,
            2880,
            0,
            64,
            8,
            201088,
            head_dim=64,
            experts=32,
            moe_intermediate=2880,
            qkv_bias=True,
            sliding_window=128,
            sliding_layers=12,
            weights_gib=12.8,
            published_params_b=20.9,
        ),
        Architecture(
            "openai/gpt-oss-120b",
            36,
            2880,
            0,
            64,
            8,
            201088,
            head_dim=64,
            experts=128,
            moe_intermediate=2880,
            qkv_bias=True,
            sliding_window=128,
            sliding_layers=18,
            weights_gib=60.8,
            published_params_b=116.8,
        ),
        # DeepSeek-R1 distills: Qwen2.5 and Llama 3 architectures.
        _qwen2("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 28, 1536, 8960, 12, 2, 1.78, vocab=151936),
        _qwen2("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 28, 3584, 18944, 28, 4, 7.62),
        _qwen2("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", 48, 5120, 13824, 40, 8, 14.8),
        _qwen2("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 64, 5120, 27648, 40, 8, 32.8),
        _llama("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 32, 4096, 14336, 32, 8.03),
        _llama("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", 80, 8192, 28672, 64, 70.6),
    )
}


def find(name: str) -> Architecture | None:
    """A catalog entry by Hugging Face id, or by its last component ("qwen2.5-7b-instruct"); any case."""
    key = name.strip().rstrip("/").lower()
    if key in CATALOG:
        return CATALOG[key]
    matches = [a for k, a in CATALOG.items() if k.rsplit("/", 1)[-1] == key.rsplit("/", 1)[-1]]
    return matches[0] if len(matches) == 1 else None


CONFIG_MAX_BYTES = 1024 * 1024  # a config.json is a few KiB
SIZE_MAX = 1 << 30  # any dimension or count beyond this is not a real model


def from_config(path: Path) -> Architecture:
    """An architecture from a Hugging Face config.json. ValueError names what is missing or
    malformed; ConfigError if the file cannot be read or is not a bounded JSON document."""
    text = read_bounded(Path(path), CONFIG_MAX_BYTES, "a config.json").decode("utf-8")
    config = loads_json(text)
    if isinstance(config, dict) and isinstance(config.get("text_config"), dict):
        config = config["text_config"]  # multimodal wrappers
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a JSON object")

    def number(*keys: str, default: int | None = None) -> int:
        """The first of `keys` present, a positive int (0 allowed as a default only)."""
        for key in keys:
            value = config.get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SIZE_MAX:
                raise ValueError(f"{path}: {key} is {quoted(value)}, not a whole number")
            return value
        if default is None:
            raise ValueError(f"{path}: no {keys[0]}")
        return default

    heads = number("num_attention_heads")
    layers = number("num_hidden_layers", "n_layer")
    if heads == 0 or layers == 0:
        raise ValueError(f"{path}: num_attention_heads and num_hidden_layers must be positive")
    layer_types = config.get("layer_types") or []
    if not isinstance(layer_types, list):
        raise ValueError(f"{path}: layer_types is not a list")
    sliding = sum(1 for t in layer_types if t == "sliding_attention")
    use_sliding = config.get("use_sliding_window", True) is not False
    window = number("sliding_window", default=0) if (sliding or use_sliding) else 0
    if window and not layer_types:
        sliding = layers if use_sliding and config.get("model_type") in ("mistral",) else 0
    quantized = config.get("quantization_config") if isinstance(config.get("quantization_config"), dict) else {}
    bits = {"awq": 0.5, "gptq": 0.5, "fp8": 1.0, "compressed-tensors": 1.0, "mxfp4": 0.53}.get(
        str(quantized.get("quant_method", ""))
    )
    dtype_bytes = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}.get(str(config.get("torch_dtype", "bfloat16")), 2.0)
    intermediate = number("intermediate_size", default=0)
    return Architecture(
        hf_id=str(path),
        layers=layers,
        hidden=number("hidden_size", "n_embd"),
        intermediate=intermediate,
        heads=heads,
        kv_heads=number("num_key_value_heads", default=0) or heads,
        vocab=number("vocab_size"),
        head_dim=number("head_dim", default=0),
        tied_embeddings=config.get("tie_word_embeddings") is True,
        qkv_bias=config.get("attention_bias") is True,
        experts=number("num_local_experts", "num_experts", "n_routed_experts", default=0),
        moe_intermediate=number("moe_intermediate_size", default=0) or intermediate,
        shared_expert_intermediate=number("shared_expert_intermediate_size", default=0),
        sliding_window=window if sliding and window else None,
        sliding_layers=sliding if window else 0,
        kv_lora_rank=number("kv_lora_rank", default=0),
        qk_rope_head_dim=number("qk_rope_head_dim", default=0),
        weight_bytes_per_param=bits if bits is not None else dtype_bytes,
    )
