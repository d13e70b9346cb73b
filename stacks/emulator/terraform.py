"""Terraform, run offline: the binary on PATH and the AWS provider from a local filesystem mirror.

Nothing is downloaded: the CLI configuration allows only the mirror. A missing
binary or mirror is a `ToolError` saying exactly what is missing.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stacks.errors import ToolError

MIRROR_ENV = "LLMSTACKS_PROVIDER_MIRROR"
PROVIDER = "registry.terraform.io/hashicorp/aws"
# Where Terraform and images look for unpacked provider mirrors (Terraform's implied
# local mirror directories on Linux and macOS, plus /opt/tf-plugins).
MIRROR_ROOTS = (
    "/opt/tf-plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)
COMMAND_SECONDS = 900


@dataclass(frozen=True)
class Mirror:
    root: Path
    version: str


def _arch() -> str:
    machine = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    return f"{platform.system().lower()}_{machine}"


def find_mirror() -> Mirror:
    """The newest hashicorp/aws provider in a local filesystem mirror (${LLMSTACKS_PROVIDER_MIRROR} first)."""
    roots = [os.environ[MIRROR_ENV]] if os.environ.get(MIRROR_ENV) else list(MIRROR_ROOTS)
    for root in (Path(r).expanduser() for r in roots):
        versions = sorted(
            (p for p in (root / PROVIDER).glob(f"*/{_arch()}") if any(p.glob("terraform-provider-aws_*"))),
            key=lambda p: tuple(int(x) for x in p.parent.name.split(".") if x.isdigit()),
        )
        if versions:
            return Mirror(root, versions[-1].parent.name)
    where = os.environ.get(MIRROR_ENV) or ", ".join(MIRROR_ROOTS)
    raise ToolError(
        f"no local mirror of the {PROVIDER} provider for {_arch()} in {where} "
        f"(set {MIRROR_ENV} to a filesystem mirror directory)"
    )


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if found is None:
        raise ToolError("terraform is not on PATH (Terraform >= 1.10 is needed)")
    return found


class Terraform:
    """One working directory, offline; `run` raises ToolError with Terraform's last error line."""

    def __init__(self, workdir: Path, mirror: Mirror, env: dict[str, str]):
        self.workdir, self.binary = Path(workdir), terraform_binary()
        config = self.workdir / ".terraformrc"
        config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = {json.dumps(str(mirror.root))}\n    include = ["{PROVIDER}"]\n  }}\n'
            "}\n"
        )
        self.env = {
            **os.environ,
            **env,
            "TF_CLI_CONFIG_FILE": str(config),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
            "TF_INPUT": "0",
        }

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                [self.binary, *args],
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise ToolError(f"terraform {args[0]} took over {COMMAND_SECONDS} s in {self.workdir}") from None
        if done.returncode not in ok:
            raise ToolError(f"terraform {args[0]} failed in {self.workdir}: {last_error(done.stderr or done.stdout)}")
        return done

    def init(self) -> None:
        self.run("init", "-input=false", "-no-color")

    def apply(self) -> None:
        self.run("apply", "-auto-approve", "-input=false", "-no-color")

    def outputs(self) -> dict[str, object]:
        return {name: value["value"] for name, value in json.loads(self.run("output", "-json").stdout).items()}

    def state(self) -> dict[str, dict]:
        """Resource address -> its attribute values, as Terraform's state holds them."""
        shown = json.loads(self.run("show", "-json").stdout)
        resources = shown.get("values", {}).get("root_module", {}).get("resources", [])
        return {r["address"]: r["values"] for r in resources}

    def destroy(self) -> None:
        self.run("destroy", "-auto-approve", "-input=false", "-no-color")

    def plan_changes(self) -> list[dict]:
        """The resource changes a plan would make now (`terraform show -json` of a saved plan)."""
        self.run("plan", "-input=false", "-no-color", "-out=next.plan", "-detailed-exitcode", ok=(0, 2))
        shown = json.loads(self.run("show", "-json", "next.plan").stdout)
        return [c for c in shown.get("resource_changes", []) if c["change"]["actions"] != ["no-op"]]


def last_error(text: str) -> str:
    """The first `Error:` line of Terraform's output (its summary), else its last line."""
    lines = [line.strip("│ ╷╵").strip() for line in text.splitlines()]
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors or [line for line in lines if line] or ["no output"])[0]
