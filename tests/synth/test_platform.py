"""The in-cluster platform stacks, asserted on the synthesized Terraform JSON and the chart of our objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import resources
from infra.charts import CHARTS
from infra.helm import chart_files
from stacks.specs.platform import PLATFORM_FILE

ENVS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def platforms(synth_dir) -> dict[str, dict]:
    return {env: json.loads((synth_dir / "stacks" / f"{env}-platform" / "cdk.tf.json").read_text()) for env in ENVS}


def releases(tf: dict) -> dict[str, dict]:
    return {r["name"]: r for r in resources(tf, "helm_release").values()}


def objects_in_chart(synth_dir: Path, env: str, release: dict) -> list[dict]:
    chart = synth_dir / "stacks" / f"{env}-platform" / release["chart"]
    return [yaml.safe_load(p.read_text()) for p in sorted((chart / "manifests").glob("*.yaml"))]


@pytest.mark.parametrize("env", ENVS)
def test_the_platform_stack_follows_its_aws_stack_with_its_own_locked_state(synth_dir, platforms, shipped_plans, env):
    manifest = json.loads((synth_dir / "manifest.json").read_text())
    assert manifest["stacks"][f"{env}-platform"]["dependencies"] == [env]
    backend = platforms[env]["terraform"]["backend"]["s3"]
    plan = shipped_plans[env]
    assert backend["key"] == f"llm-serving-stacks/{env}/{env}-platform.tfstate"
    assert (backend["bucket"], backend["encrypt"], backend["use_lockfile"]) == (plan.env.state.bucket, True, True)
    (provider,) = platforms[env]["provider"]["aws"]
    assert provider["allowed_account_ids"] == [plan.env.aws.account_id]


@pytest.mark.parametrize("env", ENVS)
def test_helm_reaches_the_cluster_with_the_callers_aws_identity(platforms, shipped_plans, env):
    (helm,) = platforms[env]["provider"]["helm"]
    plan = shipped_plans[env]
    kubernetes = helm["kubernetes"]
    assert kubernetes["exec"] == {"api_version": "client.authentication.k8s.io/v1beta1", "command": "aws",
                                  "args": ["eks", "get-token", "--cluster-name", plan.names.cluster, "--region", plan.env.aws.region]}
    (cluster,) = platforms[env]["data"]["aws_eks_cluster"].values()
    assert cluster["name"] == plan.names.cluster
    assert kubernetes["host"].startswith("${data.aws_eks_cluster.") and "base64decode" in kubernetes["cluster_ca_certificate"]
    assert "token" not in kubernetes and "config_path" not in kubernetes  # no credential in the stack


def test_only_the_kuberay_target_gets_the_kuberay_operator(platforms):
    chart = CHARTS["kuberay-operator"]
    operator = releases(platforms["staging"])["kuberay-operator"]
    assert (operator["repository"], operator["chart"], operator["version"]) == (chart.repository, chart.name, chart.version)
    assert (operator["atomic"], operator["wait"]) == (True, True)
    for env in ("dev", "prod"):
        assert "kuberay-operator" not in releases(platforms[env])


@pytest.mark.parametrize("env", ENVS)
def test_our_objects_ship_as_a_local_chart_exactly_as_rendered(synth_dir, platforms, shipped_plans, env):
    ours = releases(platforms[env])["llm-serving-platform"]
    assert "repository" not in ours and ours["chart"].startswith("assets/")
    objects = objects_in_chart(synth_dir, env, ours)
    assert objects == list(yaml.safe_load_all((synth_dir / "specs" / env / PLATFORM_FILE).read_text()))
    serving = shipped_plans[env].env.serving
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Namespace", serving.namespace) in kinds and ("ServiceAccount", serving.service_account) in kinds
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["metadata"]["namespace"] == serving.namespace
    if env == "staging":
        (rayservice,) = [o for o in objects if o["kind"] == "RayService"]
        assert rayservice == yaml.safe_load((synth_dir / "specs" / env / "rayservice.yaml").read_text())
        assert ours["depends_on"] == ["helm_release.kuberay-operator_release_DFFD5296"]
    else:
        assert not any(o["kind"] == "RayService" for o in objects)


def test_a_gpu_quota_becomes_a_resource_quota(tmp_path):
    from stacks.config.loader import ENVIRONMENTS_DIR, parse_environment
    from stacks.planning.plan import plan_environment
    from stacks.specs.platform import platform_objects
    from stacks.specs.render import render_specs

    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    data["serving"]["gpu_quota"] = 6
    plan = plan_environment(parse_environment(data, "dev.yaml"))
    (quota,) = [o for o in platform_objects(plan, render_specs(plan)) if o["kind"] == "ResourceQuota"]
    assert quota["spec"] == {"hard": {"requests.nvidia.com/gpu": "6"}}
    assert quota["metadata"]["namespace"] == "llm-serving"


def test_the_chart_includes_our_files_raw_so_helm_never_templates_them():
    objects = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "y"},
                "data": {"legend": "{{ $labels.instance }}", "note": "{{- fail \"no\" }}"}}]
    files = chart_files("ours", objects)
    assert files["templates/manifests.yaml"].count("{{") == 3  # only the range and .Files.Get
    assert ".Files.Get" in files["templates/manifests.yaml"]
    (manifest,) = [text for path, text in files.items() if path.startswith("manifests/")]
    assert yaml.safe_load(manifest) == objects[0]
    changed = chart_files("ours", [{**objects[0], "data": {"legend": "other"}}])
    assert yaml.safe_load(changed["Chart.yaml"])["version"] != yaml.safe_load(files["Chart.yaml"])["version"]
