"""The alert rules an on-call engineer acts on, as one PrometheusRule in the serving namespace.

Every expression selects `namespace="<serving namespace>"` (the label the
Prometheus operator gives each PodMonitor target, and kube-state-metrics gives
each pod), so only this environment's pods count. Metric names come from Ray
2.60 (`ray_serve_*`), vLLM 0.29 as Ray exports it (`ray_vllm_*`), kube-state-
metrics and Prometheus's own `up`; tests/infra/platform/observability checks each one against
the installed packages and the vendored lists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from infra.platform.observability.names import ModelObjective, metadata

RULE_NAME = "llm-serving-alerts"
DASHBOARD_HINT = "Grafana: Serve LLM Dashboard (uid rayServeLlmDashboard) and Serve Dashboard (uid rayServeDashboard)."
KV_CACHE_FULL_FRACTION = 0.9
HTTP_5XX_FRACTION = 0.05
# Ray's own system routes (/-/healthz, /-/routes) answer 503 while draining: not user traffic.
_USER_ROUTES = 'route!~"/-/.*"'
_HTTP_REQUESTS = "ray_serve_num_http_requests_total"  # labeled with status_code


def _quote(value: str) -> str:
    """A PromQL string literal (Go escaping, which JSON's matches for these characters)."""
    return json.dumps(value)


def _rule(
    alert: str,
    expr: str,
    for_: str,
    severity: str,
    environment: str,
    summary: str,
    description: str,
    runbook: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, "environment": environment, **(labels or {})},
        "annotations": {"summary": summary, "description": description, "runbook": f"{runbook} {DASHBOARD_HINT}"},
    }


def alert_rules(environment: str, serving_namespace: str, models: Sequence[ModelObjective]) -> list[dict[str, Any]]:
    ns = f"namespace={_quote(serving_namespace)}"
    where = "in {{ $labels.namespace }}"
    rules = [
        _rule(
            "LLMKVCacheNearlyFull",
            f"avg by (namespace, model_name) (ray_vllm_kv_cache_usage_perc{{{ns}}}) > {KV_CACHE_FULL_FRACTION}",
            "10m",
            "warning",
            environment,
            "{{ $labels.model_name }}: KV cache {{ $value | humanizePercentage }} full for 10 minutes",
            f"vLLM's KV cache for {{{{ $labels.model_name }}}} {where} has averaged above "
            f"{KV_CACHE_FULL_FRACTION:.0%} across replicas for 10 minutes: new requests wait for room and running "
            "ones are preempted and recomputed, so time to first token rises.",
            "Add capacity: raise the model's replicas.max (and its node pool's max_size if the pool is full), or "
            "lower max_num_seqs or max_model_len. If only some replicas are full, check the routing.",
        ),
        _rule(
            "LLMRequestsWaiting",
            f"sum by (namespace, model_name) (ray_vllm_num_requests_waiting{{{ns}}}) > 0",
            "15m",
            "warning",
            environment,
            "{{ $labels.model_name }}: requests have waited in the engine for 15 minutes",
            f"{{{{ $value }}}} requests wait in vLLM for {{{{ $labels.model_name }}}} {where}, and some have "
            "waited at every evaluation for 15 minutes: its replicas are saturated (batch size or KV cache).",
            "Check whether Serve scaled the model up; if it is at replicas.max, raise it (and the pool's max_size). "
            "See LLMKVCacheNearlyFull and GPUPodsPending.",
        ),
        _rule(
            "ServeRequestsQueued",
            f"sum by (namespace, application, deployment) (ray_serve_deployment_queued_queries{{{ns}}}) > 0",
            "10m",
            "warning",
            environment,
            "{{ $labels.deployment }}: requests queued in Ray Serve for 10 minutes",
            f"Ray Serve has held requests for {{{{ $labels.deployment }}}} {where} for 10 minutes because every "
            "replica is at max_ongoing_requests.",
            "Autoscaling is not keeping up: check the deployment's replica count against replicas.max, pending "
            "GPU pods (GPUPodsPending) and replica health.",
        ),
        *(
            _rule(
                "LLMTimeToFirstTokenHigh",
                "histogram_quantile(0.95, sum by (le, namespace, model_name) "
                f"(rate(ray_vllm_time_to_first_token_seconds_bucket{{{ns}, model_name={_quote(m.id)}}}[10m]))) "
                f"> {m.ttft_p95_seconds:g}",
                "5m",
                "warning",
                environment,
                f"{m.id}: time to first token p95 {{{{ $value | humanizeDuration }}}} above its "
                f"{m.ttft_p95_seconds:g}s objective",
                f"The 95th percentile of time to first token for {m.id} {where}, over 10 minutes, is above the "
                f"objective the environment file sets (models[].workload.ttft_p95_seconds = {m.ttft_p95_seconds:g}).",
                "Look for the cause in order: requests waiting (LLMRequestsWaiting, ServeRequestsQueued), KV cache "
                "full (LLMKVCacheNearlyFull), prompt lengths grown, replicas lost (RayPodRestarting).",
                {"model": m.id},
            )
            for m in sorted(models, key=lambda m: m.id)
        ),
        _rule(
            "ServeHTTP5xxRateHigh",
            f'sum by (namespace, application) (rate({_HTTP_REQUESTS}{{{ns}, {_USER_ROUTES}, status_code=~"5.."}}[5m]))'
            f"\n/\nsum by (namespace, application) (rate({_HTTP_REQUESTS}{{{ns}, {_USER_ROUTES}}}[5m]))"
            f"\n> {HTTP_5XX_FRACTION}",
            "5m",
            "critical",
            environment,
            "{{ $labels.application }}: {{ $value | humanizePercentage }} of requests fail with 5xx",
            f"More than {HTTP_5XX_FRACTION:.0%} of HTTP requests to the Serve application "
            f"{{{{ $labels.application }}}} {where} have answered 5xx for 5 minutes.",
            "Read the replica and proxy logs (Ray dashboard, or kubectl logs on the Ray pods) for the failing "
            "deployment; check replica health (ServeReplicaHealthChecksFailing) and pod restarts (RayPodRestarting).",
        ),
        _rule(
            "RayPodRestarting",
            f"increase(kube_pod_container_status_restarts_total{{{ns}}}[15m]) > 0",
            "5m",
            "warning",
            environment,
            "{{ $labels.pod }}/{{ $labels.container }} restarted",
            f"Container {{{{ $labels.container }}}} of Ray pod {{{{ $labels.pod }}}} {where} restarted in the "
            "last 15 minutes: every model replica on it was lost (a head restart loses the Serve controller).",
            "kubectl describe pod (last state: OOMKilled, Error, liveness) and kubectl logs --previous; for "
            "OOMKilled raise the pod memory or lower gpu_memory_utilization / max_num_seqs.",
        ),
        _rule(
            "ServeReplicaHealthChecksFailing",
            "sum by (namespace, application, deployment) "
            f"(increase(ray_serve_health_check_failures_total{{{ns}}}[10m])) > 0",
            "10m",
            "warning",
            environment,
            "{{ $labels.deployment }}: replicas failing health checks",
            f"Replicas of {{{{ $labels.deployment }}}} {where} have failed health checks for 10 minutes; Ray Serve "
            "replaces such replicas, so they restart without their pod restarting.",
            "Read the replica logs for engine errors (CUDA, out of memory, a stuck engine loop).",
        ),
        _rule(
            "GPUPodsPending",
            f'(max by (namespace, pod) (kube_pod_status_phase{{{ns}, phase="Pending"}}) == 1)'
            "\nand on (namespace, pod)\n"
            f'(max by (namespace, pod) (kube_pod_container_resource_requests{{{ns}, resource="nvidia_com_gpu"}}) > 0)',
            "15m",
            "warning",
            environment,
            "{{ $labels.pod }}: GPU pod pending for 15 minutes",
            f"Pod {{{{ $labels.pod }}}} {where} requests GPUs and has been Pending for 15 minutes: no GPU node "
            "took it, or its image is still pulling.",
            "kubectl describe pod: FailedScheduling means the cluster autoscaler could not add a node (pool at "
            "max_size, spot capacity, EC2 quota, GPU ResourceQuota); otherwise check the image pull.",
        ),
        _rule(
            "RayMetricsDown",
            f"up{{{ns}}} == 0",
            "10m",
            "warning",
            environment,
            "{{ $labels.pod }}: Prometheus cannot scrape Ray's metrics",
            f"Prometheus has failed to scrape {{{{ $labels.pod }}}} {where} for 10 minutes: the other serving "
            "alerts are blind for it.",
            "Check the pod is running and that its container port `metrics` (8080) answers /metrics.",
        ),
    ]
    return rules


def prometheus_rule(environment: str, serving_namespace: str, models: Sequence[ModelObjective]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(RULE_NAME, serving_namespace, environment),
        "spec": {
            "groups": [
                {"name": f"llm-serving.{environment}", "rules": alert_rules(environment, serving_namespace, models)}
            ]
        },
    }
