"""Bad input through the real `llmstacks` command: one line, exit 2, nothing written."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import waits
import yaml

from stacks.config.loader import ENVIRONMENTS_DIR

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
DEV = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
STAGING = yaml.safe_load((ENVIRONMENTS_DIR / "staging.yaml").read_text())  # creates its cluster


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLMSTACKS, *args], capture_output=True, text=True, cwd=cwd, timeout=waits.COMMAND)


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def mutated(change, base=DEV) -> str:
    data = copy.deepcopy(base)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def _set(path: str, value):
    """A change that sets a dotted path (list indexes as numbers) in the dev file."""

    def change(data):
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def _delete(path: str):
    def change(data):
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return change


# (case id, file text, field the message must name, a word the message must contain)
CASES = [
    ("malformed-yaml", "name: dev\naws: [unclosed\n", "", "invalid YAML at line"),
    ("empty-file", "", "", "empty"),
    ("list-not-mapping", "- name: dev\n", "", "found a list"),
    ("duplicate-key", "name: dev\nname: prod\n", "", "duplicate key 'name'"),
    ("unknown-key", mutated(_set("colour", "blue")), "colour", "unknown key"),
    ("unknown-nested-key", mutated(_set("models.0.replica", 3)), "models[0].replica", "allowed: id"),
    ("missing-field", mutated(_delete("writer")), "writer", "required"),
    ("missing-node-pool", mutated(_set("models.0.node_pool", "a100")), "models[0].node_pool", "not defined"),
    ("cpu-pool-for-model", mutated(_set("models.0.node_pool", "system")), "models[0].node_pool", "no GPUs"),
    ("duplicate-model-id", mutated(_set("models.1.id", "qwen2.5-7b-instruct")), "models[1].id", "more than once"),
    ("duplicate-pool-name", mutated(_set("node_pools.1.name", "system")), "node_pools[1].name", "more than once"),
    ("model-id-with-colon", mutated(_set("models.0.id", "qwen:7b")), "models[0].id", "no ':'"),
    ("model-id-with-slash", mutated(_set("models.0.id", "qwen/7b")), "models[0].id", "no ':' or '/'"),
    ("short-account-id", mutated(_set("aws.account_id", "12345")), "aws.account_id", "12-digit"),
    ("unquoted-account-id", mutated(_set("aws.account_id", 123456789012)), "aws.account_id", "quote"),
    ("unknown-region", mutated(_set("aws.region", "us-west-9")), "aws.region", "unknown AWS region"),
    (
        "parallelism-too-big",
        mutated(_set("models.0.tensor_parallel_size", 4)),
        "models[0].tensor_parallel_size",
        "does not fit",
    ),
    (
        "pipeline-too-big",
        mutated(_set("models.0.pipeline_parallel_size", 2)),
        "models[0].pipeline_parallel_size",
        "does not fit",
    ),
    (
        "pool-too-small",
        mutated(_set("models.0.replicas", {"min": 0, "max": 5})),
        "node_pools[1].max_size",
        "at max replicas",
    ),
    (
        "wrong-accelerator",
        mutated(_set("node_pools.1.accelerator", "A10G")),
        "node_pools[1].instance_types[0]",
        "not the pool's accelerator",
    ),
    (
        "gpu-instance-in-cpu-pool",
        mutated(_set("node_pools.0.instance_types", ["g5.xlarge"])),
        "node_pools[0].instance_types[0]",
        "set accelerator",
    ),
    ("min-above-max", mutated(_set("node_pools.1.min_size", 5)), "node_pools[1]", "greater than max_size"),
    (
        "reserved-engine-kwarg",
        mutated(_set("models.0.engine_kwargs", {"max_model_len": 4096})),
        "models[0].engine_kwargs.max_model_len",
        "remove it",
    ),
    ("bad-lora-rank", mutated(_set("models.0.lora.max_rank", 48)), "models[0].lora.max_rank", "one of"),
    ("bad-state-bucket", mutated(_set("state.bucket", "Tf_State")), "state.bucket", "lowercase"),
    ("prefix-too-long-for-s3", mutated(_set("prefix", "a-very-long-prefix-xx")), "prefix", "expected"),
    ("name-mismatch", mutated(_set("name", "prod")), "name", "does not match the file name"),
    (
        "both-cluster-kinds",
        mutated(
            _set(
                "cluster.create",
                {"version": "1.33", "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]},
            )
        ),
        "cluster",
        "exactly one",
    ),
    ("wrong-type", mutated(_set("models.0.max_model_len", "long")), "models[0].max_model_len", "valid integer"),
    ("no-writer", mutated(_set("writer", {})), "writer", "at least one"),
    (
        "credential-in-replica-env",
        mutated(_set("models.0.env_vars", {"HF_TOKEN": "hf_x"})),
        "models[0].env_vars",
        "looks like a credential",
    ),
    (
        "unknown-routing",
        mutated(_set("models.0.routing", "random")),
        "models[0].routing.policy",
        "prefix_aware, power_of_two",
    ),
    (
        "workload-longer-than-max-model-len",
        mutated(_set("models.0.workload", {"prompt_tokens": {"typical": 4000, "p95": 9000}})),
        "models[0].workload",
        "longer than max_model_len",
    ),
    (
        "stream-hugging-face-weights",
        mutated(
            _set(
                "models.1.weights",
                {"source": "huggingface", "hf_id": "meta-llama/Llama-3.2-1B-Instruct", "load": "stream"},
            )
        ),
        "models[1].weights",
        "Hugging Face weights are downloaded",
    ),
]


# Values the constructs refused (a traceback, exit status 1) while the schema accepted them.
# The checks now apply the constructs' own rules (infra.rules) to the file's values.
CONSTRUCT_RULES = [
    (
        "gpu-pool-cpu-ami",
        mutated(_set("node_pools.1.ami_type", "AL2023_x86_64_STANDARD")),
        "node_pools[1].ami_type",
        "not an AMI type for a GPU pool",
    ),
    (
        "cpu-pool-unknown-ami",
        mutated(_set("node_pools.0.ami_type", "AL2_x86_64")),
        "node_pools[0].ami_type",
        "not an AMI type for a CPU pool",
    ),
    (
        "label-the-gpu-pool-sets",
        mutated(_set("node_pools.1.labels", {"nvidia.com/gpu.count": "8"})),
        "node_pools[1].labels",
        "set by the pool itself",
    ),
    (
        "label-the-pool-name-sets",
        mutated(_set("node_pools.0.labels", {"llm-serving-stacks/node-pool": "gpu"})),
        "node_pools[0].labels",
        "set by the pool itself",
    ),
    (
        "taint-the-gpu-pool-sets",
        mutated(_set("node_pools.1.taints", [{"key": "nvidia.com/gpu", "value": "yes"}])),
        "node_pools[1].taints",
        "appears twice",
    ),
    (
        "github-subject-with-a-space",
        mutated(_set("writer.github_subjects", ["repo:org/models:ref:refs/heads/main now"])),
        "writer.github_subjects[0]",
        "one repository and one context",
    ),
    (
        "github-subject-any-repository",
        mutated(_set("writer.github_subjects", ["repo:org/*:*"])),
        "writer.github_subjects[0]",
        "no wildcards",
    ),
    (
        "github-subject-wildcard-context",
        mutated(_set("writer.github_subjects", ["repo:org/models:ref:refs/tags/v*"])),
        "writer.github_subjects[0]",
        "wildcards in the context need writer.allow_context_wildcards",
    ),
    (
        "github-subject-wildcard-repository-even-opted-in",
        mutated(
            _set("writer", {"github_subjects": ["repo:org/*:ref:refs/heads/main"], "allow_context_wildcards": True})
        ),
        "writer.github_subjects[0]",
        "no wildcard in its owner or name",
    ),
    (
        "github-subject-trailing-newline",
        mutated(_set("writer.github_subjects", ["repo:org/models:ref:refs/heads/main\n"])),
        "writer.github_subjects[0]",
        "one repository and one context",
    ),
    (
        "writer-role-in-another-partition",
        mutated(_set("writer.role_arns", ["arn:aws-cn:iam::111111111111:role/ci"])),
        "writer.role_arns[0]",
        "in partition 'aws'",
    ),
    (
        "kms-key-in-another-partition",
        mutated(_set("buckets", {"kms_key_arn": "arn:aws-us-gov:kms:us-gov-west-1:111111111111:key/abcd-1234"})),
        "buckets.kms_key_arn",
        "in partition 'aws'",
    ),
    (
        "kms-alias-not-key",
        mutated(_set("buckets", {"kms_key_arn": "arn:aws:kms:us-west-2:111111111111:alias/data"})),
        "buckets.kms_key_arn",
        "is not a KMS key ARN",
    ),
    (
        "cluster-name-trailing-newline",
        mutated(_set("cluster.existing.name", "ml-dev\n")),
        "cluster.existing.name",
        "not an EKS cluster name",
    ),
    (
        "state-bucket-trailing-newline",
        mutated(_set("state.bucket", "llm-tfstate-111111111111\n")),
        "state.bucket",
        "may use only lowercase letters",
    ),
    (
        "public-cidr-not-a-cidr",
        mutated(
            lambda d: d["cluster"]["create"].update(endpoint_public_access=True, public_access_cidrs=["everyone"]),
            STAGING,
        ),
        "cluster.create.public_access_cidrs[0]",
        "not a CIDR block",
    ),
    (
        "cidrs-without-public-endpoint",
        mutated(_set("cluster.create.public_access_cidrs", ["203.0.113.0/24"]), STAGING),
        "cluster.create",
        "apply only with endpoint_public_access",
    ),
    (
        "admin-is-an-assumed-role-session",
        mutated(
            _set("cluster.create.admin_principal_arns", ["arn:aws:sts::222222222222:assumed-role/admin/me"]), STAGING
        ),
        "cluster.create.admin_principal_arns[0]",
        "not an IAM role or user ARN",
    ),
    (
        "admin-in-another-partition",
        mutated(_set("cluster.create.admin_principal_arns", ["arn:aws-cn:iam::222222222222:role/admin"]), STAGING),
        "cluster.create.admin_principal_arns[0]",
        "in partition 'aws'",
    ),
    (
        "log-retention-cloudwatch-refuses",
        mutated(_set("cluster.create.log_retention_days", 10), STAGING),
        "cluster.create.log_retention_days",
        "CloudWatch Logs allows",
    ),
    (
        "eks-patch-version",
        mutated(_set("cluster.create.version", "1.33.1"), STAGING),
        "cluster.create.version",
        "minor version",
    ),
    (
        "one-subnet",
        mutated(_set("cluster.create.subnet_ids", ["subnet-0a1b2c3d4e5f60001"]), STAGING),
        "cluster.create.subnet_ids",
        "two availability zones",
    ),
    # Engine settings the planner reads are typed; the ones that change GPUs per replica are refused.
    (
        "gpu-memory-utilization-not-a-number",
        mutated(_set("models.0.engine_kwargs.gpu_memory_utilization", "lots")),
        "models[0].engine_kwargs.gpu_memory_utilization",
        "valid number",
    ),
    (
        "gpu-memory-utilization-above-1",
        mutated(_set("models.0.engine_kwargs.gpu_memory_utilization", 1.5)),
        "models[0].engine_kwargs.gpu_memory_utilization",
        "less than or equal to 1",
    ),
    (
        "kv-cache-dtype-unknown",
        mutated(_set("models.0.engine_kwargs.kv_cache_dtype", "fp7")),
        "models[0].engine_kwargs.kv_cache_dtype",
        "Input should be",
    ),
    (
        "data-parallel-through-engine-kwargs",
        mutated(_set("models.0.engine_kwargs.data_parallel_size", 2)),
        "models[0].engine_kwargs.data_parallel_size",
        "changes the GPUs or nodes a replica uses",
    ),
    # The platform: what the Anyscale cloud and the operators need.
    ("anyscale-without-cloud", mutated(_delete("serving.anyscale.cloud")), "serving.anyscale.cloud", "required"),
    (
        "anyscale-without-organization",
        mutated(_delete("serving.anyscale.organization_id")),
        "serving.anyscale.organization_id",
        "required",
    ),
    (
        "anyscale-organization-malformed",
        mutated(_set("serving.anyscale.organization_id", "acme")),
        "serving.anyscale.organization_id",
        "not an Anyscale organization id",
    ),
    (
        "anyscale-without-zones",
        mutated(_delete("serving.anyscale.kubernetes_zones")),
        "serving.anyscale.kubernetes_zones",
        "required",
    ),
    (
        "anyscale-zone-of-another-region",
        mutated(_set("serving.anyscale.kubernetes_zones", ["us-west-2a", "us-east-1b"])),
        "serving.anyscale.kubernetes_zones[1]",
        "not an availability zone of 'us-west-2'",
    ),
    (
        "anyscale-zone-id-not-name",
        mutated(_set("serving.anyscale.kubernetes_zones", ["usw2-az1"])),
        "serving.anyscale.kubernetes_zones[0]",
        "not an availability zone",
    ),
    (
        "anyscale-deployment-id-malformed",
        mutated(_set("serving.anyscale.cloud_deployment_id", "cld_123; rm -rf /")),
        "serving.anyscale.cloud_deployment_id",
        "not an Anyscale cloud deployment id",
    ),
    (
        "anyscale-instance-type-clash",
        mutated(_set("serving.anyscale.instance_types", {"l4": "m7i.xlarge"})),
        "node_pools[1]",
        "would both be Anyscale instance type 'm7i.xlarge'",
    ),
    (
        "anyscale-instance-type-name",
        mutated(_set("serving.anyscale.instance_types", {"l4": "8 GPUs, please"})),
        "serving.anyscale.instance_types.l4",
        "letters, digits",
    ),
    (
        "unknown-node-autoscaler",
        mutated(_set("cluster.node_autoscaler", "karpenter")),
        "cluster.node_autoscaler",
        "Input should be",
    ),
    (
        "access-log-retention-zero",
        mutated(_set("buckets", {"access_logs": {"retention_days": 0}})),
        "buckets.access_logs.retention_days",
        "greater than or equal to 1",
    ),
]


def assert_refused(tmp_path: Path, name: str, text: str, field: str, needle: str) -> None:
    """`llmstacks synth` of `text` as <name>.yaml: one line naming the file and field, exit 2, nothing written."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(text)
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "keep.txt").write_text("previous synth")
    before = tree(tmp_path)

    result = run("synth", "--config", str(config), "--outdir", str(outdir))

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: {config}: {field}"), lines[0]
    assert needle in lines[0]
    assert result.stdout == ""
    assert tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([config.name, "out"])


@pytest.mark.parametrize(("text", "field", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_environment_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, text: str, field: str, needle: str):
    assert_refused(tmp_path, "dev", text, field, needle)


@pytest.mark.parametrize(
    ("text", "field", "needle"), [c[1:] for c in CONSTRUCT_RULES], ids=[c[0] for c in CONSTRUCT_RULES]
)
def test_a_value_a_construct_refuses_is_refused_with_its_field(tmp_path: Path, text: str, field: str, needle: str):
    name = yaml.safe_load(text)["name"]
    assert_refused(tmp_path, name, text, field, needle)


def test_missing_file(tmp_path: Path):
    result = run("synth", "--config", str(tmp_path / "nope.yaml"), "--outdir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: no such file"
    assert not (tmp_path / "out").exists()


def test_unknown_environment_name_lists_known_ones(tmp_path: Path):
    result = run("synth", "--env", "qa", "--outdir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "--env: no environment 'qa' (known: dev, prod, staging)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_two_files_with_the_same_environment(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "dev.yaml").write_text((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    result = run(
        "synth", "--env", "dev", "--config", str(tmp_path / "a" / "dev.yaml"), "--outdir", str(tmp_path / "out")
    )
    assert result.returncode == 2
    assert "name: environment 'dev' is also defined in" in result.stderr


def test_one_bad_file_among_good_ones_writes_nothing(tmp_path: Path):
    bad = tmp_path / "qa.yaml"
    bad.write_text(mutated(_set("name", "qa")).replace("node_pool: l4", "node_pool: missing", 1))
    result = run("synth", "--env", "dev", "--config", str(bad), "--outdir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{bad}: models[0].node_pool" in result.stderr
    assert not (tmp_path / "out").exists()


def test_count_of_further_problems_is_reported(tmp_path: Path):
    config = tmp_path / "dev.yaml"
    config.write_text(mutated(lambda d: d.update(colour="x", size=1)))
    result = run("synth", "--config", str(config), "--outdir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "(and 1 more problem)" in result.stderr


def test_bad_input_fails_fast_without_loading_cdktf(tmp_path: Path):
    """Validation runs before cdktf is imported, so no Node process is ever started."""
    config = tmp_path / "dev.yaml"
    config.write_text(mutated(_set("aws.region", "mars-1")))
    env = {**os.environ, "JSII_NODE": str(tmp_path / "no-node-here")}
    result = subprocess.run(
        [LLMSTACKS, "synth", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=waits.COMMAND,
    )
    assert result.returncode == 2
    assert "aws.region" in result.stderr
    assert not (tmp_path / "cdktf.out").exists()
