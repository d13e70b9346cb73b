"""What a LoRA adapter directory must be before anything of it is sent: a PEFT LoRA adapter
for the target model, of a rank the model serves, with safetensors weights and no code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from infra.rules import quoted
from stacks.errors import ArtifactError
from stacks.publishing.files import read_json_object, safetensors_header, with_digests
from stacks.publishing.scan import LocalFile, local_files, shown

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class AdapterTarget:
    """What the environment file says about the model an adapter is published for."""

    model_id: str
    max_rank: int
    # Names adapter_config.json may give as base_model_name_or_path for this model.
    base_models: tuple[str, ...]
    where: str  # the model in the environment file, for messages: "envs/dev.yaml: models[0]"


def base_model_matches(declared: str, accepted: Iterable[str]) -> bool:
    """`declared` names one of `accepted`, in full or by its last path component, ignoring case.

    PEFT records whatever the trainer loaded: a Hugging Face id
    ("Qwen/Qwen2.5-7B-Instruct") or a local path ("/ckpt/Qwen2.5-7B-Instruct").
    """
    value = declared.strip().rstrip("/").lower()
    last = value.rsplit("/", 1)[-1]
    return any(value == name.lower() or last == name.lower().rsplit("/", 1)[-1] for name in accepted)


def scan_adapter_dir(
    directory: Path, target: AdapterTarget, *, key_prefix: str = "", transfer_config
) -> tuple[list[LocalFile], dict]:
    """The files to publish (with digests) and the adapter's config, after checking it is a LoRA adapter for `target`."""
    files = local_files(directory, key_prefix)
    by_name = {f.name: f for f in files}
    if code := next((f for f in files if f.name.lower().endswith(".py")), None):
        raise ArtifactError(
            f"{shown(code.path)}: a Python file; an adapter is weights and configuration only, "
            "and no adapter code is ever run: remove it"
        )
    config_path = directory / ADAPTER_CONFIG
    if ADAPTER_CONFIG not in by_name:
        raise ArtifactError(f"{shown(config_path)}: missing (a PEFT LoRA adapter directory has one)")
    config = read_json_object(by_name[ADAPTER_CONFIG])
    rank, highest, pattern = _check_config(shown(config_path), config, target)
    if ADAPTER_WEIGHTS not in by_name:
        raise ArtifactError(f"{shown(directory)}: no {ADAPTER_WEIGHTS} (the adapter's weights, as safetensors)")
    for other in files:  # any other safetensors file must be one too (it is not sniffed for pickles)
        if other.name.endswith(".safetensors") and other.name != ADAPTER_WEIGHTS:
            safetensors_header(other)
    weights = by_name[ADAPTER_WEIGHTS]
    tensors = safetensors_header(weights)
    lora_a = {n: t["shape"] for n, t in tensors.items() if ".lora_A." in n}
    if not lora_a:
        raise ArtifactError(f"{shown(weights.path)}: no LoRA tensors (*.lora_A.*) in it")
    for tensor, shape in lora_a.items():
        tensor_rank = shape[0] if shape else 0
        if tensor_rank > highest or (not pattern and tensor_rank != rank):
            raise ArtifactError(
                f"{shown(weights.path)}: tensor {quoted(tensor, 160)} has rank {tensor_rank}, "
                f"but {ADAPTER_CONFIG} says r={rank}"
            )
    return with_digests(files, transfer_config), config


def _check_config(where: str, config: dict, target: AdapterTarget) -> tuple[int, int, dict]:
    """(r, the highest rank, rank_pattern) of a LoRA adapter_config.json for `target`."""
    peft_type = config.get("peft_type")
    if not isinstance(peft_type, str) or peft_type.upper() != "LORA":
        raise ArtifactError(
            f"{where}: peft_type: {quoted(peft_type)} is not a LoRA adapter (vLLM serves peft_type LORA)"
        )
    if config.get("use_dora"):
        raise ArtifactError(f"{where}: use_dora: DoRA adapters are not served by vLLM")
    rank = config.get("r")
    if not _positive_int(rank):
        raise ArtifactError(f"{where}: r: {quoted(rank)} is not a LoRA rank (a positive integer)")
    pattern = config.get("rank_pattern") or {}
    if not isinstance(pattern, dict) or not all(_positive_int(r) for r in pattern.values()):
        raise ArtifactError(f"{where}: rank_pattern: not a mapping of module names to positive integers")
    highest = max([rank, *pattern.values()])
    if highest > target.max_rank:
        raise ArtifactError(
            f"{where}: r: rank {highest} exceeds lora.max_rank {target.max_rank} of model {target.model_id} "
            f"({target.where}); raise max_rank there or train with a lower rank"
        )
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise ArtifactError(
            f"{where}: base_model_name_or_path: missing; an adapter must say which model it was trained on"
        )
    if not base_model_matches(base, target.base_models):
        raise ArtifactError(
            f"{where}: base_model_name_or_path: {quoted(base)} is not model {target.model_id} "
            f"(expected {' or '.join(repr(n) for n in target.base_models)}; "
            f"if it is the same model under another name, set lora.base_model in {target.where})"
        )
    return rank, highest, pattern


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
