"""The rules of EFA (Elastic Fabric Adapter) node pools, and the catalog's EFA interface counts they read."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from infra.catalog import EFA_INTERFACES, INSTANCE_TYPES, efa_interfaces
from infra.compute.efa.rules import efa_instance_types_problem, efa_subnets_problem

SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]


def test_the_catalog_counts_are_what_ec2_describes():
    """Every catalog type's EFA interfaces equal DescribeInstanceTypes' MaximumEfaInterfaces (moto bundles it)."""
    import moto

    described = json.loads(
        gzip.decompress((Path(moto.__file__).parent / "ec2/resources/instance_types.json.gz").read_bytes())
    )
    for name in INSTANCE_TYPES:
        network = described[name]["NetworkInfo"]
        expected = network["EfaInfo"]["MaximumEfaInterfaces"] if network.get("EfaSupported") else 0
        assert efa_interfaces(name) == expected, name
    assert set(EFA_INTERFACES) <= set(INSTANCE_TYPES)
    assert (efa_interfaces("p5.48xlarge"), efa_interfaces("p5en.48xlarge"), efa_interfaces("g6e.48xlarge")) == (
        32,
        16,
        4,
    )
    assert efa_interfaces("g6.4xlarge") == efa_interfaces("m7i.large") == 0


@pytest.mark.parametrize(
    ("instance_types", "needle"),
    [
        (["g6e.12xlarge", "g6e.xlarge"], "'g6e.xlarge' has no EFA"),
        (["m7i.xlarge"], "'m7i.xlarge' is not in the catalog"),
        (["g6e.12xlarge", "g6e.24xlarge"], "'g6e.24xlarge' has 2 EFA interfaces, 'g6e.12xlarge' has 1"),
        (["p5.48xlarge", "p5en.48xlarge"], "'p5en.48xlarge' has 16 EFA interfaces, 'p5.48xlarge' has 32"),
    ],
)
def test_the_rule_names_the_instance_type_in_one_line(instance_types, needle):
    problem = efa_instance_types_problem(instance_types)
    assert needle in problem and "\n" not in problem
    if "no EFA" in needle:
        assert "g6e from 8xlarge" in problem and "every p5" in problem  # what to pick instead


def test_the_rule_accepts_efa_types_with_one_count():
    for types in (["p5.48xlarge"], ["p5.48xlarge", "p5e.48xlarge"], ["g6e.8xlarge", "g6e.16xlarge"], ["g5.8xlarge"]):
        assert efa_instance_types_problem(types) is None
    assert efa_subnets_problem(["subnet-0123456789abcdef0"]) is None
    assert "one subnet" in efa_subnets_problem(SUBNETS)
    assert efa_subnets_problem(["${tolist(data.x.subnet_ids)}", "#{TfToken[TOKEN.1]}"]) is None  # known at plan time
