"""The app contract's own rules: names a request can address, engine settings it refuses."""

from __future__ import annotations

import pytest

from app.spec import adapter_name_problem, engine_kwarg_problem


@pytest.mark.parametrize("name", ["ok", "support-v2", "A.b_c-1"])
def test_good_adapter_names(name):
    assert adapter_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "a:b", "a/b", "-lead", "x" * 64, "sp ace", "../up", "ok\n"])
def test_bad_adapter_names(name):
    assert "adapter name" in adapter_name_problem(name)


@pytest.mark.parametrize(("key", "needle"), [
    ("max_model_len", "set from the model's 'max_model_len' field"),
    ("enable_lora", "set from the model's 'lora' field"),
    ("data_parallel_size", "changes the GPUs or nodes a replica uses"),
    ("prefill_context_parallel_size", "changes the GPUs or nodes a replica uses"),
])
def test_engine_settings_the_kit_owns_or_that_change_the_gpu_count_are_refused(key, needle):
    assert needle in engine_kwarg_problem(key)


@pytest.mark.parametrize("key", ["enable_prefix_caching", "quantization", "decode_context_parallel_size", "enable_expert_parallel"])
def test_other_engine_settings_pass_through(key):
    assert engine_kwarg_problem(key) is None
