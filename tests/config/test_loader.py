"""The environment schema and loader, below the CLI: shipped files, names, field paths."""

from __future__ import annotations

import pytest

from stacks.config.loader import ENVIRONMENTS_DIR, field_path, load_environment
from stacks.errors import ConfigError
from stacks.config.names import Names


def test_shipped_environments_load(shipped_environments):
    assert sorted(shipped_environments) == ["dev", "prod", "staging"]
    assert shipped_environments["prod"].buckets.prevent_destroy is True
    assert shipped_environments["dev"].cluster.existing.name == "ml-dev"


def test_names_are_derived_from_prefix_environment_and_account(shipped_environments):
    names = Names(shipped_environments["staging"])
    assert names.weights_bucket == "llm-staging-weights-222222222222"
    assert names.lora_bucket == "llm-staging-lora-222222222222"
    assert names.serving_role == "llm-staging-serving"
    assert names.cluster == "llm-staging"  # created, no explicit name
    assert names.node_group("l40s") == "llm-staging-l40s"
    assert names.state_key == "llm-serving-stacks/staging/staging.tfstate"
    assert names.model_adapters_uri("m") == "s3://llm-staging-lora-222222222222/adapters/m"


def test_field_paths_read_like_the_file():
    assert field_path(("models", 0, "lora", "max_rank")) == "models[0].lora.max_rank"
    assert field_path(("node_pools", 1, "labels", "bad key", "[key]")) == "node_pools[1].labels['bad key']"


def test_unknown_nested_key_lists_the_allowed_ones(tmp_path):
    path = tmp_path / "dev.yaml"
    path.write_text(
        (ENVIRONMENTS_DIR / "dev.yaml")
        .read_text()
        .replace("replicas: {min: 0, max: 2}", "replicas: {min: 0, max: 2, burst: 3}")
    )
    with pytest.raises(ConfigError) as error:
        load_environment(path)
    assert error.value.field == "models[0].replicas.burst"
    assert error.value.message == "unknown key; allowed: min, max, upscale_delay_s, downscale_delay_s"
