"""A weights update as a reviewer reads it in the preview: the pinned snapshot old -> new, and with
read access to the weights bucket (`--snapshot-details`, the plan role) each one's size and date."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from app.spec import snapshot_prefix
from stacks.config.loader import parse_environment
from stacks.planning.plan import plan_environment
from stacks.preview.diff import compare, model_facts
from stacks.preview.snapshots import describer

ROOT = Path(__file__).resolve().parents[2]
DEV = yaml.safe_load((ROOT / "stacks" / "environments" / "dev.yaml").read_text())
MODEL = "qwen2.5-7b-instruct"
OLD, NEW = "0123456789abcdef", "fedcba9876543210"


def planned(snapshot: str):
    data = copy.deepcopy(DEV)
    next(m for m in data["models"] if m["id"] == MODEL)["weights"] = {"snapshot": snapshot}
    return plan_environment(parse_environment(data, "dev.yaml"), source="dev.yaml")


def line(base, head, describe=None) -> str:
    (found,) = [
        x for x in compare("model", model_facts(base, describe), model_facts(head, describe)) if f"`{MODEL}`" in x
    ]
    return found


def test_a_snapshot_change_is_one_line_naming_old_and_new():
    assert line(planned(OLD), planned(NEW)) == f"model `{MODEL}`: weights snapshot {OLD} -> {NEW}"


def test_with_bucket_access_each_snapshot_shows_its_size_and_date():
    base, head = planned(OLD), planned(NEW)
    bucket = head.names.weights_bucket
    with mock_aws():
        s3 = boto3.client("s3", region_name=head.env.aws.region)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": head.env.aws.region})
        for snapshot, sizes in ((OLD, [2**30, 2**29]), (NEW, [3 * 2**30])):
            manifest = {
                "model_id": MODEL,
                "files": [{"path": f"f{i}", "size": n, "sha256": "0" * 64} for i, n in enumerate(sizes)],
            }
            s3.put_object(
                Bucket=bucket, Key=snapshot_prefix(MODEL, snapshot) + "manifest.json", Body=json.dumps(manifest)
            )
        calls = []
        describe = describer(lambda region: calls.append(region) or s3)
        today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        assert line(base, head, describe) == (
            f"model `{MODEL}`: weights snapshot {OLD} (1.50 GiB, published {today}) -> "
            f"{NEW} (3.00 GiB, published {today})"
        )
        # One client per region, whatever the number of models.
        assert calls == [head.env.aws.region]
        missing = planned("00000000000000aa")
        assert "00000000000000aa (not published in the weights bucket)" in line(base, missing, describe)
        s3.put_object(Bucket=bucket, Key=snapshot_prefix(MODEL, "00000000000000bb") + "manifest.json", Body=b"[1, 2]")
        assert "(its manifest is not one upload-model writes)" in line(base, planned("00000000000000bb"), describe)


def test_an_unreachable_bucket_is_said_in_the_line_not_raised():
    def unreachable(region):
        raise ConnectionError("no route")

    assert "(not read: ConnectionError)" in line(planned(OLD), planned(NEW), describer(unreachable))


@pytest.mark.parametrize("weights", [{"source": "huggingface", "hf_id": "Qwen/Qwen2.5-7B-Instruct"}])
def test_hugging_face_weights_have_no_snapshot_fact(weights):
    data = copy.deepcopy(DEV)
    next(m for m in data["models"] if m["id"] == MODEL)["weights"] = weights
    plan = plan_environment(parse_environment(data, "dev.yaml"), source="dev.yaml")
    assert "weights snapshot" not in model_facts(plan)[MODEL]
