"""The Ray Serve application every spec carries, and the plain Ray Serve config around it."""

from __future__ import annotations

from stacks.planning.plan import EnvironmentPlan
from stacks.specs.app_args import app_args

RAY_VERSION = "2.60.0"
APP_NAME = "llm"
IMPORT_PATH = "app.serving:build_app"
SERVE_PORT = 8000


def application(plan: EnvironmentPlan) -> dict:
    return {
        "name": APP_NAME,
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "args": app_args(plan).model_dump(mode="json", exclude_none=True),
    }


def serve_config(application: dict) -> dict:
    """The Ray Serve config for `serve run` / `serve deploy`."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": [application],
    }
