"""Which tests share an xdist worker in `make test` (`-n 2`), in what order the groups start, and
which are slow (left out of `make test-fast`).

A module's module-scoped fixtures (a Ray cluster, a synthesized stack, a Terraform apply) are built
once in each worker that runs any of its tests, so a module runs whole in one worker: its group is
its path. Modules that share a session fixture too expensive to build twice (the three Terraform
applies against the emulator, the built wheel and its venv) share one group (SHARED_MODULES; a test
holds it to the fixtures the modules really use). Groups start longest first, so the two workers end
close together.

The scheduler is ours (conftest's `pytest_xdist_make_scheduler`): xdist's own `loadgroup` marks a
test's group by rewriting its node id, which pytest 9.2 no longer reads, so every module was split.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadScopeScheduling

# A session fixture too expensive to build twice -> its group.
SHARED_FIXTURES = {
    "local_deployments": "emulator",
    "kit_build": "packaging",
    "kit_dist": "packaging",
    "kit_venv": "packaging",
    "kit_run": "packaging",
    "kit_site_packages": "packaging",
}
# The modules that use one of them -> that group (tests/test_workers.py checks it against this run).
SHARED_MODULES = {
    "tests/app/test_e2e_serving.py": "emulator",
    "tests/emulator/test_local_deploy.py": "emulator",
    "tests/packaging/test_app_zip.py": "packaging",
    "tests/packaging/test_installed_kit.py": "packaging",
    "tests/packaging/test_kit_contents.py": "packaging",
    "tests/packaging/test_user_repository.py": "packaging",
}
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
# What the last assign() saw: node id -> (its group, its fixtures), for tests/test_workers.py.
ASSIGNED: dict[str, tuple[str, list[str]]] = {}


def group_of(nodeid: str) -> str:
    """The group of a test, from its node id alone: the controller schedules by node ids."""
    module = nodeid.split("::", 1)[0]
    return SHARED_MODULES.get(module, module)


def assign(items: list[pytest.Item]) -> None:
    """Mark the slow groups' tests `slow` and order every test longest group first (in each worker,
    before xdist reports the collection: the controller takes the order as it comes)."""
    for item in items:
        group = group_of(item.nodeid)
        ASSIGNED[item.nodeid] = (group, list(item.fixturenames))
        if group in WEIGHTS:
            item.add_marker(pytest.mark.slow)
    # A stable sort: within a group, collection order stays, and it is the same in every worker.
    items.sort(key=lambda item: -WEIGHTS.get(group_of(item.nodeid), 0))


class GroupScheduling(LoadScopeScheduling):
    """xdist's scope scheduler, a scope being our group: each goes whole to one worker, in the order
    collected (make test passes --no-loadscope-reorder)."""

    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid)
