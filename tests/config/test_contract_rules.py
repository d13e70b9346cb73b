"""The file's rules that are the app contract's (`app.spec`): called, not copied, so the file and the
app's args give the same verdict in the same words."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.spec import LORA_RANKS, ModelSpec, PrefillSpec, lora_rank_problem, pattern_problem, replicas_problem
from stacks.config.models import Lora, Model, Replicas
from stacks.config.schema import Taint

SNAPSHOT = "0123456789abcdef"


def _error(model, data) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return str(caught.value)


def test_replica_bounds_in_each_sides_words():
    assert replicas_problem(1, 1) is None and replicas_problem(0, 3) is None
    assert replicas_problem(3, 2) == "min_replicas 3 is greater than max_replicas 2"
    assert replicas_problem(3, 2, ("min", "max")) == "min 3 is greater than max 2"
    assert "min 3 is greater than max 2" in _error(Replicas, {"min": 3, "max": 2})
    assert "min_replicas 3 is greater than max_replicas 2" in _error(
        ModelSpec, {"id": "m", "max_model_len": 4096, "snapshot": SNAPSHOT, "min_replicas": 3, "max_replicas": 2}
    )
    assert "prefill min_replicas 3 is greater than max_replicas 2" in _error(
        PrefillSpec, {"min_replicas": 3, "max_replicas": 2}
    )


@pytest.mark.parametrize("rank", [0, 2, 48, 1024])
def test_a_lora_rank_vllm_refuses_is_refused_on_both_sides_in_the_same_words(rank):
    words = lora_rank_problem(rank)
    assert words == f"max_rank must be one of {', '.join(map(str, LORA_RANKS))} (vLLM's allowed values)"
    assert words in _error(Lora, {"max_rank": rank})
    assert words in _error(
        ModelSpec, {"id": "m", "max_model_len": 4096, "snapshot": SNAPSHOT, "lora": {"max_rank": rank}}
    )


@pytest.mark.parametrize("rank", LORA_RANKS)
def test_each_lora_rank_vllm_takes_is_taken_on_both_sides(rank):
    assert lora_rank_problem(rank) is None
    assert Lora.model_validate({"max_rank": rank}).max_rank == rank


@pytest.mark.parametrize(
    ("effect", "valid"),
    [
        ("NoSchedule", True),
        ("PreferNoSchedule", True),
        ("NoExecute", True),
        ("noschedule", False),
        ("NoSchedule\n", False),
        ("", False),
    ],
)
def test_a_taint_effect_is_the_kubernetes_rules(effect, valid):
    if valid:
        assert Taint.model_validate({"key": "k", "value": "v", "effect": effect}).effect == effect
    else:
        assert "use one of NoSchedule, PreferNoSchedule, NoExecute" in _error(
            Taint, {"key": "k", "value": "v", "effect": effect}
        )


def _model(**fields):
    return Model.model_validate({"id": "m", "node_pool": "gpu", "max_model_len": 4096, **fields})


# (the file's model, the contract's settings it renders, the field the file names)
PATTERNS = [
    ({"pattern": "data_parallel"}, {"pattern": "data_parallel", "data_parallel_size": 1}, "data_parallel_size"),
    ({"data_parallel_size": 4}, {"data_parallel_size": 4}, "data_parallel_size"),
    ({"expert_parallel": True}, {"expert_parallel": True}, "expert_parallel"),
    ({"pattern": "multi_node"}, {"pattern": "multi_node"}, "pipeline_parallel_size"),
    (
        {"pattern": "data_parallel", "data_parallel_size": 2, "pipeline_parallel_size": 2},
        {"pattern": "data_parallel", "data_parallel_size": 2, "pipeline_parallel_size": 2},
        "pipeline_parallel_size",
    ),
    ({"prefill": {"node_pool": "gpu"}}, {"has_prefill": True}, "prefill"),
    ({"decode": {"node_pool": "gpu"}}, {"has_prefill": True}, "decode"),
    ({"kv_transfer": {"connector": "nixl"}}, {"has_kv_connector": True}, "kv_transfer"),
]


@pytest.mark.parametrize(("fields", "settings", "field"), PATTERNS)
def test_the_files_pattern_problems_are_the_contracts_naming_the_files_field(fields, settings, field):
    contract = {
        "pattern": "standard",
        "data_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "expert_parallel": False,
        "has_prefill": False,
        "has_kv_connector": False,
        **settings,
    }
    _, why = pattern_problem(contract.pop("pattern"), **contract)
    assert _model(**fields).pattern_problem() == (field, why)


def test_each_pattern_written_in_full_makes_no_problem_on_either_side():
    part = {"node_pool": "gpu"}
    assert _model(pattern="multi_node", pipeline_parallel_size=2).pattern_problem() is None
    assert _model(pattern="data_parallel", data_parallel_size=2).pattern_problem() is None
    disaggregated = Model.model_validate(
        {"id": "m", "max_model_len": 4096, "pattern": "disaggregated", "prefill": part, "decode": part}
    )
    assert disaggregated.pattern_problem() is None
    for pattern, settings in [
        ("multi_node", {"pipeline_parallel_size": 2}),
        ("data_parallel", {"data_parallel_size": 2, "expert_parallel": True}),
        ("disaggregated", {"has_prefill": True, "has_kv_connector": True}),
        ("standard", {}),
    ]:
        contract = {
            "data_parallel_size": 1,
            "pipeline_parallel_size": 1,
            "expert_parallel": False,
            "has_prefill": False,
            "has_kv_connector": False,
            **settings,
        }
        assert pattern_problem(pattern, **contract) is None, pattern
