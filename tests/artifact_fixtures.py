"""Model and adapter directories as a user would publish them: real safetensors files, random weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    """A valid safetensors file: 8-byte header length, JSON header, then the tensors' bytes."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        f.write(os.urandom(offset))
    return path


def model_dir(
    root: Path, shards: int = 2, shard_bytes: int = 4096, model_type: str = "qwen2", name: str = "model"
) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": model_type, "hidden_size": 64}))
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}))
    (directory / "tokenizer_config.json").write_text("{}")
    for i in range(shards):
        write_safetensors(
            directory / f"model-{i:05d}-of-{shards:05d}.safetensors",
            {f"model.layers.{i}.weight": ("U8", [shard_bytes])},
        )
    return directory


def adapter_dir(
    root: Path,
    name: str,
    *,
    rank: int = 8,
    base_model: str = "Qwen/Qwen2.5-7B-Instruct",
    hidden: int = 64,
    layers: int = 2,
    extra_bytes: int = 0,
    tokenizer_bytes: int = 0,
) -> Path:
    """A PEFT LoRA adapter for q_proj and v_proj. `extra_bytes` and `tokenizer_bytes` make its
    weights and its tokenizer large (for uploads slow enough to interrupt)."""
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": rank,
                "lora_alpha": 2 * rank,
                "base_model_name_or_path": base_model,
                "target_modules": ["q_proj", "v_proj"],
                "task_type": "CAUSAL_LM",
            }
        )
    )
    tensors = {}
    for layer in range(layers):
        for module in ("q_proj", "v_proj"):
            stem = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{stem}.lora_A.weight"] = ("F16", [rank, hidden])
            tensors[f"{stem}.lora_B.weight"] = ("F16", [hidden, rank])
    if extra_bytes:
        tensors["base_model.model.lm_head.lora_embedding_padding"] = ("U8", [extra_bytes])
    write_safetensors(directory / "adapter_model.safetensors", tensors)
    (directory / "README.md").write_text(f"# {name}\n")
    if tokenizer_bytes:
        (directory / "tokenizer.json").write_text(json.dumps({"padding": "x" * tokenizer_bytes}))
    return directory


def write_raw_safetensors(path: Path, header: bytes | str, data: bytes = b"") -> Path:
    """A file laid out as safetensors around any header bytes (for headers a writer would never produce)."""
    raw = header.encode() if isinstance(header, str) else header
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


def deep_json(depth: int) -> str:
    """`depth` nested arrays: a few hundred KB that `json.loads` cannot take without recursing."""
    return "[" * depth + "]" * depth


def write_torch_zip(path: Path, member: str = "archive/data.pkl") -> Path:
    """What `torch.save` writes since PyTorch 1.6: a ZIP archive holding a pickle."""
    import pickle
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, pickle.dumps({"weight": [1.0, 2.0]}, protocol=2))
        archive.writestr("archive/version", "3\n")
    return path


def environment_dir(
    root: Path,
    *,
    prefix: str = "llm",
    snapshots: dict[str, str | None] | None = None,
    name: str = "dev",
    only: list[str] | None = None,
    **changes,
) -> Path:
    """A directory holding a copy of the shipped environment `name`, with `prefix` (so that its
    buckets are its own), only the models `only` names (default: all) and `snapshots` pinned
    (model id -> weights.snapshot; None removes it). Written again on each call."""
    import yaml

    from stacks.config.loader import ENVIRONMENTS_DIR

    data = yaml.safe_load((ENVIRONMENTS_DIR / f"{name}.yaml").read_text())
    data["prefix"] = prefix
    data.update(changes)
    if only is not None:
        data["models"] = [m for m in data["models"] if m["id"] in only]
    for model in data["models"]:
        if model["id"] in (snapshots or {}):
            weights = model.setdefault("weights", {})
            if snapshots[model["id"]] is None:
                weights.pop("snapshot", None)
            else:
                weights["snapshot"] = snapshots[model["id"]]
    directory = root / f"environments-{prefix}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


def ray_download(source: str, destination: Path) -> Path:
    """What a replica with `load: download` does at start: Ray's own S3 download of every object
    under `source` into the Hugging Face cache layout. Returns the local snapshot folder."""
    from ray.llm._internal.common.utils.cloud_utils import CloudFileSystem

    CloudFileSystem.download_model(str(destination), source, tokenizer_only=False)
    return destination / "snapshots" / (destination / "refs" / "main").read_text()


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (relative name -> bytes)."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
