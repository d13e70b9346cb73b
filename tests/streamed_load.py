"""vLLM's `runai_streamer` model load, on CPU, without building a model. Test-only.

`load_streamed(source)` stands in for what a replica with `load_format: runai_streamer`
does at start: vLLM's own functions pull the non-weight files of the `s3://` folder to a
local directory (ModelConfig.maybe_pull_model_tokenizer_for_runai: ObjectStorageModel),
list the folder's `*.safetensors` and stream their tensors with the Run:ai iterator
(RunaiModelStreamerLoader._get_weights_iterator: list_safetensors +
runai_safetensors_weights_iterator). Tensors land in CPU memory. The streamer reads its
S3 settings from the process environment (`app.streaming.streamer_env`, credentials), so
call it in a process whose environment holds the replica's variables.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

# ModelConfig.maybe_pull_model_tokenizer_for_runai: the config pass, then the tokenizer pass.
CONFIG_PATTERNS = ["*.model", "*.py", "*.json"]
WEIGHT_PATTERNS = ["*.pt", "*.safetensors", "*.bin", "*.tensors", "*.pth"]


def pull_config(model_source: str) -> Path:
    """vLLM's pull of the folder's non-weight files; returns the local directory they are in."""
    from vllm.transformers_utils.runai_utils import ObjectStorageModel  # noqa: PLC0415

    model = ObjectStorageModel(url=model_source)
    # A folder left by an earlier load would hide a pull that finds nothing (a wrong prefix).
    shutil.rmtree(model.dir, ignore_errors=True)
    os.makedirs(model.dir)
    model.pull_files(model_source, allow_pattern=CONFIG_PATTERNS)
    model.pull_files(model_source, ignore_pattern=WEIGHT_PATTERNS)
    return Path(model.dir)


def iter_streamed(model_source: str):
    """(name, CPU tensor) of every tensor of the folder's safetensors, as vLLM's loader yields them."""
    from vllm.config.load import LoadConfig  # noqa: PLC0415
    from vllm.model_executor.model_loader.runai_streamer_loader import RunaiModelStreamerLoader  # noqa: PLC0415

    loader = RunaiModelStreamerLoader(LoadConfig(load_format="runai_streamer", use_tqdm_on_load=False))
    yield from loader._get_weights_iterator(model_source, None)


def load_streamed(model_source: str, *, digest: bool = True) -> dict:
    """Load `model_source` (s3://bucket/prefix) the way vLLM's runai_streamer does, on CPU.

    Returns {"config": config.json as a dict, "tensors": count, "bytes": total tensor bytes,
    "sha256": hex digest over each tensor's name then bytes, in sorted name order}.
    `digest=False` keeps no tensor (for timing large models): "sha256" is then None.
    Raises whatever vLLM would (a missing folder, no safetensors, access denied ...).
    """
    local = pull_config(model_source)
    try:
        config_file = local / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{model_source}: no config.json pulled (is the folder there?)")
        config = json.loads(config_file.read_text())
    finally:
        shutil.rmtree(local, ignore_errors=True)
    count = total = 0
    kept = {}
    for name, tensor in iter_streamed(model_source):
        count += 1
        total += tensor.numel() * tensor.element_size()
        if digest:
            if name in kept:
                raise ValueError(f"{model_source}: tensor {name!r} appears twice")
            kept[name] = tensor
    sha = None
    if digest:
        h = hashlib.sha256()
        for name in sorted(kept):
            h.update(name.encode())
            h.update(tensor_bytes(kept[name]))
        sha = h.hexdigest()
    return {"config": config, "tensors": count, "bytes": total, "sha256": sha}


def tensor_bytes(tensor) -> memoryview:
    """The raw bytes of a CPU tensor (any dtype, bf16 included)."""
    import torch  # noqa: PLC0415

    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def local_digest(directory: Path) -> dict:
    """The same numbers as `load_streamed`, read from a local folder's *.safetensors with `safetensors`."""
    from safetensors import safe_open  # noqa: PLC0415

    tensors = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118
                if name in tensors:
                    raise ValueError(f"{directory}: tensor {name!r} appears twice")
                tensors[name] = f.get_tensor(name)
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensor_bytes(tensors[name]))
    return {"tensors": len(tensors), "bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
            "sha256": h.hexdigest()}
