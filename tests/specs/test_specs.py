"""Service specs: rendered per environment, accepted by the vendors' own models, placed on the right nodes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from anyscale.service.models import ServiceConfig
from ray.serve.schema import ServeDeploySchema

import stacks.specs.render as render_module
from stacks.cli import main
from stacks.config.loader import ENVIRONMENTS_DIR, parse_environment
from stacks.planning.plan import plan_environment
from stacks.specs.render import ANYSCALE_FILE, RAYSERVICE_FILE, SERVE_FILE, render_specs
from stacks.specs.validate import scheduling_problems, vendor_problems

ENVS = ("dev", "staging", "prod")


def render(plan) -> dict[str, dict]:
    return render_specs(plan).documents


def spec_files(synth_dir: Path, env: str) -> dict[str, Path]:
    return {name: synth_dir / "specs" / env / name for name in (ANYSCALE_FILE, SERVE_FILE, RAYSERVICE_FILE)}


@pytest.mark.parametrize("env", ENVS)
def test_synth_writes_specs_the_vendors_accept(synth_dir, env):
    files = spec_files(synth_dir, env)
    service = ServiceConfig.from_yaml(str(files[ANYSCALE_FILE]))
    assert service.query_auth_token_enabled is True
    assert service.applications[0]["import_path"] == "app.serving:build_app"
    ServeDeploySchema.model_validate(yaml.safe_load(files[SERVE_FILE].read_text()))
    rayservice = yaml.safe_load(files[RAYSERVICE_FILE].read_text())
    assert rayservice["kind"] == "RayService" and rayservice["apiVersion"] == "ray.io/v1"
    ServeDeploySchema.model_validate(yaml.safe_load(rayservice["spec"]["serveConfigV2"]))


@pytest.mark.parametrize("env", ENVS)
def test_all_validators_pass_and_every_model_lands_on_its_pool(shipped_plans, env):
    documents = render(shipped_plans[env])
    problems, ran = vendor_problems(documents)
    assert problems == []
    assert ran == ["app contract", "Ray ServeDeploySchema", "Anyscale ServiceConfig"]
    assert scheduling_problems(shipped_plans[env], documents) == []


@pytest.mark.parametrize("env", ENVS)
def test_the_three_specs_carry_the_same_application(shipped_plans, env):
    documents = render(shipped_plans[env])
    serve_v2 = yaml.safe_load(documents[RAYSERVICE_FILE]["spec"]["serveConfigV2"])
    apps = [
        documents[ANYSCALE_FILE]["applications"][0],
        documents[SERVE_FILE]["applications"][0],
        serve_v2["applications"][0],
    ]
    assert all(app["args"] == apps[0]["args"] for app in apps)
    assert [m["id"] for m in apps[0]["args"]["models"]] == [m.id for m in shipped_plans[env].env.models]


def test_worker_groups_are_sized_from_replicas_gpus_and_surge(shipped_plans):
    dev = render(shipped_plans["dev"])[ANYSCALE_FILE]["compute_config"]["worker_nodes"]
    # qwen 0..2 + llama 0..1 replicas of 1 GPU on 1-GPU nodes; 20% surge on 3 nodes = 1.
    assert [(g["name"], g["min_nodes"], g["max_nodes"], g["market_type"]) for g in dev] == [("l4", 0, 4, "SPOT")]
    prod = {g["name"]: g for g in render(shipped_plans["prod"])[ANYSCALE_FILE]["compute_config"]["worker_nodes"]}
    assert (prod["l40s"]["min_nodes"], prod["l40s"]["max_nodes"]) == (2, 10)
    assert (prod["l40s-x4"]["min_nodes"], prod["l40s-x4"]["max_nodes"]) == (1, 3)  # one TP=4 replica per 4-GPU node
    kuberay = render(shipped_plans["staging"])[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert [(g["groupName"], g["minReplicas"], g["maxReplicas"]) for g in kuberay] == [("l40s", 1, 5)]


def test_pods_use_the_serving_identity_and_gpu_limits(shipped_plans):
    plan = shipped_plans["prod"]
    env = plan.env
    documents = render(plan)
    cluster = documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]
    assert {p["serviceAccountName"] for p in pods} == {env.serving.service_account}
    limits = {
        g["groupName"]: g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        for g in cluster["workerGroupSpecs"]
    }
    assert limits == {"l40s": "1", "l40s-x4": "4"}
    assert cluster["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}
    head = documents[ANYSCALE_FILE]["compute_config"]["head_node"]
    assert head["instance_type"] == "m7i.2xlarge"
    assert head["advanced_instance_config"]["spec"]["nodeSelector"] == {"llm-serving-stacks/node-pool": "system"}


def test_a100_pools_declare_the_sized_accelerator_ray_cannot_detect():
    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    data["node_pools"][1].update(accelerator="A100-40G", instance_types=["p4d.24xlarge"])
    documents = render(plan_environment(parse_environment(data, "dev.yaml")))
    (group,) = documents[ANYSCALE_FILE]["compute_config"]["worker_nodes"]
    assert group["resources"] == {"accelerator_type:A100-40G": 1, "llmstacks-pool-l4": 8}
    (worker,) = documents[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert worker["resources"] == {"accelerator_type:A100-40G": "1", "llmstacks-pool-l4": "8"}
    assert vendor_problems(documents)[0] == []


def broken(plan, change) -> list[str]:
    documents = copy.deepcopy(render(plan))
    change(documents)
    return scheduling_problems(plan, documents)


def test_scheduling_checker_catches_hand_broken_specs(shipped_plans):
    plan = shipped_plans["dev"]

    def drop_gpu_toleration(d):
        spec = d[ANYSCALE_FILE]["compute_config"]["worker_nodes"][0]["advanced_instance_config"]["spec"]
        spec["tolerations"] = [t for t in spec["tolerations"] if t["key"] != "nvidia.com/gpu"]

    def select_other_pool(d):
        d[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["nodeSelector"][
            "llm-serving-stacks/node-pool"
        ] = "system"

    def fewer_gpus(d):
        d[RAYSERVICE_FILE]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
            "resources"
        ]["limits"]["nvidia.com/gpu"] = "0"

    def no_group(d):
        d[ANYSCALE_FILE]["compute_config"]["worker_nodes"] = []

    assert broken(plan, drop_gpu_toleration)[0] == (
        "models[0] (qwen2.5-7b-instruct) on pool 'l4': anyscale: taint nvidia.com/gpu=present:NoSchedule is not tolerated"
    )
    assert (
        "kuberay: node selector llm-serving-stacks/node-pool=system does not match"
        in broken(plan, select_other_pool)[0]
    )
    assert broken(plan, fewer_gpus)[0].endswith("kuberay: worker pods get 0 GPUs, a replica needs 1 per node")
    assert broken(plan, no_group)[0].endswith("anyscale has no worker group for the pool")


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_spec_the_vendor_rejects_stops_synth_with_exit_2(tmp_path, capsys):
    config = tmp_path / "dev.yaml"
    config.write_text(
        (ENVIRONMENTS_DIR / "dev.yaml")
        .read_text()
        .replace("  anyscale:\n", "  anyscale:\n    image_uri: 'not an image!!'\n")
    )
    out = tmp_path / "out"
    assert main(["synth", "--config", str(config), "--outdir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        f"error: {config}: serving: anyscale-service.yaml: rejected by Anyscale ServiceConfig: Invalid image URI"
    )
    assert not out.exists()


def test_a_spec_that_breaks_scheduling_stops_synth_and_keeps_the_old_output(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("previous")
    before = tree(out)
    original = render_module.rayservice

    def unschedulable(plan, application):
        document = original(plan, application)
        for group in document["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
            group["template"]["spec"].pop("tolerations")
        return document

    monkeypatch.setattr(render_module, "rayservice", unschedulable)
    assert main(["synth", "--env", "staging", "--outdir", str(out)]) == 2
    assert "serving: models[0] (llama-3.1-8b-instruct) on pool 'l40s': kuberay: taint" in capsys.readouterr().err
    assert tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("env", ENVS)
def test_stack_publishes_the_exact_specs_under_a_content_versioned_prefix(synthesized, synth_dir, shipped_plans, env):
    from conftest import resources

    objects = {
        o["key"]: o for o in resources(synthesized[env], "aws_s3_object").values() if o["key"].startswith("specs/")
    }
    files = spec_files(synth_dir, env)
    (prefix,) = {key.rsplit("/", 1)[0] for key in objects}
    assert prefix.startswith(f"specs/{env}/") and len(prefix.split("/")[-1]) == 16
    for name, path in files.items():
        obj = objects[f"{prefix}/{name}"]
        assert obj["content"] == path.read_text()
        assert obj["bucket"].startswith("${aws_s3_bucket.lora_bucket_")
        assert (obj["server_side_encryption"], obj["checksum_algorithm"]) == ("aws:kms", "SHA256")
    assert synthesized[env]["output"]["spec_prefix"]["value"] == f"s3://{shipped_plans[env].names.lora_bucket}/{prefix}"


def test_spec_version_changes_with_content_only(shipped_plans):
    from stacks.specs.render import spec_version

    texts = render_specs(shipped_plans["dev"]).texts
    assert spec_version(texts) == spec_version(dict(reversed(list(texts.items()))))
    changed = {**texts, SERVE_FILE: texts[SERVE_FILE].replace("max_model_len: 8192", "max_model_len: 4096")}
    assert spec_version(changed) != spec_version(texts)


def test_kuberay_pods_get_the_app_code_the_stack_publishes(synthesized, shipped_plans):
    import base64
    import io
    import zipfile

    from conftest import resources
    from stacks.specs.app_package import app_zip, app_zip_key

    serve_v2 = yaml.safe_load(render(shipped_plans["staging"])[RAYSERVICE_FILE]["spec"]["serveConfigV2"])
    (code,) = serve_v2["applications"][0]["runtime_env"]["py_modules"]
    assert code == f"s3://llm-staging-lora-222222222222/{app_zip_key()}"
    objects = {o["key"]: o for o in resources(synthesized["staging"], "aws_s3_object").values()}
    published = base64.b64decode(objects[app_zip_key()]["content_base64"])
    assert published == app_zip() == app_zip()  # deterministic
    names = zipfile.ZipFile(io.BytesIO(published)).namelist()
    assert {"app/serving.py", "app/spec.py", "app/gated_server.py"} <= set(names)


def test_without_the_serving_extra_the_app_contract_still_runs(shipped_plans, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray.serve.schema", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "anyscale.service.models", None)
    documents = render(shipped_plans["dev"])
    assert vendor_problems(documents) == ([], ["app contract"])
    documents[SERVE_FILE]["applications"][0]["args"]["models"][0]["max_model_len"] = 1
    problems, _ = vendor_problems(documents)
    assert problems == ["serve-config.yaml: application 'llm' args: Input should be greater than or equal to 16"]
