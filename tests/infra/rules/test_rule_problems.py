"""What the rules share (`infra.rules.problems`): raising a problem as a construct's error."""

from __future__ import annotations

import pytest

from infra import rules


def test_require_names_the_prop():
    rules.require("alias", None)
    with pytest.raises(ValueError, match=r"^alias: 'aws/x': use letters"):
        rules.require("alias", rules.kms_alias_problem("aws/x"))


@pytest.mark.parametrize(
    ("names", "twice"),
    [
        ([], []),
        (["a"], []),
        (["a", "b"], []),
        (["a", "a"], ["a"]),
        (["b", "a", "b", "a", "a"], ["a", "b"]),
        (iter(["x", "y", "x"]), ["x"]),
        (["A", "a"], []),
    ],
)
def test_repeated_says_each_name_listed_twice_once_sorted(names, twice):
    assert rules.repeated(names) == twice


def test_every_names_listed_twice_check_says_them_the_same_way():
    from infra.compute.scheduling import Taint, pool_taints_problem
    from infra.platform.observability import ModelObjective, monitoring_objects

    assert rules.watch_namespaces_problem(["b", "a", "b", "a"]) == "a, b appears twice"
    assert rules.node_template_taints_problem(["b", "a", "b"]).startswith("taint 'b' appears with two effects")
    assert pool_taints_problem([Taint("k", "v"), Taint("k", "w"), Taint("k", "v", "NoExecute")]).startswith(
        "k:NoSchedule appears twice (GPU pools add"
    )
    assert pool_taints_problem([Taint("k", "v"), Taint("k", "v", "NoExecute")]) is None
    with pytest.raises(ValueError, match=r"^models: duplicate ids \['a', 'b'\]$"):
        monitoring_objects(
            environment="dev",
            serving_namespace="llm-serving",
            models=[ModelObjective(i) for i in ("b", "a", "b", "a", "c")],
        )
