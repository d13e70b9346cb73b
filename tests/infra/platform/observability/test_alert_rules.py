"""The alert rules: what they watch, with which thresholds and durations, only in this environment's
serving namespace, with the objective each model's environment file sets."""

from __future__ import annotations

import re

import promql_parser as pp
import pytest

from infra.platform.observability import ModelObjective, monitoring_objects
from observability_samples import ENVIRONMENT, MODELS, NAMESPACE, rules, sample_objects

EXPECTED = {
    # alert: (severity, for)
    "LLMKVCacheNearlyFull": ("warning", "10m"),
    "LLMRequestsWaiting": ("warning", "15m"),
    "ServeRequestsQueued": ("warning", "10m"),
    "LLMTimeToFirstTokenHigh": ("warning", "5m"),
    "ServeHTTP5xxRateHigh": ("critical", "5m"),
    "RayPodRestarting": ("warning", "5m"),
    "ServeReplicaHealthChecksFailing": ("warning", "10m"),
    "GPUPodsPending": ("warning", "15m"),
    "RayMetricsDown": ("warning", "10m"),
}


def selectors(expr: str) -> list[pp.VectorSelector]:
    found = []
    pp.walk(pp.parse(expr), lambda node: found.append(node) if isinstance(node, pp.VectorSelector) else None)
    return found


def output_labels(node) -> set[str] | None:
    """The labels an expression's result keeps (None: every label of the series). Binary operations keep their
    vector side's (left if both): true of filters, `and`, and ratios of two sums by the same labels."""
    if isinstance(node, pp.ParenExpr):
        return output_labels(node.expr)
    if isinstance(node, pp.AggregateExpr):
        if node.modifier is None:
            return set()
        if node.modifier.type == pp.AggModifierType.By:
            return set(node.modifier.labels)
        inner = output_labels(node.expr)
        return None if inner is None else inner - set(node.modifier.labels)
    if isinstance(node, pp.Call):
        vectors = [a for a in node.args if not isinstance(a, (pp.NumberLiteral, pp.StringLiteral))]
        inner = output_labels(vectors[0])
        return inner - {"le"} if node.func.name == "histogram_quantile" and inner is not None else inner
    if isinstance(node, pp.BinaryExpr):
        return output_labels(node.rhs if isinstance(node.lhs, pp.NumberLiteral) else node.lhs)
    return None  # a selector


@pytest.fixture(scope="module")
def alerts():
    return rules(sample_objects())


def test_the_alerts_their_severities_and_durations(alerts):
    assert [a["alert"] for a in alerts] == [
        "LLMKVCacheNearlyFull",
        "LLMRequestsWaiting",
        "ServeRequestsQueued",
        "LLMTimeToFirstTokenHigh",
        "LLMTimeToFirstTokenHigh",  # one per model, sorted by id
        "ServeHTTP5xxRateHigh",
        "RayPodRestarting",
        "ServeReplicaHealthChecksFailing",
        "GPUPodsPending",
        "RayMetricsDown",
    ]
    for alert in alerts:
        assert (alert["labels"]["severity"], alert["for"]) == EXPECTED[alert["alert"]], alert["alert"]
        assert alert["labels"]["environment"] == ENVIRONMENT
        assert {"summary", "description", "runbook"} <= set(alert["annotations"])


def test_every_selector_is_scoped_to_the_serving_namespace(alerts):
    for alert in alerts:
        for selector in selectors(alert["expr"]):
            scoped = [m for m in selector.matchers.matchers if m.name == "namespace"]
            assert [(m.op, m.value) for m in scoped] == [(pp.MatchOp.Equal, NAMESPACE)], (alert["alert"], selector)


def test_each_model_has_a_time_to_first_token_alert_with_its_own_objective(alerts):
    ttft = {a["labels"]["model"]: a for a in alerts if a["alert"] == "LLMTimeToFirstTokenHigh"}
    assert sorted(ttft) == sorted(m.id for m in MODELS)
    for model in MODELS:
        expr = ttft[model.id]["expr"]
        (selector,) = selectors(expr)
        assert selector.name == "ray_vllm_time_to_first_token_seconds_bucket"
        assert {m.name: m.value for m in selector.matchers.matchers}["model_name"] == model.id
        assert expr.startswith("histogram_quantile(0.95, ") and "[10m]" in expr  # p95 over 10 minutes
        assert float(expr.rsplit(">", 1)[1]) == model.ttft_p95_seconds
        assert f"{model.ttft_p95_seconds:g}s objective" in ttft[model.id]["annotations"]["summary"]


@pytest.mark.parametrize(
    ("alert", "threshold"),
    [
        ("LLMKVCacheNearlyFull", "> 0.9"),
        ("LLMRequestsWaiting", "> 0"),
        ("ServeRequestsQueued", "> 0"),
        ("ServeHTTP5xxRateHigh", "> 0.05"),
        ("RayPodRestarting", "> 0"),
        ("ServeReplicaHealthChecksFailing", "> 0"),
        ("RayMetricsDown", "== 0"),
    ],
)
def test_thresholds(alerts, alert, threshold):
    (rule,) = [a for a in alerts if a["alert"] == alert]
    assert rule["expr"].endswith(threshold)


def test_5xx_and_gpu_pending_read_the_right_series(alerts):
    by_name = {a["alert"]: a["expr"] for a in alerts}
    assert (
        'status_code=~"5.."' in by_name["ServeHTTP5xxRateHigh"] and 'route!~"/-/.*"' in by_name["ServeHTTP5xxRateHigh"]
    )
    assert 'phase="Pending"' in by_name["GPUPodsPending"] and 'resource="nvidia_com_gpu"' in by_name["GPUPodsPending"]


def test_annotations_name_only_labels_the_expression_keeps(alerts):
    for alert in alerts:
        kept = output_labels(pp.parse(alert["expr"]))
        text = " ".join(alert["annotations"].values())
        for label in re.findall(r"\$labels\.(\w+)", text):
            assert kept is None or label in kept, (alert["alert"], label, kept)


def test_objects_are_deterministic_and_independent_of_model_order():
    again = monitoring_objects(environment=ENVIRONMENT, serving_namespace=NAMESPACE, models=list(reversed(MODELS)))
    assert again == sample_objects()


def test_no_models_no_time_to_first_token_alerts():
    objects = monitoring_objects(environment=ENVIRONMENT, serving_namespace=NAMESPACE, models=[])
    assert "LLMTimeToFirstTokenHigh" not in [a["alert"] for a in rules(objects)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"environment": "Dev env"}, "environment: "),
        ({"environment": ""}, "environment: must not be empty"),
        ({"serving_namespace": "LLM"}, "serving_namespace: "),
        ({"models": [ModelObjective("a"), ModelObjective("a", 3.0)]}, "duplicate ids ['a']"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    args = {"environment": ENVIRONMENT, "serving_namespace": NAMESPACE, "models": MODELS, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        monitoring_objects(**args)


@pytest.mark.parametrize(
    ("model_id", "ttft"), [("a/b", 2.0), ("", 2.0), ("m", 0), ("m", -1.0), ("m", 601), ("m", True)]
)
def test_a_bad_objective_is_refused(model_id, ttft):
    with pytest.raises(ValueError):
        ModelObjective(model_id, ttft)


def test_the_shipped_environments_objectives_reach_their_alerts(shipped_environments):
    for env in shipped_environments.values():
        models = [ModelObjective(m.id, m.workload.ttft_p95_seconds) for m in env.models]
        objects = monitoring_objects(environment=env.name, serving_namespace=env.serving.namespace, models=models)
        ttft = {a["labels"]["model"]: a["expr"] for a in rules(objects) if a["alert"] == "LLMTimeToFirstTokenHigh"}
        assert {m.id: float(ttft[m.id].rsplit(">", 1)[1]) for m in env.models} == {
            m.id: m.workload.ttft_p95_seconds for m in env.models
        }
