"""`llmstacks preview` on a temporary git repository: a base commit and a working-tree change
that adds a model, changes replicas, removes a node pool and breaks a policy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import stacks.preview as preview_module
from stacks.cli import main
from stacks.preview import MARKER, diff_resources, preview, to_json, to_markdown

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).parent / "snapshots" / "preview.md"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project's files at a base commit (dev with an extra CPU pool), then an uncommitted change."""
    repo = tmp_path_factory.mktemp("repo")
    for name in git(ROOT, "ls-files").splitlines():
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    envs = repo / "stacks" / "environments"
    _edit(
        envs / "dev.yaml",
        lambda d: d["node_pools"].append({"name": "batch", "instance_types": ["m7i.large"], "max_size": 2}),
    )
    git(repo, "init", "--quiet", "--initial-branch", "base")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "--all")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "base")

    def dev(d):
        d["node_pools"] = [p for p in d["node_pools"] if p["name"] != "batch"]
        d["node_pools"][1]["max_size"] = 6
        d["models"][0]["replicas"] = {"min": 1, "max": 3}
        d["models"][1]["weights"]["snapshot"] = "5e1f0c2b9a7d4e63"  # a weights update
        d["models"].append(
            {
                "id": "qwen3-0.6b",
                "architecture": "Qwen/Qwen3-0.6B",
                "node_pool": "l4",
                "max_model_len": 4096,
                "replicas": {"min": 0, "max": 1},
                "weights": {"snapshot": "a0b1c2d3e4f50617"},
            }
        )

    _edit(envs / "dev.yaml", dev)
    _edit(envs / "prod.yaml", lambda d: d["buckets"].update(prevent_destroy=False))  # breaks CKV_LLM_11
    return repo


@pytest.fixture(scope="module")
def result(repo):
    return preview("base", repo=repo, env_dir=repo / "stacks" / "environments")


def by_name(result, name):
    return next(e for e in result.environments if e.name == name)


def test_serving_changes_are_reported_in_serving_terms(result):
    dev = by_name(result, "dev")
    assert dev.status == "changed"
    serving = "\n".join(dev.serving)
    assert (
        "model `qwen3-0.6b` added: node pool l4, GPUs per replica 1 x L4, replicas 0-1, max_model_len 4096" in serving
    )
    assert "model `qwen2.5-7b-instruct`: replicas 0-2 -> 1-3" in serving
    old = yaml.safe_load((ROOT / "stacks" / "environments" / "dev.yaml").read_text())["models"][1]["weights"][
        "snapshot"
    ]
    assert f"model `llama-3.2-1b-instruct`: weights snapshot {old} -> 5e1f0c2b9a7d4e63" in serving
    assert "node pool `batch` removed" in serving
    assert "node pool `l4`: nodes 0-4 -> 0-6" in serving
    assert dev.gpus == {"before": 3, "after": 5}
    assert dev.cost["max"]["after"] > dev.cost["max"]["before"] and dev.cost["min"]["before"] == 0
    added = {r["model"]: r for r in dev.capacity}["qwen3-0.6b"]
    assert added["concurrency_before"] is None and added["concurrency_after"] > 10


def test_terraform_resources_added_removed_and_changed_with_attributes(result):
    dev = by_name(result, "dev")
    removed = [r.address for r in dev.resources if r.action == "removed"]
    assert any(a.startswith("aws_eks_node_group.pool-batch") for a in removed)
    assert any(a.startswith("aws_launch_template.pool-batch") for a in removed)
    changed = {r.address: r.attributes for r in dev.resources if r.action == "changed"}
    l4 = next(attrs for address, attrs in changed.items() if address.startswith("aws_eks_node_group.pool-l4"))
    assert "scaling_config.max_size: 4 -> 6" in l4
    assert "+      max_replicas: 3" in dev.spec_diff and "+    - id: qwen3-0.6b" in dev.spec_diff


def test_the_policy_verdict_is_the_working_trees(result):
    prod, staging = by_name(result, "prod"), by_name(result, "staging")
    assert not prod.policy_ok and "CKV_LLM_11 aws_s3_bucket.lora_bucket_" in prod.policy
    assert any(
        r.address.startswith("aws_s3_bucket.") and "lifecycle.prevent_destroy: true -> (none)" in r.attributes
        for r in prod.resources
    )
    assert staging.status == "unchanged" and staging.policy_ok and not staging.resources
    assert not result.policy_ok


def _without_content_hashes(text: str) -> str:
    """Spec versions and the app zip are named by content hashes that change with any edit to app/."""
    text = re.sub(r"(specs/[a-z0-9-]+/)[0-9a-f]{16}/", r"\1<version>/", text)
    return re.sub(r"app-[0-9a-f]{16}\.zip", "app-<hash>.zip", text)


def test_markdown_matches_its_snapshot(result):
    text = _without_content_hashes(to_markdown(result))
    assert text.startswith(MARKER)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()
    assert "<details><summary>Terraform resources:" in text  # long lists collapse
    assert "| prod | changed |" in text and "❌ failed" in text and "**Policy gate failed:** CKV_LLM_11" in text


def test_json_for_tools(result):
    data = json.loads(to_json(result))
    assert data["base"] == "base" and data["policy_passed"] is False
    dev = next(e for e in data["environments"] if e["name"] == "dev")
    assert set(dev["resources"]) == {"added", "removed", "changed"}
    assert dev["cost_per_hour"]["max"]["after"] > dev["cost_per_hour"]["max"]["before"]


def test_command_exits_1_when_the_policy_fails_and_writes_the_preview(result, repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(preview_module, "preview", lambda *a, **k: result)
    out = tmp_path / "preview.md"
    assert main(["preview", "--base", "base", "--output", str(out)]) == 1
    assert out.read_text() == to_markdown(result)
    passing = preview_module.Preview("base", [e for e in result.environments if e.policy_ok])
    monkeypatch.setattr(preview_module, "preview", lambda *a, **k: passing)
    assert main(["preview", "--base", "base", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["policy_passed"] is True


def test_a_missing_base_revision_is_one_line_exit_2(repo, capsys):
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        assert (
            main(
                ["preview", "--base", "no-such-ref", "--env-dir", str(repo / "stacks" / "environments"), "--no-policy"]
            )
            == 2
        )
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --base: cannot check out 'no-such-ref'")


def test_outside_a_git_repository_is_one_line_exit_2(tmp_path, capsys):
    from stacks.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        preview("HEAD", repo=tmp_path, env_dir=ROOT / "stacks" / "environments")
    assert "not a git repository" in str(info.value)


def test_resource_diff_names_nested_attributes():
    base = {"resource": {"aws_x": {"a": {"tags": {"k": "1"}, "list": [{"n": 1}], "//": {"meta": 1}}}}}
    head = {"resource": {"aws_x": {"a": {"tags": {"k": "2"}, "list": [{"n": 1}], "//": {"meta": 2}}, "b": {}}}}
    changes = diff_resources(base, head)
    assert [(c.address, c.action) for c in changes] == [("aws_x.b", "added"), ("aws_x.a", "changed")]
    assert changes[1].attributes == ["tags.k: 1 -> 2"]


def test_an_invalid_working_tree_environment_is_exit_2_before_any_checkout(repo, tmp_path, capsys):
    envs = tmp_path / "envs"
    shutil.copytree(repo / "stacks" / "environments", envs)
    (envs / "dev.yaml").write_text(
        (envs / "dev.yaml").read_text().replace("max_model_len: 8192", "max_model_len: many")
    )
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        assert main(["preview", "--base", "base", "--env-dir", str(envs), "--no-policy"]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dev.yaml: models[0].max_model_len" in err[0]
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # nothing checked out


def test_a_base_that_does_not_synthesize_is_reported_not_fatal(tmp_path):
    repo = tmp_path / "repo"
    for name in git(ROOT, "ls-files").splitlines():
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    staging = repo / "stacks" / "environments" / "staging.yaml"
    good = staging.read_text()
    staging.write_text(good + "unknown_key: 1\n")
    git(repo, "init", "--quiet", "--initial-branch", "base")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "--all")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "broken base")
    staging.write_text(good)
    result = preview("base", repo=repo, env_dir=repo / "stacks" / "environments", policy=False)
    assert result.base_error.startswith("the base revision does not synthesize: error: ")
    assert "unknown_key" in result.base_error
    assert {e.name: e.status for e in result.environments}["staging"] == "added"
    assert "> ⚠️ the base revision does not synthesize" in to_markdown(result)


def test_without_git_the_preview_is_one_line_exit_3(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "")
    assert main(["preview", "--base", "HEAD", "--no-policy"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: git is needed to check out the base revision")


def test_environments_outside_the_repository_are_one_line_exit_2(repo, tmp_path, capsys, monkeypatch):
    """The base revision's files are read from git: an --env-dir outside the repository has none."""
    envs = tmp_path / "elsewhere"
    shutil.copytree(repo / "stacks" / "environments", envs)
    monkeypatch.chdir(repo)
    assert main(["preview", "--base", "base", "--env-dir", str(envs), "--no-policy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {envs.resolve()}: --env-dir: outside the git repository"), err
