"""The Kubernetes rules (`infra.rules.kubernetes`): labels, namespaces, object names."""

from __future__ import annotations

import pytest

from infra import rules


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (rules.label_key_problem, "example.com/team", ["bad key", "-lead", "a/b/c"]),
        (rules.label_value_problem, "ml_team.1", ["a b", "x" * 64, "v\n"]),
        (rules.namespace_problem, "llm-serving", ["Team", "a_b", "x" * 64]),
        (rules.service_account_problem, "ray.serving", ["Ray", "ray/head", ""]),
    ],
)
def test_each_rule_accepts_the_good_and_names_what_is_wrong_with_the_bad(rule, good, bad):
    assert rule(good) is None
    for value in bad:
        assert rule(value), value
