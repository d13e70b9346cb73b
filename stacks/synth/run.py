"""Synthesize planned environments into an output directory, all or nothing.

Each environment's specs are rendered once and checked with the vendors'
schemas (Ray's and Anyscale's take ~3 s to import) in a thread while cdktf
loads the AWS provider bindings (~12 s, once per process). Stacks are
synthesized into a temporary sibling directory that replaces the output only
when every stack and every spec check succeeded, so a failure never leaves a
half-written `cdktf.out`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stacks.errors import ConfigError
from stacks.planning.plan import EnvironmentPlan
from stacks.specs.platform import PLATFORM_FILE, platform_objects, platform_text
from stacks.specs.render import ServiceSpecs, render_specs
from stacks.specs.validate import check_specs

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SynthResult:
    stack_files: dict[str, Path]  # stack name (<env> and <env>-platform) -> its cdk.tf.json
    specs: dict[str, ServiceSpecs]  # environment -> its specs
    validators: list[str]  # the spec checks that ran


def synthesize(plans: list[EnvironmentPlan], outdir: Path, *, replace_all: bool) -> SynthResult:
    """Synthesize `plans` into `outdir` (cdktf.out).

    With `replace_all` the output directory becomes exactly these stacks and
    their specs; otherwise they replace their own previous versions and the
    rest stays.
    """
    outdir = Path(outdir).absolute()
    _check_outdir(outdir)
    specs = {plan.env.name: render_specs(plan) for plan in plans}
    with ThreadPoolExecutor(max_workers=1) as pool:
        checked = pool.submit(lambda: [check_specs(plan, specs[plan.env.name]) for plan in plans])
        files = _synthesize_stacks(plans, specs, outdir, replace_all, before_install=checked.result)
    validators = checked.result()
    return SynthResult(files, specs, validators[0] if validators else [])


def _check_outdir(outdir: Path) -> None:
    """Synth replaces its output directory: refuse one that is not a synth output (a file, `.`, a home directory)."""
    if not outdir.exists():
        return
    if not outdir.is_dir() or outdir.is_symlink():
        raise ConfigError(
            "--outdir", "", f"{outdir} exists and is not a directory; give a new or a previous output directory"
        )
    if any(outdir.iterdir()) and not (outdir / MANIFEST).is_file():
        raise ConfigError(
            "--outdir",
            "",
            f"{outdir} is not empty and holds no {MANIFEST}: not a synth output, so it is not "
            "replaced; give a new or a previous output directory",
        )


def _synthesize_stacks(plans, specs, outdir: Path, replace_all: bool, before_install) -> dict[str, Path]:
    from infra import node_runtime  # noqa: F401  (before cdktf: picks the Node runtime)
    from cdktf import App

    from stacks.synth.platform import PlatformStack
    from stacks.synth.stack import ServingStack

    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        app = App(outdir=str(staging))
        names = []
        for plan in plans:
            env_specs = specs[plan.env.name]
            objects = platform_objects(plan, env_specs)
            aws = ServingStack(app, plan, env_specs)
            PlatformStack(app, plan, env_specs, objects).add_dependency(aws)
            write_specs(env_specs, staging / "specs" / plan.env.name, {PLATFORM_FILE: platform_text(objects)})
            names += [plan.names.stack, plan.names.platform_stack]
        app.synth()
        before_install()  # the spec checks: if they fail, nothing is moved into place
        if replace_all or not outdir.exists():
            _swap_directory(staging, outdir)
        else:
            _merge_stacks(staging, outdir, names)
        return {name: outdir / "stacks" / name / "cdk.tf.json" for name in names}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_specs(specs: ServiceSpecs, directory: Path, more: dict[str, str]) -> None:
    """An environment's service specs and platform objects, as cdktf.out/specs/<env>/*.yaml, for review."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in {**specs.texts, **more}.items():
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
            if not (staging / kind / name).exists():
                continue  # specs are per environment, not per stack
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
