"""The in-cluster platform stacks, asserted on the synthesized Terraform JSON and the chart of our objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import resources
from infra.platform.charts import CHARTS
from infra.platform.helm import chart_files
from stacks.config.loader import ENVIRONMENTS_DIR
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
    assert kubernetes["exec"] == {
        "api_version": "client.authentication.k8s.io/v1beta1",
        "command": "aws",
        "args": ["eks", "get-token", "--cluster-name", plan.names.cluster, "--region", plan.env.aws.region],
    }
    (cluster,) = platforms[env]["data"]["aws_eks_cluster"].values()
    assert cluster["name"] == plan.names.cluster
    assert (
        kubernetes["host"].startswith("${data.aws_eks_cluster.")
        and "base64decode" in kubernetes["cluster_ca_certificate"]
    )
    assert "token" not in kubernetes and "config_path" not in kubernetes  # no credential in the stack


def test_only_the_kuberay_target_gets_the_kuberay_operator(platforms):
    chart = CHARTS["kuberay-operator"]
    operator = releases(platforms["staging"])["kuberay-operator"]
    assert (operator["repository"], operator["chart"], operator["version"]) == (
        chart.repository,
        chart.name,
        chart.version,
    )
    assert (operator["atomic"], operator["wait"]) == (True, True)
    for env in ("dev", "prod"):
        assert "kuberay-operator" not in releases(platforms[env])


@pytest.mark.parametrize("env", ENVS)
def test_our_objects_ship_as_two_local_charts_exactly_as_rendered(synth_dir, platforms, shipped_plans, env):
    ours = releases(platforms[env])
    namespace, serving = ours["llm-serving-namespace"], ours["llm-serving-platform"]
    for release in (namespace, serving):
        assert "repository" not in release and release["chart"].startswith("assets/")
    first, last = objects_in_chart(synth_dir, env, namespace), objects_in_chart(synth_dir, env, serving)
    assert first + last == list(yaml.safe_load_all((synth_dir / "specs" / env / PLATFORM_FILE).read_text()))
    config = shipped_plans[env].env.serving
    assert [(o["kind"], o["metadata"]["name"]) for o in first][:2] == [
        ("Namespace", config.namespace),
        ("ServiceAccount", config.service_account),
    ]
    assert first[1]["metadata"]["namespace"] == config.namespace
    assert {o["kind"] for o in last} <= {"RayService", "PodMonitor", "PrometheusRule", "ConfigMap"}
    if env == "staging":
        (rayservice,) = [o for o in last if o["kind"] == "RayService"]
        assert rayservice == yaml.safe_load((synth_dir / "specs" / env / "rayservice.yaml").read_text())
    else:
        assert not any(o["kind"] == "RayService" for o in last)


def _address(tf: dict, name: str) -> str:
    (rid,) = [rid for rid, r in resources(tf, "helm_release").items() if r["name"] == name]
    return f"helm_release.{rid}"


@pytest.mark.parametrize("env", ENVS)
def test_the_namespace_comes_first_the_operator_runs_in_it_and_the_rayservice_and_monitors_come_last(
    platforms, shipped_plans, env
):
    tf, config = platforms[env], shipped_plans[env].env.serving
    ours = releases(tf)
    assert "depends_on" not in ours["llm-serving-namespace"]
    operator = ours["kuberay-operator" if config.target == "kuberay" else "anyscale-operator"]
    assert operator["depends_on"] == [_address(tf, "llm-serving-namespace")]
    # Everything the last install needs: its namespace, the operator's CRDs, the monitoring CRDs.
    assert set(ours["llm-serving-platform"]["depends_on"]) == {
        _address(tf, "llm-serving-namespace"),
        _address(tf, operator["name"]),
        _address(tf, "kube-prometheus-stack"),
    }
    if config.target == "kuberay":
        values = yaml.safe_load(operator["values"][0])
        assert values["singleNamespaceInstall"] is True and values["watchNamespace"] == [config.namespace]
        assert operator["namespace"] == "kuberay-system"
    else:
        assert operator["namespace"] == config.namespace  # Anyscale runs its pods in the operator's namespace


@pytest.mark.parametrize("env", ENVS)
def test_cluster_autoscaler_is_installed_for_the_cluster_with_the_role_the_aws_stack_binds(
    platforms, synthesized, shipped_plans, env
):
    plan = shipped_plans[env]
    release = releases(platforms[env])["cluster-autoscaler"]
    chart = CHARTS["cluster-autoscaler"]
    assert (release["repository"], release["version"], release["namespace"]) == (
        chart.repository,
        chart.version,
        "kube-system",
    )
    values = yaml.safe_load(release["values"][0])
    assert values["autoDiscovery"] == {"clusterName": plan.names.cluster} and values["awsRegion"] == plan.env.aws.region
    account = values["rbac"]["serviceAccount"]["name"]
    (association,) = [
        a
        for a in resources(synthesized[env], "aws_eks_pod_identity_association").values()
        if a["service_account"] == account
    ]
    assert association["namespace"] == "kube-system"
    role = resources(synthesized[env], "aws_iam_role")[association["role_arn"].split(".")[1]]
    assert role["name"] == plan.names.autoscaler_role


def test_a_cluster_with_its_own_node_autoscaler_gets_none_of_ours(tmp_path):
    from stacks.cli import main

    data = yaml.safe_load((ENVIRONMENTS_DIR / "staging.yaml").read_text())
    data["cluster"]["node_autoscaler"] = "none"
    config = tmp_path / "staging.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["synth", "--config", str(config), "--outdir", str(out)]) == 0
    aws = json.loads((out / "stacks" / "staging" / "cdk.tf.json").read_text())
    platform = json.loads((out / "stacks" / "staging-platform" / "cdk.tf.json").read_text())
    assert "cluster-autoscaler" not in releases(platform)
    assert resources(aws, "aws_autoscaling_group_tag") == {}
    assert not [r for r in resources(aws, "aws_iam_role").values() if r["name"] == "llm-staging-cluster-autoscaler"]
    assert aws["output"]["autoscaler_role_arn"]["value"] == ""


def test_an_unregistered_anyscale_cloud_gets_no_operator_yet_and_a_warning_saying_how(tmp_path, capsys):
    from stacks.cli import main

    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    del data["serving"]["anyscale"]["cloud_deployment_id"]
    config = tmp_path / "dev.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["synth", "--config", str(config), "--outdir", str(out)]) == 0
    platform = json.loads((out / "stacks" / "dev-platform" / "cdk.tf.json").read_text())
    assert "anyscale-operator" not in releases(platform)
    aws = json.loads((out / "stacks" / "dev" / "cdk.tf.json").read_text())
    assert aws["output"]["anyscale_register_command"]["value"].startswith("anyscale cloud register --name llm-dev ")
    err = capsys.readouterr().err
    assert (
        "serving.anyscale.cloud_deployment_id: not set, so dev-platform does not install the Anyscale operator" in err
    )


def test_a_gpu_quota_becomes_a_resource_quota(tmp_path):
    from stacks.config.loader import ENVIRONMENTS_DIR, parse_environment
    from stacks.planning.plan import plan_environment
    from stacks.specs.platform import platform_objects
    from stacks.specs.render import render_specs

    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    data["serving"]["gpu_quota"] = 6
    plan = plan_environment(parse_environment(data, "dev.yaml"))
    (quota,) = [o for o in platform_objects(plan, render_specs(plan)).all if o["kind"] == "ResourceQuota"]
    assert quota["spec"] == {"hard": {"requests.nvidia.com/gpu": "6"}}
    assert quota["metadata"]["namespace"] == "llm-serving"


def test_the_chart_includes_our_files_raw_so_helm_never_templates_them():
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "y"},
            "data": {"legend": "{{ $labels.instance }}", "note": '{{- fail "no" }}'},
        }
    ]
    files = chart_files("ours", objects)
    assert files["templates/manifests.yaml"].count("{{") == 3  # only the range and .Files.Get
    assert ".Files.Get" in files["templates/manifests.yaml"]
    (manifest,) = [text for path, text in files.items() if path.startswith("manifests/")]
    assert yaml.safe_load(manifest) == objects[0]
    changed = chart_files("ours", [{**objects[0], "data": {"legend": "other"}}])
    assert yaml.safe_load(changed["Chart.yaml"])["version"] != yaml.safe_load(files["Chart.yaml"])["version"]


def test_the_anyscale_operator_offers_exactly_the_instance_types_the_service_asks_for(
    synth_dir, platforms, shipped_plans
):
    plan = shipped_plans["prod"]
    operator = releases(platforms["prod"])["anyscale-operator"]
    chart = CHARTS["anyscale-operator"]
    assert (operator["repository"], operator["version"]) == (chart.repository, chart.version)
    values = yaml.safe_load(operator["values"][0])
    assert values["global"]["cloudDeploymentId"] == plan.env.serving.anyscale.cloud_deployment_id
    assert "auth" not in values["global"]  # Pod Identity, not an IRSA annotation
    assert values["workloads"]["serviceAccount"]["name"] == plan.env.serving.service_account
    offered = values["workloads"]["instanceTypes"]
    assert offered["enableDefaults"] is False
    service = yaml.safe_load((synth_dir / "specs" / "prod" / "anyscale-service.yaml").read_text())
    compute = service["compute_config"]
    asked = [compute["head_node"], *compute["worker_nodes"]]
    assert set(offered["additional"]) == {n["instance_type"] for n in asked}
    for node in asked:
        shape = offered["additional"][node["instance_type"]]
        pod = node["advanced_instance_config"]["spec"]
        # The operator places the pods where the compute config's pod patch says.
        assert shape["nodeSelector"] == pod["nodeSelector"]
        assert shape.get("tolerations", []) == pod.get("tolerations", [])
    pools = {p.name: p for p in plan.pools}
    for worker in compute["worker_nodes"]:
        shape = offered["additional"][worker["instance_type"]]
        assert shape["resources"]["GPU"] == pools[worker["name"]].gpus_per_node
        assert shape["resources"]["accelerators"] == [pools[worker["name"]].gpu.name]


def test_the_anyscale_operator_role_reaches_only_its_organizations_prefix_of_the_clouds_bucket(
    synthesized, shipped_plans
):
    plan, tf = shipped_plans["prod"], synthesized["prod"]
    (role_id,) = [
        rid for rid, r in resources(tf, "aws_iam_role").items() if r["name"] == plan.names.anyscale_operator_role
    ]
    trust = json.loads(resources(tf, "aws_iam_role")[role_id]["assume_role_policy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-namespace"] == plan.env.serving.namespace
    assert trust["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"] == "anyscale-operator"
    statements = [
        s
        for p in resources(tf, "aws_iam_role_policy").values()
        if p["role"] == f"${{aws_iam_role.{role_id}.name}}"
        for s in json.loads(p["policy"])["Statement"]
    ]
    bucket = f"arn:aws:s3:::{plan.names.anyscale_bucket}"
    organization = plan.env.serving.anyscale.organization_id
    for statement in statements:
        for resource in statement["Resource"]:
            assert resource.startswith((f"{bucket}/{organization}/", "${aws_kms_key.")) or resource == bucket
    command = tf["output"]["anyscale_register_command"]["value"]
    assert command == (
        "anyscale cloud register --name llm-prod --provider aws --compute-stack k8s --region us-east-1 "
        f"--s3-bucket-id {plan.names.anyscale_bucket} --kubernetes-zones us-east-1a,us-east-1b "
        f"--anyscale-operator-iam-identity arn:aws:iam::333333333333:role/{plan.names.anyscale_operator_role}"
    )


@pytest.mark.parametrize("env", ENVS)
def test_no_node_autoscaler_evicts_a_ray_pod(synth_dir, shipped_plans, env):
    specs = synth_dir / "specs" / env
    if shipped_plans[env].env.serving.target == "kuberay":
        cluster = yaml.safe_load((specs / "rayservice.yaml").read_text())["spec"]["rayClusterConfig"]
        templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    else:
        compute = yaml.safe_load((specs / "anyscale-service.yaml").read_text())["compute_config"]
        templates = [n["advanced_instance_config"] for n in (compute["head_node"], *compute["worker_nodes"])]
    assert templates
    for template in templates:
        assert template["metadata"]["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
