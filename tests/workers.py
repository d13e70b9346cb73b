"""Which tests share an xdist worker in `make test` (`-n 2 --dist loadgroup`), in what order the
groups start, and which are slow (left out of `make test-fast`).

A module's module-scoped fixtures (a Ray cluster, a synthesized stack, a Terraform apply) are built
once in each worker that runs any of its tests, so a module runs whole in one worker: its group is
its path. Modules that share a session fixture too expensive to build twice (the three Terraform
applies against the emulator, the built wheel and its venv) share one group. Groups start longest
first, so the two workers end close together.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# A session fixture -> the group of every module that uses it: built once per run, not per worker.
SHARED_FIXTURES = {"local_deployments": "emulator", "kit_build": "packaging", "kit_venv": "packaging"}
# Group -> its seconds on this 2-core machine (`pytest --durations`, rounded), for the start order.
# Every group listed here is an end-to-end group (real Terraform, Ray, checkov, the built wheel, many
# command subprocesses): `make test-fast` leaves them out. Unlisted groups take seconds and start last.
WEIGHTS = {
    "emulator": 390,
    "packaging": 245,
    "tests/emulator/test_upgrade.py": 215,
    "tests/emulator/test_deploy_local_command.py": 145,
    "tests/app/test_routing.py": 115,
    "tests/policies/test_gate.py": 115,
    "tests/publishing/test_snapshot_kills.py": 105,
    "tests/app/test_patterns.py": 100,
    "tests/cli/test_bad_input.py": 90,
    "tests/examples/test_patterns_example.py": 75,
    "tests/publishing/test_hostile_artifacts.py": 75,
    "tests/emulator/test_snapshot_rules_apply.py": 65,
    "tests/app/test_streaming.py": 60,
    "tests/preview/test_preview.py": 60,
    "tests/emulator/test_efa_apply.py": 45,
    "tests/publishing/test_adapter_races.py": 45,
    "tests/preview/test_preview_patterns.py": 45,
    "tests/publishing/test_adapters.py": 40,
    "tests/cli/test_hostile_input.py": 20,
}


# What the last assign() decided: node id -> (its group, its fixtures), for tests/test_workers.py.
ASSIGNED: dict[str, tuple[str, list[str]]] = {}


def module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def groups_of(items: list[pytest.Item]) -> dict[str, str]:
    """Module path -> its group: the shared fixture's group if any of its tests uses one, else itself."""
    groups: dict[str, str] = {}
    for item in items:
        module = module_of(item)
        shared = next((SHARED_FIXTURES[f] for f in item.fixturenames if f in SHARED_FIXTURES), None)
        if shared:
            groups[module] = shared
        groups.setdefault(module, module)
    return groups


def assign(items: list[pytest.Item]) -> None:
    """Mark each item with its group (and `slow`), then order them longest group first."""
    groups = groups_of(items)
    for item in items:
        group = groups[module_of(item)]
        item.add_marker(pytest.mark.xdist_group(group))
        ASSIGNED[item.nodeid] = (group, list(item.fixturenames))
        if group in WEIGHTS:
            item.add_marker(pytest.mark.slow)
    # A stable sort: within a group, collection order stays (xdist sees the same order in every worker).
    items.sort(key=lambda item: -WEIGHTS.get(groups[module_of(item)], 0))
