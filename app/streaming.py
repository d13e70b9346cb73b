"""Streaming weights from S3 into memory: vLLM's Run:ai Model Streamer load format.

With `load_format: runai_streamer` vLLM reads the safetensors shards of an
`s3://` model path with parallel ranged GETs straight into memory (config and
tokenizer files are pulled to a local folder first), and Ray 2.60 skips its
own download of the folder. The streamer reads its S3 settings from the
replica's environment.
"""

from __future__ import annotations

STREAM_LOAD_FORMAT = "runai_streamer"


def streamer_env(*, region: str, endpoint_url: str | None, concurrency: int | None) -> dict[str, str]:
    """The replica environment variables the streamer reads."""
    env = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    if concurrency is not None:
        env["RUNAI_STREAMER_CONCURRENCY"] = str(concurrency)
    return env
