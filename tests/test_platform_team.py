"""A platform team imports the constructs into its own cdktf app (examples/platform_app)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from cdktf import Testing as CdktfTesting

from conftest import resources

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "platform_app" / "main.py"


def load_example():
    spec = importlib.util.spec_from_file_location("platform_app_main", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_platform_team_stack_from_constructs():
    stack = load_example().build(CdktfTesting.app())
    tf = json.loads(CdktfTesting.synth(stack))

    assert tf["provider"]["aws"][0]["allowed_account_ids"] == ["123456789012"]
    assert {g["node_group_name"] for g in resources(tf, "aws_eks_node_group").values()} == {"team-llm-system", "team-llm-l4"}
    gpu = next(g for g in resources(tf, "aws_eks_node_group").values() if g["node_group_name"] == "team-llm-l4")
    assert gpu["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert gpu["subnet_ids"].startswith("${tolist(data.aws_eks_cluster.")

    (policy,) = resources(tf, "aws_iam_role_policy").values()
    statements = json.loads(policy["policy"])["Statement"]
    assert {a for s in statements for a in s["Action"]} == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    get = next(s for s in statements if s["Action"] == ["s3:GetObject"])
    assert get["Resource"] == ["arn:aws:s3:::team-llm-weights-123456789012/models/*"]
    assert set(tf["output"]) == {"weights_bucket", "serving_role_arn", "gpu_node_group"}
