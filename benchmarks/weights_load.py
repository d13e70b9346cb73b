"""How fast a replica gets its weights from S3: vLLM's Run:ai streamer vs Ray's download.

`python benchmarks/weights_load.py [--size-gib 2] [--concurrency 2,4,8,16] [--repeat 1] [--chunk-mib 8]`
starts the local AWS (moto over HTTPS, stacks/emulator), writes a synthetic model of about
`size_gib` GiB (TinyLlama-sized bf16/fp16 layers, one ~84 MiB safetensors shard per layer),
publishes it with upload-model's code, then measures, each in a fresh process and after its
imports:

- streamer: `load_streamed` (tests/streamed_load.py: vLLM's own runai_streamer path on CPU,
  the config pull included) with the replica's environment (`app.streaming.streamer_env`),
  at each streamer concurrency;
- download_then_load: Ray's download of the folder (`download_model_files`, what a replica
  does at start without streaming) then every shard read into memory with `safetensors`;
- raw: parallel ranged GETs (8 MiB, the streamer's chunk) of the same shards with boto3, at
  each concurrency: what the emulator can serve.

Prints JSON: seconds and GiB/s of each (best of --repeat), the best streamer concurrency,
and the ratios streamer/raw (throughput, same concurrency and best vs best) and
download_then_load/streamer (time). Targets from the product issue: streamer >= 0.8x raw,
and faster than download-then-load. No assertions: the numbers are reported as measured.
Against moto on a small machine the server, not S3, is the limit; on AWS the figures differ.

Why small shards: moto answers every ranged GET by reading the whole object (under the object's
lock) and slicing it, so an 8 MiB range of a 416 MiB shard costs ~0.4 s here (a whole GET 1.7 s).
With multi-GB shards every reader crawls, and the streamer gives up: a response that sends
nothing for RUNAI_STREAMER_S3_REQUEST_TIMEOUT_MS (default 1 s) is cut ("failure to meet throughput
minimum") and the load fails. Real checkpoints use 2-5 GB shards; S3 serves ranges in O(range).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, REGION, BUCKET, MODEL = "111111111111", "us-west-2", "llm-bench-weights-111111111111", "synthetic-llama"
MiB, GiB = 1024 * 1024, 1024**3
RANGE = 8 * MiB
HIDDEN, INTERMEDIATE, KV = 2048, 5632, 256
# One decoder layer (one shard): (name, dtype, shape). ~84 MiB.
LAYER = [
    ("self_attn.q_proj.weight", "BF16", [HIDDEN, HIDDEN]),
    ("self_attn.k_proj.weight", "BF16", [KV, HIDDEN]),
    ("self_attn.v_proj.weight", "BF16", [KV, HIDDEN]),
    ("self_attn.o_proj.weight", "BF16", [HIDDEN, HIDDEN]),
    ("mlp.gate_proj.weight", "F16", [INTERMEDIATE, HIDDEN]),
    ("mlp.up_proj.weight", "F16", [INTERMEDIATE, HIDDEN]),
    ("mlp.down_proj.weight", "F16", [HIDDEN, INTERMEDIATE]),
    ("input_layernorm.weight", "BF16", [HIDDEN]),
    ("post_attention_layernorm.weight", "BF16", [HIDDEN]),
]
LAYER_BYTES = sum(2 * (shape[0] * (shape[1] if len(shape) > 1 else 1)) for _, _, shape in LAYER)
MEASURE_TIMEOUT = 1800


def log(message: str) -> None:
    print(f"[weights_load] {message}", file=sys.stderr, flush=True)


def write_model(directory: Path, size_gib: float) -> tuple[int, int, int]:
    """A model folder of about `size_gib` GiB; returns (shards, tensor bytes, shard file bytes)."""
    import numpy as np

    directory.mkdir(parents=True)
    layers = max(2, round(size_gib * GiB / LAYER_BYTES))
    (directory / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": HIDDEN,
                "intermediate_size": INTERMEDIATE,
                "num_hidden_layers": layers,
                "torch_dtype": "bfloat16",
            }
        )
    )
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}))
    (directory / "tokenizer_config.json").write_text("{}")
    rng = np.random.default_rng(0)
    total = files = 0
    for i in range(layers):
        header, offset = {}, 0
        for name, dtype, shape in LAYER:
            size = 2 * shape[0] * (shape[1] if len(shape) > 1 else 1)
            header[f"model.layers.{i}.{name}"] = {
                "dtype": dtype,
                "shape": shape,
                "data_offsets": [offset, offset + size],
            }
            offset += size
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with (directory / f"model-{i + 1:05d}-of-{layers:05d}.safetensors").open("wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            for left in range(offset, 0, -64 * MiB):
                f.write(rng.bytes(min(left, 64 * MiB)))
        total += offset
        files += 8 + len(raw) + offset
    return layers, total, files


# --- The measurements, each run in a fresh process (`--measure KIND ARGS`) ----------------------


def measure_streamer(source: str) -> dict:
    import logging

    import streamed_load
    import vllm.model_executor.model_loader.runai_streamer_loader
    import vllm.transformers_utils.runai_utils  # noqa: F401

    class StreamTime(logging.Handler):
        """The streamer's own figure: first submission to last byte (no config pull, no copies)."""

        seconds = None

        def emit(self, record):
            message = record.getMessage()
            if "Overall time to stream" in message:
                StreamTime.seconds = float(message.rsplit(": ", 1)[1].split("s,")[0])

    logging.getLogger("runai_model_streamer").addHandler(StreamTime())
    start = time.perf_counter()
    result = streamed_load.load_streamed(source, digest=False)
    return {
        "seconds": time.perf_counter() - start,
        "bytes": result["bytes"],
        "tensors": result["tensors"],
        "streamer_reported_seconds": StreamTime.seconds,
    }


def measure_download_then_load(source: str) -> dict:
    from ray.llm._internal.common.utils.download_utils import download_model_files
    from safetensors.torch import load_file

    start = time.perf_counter()
    local = Path(download_model_files(model_id=source))
    downloaded = time.perf_counter()
    shards = sorted(local.glob("*.safetensors"))
    if not shards:
        raise RuntimeError(f"Ray downloaded no safetensors from {source} (to {local})")
    loaded, count = 0, 0
    for shard in shards:
        # load_file maps the file: a copy is what makes it memory (vLLM copies into its parameters).
        for tensor in load_file(shard).values():
            loaded += tensor.clone().numel() * tensor.element_size()
            count += 1
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "download_seconds": downloaded - start,
        "load_seconds": end - downloaded,
        "bytes": loaded,
        "tensors": count,
    }


def measure_raw(source: str, concurrency: int, range_bytes: int = RANGE) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    bucket, prefix = source.removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", config=Config(max_pool_connections=concurrency + 4))
    objects = [
        o
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")["Contents"]
        if o["Key"].endswith(".safetensors")
    ]
    ranges = [
        (o["Key"], start, min(start + range_bytes, o["Size"]) - 1)
        for o in objects
        for start in range(0, o["Size"], range_bytes)
    ]

    def get(item) -> int:
        key, first, last = item
        body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")["Body"]
        return len(body.read())

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(get, ranges))
    return {"seconds": time.perf_counter() - start, "bytes": total, "requests": len(ranges)}


def _measure(kind: str, args: dict) -> None:
    result = {"streamer": measure_streamer, "download_then_load": measure_download_then_load, "raw": measure_raw}[kind](
        **args
    )
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(result), flush=True)


# --- The run ------------------------------------------------------------------------------------


def _in_process(kind: str, args: dict, env: dict[str, str], workdir: Path) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "HF_HOME": str(workdir / "hf"),
        "VLLM_ASSETS_CACHE": str(workdir / "vllm"),
        **env,
    }
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--measure", kind, json.dumps(args)],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=MEASURE_TIMEOUT,
        )
    finally:
        # Downloads and pulled files go with each run: every run starts cold.
        for name in ("hf", "vllm"):
            shutil.rmtree(workdir / name, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} {args} failed ({done.returncode}): {_failure(done.stderr)}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _failure(text: str) -> str:
    """The cause of a failed run: the C++ reader's first error, else the last line."""
    lines = text.strip().splitlines() or ["(no output)"]
    cause = next((line.split(" : ", 1)[-1] for line in lines if "Failed to download" in line), None)
    return f"{lines[-1][:200]} ({cause.strip()[:200]})" if cause else lines[-1][:300]


def _best(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["seconds"])
    return {
        **best,
        "seconds": round(best["seconds"], 3),
        "gib_per_s": round(best["bytes"] / GiB / best["seconds"], 3),
        "runs_seconds": [round(r["seconds"], 3) for r in runs],
    }


def run(
    size_gib: float = 2.0,
    concurrencies: tuple[int | None, ...] = (2, 4, 8, 16),
    repeat: int = 1,
    chunk_mib: int | None = None,
) -> dict:
    """Publish a synthetic model of ~`size_gib` GiB to a fresh local AWS and time the three reads.

    `chunk_mib`: the streamer's largest read (RUNAI_STREAMER_CHUNK_BYTESIZE, default 8 MiB), and
    the raw reads' range size with it."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from app.spec import weights_uri
    from app.streaming import streamer_env
    from stacks.emulator.server import TEST_CREDENTIALS, Emulator
    from stacks.publishing.models import upload_model

    with tempfile.TemporaryDirectory(prefix="weights-load-") as tmp:
        work = Path(tmp)
        with Emulator(ACCOUNT, REGION, work / "aws") as aws:
            s3 = aws.client("s3")
            s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
            start = time.perf_counter()
            shards, tensor_bytes, file_bytes = write_model(work / "model", size_gib)
            log(
                f"wrote {shards} shards, {tensor_bytes / GiB:.2f} GiB of tensors in {time.perf_counter() - start:.1f} s"
            )
            start = time.perf_counter()
            snapshot = upload_model(s3, BUCKET, MODEL, work / "model").snapshot
            log(f"published snapshot {snapshot} in {time.perf_counter() - start:.1f} s")
            shutil.rmtree(work / "model")  # the emulator holds it now
            source = weights_uri(BUCKET, MODEL, snapshot)  # what a replica pinned to it reads
            base = {
                **TEST_CREDENTIALS,
                **streamer_env(
                    region=REGION, endpoint_url=aws.endpoint, concurrency=None, ca_bundle=str(aws.ca_bundle)
                ),
            }

            def measured(kind: str, args: dict, env: dict[str, str], label: str) -> dict:
                # Tensors for the loads; whole shard files (headers too) for the raw reads.
                expected = file_bytes if kind == "raw" else tensor_bytes
                runs, failures = [], []
                for _ in range(repeat):
                    try:
                        runs.append(_in_process(kind, args, env, work))
                    except RuntimeError as exc:  # reported, not fatal: the other settings still run
                        failures.append(str(exc))
                        log(f"{label}: FAILED {failures[-1]}")
                        continue
                    if runs[-1]["bytes"] != expected:
                        raise RuntimeError(f"{label} read {runs[-1]['bytes']} bytes, expected {expected}")
                    log(f"{label}: {runs[-1]['seconds']:.2f} s")
                return {**(_best(runs) if runs else {}), **({"failures": failures} if failures else {})}

            chunk = {"RUNAI_STREAMER_CHUNK_BYTESIZE": str(chunk_mib * MiB)} if chunk_mib else {}
            range_bytes = chunk_mib * MiB if chunk_mib else RANGE
            streamer, raw = {}, {}
            for c in concurrencies:
                label = "default" if c is None else str(c)
                env = {
                    **TEST_CREDENTIALS,
                    **chunk,
                    **streamer_env(
                        region=REGION, endpoint_url=aws.endpoint, concurrency=c, ca_bundle=str(aws.ca_bundle)
                    ),
                }
                streamer[label] = measured("streamer", {"source": source}, env, f"streamer concurrency {label}")
                raw[label] = measured(
                    "raw",
                    {"source": source, "concurrency": c or 8, "range_bytes": range_bytes},
                    base,
                    f"raw concurrency {c or 8}",
                )
            download = measured("download_then_load", {"source": source}, base, "download then load")

    done = {k: v for k, v in streamer.items() if "seconds" in v}
    done_raw = {k: v for k, v in raw.items() if "seconds" in v}
    best = min(done, key=lambda k: done[k]["seconds"]) if done else None
    best_raw = min(done_raw, key=lambda k: done_raw[k]["seconds"]) if done_raw else None
    ratios, targets = {}, {}
    if best and best_raw:
        ratios = {
            "streamer_over_raw_throughput_same_concurrency": {
                k: round(raw[k]["seconds"] / done[k]["seconds"], 3) for k in done if k in done_raw
            },
            "best_streamer_over_best_raw_throughput": round(done_raw[best_raw]["seconds"] / done[best]["seconds"], 3),
        }
        targets["streamer_at_least_0.8x_raw"] = ratios["best_streamer_over_best_raw_throughput"] >= 0.8
    if best and "seconds" in download:
        ratios["download_then_load_over_best_streamer_time"] = round(download["seconds"] / done[best]["seconds"], 3)
        targets["streamer_faster_than_download_then_load"] = done[best]["seconds"] < download["seconds"]
    return {
        "size_gib": round(tensor_bytes / GiB, 3),
        "shards": shards,
        "emulator": "moto over HTTPS on 127.0.0.1",
        "cpus": os.cpu_count(),
        "repeat": repeat,
        "chunk_and_range_mib": range_bytes // MiB,
        "streamer": streamer,
        "raw": raw,
        "download_then_load": download,
        "best_streamer_concurrency": best,
        "best_raw_concurrency": best_raw,
        "ratios": ratios,
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        _measure(argv[1], json.loads(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument(
        "--concurrency",
        default="2,4,8,16",
        help="streamer concurrencies to try, comma-separated ('default': the streamer's own)",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--chunk-mib",
        type=int,
        default=None,
        help="the streamer's chunk (RUNAI_STREAMER_CHUNK_BYTESIZE) and the raw range; default 8",
    )
    args = parser.parse_args(argv)
    concurrencies = tuple(None if c == "default" else int(c) for c in args.concurrency.split(","))
    print(json.dumps(run(args.size_gib, concurrencies, args.repeat, args.chunk_mib), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
