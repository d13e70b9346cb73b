"""Service specs rendered from an environment's plan: Anyscale service, Ray Serve config, KubeRay RayService.

All three carry the same application (`app.serving:build_app` with the
environment's args) and place each model's replicas on the node pool the
stack creates for it. `render_specs` is the one entry: the stack publishes
its texts, synth writes them under `cdktf.out/specs/<env>/`, publish deploys
them, and the preview diffs them.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import yaml

from stacks.planning.plan import EnvironmentPlan
from stacks.specs.anyscale import anyscale_service
from stacks.specs.application import application, serve_config
from stacks.specs.kuberay import rayservice

ANYSCALE_FILE, SERVE_FILE, RAYSERVICE_FILE = "anyscale-service.yaml", "serve-config.yaml", "rayservice.yaml"
SPEC_FILES = (ANYSCALE_FILE, SERVE_FILE, RAYSERVICE_FILE)
# Where the stack publishes specs, in the LoRA bucket: specs/<env>/<version>/<file>.
SPECS_PREFIX = "specs"


@dataclass(frozen=True)
class ServiceSpecs:
    """An environment's three specs, as documents and as the YAML texts written and published."""

    documents: dict[str, dict]
    texts: dict[str, str]

    @property
    def version(self) -> str:
        """A short content hash of all spec files: the same specs, the same version."""
        return spec_version(self.texts)

    def prefix(self, environment: str) -> str:
        """The content-addressed key prefix the stack publishes them under."""
        return f"{SPECS_PREFIX}/{environment}/{self.version}"


def render_specs(plan: EnvironmentPlan) -> ServiceSpecs:
    app = application(plan)  # rendered once; each document gets its own copy
    documents = {
        ANYSCALE_FILE: anyscale_service(plan, copy.deepcopy(app)),
        SERVE_FILE: serve_config(copy.deepcopy(app)),
        RAYSERVICE_FILE: rayservice(plan, app),
    }
    return ServiceSpecs(documents, {name: to_yaml(doc) for name, doc in documents.items()})


def to_yaml(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=120)


def spec_version(texts: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    return digest.hexdigest()[:16]
