"""Synthesize environments into an output directory, all or nothing.

Stacks are synthesized into a temporary sibling directory and moved into
place only when every one succeeded, so a failure never leaves a half
written `cdktf.out`. The AWS provider bindings load once per process.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from infra import node_runtime  # noqa: F401  (before cdktf: picks the Node runtime)
from cdktf import App

from stacks.environment import Environment
from stacks.serving_stack import ServingStack

MANIFEST = "manifest.json"


def synthesize(
    envs: list[tuple[Environment, str]],
    outdir: Path,
    *,
    replace_all: bool,
    before_install: Callable[[], object] | None = None,
) -> dict[str, Path]:
    """Synthesize `(environment, source file)` pairs; returns stack name -> cdk.tf.json.

    With `replace_all` the output directory becomes exactly these stacks and
    their specs; otherwise they replace their own previous versions and the
    rest stays. `before_install` runs last before anything is moved into
    place; if it raises, nothing is.
    """
    outdir = Path(outdir).absolute()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        app = App(outdir=str(staging))
        stacks = [ServingStack(app, env, source=source) for env, source in envs]
        app.synth()
        for stack in stacks:
            write_specs(stack.spec_texts, staging / "specs" / stack.names.stack)
        names = [stack.names.stack for stack in stacks]
        if before_install is not None:
            before_install()
        if replace_all or not outdir.exists():
            _swap_directory(staging, outdir)
        else:
            _merge_stacks(staging, outdir, names)
        return {name: outdir / "stacks" / name / "cdk.tf.json" for name in names}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_specs(texts: dict[str, str], directory: Path) -> None:
    """An environment's service specs, as cdktf.out/specs/<env>/*.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (directory / name).write_text(text)


def _swap_directory(new: Path, target: Path) -> None:
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.rename(new, fresh / "out")
    if target.exists():
        old = fresh / "old"
        os.rename(target, old)
    os.rename(fresh / "out", target)
    shutil.rmtree(fresh, ignore_errors=True)


def _merge_stacks(staging: Path, outdir: Path, names: list[str]) -> None:
    for kind in ("stacks", "specs"):
        (outdir / kind).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = outdir / kind / name
            if target.exists():
                os.rename(target, staging / f"previous-{kind}-{name}")
            os.rename(staging / kind / name, target)
    manifest = json.loads((staging / MANIFEST).read_text())
    try:
        current = json.loads((outdir / MANIFEST).read_text())
        current.setdefault("stacks", {}).update(manifest["stacks"])
        manifest = {**manifest, "stacks": current["stacks"]}
    except (OSError, ValueError, AttributeError):
        pass  # no usable manifest yet: the new one stands
    tmp = outdir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, outdir / MANIFEST)
