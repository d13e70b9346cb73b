"""Hostile environment files and arguments, as a pull request or a careless user could write them.

Each runs the real command in a subprocess with a time limit and an address-space limit:
exit status 2, one short line naming the file, no traceback, nothing written.
"""

from __future__ import annotations

import copy
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from stacks.config.loader import ENVIRONMENTS_DIR

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
DEV_TEXT = (ENVIRONMENTS_DIR / "dev.yaml").read_text()
DEV = yaml.safe_load(DEV_TEXT)
MEMORY = 1536 * 1024 * 1024  # address space, bytes: far above a good run's needs, far below a blow-up
# A bound the test asserts: a hostile file must not make the command hang. A refusal takes ~1 s on this
# machine loaded 4x; a read blocked on a FIFO or a quadratic scan takes forever. Not a speed check.
SECONDS = 120
MESSAGE_MAX = 600  # a message quotes a short prefix, never a whole hostile value


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLMSTACKS, *args], capture_output=True, text=True, cwd=cwd, timeout=SECONDS, preexec_fn=limited
    )


def dev_with(change: Callable[[dict], None]) -> str:
    data = copy.deepcopy(DEV)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def laughs(levels: int, fanout: int = 9) -> str:
    """The "billion laughs": each anchor holds `fanout` aliases of the previous one."""
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def engine(**kwargs) -> Callable[[dict], None]:
    return lambda d: d["models"][0]["engine_kwargs"].update(kwargs)


def written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def json_file(text: str) -> Callable[[Path], str]:
    """An environment whose model's architecture is a config.json with `text` in it."""

    def make(tmp: Path) -> str:
        (tmp / "arch.json").write_text(text)
        return dev_with(lambda d: d["models"][1].update(architecture=str(tmp / "arch.json")))

    return make


def architecture(target: Callable[[Path], Path]) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        return dev_with(lambda d: d["models"][1].update(architecture=str(target(tmp))))

    return make


def linked_json(target: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / "link.json").symlink_to(target)
        return tmp / "link.json"

    return make


# (id, the file: text, bytes, or a function of the work directory returning either, field, needle)
FILES = [
    ("over-a-mebibyte", DEV_TEXT + "# padding\n" * 120_000, "", "over 1,048,576 bytes"),
    (
        "fifty-megabytes-in-one-value",
        lambda tmp: DEV_TEXT.replace("name: dev", "name: " + "d" * 50_000_000, 1),
        "",
        "over 1,048,576 bytes",
    ),
    ("billion-laughs", laughs(9), "", "expands to more than 100,000 values"),
    (
        "alias-bomb-in-engine-kwargs",
        DEV_TEXT.replace(
            "      enable_prefix_caching: true",
            "".join(f"      {line}\n" for line in laughs(6).splitlines()).rstrip(),
            1,
        ),
        "",
        "expands to more than 100,000 values",
    ),
    (
        "fifty-thousand-deep-flow",
        DEV_TEXT.replace("enable_prefix_caching: true", "deep: " + nested(50_000), 1),
        "",
        "nested more than 32 levels deep",
    ),
    (
        "forty-deep-block",
        DEV_TEXT + "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n",
        "",
        "nested more than 32 levels deep",
    ),
    ("not-utf8", DEV_TEXT.encode() + b"\n# \xff\xfe\n", "", "not UTF-8 text"),
    ("nul-byte", DEV_TEXT.replace("prefix: llm", "prefix: l\x00lm"), "", "invalid YAML"),
    ("python-object-tag", DEV_TEXT + "\nhook: !!python/object/apply:os.system ['touch pwned']\n", "", "invalid YAML"),
    (
        "engine-kwargs-too-many",
        dev_with(engine(**{f"k{i}": i for i in range(100)})),
        "models[0].engine_kwargs",
        "101 entries; at most 64",
    ),
    (
        "engine-kwargs-template-key",
        dev_with(engine(**{'${file("/etc/passwd")}': 1})),
        "models[0].engine_kwargs",
        "a vLLM engine setting",
    ),
    (
        "engine-kwargs-deep-value",
        dev_with(engine(tree=yaml.safe_load(nested(12)))),
        "models[0].engine_kwargs.tree",
        "nested more than 8 levels deep",
    ),
    (
        "engine-kwargs-long-string",
        dev_with(engine(chat_template="x" * 10_000)),
        "models[0].engine_kwargs.chat_template",
        "a string of 10,000 characters",
    ),
    (
        "engine-kwargs-many-values",
        dev_with(engine(values=list(range(5_000)))),
        "models[0].engine_kwargs.values",
        "more than 1,000 values",
    ),
    (
        "labels-too-many",
        dev_with(lambda d: d["node_pools"][1].update(labels={f"k{i}": "v" for i in range(100)})),
        "node_pools[1].labels",
        "100 entries; at most 32",
    ),
    ("tags-too-many", dev_with(lambda d: d["tags"].update({f"t{i}": "v" for i in range(41)})), "tags", "at most 40"),
    (
        "image-with-newline",
        dev_with(lambda d: d["serving"].update(anyscale={"image_uri": "repo/image:1\nkind: Pod"})),
        "serving.anyscale.image_uri",
        "control character",
    ),
    (
        "long-pattern-value-is-quoted-short",
        dev_with(lambda d: d["cluster"]["existing"].update(name="c" * 400_000)),
        "cluster.existing.name",
        "(400,000 characters)",
    ),
    (
        "architecture-fifo",
        architecture(lambda tmp: fifo(tmp / "arch.json")),
        "models[1].architecture",
        "not a regular file",
    ),
    (
        "architecture-link-to-dev-zero",
        architecture(linked_json("/dev/zero")),
        "models[1].architecture",
        "not a regular file",
    ),
    ("architecture-deep-json", json_file(nested(100_000)), "models[1].architecture", "nested more than 64 levels deep"),
    (
        "architecture-huge-json",
        json_file('{"pad": "' + "x" * 2_000_000 + '"}'),
        "models[1].architecture",
        "over 1,048,576 bytes",
    ),
    ("architecture-json-list", json_file("[1, 2]"), "models[1].architecture", "not a JSON object"),
    (
        "architecture-unterminated-string",
        json_file('"' + '\\"' * 400_000),
        "models[1].architecture",
        "Unterminated string",
    ),
    (
        "architecture-string-size",
        json_file('{"num_attention_heads": 16, "num_hidden_layers": 24, "hidden_size": "big", "vocab_size": 1000}'),
        "models[1].architecture",
        "hidden_size is 'big'",
    ),
    (
        "architecture-bool-size",
        json_file('{"num_attention_heads": true, "num_hidden_layers": 24, "hidden_size": 8, "vocab_size": 1000}'),
        "models[1].architecture",
        "not a whole number",
    ),
]


def _write(tmp: Path, content) -> Path:
    if callable(content):
        content = content(tmp)
    path = tmp / "dev.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and not p.is_fifo()
    }


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], starts: str, needle: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(starts), lines[0][:300]
    assert needle in lines[0], lines[0][:300]
    assert len(lines[0]) <= MESSAGE_MAX, len(lines[0])
    assert result.stdout == ""


@pytest.mark.parametrize(("content", "field", "needle"), [c[1:] for c in FILES], ids=[c[0] for c in FILES])
def test_a_hostile_environment_file_is_one_bounded_line_exit_2(tmp_path: Path, content, field, needle):
    config = _write(tmp_path, content)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text("previous synth")
    before = tree(tmp_path)
    started = time.monotonic()
    result = run("synth", "--config", str(config), "--outdir", str(tmp_path / "out"), cwd=tmp_path)
    assert time.monotonic() - started < SECONDS
    assert_one_line_exit_2(result, f"error: {config}: {field}", needle)
    assert tree(tmp_path) == before
    assert not (tmp_path / "pwned").exists()


SPECIAL_FILES = [
    ("a-fifo", lambda tmp: fifo(tmp / "dev.yaml"), "not a regular file"),
    ("a-directory", lambda tmp: (tmp / "dev.yaml").mkdir() or tmp / "dev.yaml", "not a regular file"),
    ("dev-zero", lambda tmp: Path("/dev/zero"), "not a regular file"),
]


@pytest.mark.parametrize(("make", "needle"), [c[1:] for c in SPECIAL_FILES], ids=[c[0] for c in SPECIAL_FILES])
def test_a_config_that_is_not_a_regular_file_never_blocks(tmp_path: Path, make, needle):
    config = make(tmp_path)
    result = run("synth", "--config", str(config), "--outdir", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_exit_2(result, f"error: {config}: ", needle)
    assert not (tmp_path / "out").exists()


def test_a_huge_environment_name_is_quoted_short(tmp_path: Path):
    result = run(
        "synth",
        "--env-dir",
        str(ENVIRONMENTS_DIR),
        "--env",
        "e" * 100_000,
        "--outdir",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert_one_line_exit_2(result, f"error: {ENVIRONMENTS_DIR}: --env: no environment 'eeee", "(100,000 characters)")


@pytest.mark.parametrize("kind", ["a-file", "a-foreign-directory"])
def test_synth_never_replaces_what_is_not_its_own_output(tmp_path: Path, kind):
    target = tmp_path / "target"
    if kind == "a-file":
        target.write_text("precious")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("precious")
    before = tree(tmp_path)
    result = run("synth", "--env-dir", str(ENVIRONMENTS_DIR), "--env", "dev", "--outdir", str(target), cwd=tmp_path)
    assert_one_line_exit_2(result, f"error: --outdir: {target}", "give a new or a previous output directory")
    assert tree(tmp_path) == before


def test_a_hostile_baseline_is_refused_before_anything_runs(tmp_path: Path):
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(laughs(9))
    result = run(
        "check",
        "--env-dir",
        str(ENVIRONMENTS_DIR),
        "--env",
        "dev",
        "--outdir",
        str(tmp_path / "out"),
        "--baseline",
        str(baseline),
        cwd=tmp_path,
    )
    assert_one_line_exit_2(result, f"error: {baseline}: ", "expands to more than 100,000 values")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda tmp: written(tmp / "deep.json", nested(100_000)), "nested more than 64 levels deep"),
        (linked_json("/dev/zero"), "not a regular file"),
    ],
)
def test_plan_capacity_reads_a_config_json_bounded(tmp_path: Path, make, needle):
    path = make(tmp_path)
    result = run("plan-capacity", "--model", str(path), "--gpu", "L4", "--max-model-len", "4096", cwd=tmp_path)
    assert_one_line_exit_2(result, "error: ", needle)
