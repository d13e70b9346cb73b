"""`llmstacks upload-adapter` / `list-adapters` / `delete-adapter` against a moto S3 server on
127.0.0.1, judged by what Ray Serve LLM's own listing (`OpenAiIngress.models`) and loader
(`LoraModelLoader`) see after every interruption."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import waits
import yaml
from artifact_fixtures import adapter_dir, write_safetensors
from local_s3 import empty, fresh_bucket

from stacks.cli import main
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.errors import ArtifactError
from stacks.publishing.adapter_dirs import AdapterTarget, base_model_matches
from stacks.publishing.adapters import upload_adapter

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
BUCKET, REGION = "llm-dev-lora-111111111111", "us-west-2"
QWEN, LLAMA = "qwen2.5-7b-instruct", "llama-3.2-1b-instruct"
TARGET = AdapterTarget(QWEN, 32, (QWEN, "Qwen/Qwen2.5-7B-Instruct"), where="dev.yaml: models[0]")


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    return fresh_bucket(monkeypatch, s3_endpoint, BUCKET, REGION)


def empty_bucket(s3) -> None:
    empty(s3, BUCKET)


@pytest.fixture
def env_file(tmp_path) -> Path:
    """dev, with its second model serving LoRA too (adapter names must be unique across both)."""
    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    data["models"][1]["lora"] = {"enabled": True, "max_rank": 16}
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def keys(s3) -> set[str]:
    return {
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    }


def upload(directory: Path, name: str, model: str = QWEN, config: Path | None = None) -> int:
    where = ["--config", str(config)] if config else ["--env", "dev"]
    return main(["upload-adapter", *where, "--model", model, "--adapter", name, "--from", str(directory)])


def digests(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


class RayView:
    """What Ray Serve LLM 2.60 serves from the bucket: its ingress's model list and its LoRA loader."""

    def __init__(self, tmp_path: Path, model: str = QWEN):
        from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard
        from ray.llm._internal.serve.core.ingress.ingress import OpenAiIngress
        from ray.serve.llm import LLMConfig

        path = f"s3://{BUCKET}/adapters/{model}"
        self.model, self.root = model, tmp_path
        self.config = LLMConfig(
            model_loading_config={"model_id": model, "model_source": f"s3://weights/models/{model}"},
            lora_config={"dynamic_lora_loading_path": path, "max_num_adapters_per_replica": 4},
        )
        card = ModelCard(id=model, object="model", owned_by="test", permission=[], metadata={})
        self.ingress = OpenAiIngress({model: None}, {model: card}, lora_paths={model: path})
        self.rounds = 0

    @staticmethod
    def forget() -> None:
        """Start from a fresh process's state: Ray caches adapter_config.json lookups
        (missing ones for 30 s, found ones for 5 min) in a module-level cache."""
        from ray.llm._internal.common.utils.cloud_utils import CloudObjectCache
        from ray.llm._internal.common.utils.lora_utils import get_object_from_cloud

        (cache,) = [
            c.cell_contents for c in get_object_from_cloud.__closure__ if isinstance(c.cell_contents, CloudObjectCache)
        ]
        cache._cache.clear()

    def listed(self) -> set[str]:
        self.forget()
        ids = {m.id for m in asyncio.run(self.ingress.models()).data}
        return {i.split(":", 1)[1] for i in ids if ":" in i}

    def load(self, name: str) -> dict[str, str] | None:
        """The adapter's files as a fresh replica downloads them (None: Ray refuses to load it)."""
        from fastapi import HTTPException
        from ray.llm._internal.serve.utils.lora_serve_utils import LoraModelLoader

        self.rounds += 1
        self.forget()
        loader = LoraModelLoader(lora_root=str(self.root / f"replica-{self.rounds}"))
        try:
            local = asyncio.run(loader.load_model_from_config(f"{self.model}:{name}", self.config)).local_path
        except HTTPException as exc:
            assert exc.status_code == 404
            return None
        return digests(Path(local))

    def assert_whole_or_absent(self, expected: dict[str, dict[str, str]], s3) -> None:
        """Every adapter Ray lists or loads is complete and exact; no other name is listed."""
        folders = {k.split("/")[2] for k in keys(s3) if k.startswith(f"adapters/{self.model}/")}
        listed = self.listed()
        assert listed <= set(expected), f"Ray lists {listed - set(expected)}, which was never completely published"
        for name in folders | listed:
            loaded = self.load(name)
            if name in listed:
                assert loaded == expected[name], f"Ray lists {name} but loads something else"
            else:
                assert loaded is None, f"Ray loads {name} but does not list it"


@pytest.fixture
def ray_view(s3, tmp_path):
    return RayView(tmp_path / "ray")


def test_upload_publishes_an_adapter_ray_lists_and_loads_exactly(s3, tmp_path, ray_view, capsys):
    directory = adapter_dir(tmp_path, "support", rank=16)
    assert upload(directory, "support") == 0
    out = capsys.readouterr().out
    assert f"published {QWEN}:support to s3://{BUCKET}/adapters/{QWEN}/support/ (3 uploaded, 0 already staged)" in out
    assert keys(s3) == {
        f"adapters/{QWEN}/support/{n}" for n in ("adapter_config.json", "adapter_model.safetensors", "README.md")
    }
    head = s3.head_object(
        Bucket=BUCKET, Key=f"adapters/{QWEN}/support/adapter_model.safetensors", ChecksumMode="ENABLED"
    )
    assert head["Metadata"]["sha256"] == digests(directory)["adapter_model.safetensors"] and head.get("ChecksumSHA256")
    assert ray_view.listed() == {"support"}
    assert ray_view.load("support") == digests(directory)


def test_rerun_is_a_no_op_and_other_content_under_the_same_name_is_refused(s3, tmp_path, capsys):
    directory = adapter_dir(tmp_path, "support")
    assert upload(directory, "support") == 0
    before = {v["VersionId"] for v in s3.list_object_versions(Bucket=BUCKET)["Versions"]}
    assert upload(directory, "support") == 0
    assert "is already published with this content" in capsys.readouterr().out
    assert {v["VersionId"] for v in s3.list_object_versions(Bucket=BUCKET)["Versions"]} == before  # nothing rewritten
    changed = adapter_dir(tmp_path / "v2", "support")
    assert upload(changed, "support") == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: --adapter: ") and "already published with other content" in err and "support-v2" in err
    )
    assert upload(changed, "support-v2") == 0


def test_resume_after_an_interrupted_upload_reuses_what_was_staged(s3, tmp_path, capsys):
    directory = adapter_dir(tmp_path, "support")
    with pytest.raises(ConnectionError):  # writes: the claim, README.md, then the weights
        upload_adapter(FailingS3(s3, fail_at=3), BUCKET, TARGET, "support", directory)
    assert not any(k.startswith("adapters/") for k in keys(s3))
    assert upload(directory, "support") == 0
    assert "(2 uploaded, 1 already staged)" in capsys.readouterr().out  # the weights, then adapter_config.json
    assert not any(k.startswith("staging/") for k in keys(s3))


def test_base_model_may_be_named_by_id_hf_id_or_training_path():
    names = (QWEN, "Qwen/Qwen2.5-7B-Instruct")
    for declared in ("Qwen/Qwen2.5-7B-Instruct", "qwen/qwen2.5-7b-instruct", QWEN, "/ckpt/Qwen2.5-7B-Instruct/"):
        assert base_model_matches(declared, names), declared
    for declared in ("Qwen/Qwen2.5-7B", "meta-llama/Llama-3.2-1B-Instruct", "Qwen2.5-7B-Instruct-AWQ", ""):
        assert not base_model_matches(declared, names), declared


def test_list_and_delete_reach_models_no_longer_in_the_environment(s3, tmp_path, capsys):
    assert main(["list-adapters", "--env", "dev"]) == 0
    assert capsys.readouterr().out.strip() == f"no adapters in s3://{BUCKET}/adapters/"
    s3.put_object(Bucket=BUCKET, Key="adapters/retired-model/old/adapter_config.json", Body=b'{"r": 8}')
    assert main(["list-adapters", "--env", "dev"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("retired-model:old ")]
    assert " 8 " in line and "ready, model not in dev" in line
    assert main(["delete-adapter", "--env", "dev", "--model", "retired-model", "--adapter", "old"]) == 0
    assert keys(s3) == set()
    assert main(["delete-adapter", "--env", "dev", "--model", "bad/model", "--adapter", "old"]) == 2
    assert "--model: model id 'bad/model' is not valid" in capsys.readouterr().err


def test_list_adapters_shows_ready_and_incomplete(s3, tmp_path, capsys):
    assert upload(adapter_dir(tmp_path, "support", rank=16), "support") == 0
    # What a killed delete leaves: weights without adapter_config.json.
    s3.put_object(Bucket=BUCKET, Key=f"adapters/{QWEN}/half/adapter_model.safetensors", Body=b"x")
    capsys.readouterr()
    assert main(["list-adapters", "--env", "dev"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["MODEL", "RANK", "SIZE", "STATE", "BASE", "MODEL"]
    assert lines[1].startswith(f"{QWEN}:half ") and "incomplete (not served" in lines[1]
    assert lines[2].startswith(f"{QWEN}:support ") and " 16 " in lines[2] and "ready" in lines[2]
    assert lines[2].endswith("Qwen/Qwen2.5-7B-Instruct")
    assert main(["list-adapters", "--env", "dev", "--model", QWEN, "--json"]) == 0
    listing = {a["adapter"]: a for a in json.loads(capsys.readouterr().out)}
    assert listing["support"]["ready"] and listing["support"]["rank"] == 16
    assert listing["support"]["request_model"] == f"{QWEN}:support"
    assert not listing["half"]["ready"] and listing["half"]["rank"] is None


def test_delete_unlists_first_and_versioning_brings_it_back(s3, tmp_path, ray_view, capsys):
    directory = adapter_dir(tmp_path, "support")
    assert upload(directory, "support") == 0
    assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "support"]) == 0
    assert "Recoverable for 30 days" in capsys.readouterr().out
    assert keys(s3) == set() and ray_view.listed() == set() and ray_view.load("support") is None
    assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "support"]) == 2
    assert "no adapter 'support'" in capsys.readouterr().err

    # The README's recovery: remove the delete markers, adapter_config.json last.
    markers = s3.list_object_versions(Bucket=BUCKET, Prefix=f"adapters/{QWEN}/support/")["DeleteMarkers"]
    for marker in sorted(markers, key=lambda m: m["Key"].endswith("/adapter_config.json")):
        s3.delete_object(Bucket=BUCKET, Key=marker["Key"], VersionId=marker["VersionId"])
    assert ray_view.listed() == {"support"} and ray_view.load("support") == digests(directory)


def test_a_name_taken_by_another_model_is_refused_even_when_incomplete(s3, tmp_path, env_file, capsys):
    assert (
        upload(
            adapter_dir(tmp_path, "shared", rank=8, base_model="meta-llama/Llama-3.2-1B-Instruct"),
            "shared",
            model=LLAMA,
            config=env_file,
        )
        == 0
    )
    before = keys(s3)
    assert upload(adapter_dir(tmp_path / "qwen", "shared"), "shared", config=env_file) == 2
    assert f"'shared' is already published for model '{LLAMA}'" in capsys.readouterr().err
    assert keys(s3) == before


# ---------------------------------------------------------------- interruptions


class FailingS3:
    """An S3 client whose n-th write (upload, copy or delete) raises, as a dropped connection would."""

    WRITES = {"upload_file", "copy", "copy_object", "put_object", "delete_object", "delete_objects"}

    def __init__(self, client, fail_at: int | None):
        self._client, self._fail_at, self.writes = client, fail_at, 0

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name not in self.WRITES:
            return attr

        def write(*args, **kwargs):
            self.writes += 1
            if self.writes == self._fail_at:
                raise ConnectionError(f"connection reset during {name}")
            return attr(*args, **kwargs)

        return write


def test_an_upload_interrupted_at_every_write_is_never_half_visible(s3, tmp_path, ray_view):
    """Fail each write in turn; after each, Ray lists and loads only whole adapters; a rerun completes."""
    legal = adapter_dir(tmp_path, "legal", rank=16)
    support = adapter_dir(tmp_path, "support")
    # What a killed delete or upload left under the name: must never surface.
    leftover = f"adapters/{QWEN}/support/old-notes.txt"
    counting = FailingS3(s3, fail_at=None)
    assert upload(legal, "legal") == 0
    s3.put_object(Bucket=BUCKET, Key=leftover, Body=b"from an earlier attempt")
    upload_adapter(counting, BUCKET, TARGET, "support", support)
    writes = counting.writes
    assert writes >= 7  # 3 staged, 1 leftover removed, 3 copies, staging cleared

    expected = {"legal": digests(legal), "support": digests(support)}
    for fail_at in range(1, writes + 1):
        empty_bucket(s3)
        assert upload(legal, "legal") == 0
        s3.put_object(Bucket=BUCKET, Key=leftover, Body=b"from an earlier attempt")
        with pytest.raises(ConnectionError):
            upload_adapter(FailingS3(s3, fail_at), BUCKET, TARGET, "support", support)
        ray_view.assert_whole_or_absent(expected, s3)
        assert "legal" in ray_view.listed()
        assert upload(support, "support") == 0
        assert ray_view.listed() == {"legal", "support"}
        assert ray_view.load("support") == expected["support"]
        assert not any(k.startswith("staging/") for k in keys(s3)) and leftover not in keys(s3)


def test_a_delete_interrupted_at_every_write_is_never_half_visible(s3, tmp_path, ray_view):
    from stacks.publishing.adapters import delete_adapter

    support = adapter_dir(tmp_path, "support")
    expected = {"support": digests(support)}
    for fail_at in (1, 2):  # the config's delete, then the batch with the rest
        empty_bucket(s3)
        assert upload(support, "support") == 0
        with pytest.raises(ConnectionError):
            delete_adapter(FailingS3(s3, fail_at), BUCKET, QWEN, "support")
        ray_view.assert_whole_or_absent(expected, s3)
        if fail_at == 2:
            assert ray_view.listed() == set()  # unlisted before anything else went
        assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "support"]) == 0
        assert not any(k.startswith("adapters/") for k in keys(s3))


def test_killed_uploads_are_never_half_visible(s3, tmp_path, ray_view):
    """SIGKILL the command while it stages and while it copies into place, many times."""
    directory = adapter_dir(tmp_path, "big", extra_bytes=24 * 2**20, tokenizer_bytes=24 * 2**20)
    expected = {"big": digests(directory)}
    command = [
        LLMSTACKS,
        "upload-adapter",
        "--env",
        "dev",
        "--model",
        QWEN,
        "--adapter",
        "big",
        "--from",
        str(directory),
    ]
    killed, half_copied = {"staging": 0, "copying": 0}, 0
    for round_ in range(8):
        phase = "copying" if round_ % 2 else "staging"
        watched = f"adapters/{QWEN}/big/" if phase == "copying" else "staging/"
        process = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + waits.COMMAND
        while process.poll() is None:
            if any(k.startswith(watched) for k in keys(s3)):
                break
            if time.monotonic() > deadline:  # a hang: killed now, it would count as a kill in a phase it never reached
                process.kill()
                pytest.fail(f"upload-adapter wrote nothing under {watched} in {waits.COMMAND} s")
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.returncode == -signal.SIGKILL:
            killed[phase] += 1
        ray_view.assert_whole_or_absent(expected, s3)
        in_place = any(k.startswith(f"adapters/{QWEN}/big/") for k in keys(s3))
        if ray_view.listed() == {"big"}:  # finished before the kill: start the next round from nothing
            assert main(["delete-adapter", "--env", "dev", "--model", QWEN, "--adapter", "big"]) == 0
        elif in_place:
            half_copied += 1  # some files in place, no adapter_config.json: the window that matters
    # The uploads were really cut short, in both phases, and some mid-copy.
    assert killed["staging"] >= 2 and killed["copying"] >= 2 and half_copied >= 1, (killed, half_copied)
    result = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=waits.COMMAND)
    assert result.returncode == 0, result.stderr
    assert ray_view.listed() == {"big"} and ray_view.load("big") == expected["big"]


# ---------------------------------------------------------------- bad input


def _config(**changes):
    def change(d: Path) -> None:
        config = json.loads((d / "adapter_config.json").read_text())
        config.update(changes)
        (d / "adapter_config.json").write_text(json.dumps(config))

    return change


def _link_outside(d: Path) -> None:
    secret = d.parent / "outside.txt"
    secret.write_text("secret")
    (d / "notes.txt").symlink_to(secret)


def _rank_mismatch(d: Path) -> None:
    write_safetensors(
        d / "adapter_model.safetensors",
        {"m.q_proj.lora_A.weight": ("F16", [16, 64]), "m.q_proj.lora_B.weight": ("F16", [64, 16])},
    )


BAD = [
    ("missing-config", lambda d: (d / "adapter_config.json").unlink(), "adapter_config.json: missing"),
    (
        "config-not-json",
        lambda d: (d / "adapter_config.json").write_text("{nope"),
        "adapter_config.json: not valid JSON",
    ),
    ("not-lora", _config(peft_type="IA3"), "peft_type: 'IA3' is not a LoRA adapter"),
    ("dora", _config(use_dora=True), "DoRA adapters are not served by vLLM"),
    ("rank-too-high", _config(r=64), "r: rank 64 exceeds lora.max_rank 32 of model qwen2.5-7b-instruct"),
    ("rank-pattern-too-high", _config(rank_pattern={"q_proj": 128}), "rank 128 exceeds lora.max_rank 32"),
    ("rank-missing", _config(r=None), "r: None is not a LoRA rank"),
    (
        "wrong-base-model",
        _config(base_model_name_or_path="meta-llama/Llama-3.1-8B-Instruct"),
        "base_model_name_or_path: 'meta-llama/Llama-3.1-8B-Instruct' is not model qwen2.5-7b-instruct",
    ),
    ("no-base-model", _config(base_model_name_or_path=None), "base_model_name_or_path: missing"),
    ("no-weights", lambda d: (d / "adapter_model.safetensors").unlink(), "no adapter_model.safetensors"),
    ("pickled-weights", lambda d: (d / "adapter_model.bin").write_bytes(b"x"), "pickled weights are not published"),
    (
        "corrupt-weights",
        lambda d: (d / "adapter_model.safetensors").write_bytes(os.urandom(512)),
        "not a safetensors file",
    ),
    (
        "truncated-weights",
        lambda d: (d / "adapter_model.safetensors").write_bytes((d / "adapter_model.safetensors").read_bytes()[:-10]),
        "truncated or padded",
    ),
    ("weights-disagree-with-rank", _rank_mismatch, "has rank 16, but adapter_config.json says r=8"),
    (
        "no-lora-tensors",
        lambda d: write_safetensors(d / "adapter_model.safetensors", {"x": ("U8", [8])}),
        "no LoRA tensors",
    ),
    ("link-outside", _link_outside, "links outside"),
    ("empty-directory", lambda d: [p.unlink() for p in d.iterdir()], "empty directory"),
]


@pytest.mark.parametrize(("change", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_adapter_directories_are_one_line_exit_2_and_upload_nothing(s3, tmp_path, capsys, change, needle):
    assert upload(adapter_dir(tmp_path, "legal"), "legal") == 0
    before = keys(s3)
    directory = adapter_dir(tmp_path, "support")
    change(directory)
    capsys.readouterr()
    assert upload(directory, "support") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert keys(s3) == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "no-such-model", "--adapter", "a"], "dev.yaml: --model: 'no-such-model' is not a model of dev"),
        (
            ["--model", LLAMA, "--adapter", "a"],
            f"--model: '{LLAMA}' does not serve LoRA adapters (set models[1].lora.enabled)",
        ),
        (["--model", QWEN, "--adapter", "bad:name"], "--adapter: adapter name 'bad:name' is not valid"),
        (["--model", QWEN, "--adapter", "../escape"], "--adapter: adapter name '../escape' is not valid"),
        (["--model", QWEN, "--adapter", "a", "--from", "/nonexistent/dir"], "/nonexistent/dir: not a directory"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(s3, tmp_path, capsys, args, needle):
    if "--from" not in args:
        args = [*args, "--from", str(adapter_dir(tmp_path, "a"))]
    assert main(["upload-adapter", "--env", "dev", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert keys(s3) == set()


def test_no_credentials_is_one_line_exit_2(s3_endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL_S3=s3_endpoint,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    for command in (["upload-adapter", "--adapter", "a", "--from", str(adapter_dir(tmp_path, "a"))], ["list-adapters"]):
        result = subprocess.run(
            [LLMSTACKS, *command, "--env", "dev", "--model", QWEN],
            env=env,
            capture_output=True,
            text=True,
            timeout=waits.COMMAND,
        )
        assert result.returncode == 2
        assert (
            result.stderr.strip()
            == "error: no AWS credentials (standard chain: AWS_* variables, a profile, SSO, or an instance role)"
        )


def test_library_rejects_before_touching_s3(tmp_path):
    class NoS3:
        def __getattr__(self, name):
            raise AssertionError("S3 was called")

    with pytest.raises(ArtifactError, match="rank 64 exceeds"):
        upload_adapter(NoS3(), BUCKET, TARGET, "support", adapter_dir(tmp_path, "support", rank=64))
