"""Every metric an alert rule or a dashboard panel reads is one Ray 2.60, vLLM 0.29 (through Ray),
kube-state-metrics or Prometheus itself exports, with the right suffix for its type."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import metric_catalog
from metric_catalog import catalog
from observability_samples import dashboard_queries, rule_queries, rules, sample_objects
from promql_names import expand, grafana_to_promql, metric_names


def unknown_names(queries: list[tuple[str, str]]) -> list[str]:
    """`<where>: <name>` for every name no package exports (a `re:` pattern: one that selects nothing known)."""
    known = catalog()
    problems = []
    for where, query in queries:
        promql = grafana_to_promql(query)
        if promql is None:
            continue
        for name in metric_names(promql):
            if not name.startswith("re:"):
                if known.lookup(name) is None:
                    problems.append(f"{where}: {name}")
                continue
            pattern = name.removeprefix("re:")
            names = expand(pattern)
            if names is None:  # open-ended: it must at least select something real
                if not known.matches(pattern):
                    problems.append(f"{where}: {name} (selects no exported name)")
            else:
                problems += [f"{where}: {n} (from {name})" for n in names if known.lookup(n) is None]
    return problems


def test_every_alert_reads_exported_metrics():
    queries = rule_queries(sample_objects())
    assert queries
    assert unknown_names(queries) == []


def test_every_dashboard_panel_and_variable_reads_exported_metrics():
    queries = dashboard_queries()
    assert len(queries) > 100
    assert unknown_names(queries) == []


def test_the_alerts_read_these_metrics_from_these_sources():
    used = {n for _, q in rule_queries(sample_objects()) for n in metric_names(q)}
    sources = {name: catalog().lookup(name).source for name in used}
    assert {n: s.split(":")[0] for n, s in sources.items()} == {
        "ray_vllm_kv_cache_usage_perc": "vllm/v1/metrics/loggers.py",
        "ray_vllm_num_requests_waiting": "vllm/v1/metrics/loggers.py",
        "ray_vllm_time_to_first_token_seconds_bucket": "vllm/v1/metrics/loggers.py",
        "ray_serve_deployment_queued_queries": "ray/serve/_private/router.py",
        "ray_serve_num_http_requests_total": "ray/serve/_private/request_ingress_metrics.py",
        "ray_serve_health_check_failures_total": "ray/serve/_private/deployment_state.py",
        "kube_pod_container_status_restarts_total": "kube-state-metrics-v2.20.0-metrics.txt",
        "kube_pod_status_phase": "kube-state-metrics-v2.20.0-metrics.txt",
        "kube_pod_container_resource_requests": "kube-state-metrics-v2.20.0-metrics.txt",
        "up": "Prometheus, per scrape target",
    }


PLANTED = [
    ("ray_vllm_kv_cache_usage_percent", "a misspelt gauge"),
    ("ray_vllm_num_requests_swapped", "gone from vLLM 0.29 (V1 has no swapping)"),
    ("ray_serve_deployment_request_counter", "a Ray counter without _total"),
    ("ray_vllm_kv_cache_usage_perc_total", "a gauge with _total"),
    ("ray_vllm_num_preemptions_bucket", "a counter with _bucket"),
    ("ray_vllm_time_to_first_token_seconds", "a histogram without a suffix"),
    ("vllm:kv_cache_usage_perc", "vLLM's own name, which Ray does not export"),
    ("vllm_kv_cache_usage_perc", "without Ray's namespace"),
    ("kube_pod_status_phases", "not a kube-state-metrics name"),
]


@pytest.mark.parametrize(("name", "why"), PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_unknown_name_in_an_alert_is_refused(name, why):
    objects = copy.deepcopy(sample_objects())
    rule = rules(objects)[0]
    rule["expr"] = f'max by (namespace) ({name}{{namespace="llm-serving"}}) > 0.9'
    assert unknown_names(rule_queries(objects)) == [f"alert {rule['alert']}: {name}"], why


@pytest.mark.parametrize(
    "name",
    [
        "ray_vllm_time_to_first_token_seconds_bucket",
        "ray_vllm_time_to_first_token_seconds_sum",
        "ray_vllm_time_to_first_token_seconds_count",
        "ray_vllm_num_preemptions_total",
        "ray_vllm_kv_cache_usage_perc",
        "ray_serve_deployment_request_counter_total",
        "ray_serve_num_grpc_requests_total",
        "kube_pod_container_status_restarts_total",
    ],
)
def test_each_type_is_known_by_its_own_suffixes(name):
    assert catalog().lookup(name) is not None


@pytest.mark.parametrize(
    ("query", "unknown"),
    [
        ('rate({__name__=~"ray_serve_(http|grpc)_request_latency_ms_bucket"}[5m])', []),
        (
            'rate({__name__=~"ray_serve_(http|grpc)_request_latency_ms"}[5m])',
            [
                "q: ray_serve_http_request_latency_ms (from re:ray_serve_(http|grpc)_request_latency_ms)",
                "q: ray_serve_grpc_request_latency_ms (from re:ray_serve_(http|grpc)_request_latency_ms)",
            ],
        ),
        ('count({__name__=~"ray_vllm_.*"})', []),
        ('count({__name__=~"no_such_.*"})', ["q: re:no_such_.* (selects no exported name)"]),
        ('label_values(ray_vllm_num_requests_running{model_name=~"$m"}, model_name)', []),
        ("label_values(model_name)", []),
        ("sum(rate(ray_vllm_prompt_tokens_total[$__rate_interval]))", []),
    ],
)
def test_name_matchers_and_grafana_queries(query, unknown):
    assert unknown_names([("q", query)]) == unknown


def test_bad_promql_is_refused():
    with pytest.raises(ValueError):
        metric_names("sum(rate(ray_vllm_prompt_tokens_total[5m])")
    with pytest.raises(ValueError):
        metric_names('{__name__!~"ray_.*", job="x"}')


def test_the_generator_fixes_only_names_that_need_it():
    from infra.platform.observability.generate_dashboards import DROPPED, RENAMED

    for name in DROPPED:
        assert catalog().lookup(name) is None, f"{name} is exported after all: stop dropping it"
    for old, new in RENAMED.items():
        assert catalog().lookup(old) is None and catalog().lookup(new) is not None


def test_the_catalog_reads_the_installed_sources():
    ray_names = {m.name: m for m in metric_catalog.ray_python_metrics()}
    vllm_names = {m.name: m for m in metric_catalog.vllm_metrics()}
    assert ray_names["serve_deployment_replica_healthy"].kind == "gauge"
    assert ray_names["serve_deployment_processing_latency_ms"].kind == "histogram"
    assert vllm_names["vllm:kv_cache_usage_perc"].kind == "gauge"
    assert vllm_names["vllm:kv_offload_cpu_cache_usage_perc"].kind == "gauge"  # from an Offloading*Metadata table
    assert vllm_names["vllm:spec_decode_num_drafts"].kind == "counter"  # from a list of (name, doc) tuples
    assert metric_catalog.vllm_to_ray("vllm:kv_cache_usage_perc") == "vllm_kv_cache_usage_perc"
    assert metric_catalog.ray_namespace() == "ray"


def test_vendored_core_metrics_are_in_the_installed_raylet():
    """Ray's C++ metrics have no Python definition: their name and description must be in the raylet binary."""
    from importlib.util import find_spec

    binary = (Path(find_spec("ray").origin).parent / "core/src/ray/raylet/raylet").read_bytes()
    for line in metric_catalog.RAY_CORE_METRICS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            fields, description = line.split("#", 1)
            name = fields.split()[0]
            assert b"\0" + name.encode() + b"\0" in binary, name
            assert description.strip().encode() in binary, description
