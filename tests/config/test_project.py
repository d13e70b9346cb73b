"""Where a project's environments are: the nearest cdktf.json upward, its `context.environments`,
and what a hostile or broken cdktf.json gets (one line naming the file and field)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stacks.cli import main
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.config.project import find_project, kit_pin, load_project, locate_project
from stacks.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def project(tmp_path: Path, config: object, environments: str = "environments") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cdktf.json").write_text(config if isinstance(config, str) else json.dumps(config))
    (tmp_path / environments).mkdir(parents=True, exist_ok=True)
    shutil.copy(ENVIRONMENTS_DIR / "dev.yaml", tmp_path / environments / "dev.yaml")
    return tmp_path


def test_this_repository_is_a_project_whose_environments_are_the_shipped_ones():
    found = find_project(ROOT / "stacks" / "config")
    assert found.root == ROOT and found.environments == ENVIRONMENTS_DIR and found.output == ROOT / "cdktf.out"


def test_the_project_is_the_nearest_cdktf_json_upward(tmp_path: Path):
    project(tmp_path, {"app": "x"})
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project(deep).root == tmp_path
    assert find_project(deep).environments == tmp_path / "environments"
    inner = project(tmp_path / "a", {"context": {"environments": "envs/live"}, "output": "out"}, "envs/live")
    assert find_project(deep).root == inner and find_project(deep).environments == inner / "envs" / "live"
    assert find_project(deep).output == inner / "out"


def test_outside_a_project_the_error_suggests_init(tmp_path: Path):
    assert locate_project(tmp_path) is None
    with pytest.raises(ConfigError, match=r"not in an llm-serving-stacks project .* start one with `llmstacks init`"):
        find_project(tmp_path)


@pytest.mark.parametrize(
    ("config", "field", "needle"),
    [
        ("{not json", "", "not valid JSON"),
        ("[1, 2]", "", "expected a JSON object"),
        ("[" * 10_000 + "]" * 10_000, "", "nested more than 64 levels deep"),
        ({"context": []}, "context", "expected an object"),
        ({"context": {"environments": "/etc"}}, "context.environments", "must be a folder inside the project"),
        ({"context": {"environments": "../elsewhere"}}, "context.environments", "must be a folder inside the project"),
        ({"context": {"environments": ""}}, "context.environments", "expected a folder name"),
        ({"context": {"environments": 7}}, "context.environments", "expected a folder name"),
        ({"output": "../../tmp/x"}, "output", "must be a folder inside the project"),
    ],
)
def test_a_broken_cdktf_json_is_one_line_naming_the_file_and_field(tmp_path: Path, config, field, needle):
    project(tmp_path, config)
    with pytest.raises(ConfigError) as error:
        load_project(tmp_path)
    assert (
        error.value.path == str(tmp_path / "cdktf.json")
        and error.value.field == field
        and needle in error.value.message
    )


def test_an_oversized_cdktf_json_is_refused_unread(tmp_path: Path):
    project(tmp_path, json.dumps({"context": {}, "pad": "x" * 100_000}))
    with pytest.raises(ConfigError, match="over 65,536 bytes"):
        load_project(tmp_path)


def test_commands_find_the_environments_of_the_project_they_run_in(tmp_path: Path, monkeypatch, capsys):
    root = project(tmp_path, {"context": {"environments": "live"}}, "live")
    (root / "live" / "dev.yaml").write_text(
        (root / "live" / "dev.yaml").read_text().replace("prefix: llm\n", "prefix: ours\n")
    )
    monkeypatch.chdir(root / "live")
    monkeypatch.delenv("CDKTF_OUTDIR", raising=False)
    assert main(["plan-capacity", "--env", "dev", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["environment"] == "dev"
    assert main(["plan-capacity", "--env", "staging"]) == 2  # the shipped staging is not this project's
    assert "no environment 'staging' (known: dev)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "pin"),
    [
        ("llm-serving-stacks==1.2.3\n", "1.2.3"),
        ("# the kit\nboto3>=1\nLLM_Serving.Stacks[serving] == 0.4.0rc1  # reviewed\n", "0.4.0rc1"),
        ("llm-serving-stacks>=1.0\n", None),
        ("other-llm-serving-stacks==1.0\n", None),
        ("", None),
    ],
)
def test_the_kit_pin_is_read_from_requirements(text: str, pin: str | None):
    assert kit_pin(text) == pin


def test_synth_writes_to_the_projects_output_or_where_cdktf_asks(tmp_path: Path, monkeypatch, capsys):
    root = project(tmp_path / "repo", {"output": "build/tf", "context": {"environments": "live"}}, "live")
    monkeypatch.chdir(root / "live")  # from a subfolder: the output is the project's, not the working directory's
    monkeypatch.delenv("CDKTF_OUTDIR", raising=False)
    assert main(["synth"]) == 0
    assert sorted(p.name for p in (root / "build" / "tf" / "stacks").iterdir()) == ["dev", "dev-platform"]
    assert sorted(p.name for p in (root / "live").iterdir()) == ["dev.yaml"]
    monkeypatch.setenv("CDKTF_OUTDIR", str(tmp_path / "asked"))  # what the cdktf CLI sets when it runs the app
    assert main(["synth"]) == 0
    assert (tmp_path / "asked" / "stacks" / "dev" / "cdk.tf.json").is_file()
    assert "synthesized 1 environment(s)" in capsys.readouterr().out
