"""`GatedModelServer`: an LLMServer that fetches a Hugging Face token inside its replica.

The token never travels through a spec, a Ray config or a runtime env (Ray
logs deployment options, runtime env included). The replica gets only the
secret's name, reads the value from Secrets Manager with its own identity,
and writes it to the Hugging Face token file, where the model download (in
this process or in Ray's download task on the same node) finds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ray.serve.llm import LLMServer

from app.secrets import read_secret_string
from app.spec import HF_TOKEN_SECRET_ENV


def hf_token_path() -> Path:
    """Where huggingface_hub (hence vLLM's download) looks for a token when HF_TOKEN is unset."""
    from huggingface_hub import constants

    return Path(constants.HF_TOKEN_PATH)


def store_hf_token(secret_name: str, region: str) -> Path:
    """Fetch the token and write it, readable by this user only; returns the file."""
    token = read_secret_string(secret_name, region)
    path = hf_token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, path)
    return path


class GatedModelServer(LLMServer):
    """Subclass this (not LLMServer) for a custom server of a gated model."""

    async def __init__(self, llm_config, **kwargs):
        secret = os.environ.get(HF_TOKEN_SECRET_ENV)
        if secret:
            store_hf_token(secret, os.environ["AWS_REGION"])
        await super().__init__(llm_config, **kwargs)
