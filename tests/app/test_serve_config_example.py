"""The README's Serve config example is what Ray and the app accept."""

from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from app.serving import parse_args

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "serve-config.yaml"


def test_example_serve_config_passes_ray_and_the_app_contract():
    config = yaml.safe_load(EXAMPLE.read_text())
    schema = ServeDeploySchema.model_validate(config)
    (application,) = schema.applications
    assert application.import_path == "app.serving:build_app"
    spec = parse_args(application.args)
    assert [m.id for m in spec.models] == ["qwen2.5-7b-instruct", "llama-3.1-8b-instruct"]
    assert spec.models[0].load == "stream" and spec.models[0].routing.request_router_class.endswith(
        ":PrefixCacheAffinityRouter"
    )
