"""Write Ray's own Serve and Serve LLM Grafana dashboards, from Ray's dashboard factory, into `dashboards/`.

`make dashboards` (= `python -m infra.platform.observability.generate_dashboards [--out DIR]`).
The only module that imports Ray (import-linter's `ray-importers` contract names
it): the stacks read the committed JSON, so synthesizing needs no Ray. A test
regenerates the files and requires them byte for byte, so they follow the
installed Ray and are never edited by hand.

What changes from the factory's output, and nothing else:
- the hidden `datasource` variable selects kube-prometheus-stack's Prometheus;
- the metric fixes below, each of which must still apply (so a Ray release that
  fixes one fails here, and the fix is removed rather than kept blindly);
- the JSON is written with sorted keys, and the factory's environment overrides
  (`RAY_GRAFANA_*`: uids, global filters, log links) are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray.dashboard.modules.metrics import grafana_dashboard_factory as factory

from infra.platform.observability.names import GRAFANA_DATASOURCE_NAME, GRAFANA_DATASOURCE_UID

RAY_VERSION = "2.60.0"
DEFAULT_OUT = Path(__file__).resolve().parent / "dashboards"
FACTORIES: dict[str, Callable[[], tuple[str, str]]] = {
    "ray-serve": factory.generate_serve_grafana_dashboard,
    "ray-serve-llm": factory.generate_serve_llm_grafana_dashboard,
}
# Ray 2.60's Serve LLM dashboard queries two names that Ray 2.60 with vLLM 0.29 never exports.
DROPPED = {
    # vLLM 0.29 (V1 engine) does not swap: vllm/v1/metrics/loggers.py defines no num_requests_swapped.
    "ray_vllm_num_requests_swapped",
}
RENAMED = {
    # A counter (`_counter_cls` in vllm/distributed/kv_transfer/kv_connector/v1/nixl/stats.py):
    # Ray exports counters with the `_total` suffix only.
    "ray_vllm_nixl_num_failed_transfers": "ray_vllm_nixl_num_failed_transfers_total",
}


def render() -> dict[str, str]:
    """File name -> the dashboard JSON text, as committed."""
    if ray.__version__ != RAY_VERSION:
        raise RuntimeError(f"the dashboards follow Ray {RAY_VERSION}; Ray {ray.__version__} is installed")
    dashboards = {}
    with _without_overrides():
        for name, generate in FACTORIES.items():
            content, _uid = generate()
            dashboards[name] = json.loads(content)
    applied: set[str] = set()
    for dashboard in dashboards.values():
        _select_datasource(dashboard)
        applied |= _fix_metrics(dashboard)
    if stale := (DROPPED | set(RENAMED)) - applied:
        raise RuntimeError(f"metric fixes no longer apply (Ray changed its dashboards): {sorted(stale)}")
    return {
        f"{name}.json": json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, d in sorted(dashboards.items())
    }


def write(out: Path) -> list[Path]:
    """Write every dashboard into `out` (a file no longer generated is left for the drift test to report)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


@contextmanager
def _without_overrides() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("RAY_GRAFANA_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def _select_datasource(dashboard: dict[str, Any]) -> None:
    variables = [v for v in dashboard["templating"]["list"] if v.get("type") == "datasource"]
    if [v["name"] for v in variables] != ["datasource"]:
        raise RuntimeError(f"{dashboard['title']}: expected one datasource variable named 'datasource'")
    variables[0]["current"] = {"selected": True, "text": GRAFANA_DATASOURCE_NAME, "value": GRAFANA_DATASOURCE_UID}


def _fix_metrics(dashboard: dict[str, Any]) -> set[str]:
    """Drop the targets (and panels left empty) that query a DROPPED name; rename RENAMED ones."""
    applied: set[str] = set()

    def uses(expr: str, name: str) -> bool:
        return re.search(rf"\b{name}\b", expr) is not None

    def fix(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for panel in panels:
            if "panels" in panel:
                panel["panels"] = fix(panel["panels"])
            targets = panel.get("targets")
            if targets:
                for name in DROPPED:
                    if any(uses(t["expr"], name) for t in targets):
                        applied.add(name)
                        targets = [t for t in targets if not uses(t["expr"], name)]
                for target in targets:
                    for old, new in RENAMED.items():
                        if uses(target["expr"], old):
                            applied.add(old)
                            target["expr"] = re.sub(rf"\b{old}\b", new, target["expr"])
                if not targets:
                    continue
                panel["targets"] = targets
            kept.append(panel)
        return kept

    dashboard["panels"] = fix(dashboard["panels"])
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON files (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
