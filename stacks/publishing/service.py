"""Deploy, inspect and roll back an environment's service.

Anyscale target: the rendered service config goes to `anyscale.service.deploy`
(rollouts, canaries and rollback are the SDK's). KubeRay target: the
RayService manifest is written and the `kubectl apply` line printed.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stacks.errors import ConfigError
from stacks.planning.plan import EnvironmentPlan
from stacks.specs.app_package import app_zip
from stacks.specs.render import ANYSCALE_FILE, RAYSERVICE_FILE, ServiceSpecs

TOKEN_ENV = "ANYSCALE_CLI_TOKEN"
CREDENTIALS_FILE = Path("~/.anyscale/credentials.json")


@dataclass(frozen=True)
class RolloutOptions:
    in_place: bool = False
    canary_percent: int | None = None
    max_surge_percent: int | None = None


def anyscale_sdk():
    """The SDK's service client; None means the SDK's default (the real API)."""
    return None


def _require_credentials(source: str) -> None:
    if os.environ.get(TOKEN_ENV) or CREDENTIALS_FILE.expanduser().is_file():
        return
    raise ConfigError(
        source,
        TOKEN_ENV,
        "not set and no ~/.anyscale/credentials.json; create a token with `anyscale login` "
        "or in the Anyscale console, or use --dry-run",
    )


def _service_config(specs: ServiceSpecs, app_dir: Path | None = None):
    from anyscale.service.models import ServiceConfig

    # The SDK uploads local py_modules (zipping the folder itself); an absolute path works from any directory.
    return ServiceConfig(**{**specs.documents[ANYSCALE_FILE], **({"py_modules": [str(app_dir)]} if app_dir else {})})


@contextmanager
def _staged_app() -> Iterator[Path]:
    """The app package exactly as the published zip holds it, in a folder of its own for the SDK
    to upload: never the installed folder itself, where __pycache__ and strays would ride along."""
    with tempfile.TemporaryDirectory(prefix="llmstacks-app-") as tmp:
        with zipfile.ZipFile(io.BytesIO(app_zip())) as archive:
            archive.extractall(tmp)
        yield Path(tmp) / "app"


def publish(plan: EnvironmentPlan, specs: ServiceSpecs, options: RolloutOptions, *, dry_run: bool, outdir: Path) -> str:
    """Deploy the environment's service; returns what to tell the user."""
    env = plan.env
    if env.serving.target == "kuberay":
        # One path to the cluster: the platform stack applies the RayService, so a deploy of it is
        # the rollout (KubeRay upgrades without downtime) and its state records what runs.
        where = (
            f"the {plan.names.platform_stack} stack applies the RayService: run `cdktf deploy {plan.names.platform_stack}` "
            f"(make deploy ENV={env.name} deploys both stacks in order)"
        )
        if dry_run:
            return f"nothing to publish for the kuberay target; {where}. The RayService it applies:\n{specs.texts[RAYSERVICE_FILE]}"
        return f"nothing to publish for the kuberay target; {where}"
    config = _service_config(specs)
    if dry_run:
        settings = ", ".join(f"{k}={v}" for k, v in vars(options).items() if v not in (None, False)) or "defaults"
        return f"would deploy Anyscale service {config.name!r} ({settings}):\n{specs.texts[ANYSCALE_FILE]}"
    sdk = anyscale_sdk()
    if sdk is None:
        _require_credentials(plan.source)
    import anyscale

    with _anyscale_errors(plan), _staged_app() as app_dir:
        service_id = anyscale.service.deploy(
            _service_config(specs, app_dir),
            in_place=options.in_place,
            canary_percent=options.canary_percent,
            max_surge_percent=options.max_surge_percent,
            _private_sdk=sdk,
        )
    return f"deployed Anyscale service {config.name!r} (id {service_id})"


def status(plan: EnvironmentPlan) -> str:
    import anyscale

    sdk = _anyscale_only(plan)
    settings = plan.env.serving.anyscale
    with _anyscale_errors(plan):
        result = anyscale.service.status(
            plan.names.service, cloud=settings.cloud, project=settings.project, _private_sdk=sdk
        )
    lines = [f"service {result.name}: {result.state}"]
    for label, version in (("primary", result.primary_version), ("canary", result.canary_version)):
        if version is not None:
            lines.append(f"  {label} version {version.name}: {version.state}, weight {version.weight}%")
    return "\n".join(lines)


def rollback(plan: EnvironmentPlan, max_surge_percent: int | None) -> str:
    import anyscale

    sdk = _anyscale_only(plan)
    settings = plan.env.serving.anyscale
    with _anyscale_errors(plan):
        anyscale.service.rollback(
            plan.names.service,
            cloud=settings.cloud,
            project=settings.project,
            max_surge_percent=max_surge_percent,
            _private_sdk=sdk,
        )
    return f"rolled back Anyscale service {plan.names.service!r} to its previous version"


@contextmanager
def _anyscale_errors(plan: EnvironmentPlan) -> Iterator[None]:
    """The SDK's refusals as one line: a cloud it does not know is the environment's field."""
    from anyscale._private.anyscale_client.common import CloudNotFoundError

    try:
        yield
    except CloudNotFoundError as exc:
        raise ConfigError(plan.source, "serving.anyscale.cloud", f"Anyscale says: {exc}") from None


def _anyscale_only(plan: EnvironmentPlan):
    target = plan.env.serving.target
    if target != "anyscale":
        raise ConfigError(
            plan.source,
            "serving.target",
            f"{target!r}: status and rollback are for the anyscale target; use kubectl for a RayService",
        )
    sdk = anyscale_sdk()
    if sdk is None:
        _require_credentials(plan.source)
    return sdk
