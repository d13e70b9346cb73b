"""vLLM's `runai_streamer` model load, on CPU, without building a model. Test-only.

`load_streamed(source)` stands in for what a replica with `load_format: runai_streamer`
does at start, `source` being the snapshot its environment pins
(`app.spec.weights_uri(bucket, model id, snapshot)`, as upload-model reported it): vLLM's own
functions pull the non-weight files of the `s3://` folder to a
local directory (ModelConfig.maybe_pull_model_tokenizer_for_runai: ObjectStorageModel),
list the folder's `*.safetensors` and stream their tensors with the Run:ai iterator
(RunaiModelStreamerLoader._get_weights_iterator: list_safetensors +
runai_safetensors_weights_iterator). Tensors land in CPU memory. The streamer reads its
S3 settings from the process environment (`app.streaming.streamer_env`, credentials), so
call it in a process whose environment holds the replica's variables: `Loads` runs each
load in a fresh process with a given environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import waits

# ModelConfig.maybe_pull_model_tokenizer_for_runai: the config pass, then the tokenizer pass.
CONFIG_PATTERNS = ["*.model", "*.py", "*.json"]
WEIGHT_PATTERNS = ["*.pt", "*.safetensors", "*.bin", "*.tensors", "*.pth"]


def pull_config(model_source: str) -> Path:
    """vLLM's pull of the folder's non-weight files into a new local directory (the caller removes it)."""
    from vllm.transformers_utils.runai_utils import ObjectStorageModel

    model = ObjectStorageModel(url=model_source)
    # vLLM's folder is shared by every load of this URL (under VLLM_ASSETS_CACHE) and kept: one of
    # our own, so that files left by an earlier load cannot hide a pull that finds nothing (a wrong
    # prefix) and loads running side by side cannot disturb each other.
    model.dir = tempfile.mkdtemp(prefix="streamed-load-")
    model.pull_files(model_source, allow_pattern=CONFIG_PATTERNS)
    model.pull_files(model_source, ignore_pattern=WEIGHT_PATTERNS)
    return Path(model.dir)


def iter_streamed(model_source: str):
    """(name, CPU tensor) of every tensor of the folder's safetensors, as vLLM's loader yields them."""
    from vllm.config.load import LoadConfig
    from vllm.model_executor.model_loader.runai_streamer_loader import RunaiModelStreamerLoader

    loader = RunaiModelStreamerLoader(LoadConfig(load_format="runai_streamer", use_tqdm_on_load=False))
    yield from loader._get_weights_iterator(model_source, None)


def load_streamed(model_source: str, *, digest: bool = True) -> dict:
    """Load `model_source` (s3://bucket/prefix) the way vLLM's runai_streamer does: a stand-in
    for vLLM's model load on CPU (no model is built), for tests only.

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
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def local_digest(directory: Path) -> dict:
    """The same numbers as `load_streamed`, read from a local folder's *.safetensors with `safetensors`."""
    from safetensors import safe_open

    tensors = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                if name in tensors:
                    raise ValueError(f"{directory}: tensor {name!r} appears twice")
                tensors[name] = f.get_tensor(name)
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensor_bytes(tensors[name]))
    return {
        "tensors": len(tensors),
        "bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
        "sha256": h.hexdigest(),
    }


# --- A fresh process per load, without paying vLLM's import each time --------------------------
#
# The streamer reads its settings from the process environment, so each load with other settings
# needs a process of its own. `Loads` starts one Python that imports vLLM's loader once, then forks
# a child per load: the child replaces its whole environment before any AWS code runs.

READY = "streamed-load-ready"


@dataclass
class Outcome:
    returncode: int
    result: dict | None  # load_streamed's dict (returncode 0)
    error: str  # "ExceptionType: message" of a failed load
    stderr: str  # everything the load wrote (vLLM's and the C++ reader's logs)


class Loads:
    """`with Loads() as loads: loads.run(source, env)`: each run in a forked child with exactly `env`
    (plus PATH, HOME and a private VLLM_ASSETS_CACHE)."""

    def __init__(self, workdir: Path, *, start_timeout: float = waits.SLOW_START):  # it imports vLLM and torch
        self.workdir, self.start_timeout, self.count = Path(workdir), start_timeout, 0
        self.process: subprocess.Popen | None = None
        self._buffer = b""

    def __enter__(self) -> Loads:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.workdir / "server.log").open("w"),
            env=env,
            text=True,
        )
        if self._line(self.start_timeout) != READY:
            self.__exit__()
            raise RuntimeError(f"the load server did not start: {(self.workdir / 'server.log').read_text()[-2000:]}")
        return self

    def __exit__(self, *_) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _line(self, timeout: float) -> str:
        """The server's next line, read unbuffered so that `select` sees every byte not yet taken."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"the load server exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().strip()

    def run(
        self, model_source: str, env: dict[str, str], *, timeout: float = waits.COMMAND, digest: bool = True
    ) -> Outcome:
        self.count += 1
        directory = self.workdir / f"load-{self.count}"
        directory.mkdir()
        child_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "VLLM_ASSETS_CACHE": str(directory / "cache"),
            **env,
        }
        request = {"source": model_source, "env": child_env, "dir": str(directory), "digest": digest}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        pid = int(self._line(waits.COMMAND))
        try:
            returncode = int(self._line(timeout))
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._line(waits.COMMAND)
            raise TimeoutError(
                f"loading {model_source} took over {timeout} s: {(directory / 'stderr').read_text()[-2000:]}"
            ) from None
        result = directory / "result.json"
        error = directory / "error"
        return Outcome(
            returncode,
            json.loads(result.read_text()) if result.exists() else None,
            error.read_text() if error.exists() else "",
            (directory / "stderr").read_text(),
        )


def _serve() -> None:
    """The load server: imports vLLM's loader once, then forks a child per request on stdin."""
    # vLLM logs to stdout: the protocol gets a stdout of its own.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import vllm.model_executor.model_loader.runai_streamer_loader
    import vllm.transformers_utils.runai_utils  # noqa: F401

    print(READY, file=protocol)
    for line in sys.stdin:
        request = json.loads(line)
        directory = Path(request["dir"])
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                protocol.close()
                out = os.open(directory / "stderr", os.O_WRONLY | os.O_CREAT, 0o600)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.environ.clear()
                os.environ.update(request["env"])
                result = load_streamed(request["source"], digest=request["digest"])
                (directory / "result.json").write_text(json.dumps(result))
                code = 0
            except BaseException as exc:  # noqa: BLE001  (reported to the parent, then the child exits)
                traceback.print_exc()
                (directory / "error").write_text(f"{type(exc).__name__}: {exc}")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(pid, file=protocol)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), file=protocol)


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
