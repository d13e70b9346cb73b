"""Bucket weights are served from a pinned snapshot: the environment file names it, synth refuses a
bucket model without one (saying how to get one), and the specs point every replica at it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stacks.config.loader import parse_environment
from stacks.errors import ConfigError
from stacks.planning.plan import plan_environment
from stacks.specs.app_args import app_args

DEV = yaml.safe_load((Path(__file__).resolve().parents[2] / "stacks" / "environments" / "dev.yaml").read_text())


def planned(weights: dict | None):
    data = copy.deepcopy(DEV)
    model = data["models"][0]
    model.pop("weights", None)
    if weights is not None:
        model["weights"] = weights
    return plan_environment(parse_environment(data, "dev.yaml"), source="dev.yaml")


def refused(weights: dict | None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        planned(weights)
    return caught.value


def test_the_pinned_snapshot_is_what_every_replica_loads():
    plan = planned({"snapshot": "0123456789abcdef"})
    spec = app_args(plan).models[0]
    assert spec.snapshot == "0123456789abcdef"
    from app.serving import llm_config_dict

    source = llm_config_dict(app_args(plan), spec)["model_loading_config"]["model_source"]
    assert source == f"s3://{plan.names.weights_bucket}/models/{spec.id}/0123456789abcdef"


def test_a_bucket_model_without_a_snapshot_is_refused_with_how_to_get_one():
    error = refused(None)
    assert error.field == "models[0].weights.snapshot"
    assert "llmstacks upload-model --model qwen2.5-7b-instruct" in error.message
    assert (
        "published before snapshots" in error.message and "must be published again with upload-model" in error.message
    )
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    "weights, says",
    [
        ({"snapshot": "0123456789ABCDEF"}, "expected a value matching ^[0-9a-f]{16}$"),
        ({"snapshot": "0123"}, "expected a value matching ^[0-9a-f]{16}$"),
        ({"snapshot": "../../other-model"}, "expected a value matching ^[0-9a-f]{16}$"),
        (
            {"source": "huggingface", "hf_id": "Qwen/Qwen2.5-7B-Instruct", "snapshot": "0123456789abcdef"},
            "Hugging Face weights have none",
        ),
    ],
)
def test_a_snapshot_that_cannot_name_a_published_upload_is_refused(weights, says):
    error = refused(weights)
    assert error.field.startswith("models[0].weights"), error.field
    assert says in error.message
