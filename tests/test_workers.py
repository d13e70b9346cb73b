"""The grouping `make test` runs with (tests/workers.py) names what exists, and groups what it says."""

from pathlib import Path

import pytest
import workers

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_the_grouping_names_exists():
    # A module renamed without its entry would lose its group, its `slow` mark and its place in the order.
    modules = [g for g in workers.WEIGHTS if g.endswith(".py")] + list(workers.SHARED_MODULES)
    assert [m for m in modules if not (ROOT / m).is_file()] == []


def test_every_shared_group_is_weighted_and_its_fixtures_exist():
    conftests = "".join(p.read_text() for p in (ROOT / "tests").rglob("conftest.py"))
    assert set(workers.SHARED_FIXTURES.values()) <= set(workers.WEIGHTS)
    assert set(workers.SHARED_MODULES.values()) <= set(workers.SHARED_FIXTURES.values())
    assert [f for f in workers.SHARED_FIXTURES if f"def {f}(" not in conftests] == []


@pytest.mark.parametrize("fixture", sorted(workers.SHARED_FIXTURES))
def test_every_module_using_a_shared_fixture_is_in_its_group(fixture):
    # Read from what this run collected (before -m deselects anything): the real modules' fixtures.
    users = {
        nodeid.split("::")[0]: group for nodeid, (group, fixtures) in workers.ASSIGNED.items() if fixture in fixtures
    }
    if not users:
        pytest.skip(f"this run collected no test that uses {fixture}")
    assert users == dict.fromkeys(users, workers.SHARED_FIXTURES[fixture])


class _Item:
    def __init__(self, nodeid):
        self.nodeid, self.fixturenames, self.marks = nodeid, [], []

    def add_marker(self, mark):
        self.marks.append(mark)


def test_tests_are_ordered_longest_group_first_and_the_weighted_ones_are_slow(monkeypatch):
    monkeypatch.setattr(workers, "ASSIGNED", {})  # this run's own record stays as collected
    items = [
        _Item("tests/cli/test_y.py::c"),
        _Item("tests/app/test_e2e_serving.py::a"),
        _Item("tests/emulator/test_upgrade.py::d"),
        _Item("tests/emulator/test_local_deploy.py::b"),
    ]
    workers.assign(items)
    assert [i.nodeid for i in items] == [
        "tests/app/test_e2e_serving.py::a",
        "tests/emulator/test_local_deploy.py::b",
        "tests/emulator/test_upgrade.py::d",
        "tests/cli/test_y.py::c",
    ]
    assert [any(m.name == "slow" for m in i.marks) for i in items] == [True, True, True, False]


def test_the_scheduler_sends_each_group_whole_to_one_worker():
    """Its scope of a node id is the group: the two emulator modules are one unit of work for xdist."""
    scope = workers.GroupScheduling._split_scope
    assert {
        scope(None, n) for n in ("tests/app/test_e2e_serving.py::t[1]", "tests/emulator/test_local_deploy.py::u")
    } == {"emulator"}
    assert scope(None, "tests/cli/test_y.py::c[a::b@c]") == "tests/cli/test_y.py"
