"""The rules of EFA (Elastic Fabric Adapter) node pools, plain functions like `infra.rules`' (which
this module shares its helpers with): checked by the environment file's schema and by the
constructs that receive the values."""

from __future__ import annotations

from collections.abc import Sequence

from infra.catalog import INSTANCE_TYPES, efa_interfaces
from infra.rules import is_token, quoted


def _efa_types_summary() -> str:
    """Which catalog types have EFA, by family: 'every p5' or 'g6e from 8xlarge'."""
    families: dict[str, list[str]] = {}
    for name in INSTANCE_TYPES:
        families.setdefault(name.split(".")[0], []).append(name)
    parts = []
    for family, names in families.items():
        with_efa = [n for n in names if efa_interfaces(n)]
        if len(with_efa) == len(names):
            parts.append(f"every {family}")
        elif with_efa:
            smallest = min(with_efa, key=lambda n: INSTANCE_TYPES[n].vcpus)
            parts.append(f"{family} from {smallest.split('.')[1]}")
    return ", ".join(parts)


def efa_instance_types_problem(instance_types: Sequence[str]) -> str | None:
    """An EFA pool's instance types: each has EFA, and all have the same number of EFA interfaces.

    One count because a managed node group has one launch template, which lists the interfaces,
    and because a pod asks for every interface of its node: a type with more cards would run
    with some unused, one with fewer could not launch from the template at all.
    """
    for name in instance_types:
        if name not in INSTANCE_TYPES:
            return (
                f"{quoted(name)} is not in the catalog, which knows EFA (Elastic Fabric Adapter) for its GPU "
                f"instance types only ({_efa_types_summary()}); use one of those or turn efa off"
            )
        if not efa_interfaces(name):
            return (
                f"{quoted(name)} has no EFA (Elastic Fabric Adapter); use instance types that have it "
                f"({_efa_types_summary()}) or turn efa off"
            )
    first = instance_types[0] if instance_types else None
    for name in instance_types[1:]:
        if efa_interfaces(name) != efa_interfaces(first):
            return (
                f"{quoted(name)} has {efa_interfaces(name)} EFA interfaces, {quoted(first)} has "
                f"{efa_interfaces(first)}; an EFA pool needs instance types with one count "
                "(one launch template lists them; pods ask for every interface of a node)"
            )
    return None


def efa_subnets_problem(subnet_ids: Sequence[str]) -> str | None:
    """EFA nodes that talk to each other must share an availability zone: one subnet per EFA pool."""
    if len(subnet_ids) != 1 and not any(is_token(s) for s in subnet_ids):
        return (
            f"{len(subnet_ids)} subnets: an EFA pool launches in one subnet (one availability zone; "
            "EFA traffic does not cross zones)"
        )
    return None
