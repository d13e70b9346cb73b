"""Policies for the rendered service specs (cdktf.out/specs/<env>/*.yaml).

Each policy takes the environment's spec documents by file name and returns
its problems, one line each; none means it passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from infra.compute.scheduling import GPU_PRODUCT_LABEL
from stacks.specs.render import ANYSCALE_FILE as ANYSCALE
from stacks.specs.render import RAYSERVICE_FILE as RAYSERVICE
from stacks.specs.render import SERVE_FILE as SERVE

# Credential formats, wherever they appear in a spec.
SECRET_VALUES = {
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
# Names whose value is a credential, as a mapping key or an environment variable.
SECRET_NAMES = re.compile(
    r"^(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HUGGINGFACE_TOKEN|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|"
    r"ANYSCALE_CLI_TOKEN|OPENAI_API_KEY|.*_PASSWORD|.*_API_KEY)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SpecPolicy:
    id: str
    name: str
    check: Callable[[dict[str, Any]], list[str]]


def no_secrets(documents: dict[str, Any]) -> list[str]:
    problems = []
    for file, document in documents.items():
        for path, key, value in _walk(document):
            if key is not None and SECRET_NAMES.match(str(key)) and value not in (None, ""):
                problems.append(
                    f"{file}: {path}: {key} holds a credential; pass a secret's name and read it at runtime"
                )
            if isinstance(value, str):
                for what, pattern in SECRET_VALUES.items():
                    if pattern.search(value):
                        problems.append(f"{file}: {path}: holds {what}")
    return problems


def query_auth(documents: dict[str, Any]) -> list[str]:
    problems = []
    anyscale = documents.get(ANYSCALE)
    if anyscale is not None and anyscale.get("query_auth_token_enabled") is not True:
        problems.append(f"{ANYSCALE}: query_auth_token_enabled must be true (queries need the service's bearer token)")
    rayservice = documents.get(RAYSERVICE)
    if rayservice is not None:
        service_type = (((rayservice.get("spec") or {}).get("serveService") or {}).get("spec") or {}).get(
            "type", "ClusterIP"
        )
        if service_type in ("LoadBalancer", "NodePort"):
            problems.append(
                f"{RAYSERVICE}: spec.serveService.spec.type {service_type} exposes the unauthenticated "
                "Serve endpoint outside the cluster; keep ClusterIP behind an authenticating gateway"
            )
    return problems


def models_on_gpus(documents: dict[str, Any]) -> list[str]:
    """Every model names a GPU type, and each spec's compute has a GPU worker group of that type."""
    problems = []
    serve = documents.get(SERVE) or {}
    models = [m for app in serve.get("applications", []) for m in (app.get("args") or {}).get("models", [])]
    anyscale_gpus = {
        _gpu_of(w.get("advanced_instance_config", {}).get("spec", {}))
        for w in ((documents.get(ANYSCALE) or {}).get("compute_config") or {}).get("worker_nodes", [])
    }
    rayservice = documents.get(RAYSERVICE)
    kuberay_gpus = {
        _gpu_of(g.get("template", {}).get("spec", {}), require_limit=True)
        for g in ((((rayservice or {}).get("spec") or {}).get("rayClusterConfig") or {}).get("workerGroupSpecs") or [])
    }
    for model in models:
        accelerator = model.get("accelerator_type")
        if not accelerator:
            problems.append(
                f"{SERVE}: model {model.get('id')!r} has no accelerator_type: it would not be placed on a GPU"
            )
            continue
        if ANYSCALE in documents and accelerator not in anyscale_gpus:
            problems.append(f"{ANYSCALE}: no worker group with {accelerator} GPUs for model {model.get('id')!r}")
        if rayservice is not None and accelerator not in kuberay_gpus:
            problems.append(
                f"{RAYSERVICE}: no worker group requesting {accelerator} GPUs for model {model.get('id')!r}"
            )
    return problems


POLICIES = (
    SpecPolicy("LLM_SPEC_1", "Specs hold no credential, only the names of secrets", no_secrets),
    SpecPolicy(
        "LLM_SPEC_2", "Queries need authentication: Anyscale query auth on, no public Serve endpoint", query_auth
    ),
    SpecPolicy("LLM_SPEC_3", "Every model runs on a node pool with GPUs of its accelerator type", models_on_gpus),
)


def load_specs(directory) -> dict[str, Any]:
    """The spec documents of one environment (a file of several documents, such as the platform
    objects, as their list); the RayService's embedded Serve config is parsed too."""
    documents = {}
    for path in sorted(directory.glob("*.yaml")):
        loaded = list(yaml.safe_load_all(path.read_text()))
        documents[path.name] = loaded[0] if len(loaded) == 1 else loaded
    embedded = ((documents.get(RAYSERVICE) or {}).get("spec") or {}).get("serveConfigV2")
    if isinstance(embedded, str):
        documents[f"{RAYSERVICE}#serveConfigV2"] = yaml.safe_load(embedded)
    return documents


def _gpu_of(pod_spec: dict[str, Any], require_limit: bool = False) -> str | None:
    product = (pod_spec.get("nodeSelector") or {}).get(GPU_PRODUCT_LABEL, "")
    if require_limit:
        limits = [
            ((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
            for c in pod_spec.get("containers", [])
        ]
        if not any(limit and int(limit) > 0 for limit in limits):
            return None
    return product.removeprefix("NVIDIA-") or None


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key or env var name, value) for every value in a document."""
    if isinstance(node, dict):
        if set(node) >= {"name", "value"} and isinstance(node.get("name"), str):  # a Kubernetes env var
            yield path, node["name"], node.get("value")
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, key, value
            yield from _walk(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
