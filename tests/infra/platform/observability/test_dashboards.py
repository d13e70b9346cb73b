"""The committed dashboards are exactly what Ray 2.60's dashboard factory generates (through
`make dashboards`), and reach Grafana as ConfigMaps its sidecar picks up."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from infra.platform.observability import MONITORING_NAMESPACE
from infra.platform.observability.dashboards import dashboard_config_maps, dashboard_files, dashboards
from observability_samples import ENVIRONMENT

DASHBOARDS = ROOT / "infra" / "platform" / "observability" / "dashboards"


def test_committed_dashboards_are_byte_identical_to_a_fresh_generation(tmp_path):
    from infra.platform.observability.generate_dashboards import write

    write(tmp_path)
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in DASHBOARDS.iterdir()}
    assert sorted(committed) == sorted(fresh) == ["ray-serve-llm.json", "ray-serve.json"]
    for name, content in fresh.items():
        assert committed[name] == content, f"{name} differs from Ray's factory: run `make dashboards`"


def test_generation_ignores_the_factorys_environment_overrides(monkeypatch):
    from infra.platform.observability.generate_dashboards import render

    monkeypatch.setenv("RAY_GRAFANA_SERVE_LLM_DASHBOARD_UID", "other")
    monkeypatch.setenv("RAY_GRAFANA_SERVE_DASHBOARD_GLOBAL_FILTERS", 'job="x"')
    assert render() == dashboard_files()


def test_make_dashboards_runs_the_generator(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "infra.platform.observability.generate_dashboards", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(dashboard_files())
    dry_run = subprocess.run(["make", "-n", "dashboards"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry_run.returncode == 0, dry_run.stderr
    assert ".venv/bin/python -m infra.platform.observability.generate_dashboards" in dry_run.stdout.splitlines()


def test_dashboards_are_rays_with_stable_uids_and_kube_prometheus_stacks_datasource():
    boards = dashboards()
    assert {name: (b["uid"], b["title"]) for name, b in boards.items()} == {
        "ray-serve.json": ("rayServeDashboard", "Serve Dashboard"),
        "ray-serve-llm.json": ("rayServeLlmDashboard", "Serve LLM Dashboard"),
    }
    for board in boards.values():
        assert "rayVersion:2.60.0" in board["tags"]
        (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
        assert variable["current"] == {"selected": True, "text": "Prometheus", "value": "prometheus"}
        ids = panel_ids(board["panels"])
        assert len(ids) == len(set(ids)), "panel ids must be unique and stable"


def panel_ids(panels: list[dict]) -> list[int]:
    return [i for panel in panels for i in (panel["id"], *panel_ids(panel.get("panels", [])))]


def test_dashboard_files_are_sorted_json_ending_in_a_newline():
    for name, text in dashboard_files().items():
        assert text.endswith("}\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n", name


def test_one_config_map_per_dashboard_for_the_grafana_sidecar():
    maps = dashboard_config_maps(ENVIRONMENT)
    files = dashboard_files()
    assert [m["metadata"]["name"] for m in maps] == ["grafana-dashboard-ray-serve-llm", "grafana-dashboard-ray-serve"]
    for config_map, (name, text) in zip(maps, files.items(), strict=True):
        assert config_map["metadata"]["namespace"] == MONITORING_NAMESPACE
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["data"] == {name: text}
        # A ConfigMap holds at most 1 MiB; Helm's release record (gzipped) holds all objects.
        assert len(json.dumps(config_map).encode()) < 1024 * 1024 // 2


def test_panels_left_by_the_metric_fixes():
    """The one panel on a name vLLM 0.29 lacks is gone; the counter is read with its _total."""
    llm = dashboard_files()["ray-serve-llm.json"]
    assert "ray_vllm_num_requests_swapped" not in llm
    assert "ray_vllm_nixl_num_failed_transfers_total{" in llm
    assert "ray_vllm_nixl_num_failed_transfers{" not in llm
