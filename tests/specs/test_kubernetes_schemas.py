"""Every Kubernetes object we render, checked against the API's own schemas.

Core kinds with `kubernetes-validate` (the Kubernetes OpenAPI schemas, strict: no unknown
field) at the version created clusters run; custom resources against the upstream CRD
schemas vendored under tests/schemas/ (source and version beside each).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from infra.catalog import DEFAULT_EKS_VERSION
from stacks.specs.platform import platform_objects
from stacks.specs.render import RAYSERVICE_FILE, render_specs

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
ENVS = ("dev", "staging", "prod")
CORE = ("v1", "apps/v1", "policy/v1", "rbac.authorization.k8s.io/v1")


def crd_schema(path: Path, version: str) -> dict:
    crd = yaml.safe_load(path.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return served["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def rayservice_schema():
    return crd_schema(SCHEMAS / "kuberay" / "ray.io_rayservices.yaml", "v1")


def custom_resource_problems(document: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("env", ENVS)
def test_every_core_object_is_valid_kubernetes(shipped_plans, env):
    plan = shipped_plans[env]
    core = [o for o in platform_objects(plan, render_specs(plan)).all if o["apiVersion"] in CORE]
    assert core
    for document in core:
        kubernetes_validate.validate(document, DEFAULT_EKS_VERSION, strict=True)


@pytest.mark.parametrize("env", ENVS)
def test_the_rayservice_matches_kuberays_crd(shipped_plans, rayservice_schema, env):
    plan = shipped_plans[env]
    document = render_specs(plan).documents[RAYSERVICE_FILE]
    assert custom_resource_problems(document, rayservice_schema) == []


def test_the_schemas_catch_a_broken_object(shipped_plans, rayservice_schema):
    plan = shipped_plans["staging"]
    document = render_specs(plan).documents[RAYSERVICE_FILE]
    document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "two"
    assert any("minReplicas" in p for p in custom_resource_problems(document, rayservice_schema))
    namespace = next(o for o in platform_objects(plan, render_specs(plan)).all if o["kind"] == "Namespace")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**namespace, "spek": {}}, DEFAULT_EKS_VERSION, strict=True)


@pytest.mark.parametrize("env", ENVS)
def test_ray_workers_are_valid_pods_with_shared_memory_for_nccl(shipped_plans, env):
    """Each worker group's pod, as Kubernetes will create it (strict), with /dev/shm in memory:
    the container runtime's 64 MiB default breaks tensor parallelism across a node's GPUs."""
    groups = render_specs(shipped_plans[env]).documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    for group in groups:
        template = group["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "w", **template["metadata"]},
            "spec": template["spec"],
        }
        kubernetes_validate.validate(pod, DEFAULT_EKS_VERSION, strict=True)
        (worker,) = template["spec"]["containers"]
        (mount,) = [m for m in worker["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
        assert volume["emptyDir"] == {"medium": "Memory"}
