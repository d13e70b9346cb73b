"""The grouping `make test` runs with (tests/workers.py) names what exists, and groups what it says."""

from pathlib import Path

import pytest
import workers

ROOT = Path(__file__).resolve().parent.parent


def test_every_weighted_module_exists():
    # A module renamed without its entry would lose its `slow` mark and its place in the start order.
    modules = [g for g in workers.WEIGHTS if g.endswith(".py")]
    assert [m for m in modules if not (ROOT / m).is_file()] == []


def test_every_shared_group_is_weighted_and_its_fixtures_exist():
    conftests = "".join(p.read_text() for p in (ROOT / "tests").rglob("conftest.py"))
    assert set(workers.SHARED_FIXTURES.values()) <= set(workers.WEIGHTS)
    assert [f for f in workers.SHARED_FIXTURES if f"def {f}(" not in conftests] == []


class _Item:
    def __init__(self, nodeid, fixturenames=()):
        self.nodeid, self.fixturenames, self.marks = nodeid, list(fixturenames), []

    def add_marker(self, mark):
        self.marks.append(mark)


def test_a_module_joins_the_group_of_a_shared_fixture_any_of_its_tests_uses(monkeypatch):
    monkeypatch.setattr(workers, "ASSIGNED", {})  # this run's own record stays as collected
    items = [
        _Item("tests/app/test_x.py::a"),
        _Item("tests/app/test_x.py::b", ["local_deployments"]),
        _Item("tests/cli/test_y.py::c"),
        _Item("tests/emulator/test_upgrade.py::d"),
    ]
    workers.assign(items)
    group = {i.nodeid: next(m.args[0] for m in i.marks if m.name == "xdist_group") for i in items}
    assert group == {
        "tests/emulator/test_upgrade.py::d": "tests/emulator/test_upgrade.py",
        "tests/app/test_x.py::a": "emulator",
        "tests/app/test_x.py::b": "emulator",
        "tests/cli/test_y.py::c": "tests/cli/test_y.py",
    }
    # Longest group first, collection order kept within one; unweighted groups last and not slow.
    assert [i.nodeid for i in items] == [
        "tests/app/test_x.py::a",
        "tests/app/test_x.py::b",
        "tests/emulator/test_upgrade.py::d",
        "tests/cli/test_y.py::c",
    ]
    assert [any(m.name == "slow" for m in i.marks) for i in items] == [True, True, True, False]


@pytest.mark.parametrize("fixture", sorted(workers.SHARED_FIXTURES))
def test_this_run_put_every_user_of_a_shared_fixture_in_its_group(fixture):
    # Read from what this run collected (before -m deselects anything): the real modules, not a copy.
    groups = {group for group, fixtures in workers.ASSIGNED.values() if fixture in fixtures}
    if not groups:
        pytest.skip(f"this run collected no test that uses {fixture}")
    assert groups == {workers.SHARED_FIXTURES[fixture]}
