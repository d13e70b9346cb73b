"""Streaming weights from S3 into memory: vLLM's Run:ai Model Streamer load format.

With `load_format: runai_streamer` Ray 2.60 skips its own download and vLLM reads
the `s3://` model folder itself, in two parts that read the same environment:

- boto3 (runai_model_streamer_s3) lists the folder (ListObjectsV2) and downloads
  every object that is not a weights file (HeadObject + GetObject: config.json,
  tokenizer, `hash`, `manifest.json`, ...) to a local directory;
- a C++ reader (AWS SDK for C++) streams the top-level `*.safetensors` objects
  into memory with parallel ranged GetObjects, no HeadObject.

So the replica's identity needs s3:ListBucket and s3:GetObject on the folder (and
kms:Decrypt for SSE-KMS). Credentials come from each SDK's default chain, which
includes EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI + its token file) and
IRSA: nothing to set here. On real AWS only the region matters (without it the C++
reader asks the instance metadata service, slowly). Another endpoint (a local S3)
needs AWS_ENDPOINT_URL - the C++ reader ignores AWS_ENDPOINT_URL_S3, and this one
is process-wide for boto3, so every AWS client of the replica goes there too -
path-style addressing and, for TLS with a private CA, AWS_CA_BUNDLE (both readers
honour it; neither reads SSL_CERT_FILE).
"""

from __future__ import annotations

STREAM_LOAD_FORMAT = "runai_streamer"


def streamer_env(
    *,
    region: str,
    endpoint_url: str | None,
    concurrency: int | None,
    ca_bundle: str | None = None,
    memory_limit: int | None = None,
) -> dict[str, str]:
    """The replica environment variables the streamer reads.

    `concurrency`: parallel S3 reads (the streamer's default is 8 for object storage).
    `memory_limit`: bytes of CPU buffer the streamer may hold (its default is 40 GB;
    -1 unlimited). `ca_bundle`: a PEM file to trust instead of the system's CAs.
    """
    env = {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # The C++ reader's errors (S3 status, TLS, DNS) are dropped unless this is set: without
        # it a replica only logs "File access error".
        "RUNAI_STREAMER_LOG_TO_STDERR": "1",
    }
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
        env["AWS_ENDPOINT_URL_S3"] = endpoint_url
        # Path-style for both readers: a local S3 or a VPC endpoint's own DNS name
        # has no <bucket>.<host> names (an IP endpoint is path-style anyway).
        env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"] = "0"
    if ca_bundle:
        env["AWS_CA_BUNDLE"] = ca_bundle
    if concurrency is not None:
        env["RUNAI_STREAMER_CONCURRENCY"] = str(concurrency)
    if memory_limit is not None:
        env["RUNAI_STREAMER_MEMORY_LIMIT"] = str(memory_limit)
    return env
