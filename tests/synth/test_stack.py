"""The per-environment stacks, asserted on the synthesized Terraform JSON."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import pytest
import waits

from conftest import resources
from stacks.cli import main
from stacks.errors import ConfigError

ENVS = ("dev", "staging", "prod")


def statements_for(tf: dict, role_name: str) -> list[dict]:
    """Every statement of the inline policies on the IAM role named `role_name`."""
    role_ids = [rid for rid, role in resources(tf, "aws_iam_role").items() if role["name"] == role_name]
    assert len(role_ids) == 1, role_name
    ref = f"${{aws_iam_role.{role_ids[0]}.name}}"
    found = []
    for policy in resources(tf, "aws_iam_role_policy").values():
        if policy["role"] in (ref, f"${{aws_iam_role.{role_ids[0]}.id}}"):
            found += json.loads(policy["policy"])["Statement"]
    return found


def actions(statements: list[dict]) -> set[str]:
    out: set[str] = set()
    for s in statements:
        out |= {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
    return out


def test_every_environment_is_synthesized(synth_dir: Path):
    manifest = json.loads((synth_dir / "manifest.json").read_text())
    assert sorted(manifest["stacks"]) == sorted([*ENVS, *(f"{e}-platform" for e in ENVS)])
    for env in ENVS:
        assert (synth_dir / "stacks" / env / "cdk.tf.json").is_file()


@pytest.mark.parametrize("env", ENVS)
def test_provider_pins_the_account_and_tags_everything(synthesized, shipped_plans, env):
    config = shipped_plans[env].env
    (provider,) = synthesized[env]["provider"]["aws"]
    assert provider["allowed_account_ids"] == [config.aws.account_id]
    assert provider["region"] == config.aws.region
    tags = provider["default_tags"][0]["tags"]
    assert tags["llm-serving-stacks:environment"] == env
    for key, value in config.tags.items():
        assert tags[key] == value


@pytest.mark.parametrize("env", ENVS)
def test_state_is_remote_encrypted_and_locked(synthesized, shipped_plans, env):
    config = shipped_plans[env].env
    backend = synthesized[env]["terraform"]["backend"]["s3"]
    assert backend["bucket"] == config.state.bucket
    assert backend["key"] == f"llm-serving-stacks/{env}/{env}.tfstate"
    assert backend["encrypt"] is True
    assert backend["use_lockfile"] is True
    assert backend["region"] == (config.state.region or config.aws.region)


@pytest.mark.parametrize("env", ENVS)
def test_buckets_have_deterministic_names_and_are_encrypted_with_the_key(synthesized, shipped_plans, env):
    tf, names = synthesized[env], shipped_plans[env].names
    account = names.env.aws.account_id
    buckets = {name: b["bucket"] for name, b in resources(tf, "aws_s3_bucket").items()}
    expected = {f"llm-{env}-weights-{account}", f"llm-{env}-lora-{account}", f"llm-{env}-logs-{account}"}
    if shipped_plans[env].env.serving.target == "anyscale":
        expected.add(f"llm-{env}-anyscale-{account}")  # the Anyscale cloud's storage
    assert set(buckets.values()) == expected
    (key_id,) = resources(tf, "aws_kms_key")
    for sse in resources(tf, "aws_s3_bucket_server_side_encryption_configuration").values():
        rule = sse["rule"][0]
        if buckets[sse["bucket"].split(".")[1]] == f"llm-{env}-logs-{account}":
            # S3 delivers access logs only to SSE-S3 buckets.
            assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "AES256"}
            continue
        assert rule["bucket_key_enabled"] is True
        assert rule["apply_server_side_encryption_by_default"]["kms_master_key_id"] == f"${{aws_kms_key.{key_id}.arn}}"


def test_only_prod_data_survives_terraform_destroy(synthesized):
    def protected(tf: dict) -> set[str]:
        return {
            f"{kind}.{name}"
            for kind in ("aws_s3_bucket", "aws_kms_key")
            for name, body in resources(tf, kind).items()
            if body.get("lifecycle", {}).get("prevent_destroy")
        }

    # The data buckets, the Anyscale cloud's storage, their access logs and the key.
    assert len(protected(synthesized["prod"])) == 5
    assert protected(synthesized["dev"]) == set()
    # Only a destroyable environment's log bucket goes with its logs (S3 keeps delivering them).
    for env, force in (("dev", True), ("staging", True), ("prod", False)):
        (logs,) = [b for b in resources(synthesized[env], "aws_s3_bucket").values() if "-logs-" in b["bucket"]]
        assert logs["force_destroy"] is force
        assert all(
            b["force_destroy"] is False for b in resources(synthesized[env], "aws_s3_bucket").values() if b is not logs
        )
    assert protected(synthesized["staging"]) == set()


@pytest.mark.parametrize("env", ENVS)
def test_one_node_group_per_pool_with_the_environment_sizes(synthesized, shipped_plans, env):
    config = shipped_plans[env].env
    groups = {g["node_group_name"]: g for g in resources(synthesized[env], "aws_eks_node_group").values()}
    assert set(groups) == {f"llm-{env}-{p.name}" for p in config.node_pools}
    for pool in config.node_pools:
        group = groups[f"llm-{env}-{pool.name}"]
        assert group["scaling_config"]["min_size"] == pool.min_size
        assert group["scaling_config"]["max_size"] == pool.max_size
        assert group["capacity_type"] == pool.capacity_type.upper()
        assert group["instance_types"] == pool.instance_types
        assert group["labels"]["llm-serving-stacks/node-pool"] == pool.name
        taints = {(t["key"], t["effect"]) for t in group.get("taint", [])}
        if pool.accelerator:
            assert "NVIDIA" in group["ami_type"]
            assert ("nvidia.com/gpu", "NO_SCHEDULE") in taints
            assert group["labels"]["nvidia.com/gpu.product"].startswith("NVIDIA-")
        else:
            assert "NVIDIA" not in group["ami_type"]
            assert taints == set()


def test_existing_cluster_is_looked_up_and_new_clusters_are_created(synthesized):
    dev = synthesized["dev"]
    assert "aws_eks_cluster" in dev["data"] and "aws_eks_cluster" not in dev.get("resource", {})
    for env in ("staging", "prod"):
        (cluster,) = resources(synthesized[env], "aws_eks_cluster").values()
        assert cluster["name"] == f"llm-{env}"
        assert cluster["vpc_config"]["endpoint_public_access"] is False


@pytest.mark.parametrize("env", ENVS)
def test_serving_identity_reads_and_never_writes(synthesized, shipped_plans, env):
    names = shipped_plans[env].names
    statements = statements_for(synthesized[env], names.serving_role)
    secrets = [s for s in statements if s["Action"] == ["secretsmanager:GetSecretValue"]]
    statements = [s for s in statements if s not in secrets]
    # Anyscale's Ray pods read and write the cloud's storage, and only there.
    storage_arn = f"arn:aws:s3:::{names.anyscale_bucket}"
    storage = [s for s in statements if storage_arn in json.dumps(s)]
    statements = [s for s in statements if s not in storage]
    if shipped_plans[env].env.serving.target == "anyscale":
        organization = shipped_plans[env].env.serving.anyscale.organization_id
        assert actions(storage) >= {"s3:PutObject", "s3:DeleteObject", "kms:GenerateDataKey"}
        for statement in storage:
            resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
            for resource in resources:
                assert (
                    resource.startswith(f"{storage_arn}/{organization}/")
                    or resource in (storage_arn,)
                    or resource.startswith("${aws_kms_key.")
                )
    else:
        assert storage == []
    assert actions(statements) == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    object_arns = {
        r
        for s in statements
        if "s3:GetObject" in s["Action"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    assert object_arns == {
        f"arn:aws:s3:::{names.weights_bucket}/models/*",
        f"arn:aws:s3:::{names.lora_bucket}/adapters/*",
        f"arn:aws:s3:::{names.lora_bucket}/code/*",  # the app's code for KubeRay pods
    }


def test_serving_identity_reads_only_the_gated_models_token(synthesized, shipped_plans):
    statements = statements_for(synthesized["prod"], shipped_plans["prod"].names.serving_role)
    secrets = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
    assert [s["Resource"] for s in secrets] == [
        ["arn:aws:secretsmanager:us-east-1:333333333333:secret:llm-prod/hf-token-??????"]
    ]
    dev = statements_for(synthesized["dev"], shipped_plans["dev"].names.serving_role)
    assert not [s for s in dev if "secretsmanager:GetSecretValue" in s["Action"]]


@pytest.mark.parametrize("env", ENVS)
def test_writer_identity_publishes_models_and_adapters_through_staging(synthesized, shipped_plans, env):
    names = shipped_plans[env].names
    statements = statements_for(synthesized[env], names.writer_role)
    assert {"s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject", "kms:GenerateDataKey"} <= actions(statements)
    assert "s3:DeleteObjectVersion" not in actions(statements)  # deletes stay recoverable
    published = {
        f"arn:aws:s3:::{names.weights_bucket}/models/*",
        f"arn:aws:s3:::{names.lora_bucket}/adapters/*",
        f"arn:aws:s3:::{names.lora_bucket}/staging/*",  # upload-adapter stages, then copies into adapters/
    }
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        granted = [s for s in statements if action in s["Action"]]
        assert {
            r for s in granted for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
        } == published


@pytest.mark.parametrize("env", ENVS)
def test_staged_uploads_expire_in_the_lora_bucket_only(synthesized, env):
    rules = {}
    for lifecycle in resources(synthesized[env], "aws_s3_bucket_lifecycle_configuration").values():
        bucket = "lora" if "lora" in lifecycle["bucket"] else "weights"
        rules[bucket] = {r["id"]: r for r in lifecycle["rule"]}
    staging = rules["lora"]["expire-staging"]
    assert staging["filter"] == [{"prefix": "staging/"}] and staging["expiration"] == [{"days": 7}]
    assert "expire-staging" not in rules["weights"]


def test_serving_pods_are_bound_to_the_serving_role(synthesized, shipped_plans):
    config = shipped_plans["dev"].env
    (assoc,) = [
        a
        for a in resources(synthesized["dev"], "aws_eks_pod_identity_association").values()
        if a["service_account"] == config.serving.service_account
    ]
    assert assoc["namespace"] == config.serving.namespace
    assert assoc["service_account"] == config.serving.service_account
    assert assoc["cluster_name"] == "ml-dev"


@pytest.mark.parametrize("env", ENVS)
def test_outputs_name_what_callers_need(synthesized, env):
    assert set(synthesized[env]["output"]) >= {
        "weights_bucket",
        "lora_bucket",
        "kms_key_arn",
        "cluster_name",
        "serving_role_arn",
        "writer_role_arn",
        "node_groups",
    }


def test_synth_is_deterministic(tmp_path: Path, synthesized, shipped_plans):
    from stacks.synth.run import synthesize

    result = synthesize([shipped_plans["prod"]], tmp_path / "again", replace_all=True)
    assert json.loads(result.stack_files["prod"].read_text()) == synthesized["prod"]


def test_cli_prints_a_summary_and_merges_single_environments(tmp_path: Path, capsys):
    out = tmp_path / "cdktf.out"
    assert main(["synth", "--env", "dev", "--outdir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stack dev: account 111111111111, us-west-2, cluster ml-dev" in printed
    assert (
        "qwen2.5-7b-instruct" in printed and "s3://llm-dev-weights-111111111111/models/qwen2.5-7b-instruct" in printed
    )
    assert "g6.2xlarge,g6.4xlarge" in printed and "1 x L4" in printed

    assert main(["synth", "--env", "staging", "--outdir", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["stacks"]) == ["dev", "dev-platform", "staging", "staging-platform"]
    assert (out / "stacks" / "dev" / "cdk.tf.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["cdktf.out"]  # no temporary leftovers


def test_failure_during_synthesis_leaves_the_output_untouched(tmp_path: Path, monkeypatch, shipped_plans):
    import stacks.synth.stack
    from stacks.synth.run import synthesize

    out = tmp_path / "cdktf.out"
    out.mkdir()
    (out / "manifest.json").write_text("previous")
    built = []

    class Exploding(stacks.synth.stack.ServingStack):
        def __init__(self, scope, plan, specs):
            built.append(plan.env.name)
            if len(built) == 2:
                raise RuntimeError("boom")
            super().__init__(scope, plan, specs)

    monkeypatch.setattr(stacks.synth.stack, "ServingStack", Exploding)
    with pytest.raises(RuntimeError):
        synthesize([shipped_plans[e] for e in ENVS], out, replace_all=True)
    assert [p.name for p in tmp_path.iterdir()] == ["cdktf.out"]
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert (out / "manifest.json").read_text() == "previous"


def test_cdktf_app_entry_writes_where_the_cli_asks(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CDKTF_OUTDIR", str(tmp_path / "out"))
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("stacks", run_name="__main__")
    assert exit_.value.code == 0
    assert sorted(os.listdir(tmp_path / "out" / "stacks")) == sorted([*ENVS, *(f"{e}-platform" for e in ENVS)])


def test_an_environment_built_in_code_that_does_not_fit_is_refused_by_the_plan(shipped_plans):
    from stacks.planning.plan import plan_environment

    dev = shipped_plans["dev"].env
    broken = dev.model_copy(update={"models": [dev.models[0].model_copy(update={"tensor_parallel_size": 8})]})
    with pytest.raises(ConfigError, match=r"models\[0\]\.tensor_parallel_size"):
        plan_environment(broken)


def test_a_value_a_construct_still_refuses_is_one_line_naming_the_field(tmp_path: Path, monkeypatch, capsys):
    """The safety net under the checks: a construct's ValueError becomes the environment's field, exit 2."""
    import stacks.synth.stack

    class Refusing(stacks.synth.stack.GpuNodePool):
        def __init__(self, *args, **kwargs):
            raise ValueError("ami_type: a rule the checks do not know yet")

    monkeypatch.setattr(stacks.synth.stack, "GpuNodePool", Refusing)
    out = tmp_path / "out"
    assert main(["synth", "--env", "dev", "--outdir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {shipped_plans_source('dev')}: node_pools[1]: ami_type: a rule the checks do not know yet"]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def shipped_plans_source(env: str) -> str:
    from stacks.config.loader import ENVIRONMENTS_DIR, find_environment

    return str(find_environment(env, ENVIRONMENTS_DIR))


def test_spec_objects_hold_the_spec_text_exactly_even_with_terraform_templates_in_it(tmp_path: Path):
    """A pull request can put `${file(...)}` in a free-form value: Terraform must store it, not evaluate it."""
    import shutil
    import subprocess

    import yaml

    from stacks.config.loader import ENVIRONMENTS_DIR

    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    hostile = 'x ${file("/etc/hostname")} %{ if true }y%{ endif } $${kept} ${env}'
    data["models"][0]["engine_kwargs"]["chat_template_kwargs"] = {"note": hostile}
    config = tmp_path / "dev.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["synth", "--config", str(config), "--outdir", str(out)]) == 0
    tf = json.loads((out / "stacks" / "dev" / "cdk.tf.json").read_text())
    objects = {
        o["key"].rsplit("/", 1)[-1]: o["content"] for o in resources(tf, "aws_s3_object").values() if "content" in o
    }
    # Evaluate each object's content as Terraform would, in a configuration of outputs only.
    work = tmp_path / "tf"
    work.mkdir()
    (work / "main.tf.json").write_text(
        json.dumps({"output": {name.replace(".", "_"): {"value": text} for name, text in objects.items()}})
    )
    for command in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        done = subprocess.run(["terraform", *command], cwd=work, capture_output=True, text=True, timeout=waits.COMMAND)
        assert done.returncode == 0, done.stderr
    shown = subprocess.run(
        ["terraform", "output", "-json"], cwd=work, capture_output=True, text=True, timeout=waits.COMMAND
    )
    values = {name: output["value"] for name, output in json.loads(shown.stdout).items()}
    for name in objects:
        assert values[name.replace(".", "_")] == (out / "specs" / "dev" / name).read_text()
    assert hostile in (out / "specs" / "dev" / "serve-config.yaml").read_text()


def test_turning_access_logs_off_drops_the_log_bucket_and_says_what_is_then_unaudited(tmp_path: Path, capsys):
    import yaml

    from stacks.config.loader import ENVIRONMENTS_DIR

    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    data.setdefault("buckets", {})["access_logs"] = {"enabled": False}
    config = tmp_path / "dev.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["synth", "--config", str(config), "--outdir", str(out)]) == 0
    tf = json.loads((out / "stacks" / "dev" / "cdk.tf.json").read_text())
    assert {b["bucket"] for b in resources(tf, "aws_s3_bucket").values()} == {
        "llm-dev-weights-111111111111",
        "llm-dev-lora-111111111111",
        "llm-dev-anyscale-111111111111",
    }
    assert resources(tf, "aws_s3_bucket_logging") == {}
    assert tf["output"]["access_log_bucket"]["value"] == ""
    assert (
        "buckets.access_logs.enabled: access to the weights and LoRA buckets is not logged" in capsys.readouterr().err
    )
