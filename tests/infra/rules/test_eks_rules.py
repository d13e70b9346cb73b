"""The EKS rules (`infra.rules.eks`): clusters, node groups and their sizes."""

from __future__ import annotations

import pytest

from infra import rules


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (rules.cluster_name_problem, "ml-prod_1", ["-ml", "ml prod", "ml\n", "x" * 101]),
        (rules.eks_version_problem, "1.34", ["1.34.1", "1.34\n", "v1.34"]),
        (rules.node_group_name_problem, "llm-dev-l4", ["-g", "g" * 64, "g\n"]),
        (rules.log_retention_problem, 365, [0, 10, 4000]),
        (rules.root_volume_problem, 20, [8, 19]),
        (rules.capacity_type_problem, "SPOT", ["spot", "RESERVED"]),
    ],
)
def test_each_rule_accepts_the_good_and_names_what_is_wrong_with_the_bad(rule, good, bad):
    assert rule(good) is None
    for value in bad:
        assert rule(value), value


def test_ami_types_follow_the_pools_kind():
    assert rules.ami_type_problem("BOTTLEROCKET_x86_64_NVIDIA", gpu=True) is None
    assert rules.ami_type_problem("AL2023_x86_64_STANDARD", gpu=False) is None
    assert "GPU pool" in rules.ami_type_problem("AL2023_x86_64_STANDARD", gpu=True)
    assert "CPU pool" in rules.ami_type_problem("BOTTLEROCKET_x86_64_NVIDIA", gpu=False)


def test_pool_sizes_and_public_endpoints():
    assert rules.pool_size_problem(0, None, 1) is None
    assert rules.pool_size_problem(3, None, 2) == "min_size 3 is greater than max_size 2"
    assert rules.pool_size_problem(1, 5, 3) == "desired_size 5 is outside min_size..max_size (1..3)"
    assert rules.pool_size_problem(0, None, 0) == "max_size 0 must be at least 1"
    assert rules.public_endpoint_problem(False, []) is None
    assert rules.public_endpoint_problem(True, ["203.0.113.0/24"]) is None
    assert "needs public_access_cidrs" in rules.public_endpoint_problem(True, [])
    assert "apply only with" in rules.public_endpoint_problem(False, ["203.0.113.0/24"])
