"""A platform team imports the constructs into its own cdktf app (examples/platform_app)."""

from __future__ import annotations

import importlib.util
import json
import runpy
from pathlib import Path

import pytest
from cdktf import Testing as CdktfTesting

from conftest import cdktf_app, resources

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform_app" / "main.py"
BUCKET_ARN = "arn:aws:s3:::team-llm-weights-123456789012"


def load_example():
    spec = importlib.util.spec_from_file_location("platform_app_main", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tf() -> dict:
    stack = load_example().build(cdktf_app())
    return json.loads(CdktfTesting.synth(stack))


def test_the_team_stack_has_its_key_bucket_pools_and_identity(tf):
    assert tf["provider"]["aws"][0]["allowed_account_ids"] == ["123456789012"]
    assert [k["enable_key_rotation"] for k in resources(tf, "aws_kms_key").values()] == [True]
    assert [b["bucket"] for b in resources(tf, "aws_s3_bucket").values()] == ["team-llm-weights-123456789012"]
    assert [c["name"] for c in tf["data"]["aws_eks_cluster"].values()] == ["ml-platform"]
    groups = {g["node_group_name"]: g for g in resources(tf, "aws_eks_node_group").values()}
    assert set(groups) == {"team-llm-system", "team-llm-l4"}
    gpu = groups["team-llm-l4"]
    assert gpu["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert (gpu["capacity_type"], gpu["ami_type"]) == ("SPOT", "BOTTLEROCKET_x86_64_NVIDIA")
    # Subnets come from the existing cluster at plan time.
    assert gpu["subnet_ids"].startswith("${tolist(data.aws_eks_cluster.")
    (association,) = resources(tf, "aws_eks_pod_identity_association").values()
    assert (association["cluster_name"], association["namespace"], association["service_account"]) == (
        "ml-platform",
        "team-llm",
        "ray",
    )
    assert set(tf["output"]) == {"weights_bucket", "serving_role_arn", "gpu_node_group"}


def test_the_serving_pods_may_only_read_the_models_prefix(tf):
    (policy,) = resources(tf, "aws_iam_role_policy").values()
    assert policy["name"] == "read-weights-models"
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    assert {a for s in statements.values() for a in s["Action"]} == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    assert statements["ReadObjects"]["Resource"] == [f"{BUCKET_ARN}/models/*"]
    assert statements["ListPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["models", "models/*"]}}
    assert statements["DecryptObjects"]["Condition"]["StringEquals"]["kms:ViaService"] == "s3.us-west-2.amazonaws.com"


def test_python_main_py_synthesizes_where_cdktf_asks(tmp_path, monkeypatch):
    monkeypatch.setenv("CDKTF_OUTDIR", str(tmp_path))
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    written = json.loads((tmp_path / "stacks" / "team-serving" / "cdk.tf.json").read_text())
    assert "aws_eks_node_group" in written["resource"]
    assert json.loads((tmp_path / "manifest.json").read_text())["stacks"]["team-serving"]
