"""Every monitoring object validated against its schema: PodMonitor and PrometheusRule against the
Prometheus operator's CRDs that kube-prometheus-stack 88.5.3 ships (vendored, tests/schemas/monitoring/),
ConfigMaps with kubernetes-validate; no unknown field anywhere."""

from __future__ import annotations

import copy
import re
from functools import cache

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import TESTS
from infra.catalog import DEFAULT_EKS_VERSION
from infra.platform.charts import CHARTS
from infra.platform.observability import ModelObjective, monitoring_objects
from infra.rules import label_key_problem, label_value_problem
from observability_samples import sample_objects

SCHEMAS = TESTS / "schemas" / "monitoring"
CRDS = {"PodMonitor": SCHEMAS / "crd-podmonitors.yaml", "PrometheusRule": SCHEMAS / "crd-prometheusrules.yaml"}
# The clusters' default version, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = sorted({DEFAULT_EKS_VERSION, kubernetes_validate.latest_version().rsplit(".", 1)[0]})
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def closed(schema):
    """The schema with unknown fields refused wherever it lists properties (the API server prunes them silently)."""
    if isinstance(schema, dict):
        schema = {k: closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    return schema


@cache
def crd(kind: str) -> dict:
    return yaml.safe_load(CRDS[kind].read_text())


@cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    (version,) = [v for v in crd(kind)["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(closed(version["schema"]["openAPIV3Schema"]))


def custom_resource_problems(document: dict) -> list[str]:
    definition = crd(document["kind"])
    group, _, version = document["apiVersion"].partition("/")
    problems = (
        [] if (group, version) == (definition["spec"]["group"], "v1") else [f"apiVersion {document['apiVersion']}"]
    )
    errors = validator(document["kind"]).iter_errors(document)
    return problems + [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def metadata_problems(document: dict) -> list[str]:
    """What the OpenAPI schemas leave out: names and labels as the API server checks them."""
    metadata = document["metadata"]
    problems = [] if _DNS_SUBDOMAIN.fullmatch(metadata["name"]) else [f"name {metadata['name']!r}"]
    for key, value in metadata.get("labels", {}).items():
        problems += [p for p in (label_key_problem(key), label_value_problem(value)) if p]
    return problems


@pytest.fixture(scope="module")
def objects():
    return sample_objects()


def test_the_crds_are_those_kube_prometheus_stack_88_5_3_ships():
    assert CHARTS["kube-prometheus-stack"].version == "88.5.3"
    operator = CHARTS["kube-prometheus-stack"].app_version.split()[0].lstrip("v")
    for kind, path in CRDS.items():
        assert crd(kind)["metadata"]["annotations"]["operator.prometheus.io/version"] == operator
        assert crd(kind)["spec"]["names"]["kind"] == kind
        upstream = f"https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/v{operator}/"
        assert path.read_text().startswith(f"# {upstream}")


def test_every_custom_resource_matches_its_crd(objects):
    custom = [o for o in objects if o["kind"] in CRDS]
    assert [o["kind"] for o in custom] == ["PodMonitor", "PodMonitor", "PrometheusRule"]
    for document in custom:
        assert custom_resource_problems(document) == [], document["metadata"]["name"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_config_map_matches_the_kubernetes_schema(objects, version):
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert len(maps) == 2
    for document in maps:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_custom_resources_carry_valid_object_metadata(objects, version):
    """ObjectMeta is one schema for every kind: checked through a ConfigMap carrying the same metadata."""
    for document in objects:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": document["metadata"]}, version, strict=True
        )
        assert metadata_problems(document) == [], document["metadata"]


def test_every_object_survives_the_yaml_the_platform_chart_writes(objects):
    for document in objects:
        assert yaml.safe_load(yaml.safe_dump(document, sort_keys=False, width=120)) == document


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        (
            "PodMonitor",
            lambda o: o["spec"].update(podMetricEndpoints=o["spec"].pop("podMetricsEndpoints")),
            "Additional properties are not allowed ('podMetricEndpoints' was unexpected)",
        ),
        ("PodMonitor", lambda o: o["spec"]["podMetricsEndpoints"][0].update(port=8080), "8080 is not of type 'string'"),
        (
            "PodMonitor",
            lambda o: o["spec"]["podMetricsEndpoints"][0]["relabelings"][0].update(action="rewrite"),
            "'rewrite' is not one of",
        ),
        (
            "PrometheusRule",
            lambda o: o["spec"]["groups"][0]["rules"][0].update({"for": "ten minutes"}),
            "does not match",
        ),
        (
            "PrometheusRule",
            lambda o: o["spec"]["groups"][0]["rules"][0].update(severity="critical"),
            "Additional properties are not allowed ('severity' was unexpected)",
        ),
        (
            "PrometheusRule",
            lambda o: o["spec"]["groups"][0]["rules"][0]["labels"].update(count=3),
            "3 is not of type 'string'",
        ),
    ],
)
def test_a_planted_schema_error_is_refused(objects, kind, mutate, expected):
    document = copy.deepcopy(next(o for o in objects if o["kind"] == kind))
    mutate(document)
    problems = custom_resource_problems(document)
    assert problems and any(expected in p for p in problems), problems


def test_a_planted_config_map_error_is_refused(objects):
    document = copy.deepcopy(next(o for o in objects if o["kind"] == "ConfigMap"))
    document["data"]["ray-serve-llm.json"] = {"not": "a string"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, DEFAULT_EKS_VERSION, strict=True)


def test_the_shipped_environments_objects_are_valid_too(shipped_environments):
    for env in shipped_environments.values():
        models = [ModelObjective(m.id, m.workload.ttft_p95_seconds) for m in env.models]
        for document in monitoring_objects(
            environment=env.name, serving_namespace=env.serving.namespace, models=models
        ):
            if document["kind"] in CRDS:
                assert custom_resource_problems(document) == [], (env.name, document["metadata"]["name"])
            else:
                kubernetes_validate.validate(document, DEFAULT_EKS_VERSION, strict=True)
            assert metadata_problems(document) == []
