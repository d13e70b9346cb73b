"""An environment with an EFA (Elastic Fabric Adapter) pool: prod with one pool turned to EFA is
synthesized once and compared with prod as shipped (both stacks and the specs), and bad EFA input
through the command line.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import waits
import yaml

from conftest import TESTS, resources
from infra.compute.efa.plugin import EFA_RESOURCE
from infra.compute.scheduling import POOL_LABEL
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.specs.render import RAYSERVICE_FILE, render_specs

SCHEMAS = TESTS / "schemas"
LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
PROD = yaml.safe_load((ENVIRONMENTS_DIR / "prod.yaml").read_text())
DEV = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
EFA_POOL = 2  # prod's l40s-x4: g6e.12xlarge, 4 x L40S, one EFA interface


@pytest.fixture(scope="module")
def efa_prod(tmp_path_factory):
    """prod with its 4 x L40S pool on EFA: the plan, and both stacks synthesized."""
    from stacks.planning.plan import plan_file
    from stacks.synth.run import synthesize

    data = copy.deepcopy(PROD)
    data["node_pools"][EFA_POOL]["efa"] = True
    directory = tmp_path_factory.mktemp("efa-prod")
    (directory / "prod.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    plan = plan_file(directory / "prod.yaml")
    out = directory / "cdktf.out"
    synthesize([plan], out, replace_all=True)
    stacks = {
        name: json.loads((out / "stacks" / name / "cdk.tf.json").read_text()) for name in ("prod", "prod-platform")
    }
    return {"plan": plan, **stacks}


def changed(before: dict, after: dict) -> set[str]:
    """`type.name` of every resource added, removed or changed."""
    out = set()
    for kind in before.get("resource", {}).keys() | after.get("resource", {}).keys():
        old, new = resources(before, kind), resources(after, kind)
        out |= {f"{kind}.{name}" for name in old.keys() | new.keys() if old.get(name) != new.get(name)}
    return out


def test_turning_efa_on_changes_only_that_pool_and_adds_the_network(efa_prod, synthesized):
    differing = changed(synthesized["prod"], efa_prod["prod"])
    pool_resources = {d for d in differing if d.split(".")[1].startswith("pool-l40s-x4_")}
    network = {d for d in differing if d.split(".")[1].startswith("efa_")}
    specs = {d for d in differing if d.startswith("aws_s3_object.lora_spec-")}  # the specs name the EFA resource
    assert differing == pool_resources | network | specs
    assert {d.split(".")[0] for d in pool_resources} == {
        "aws_launch_template",
        "aws_eks_node_group",
        "aws_autoscaling_group_tag",
    }
    assert {d.split(".")[0] for d in network} == {
        "aws_security_group",
        "aws_vpc_security_group_ingress_rule",
        "aws_vpc_security_group_egress_rule",
    }


def test_the_platform_installs_the_device_plugin_only_with_efa_pools(efa_prod, synthesized):
    releases = resources(efa_prod["prod-platform"], "helm_release")
    (plugin,) = [r for r in releases.values() if r["name"] == "aws-efa-k8s-device-plugin"]
    assert (plugin["repository"], plugin["chart"], plugin["version"], plugin["namespace"]) == (
        "https://aws.github.io/eks-charts",
        "aws-efa-k8s-device-plugin",
        "v0.5.30",
        "kube-system",
    )
    values = yaml.safe_load(plugin["values"][0])
    assert values["supportedInstanceLabels"] == {"keys": [POOL_LABEL], "values": ["l40s-x4"]}
    taints = {(t["key"], t["value"], t["effect"]) for t in values["tolerations"]}
    assert taints == {
        ("nvidia.com/gpu", "present", "NoSchedule"),
        ("node.anyscale.com/accelerator-type", "GPU", "NoSchedule"),
        ("node.anyscale.com/capacity-type", "ON_DEMAND", "NoSchedule"),
    }
    # Beside it, only the serving objects' prerequisites and the Anyscale operator's instance types change.
    assert changed(synthesized["prod-platform"], efa_prod["prod-platform"]) <= {
        f"helm_release.{name}"
        for name, r in releases.items()
        if r["name"] in ("aws-efa-k8s-device-plugin", "llm-serving-platform", "anyscale-operator")
    }
    for env in ("dev", "staging", "prod"):
        assert all(
            r["name"] != "aws-efa-k8s-device-plugin"
            for r in resources(synthesized[f"{env}-platform"], "helm_release").values()
        )


def test_workers_on_an_efa_pool_request_and_limit_every_interface(efa_prod, shipped_plans):
    rayservice = render_specs(efa_prod["plan"]).documents[RAYSERVICE_FILE]
    groups = {g["groupName"]: g for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    (efa_worker,) = groups["l40s-x4"]["template"]["spec"]["containers"]
    resources_ = efa_worker["resources"]
    assert resources_["requests"][EFA_RESOURCE] == resources_["limits"][EFA_RESOURCE] == "1"
    (plain_worker,) = groups["l40s"]["template"]["spec"]["containers"]
    assert EFA_RESOURCE not in plain_worker["resources"]["limits"]
    shipped = render_specs(shipped_plans["prod"]).documents[RAYSERVICE_FILE]
    (shipped_group,) = [
        g for g in shipped["spec"]["rayClusterConfig"]["workerGroupSpecs"] if g["groupName"] == "l40s-x4"
    ]
    (shipped_worker,) = shipped_group["template"]["spec"]["containers"]
    for kind in ("requests", "limits"):
        assert {k: v for k, v in resources_[kind].items() if k != EFA_RESOURCE} == shipped_worker["resources"][kind]


def test_anyscale_pods_on_an_efa_pool_request_every_interface(efa_prod, synthesized):
    def instance_types(platform: dict) -> dict:
        (operator,) = [r for r in resources(platform, "helm_release").values() if r["name"] == "anyscale-operator"]
        return yaml.safe_load(operator["values"][0])["workloads"]["instanceTypes"]["additional"]

    efa, shipped = instance_types(efa_prod["prod-platform"]), instance_types(synthesized["prod-platform"])
    assert efa["g6e.12xlarge"]["resources"][EFA_RESOURCE] == 1
    assert {k: v for k, v in efa["g6e.12xlarge"]["resources"].items() if k != EFA_RESOURCE} == shipped["g6e.12xlarge"][
        "resources"
    ]
    assert {k: v for k, v in efa.items() if k != "g6e.12xlarge"} == {
        k: v for k, v in shipped.items() if k != "g6e.12xlarge"
    }


def test_the_efa_rayservice_is_valid_for_kuberay_and_kubernetes(efa_prod):
    import jsonschema
    import kubernetes_validate

    from infra.catalog import DEFAULT_EKS_VERSION

    rayservice = render_specs(efa_prod["plan"]).documents[RAYSERVICE_FILE]
    crd = yaml.safe_load((SCHEMAS / "kuberay" / "ray.io_rayservices.yaml").read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert list(jsonschema.Draft7Validator(served["schema"]["openAPIV3Schema"]).iter_errors(rayservice)) == []
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker"}, "spec": group["template"]["spec"]}
        kubernetes_validate.validate(pod, DEFAULT_EKS_VERSION, strict=True)


# --- Bad input through the command line ---------------------------------------------------


def _with(base: dict, change) -> str:
    data = copy.deepcopy(base)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def _efa_on(i: int, instance_types: list[str] | None = None):
    def change(data):
        data["node_pools"][i]["efa"] = True
        if instance_types:
            data["node_pools"][i]["instance_types"] = instance_types

    return change


BAD = [
    ("efa-on-a-type-without-it", "dev", _with(DEV, _efa_on(1)), "node_pools[1].efa", "'g6.2xlarge' has no EFA"),
    ("efa-on-a-cpu-pool", "dev", _with(DEV, _efa_on(0)), "node_pools[0].efa", "'m7i.xlarge' is not in the catalog"),
    (
        "efa-counts-differ",
        "prod",
        _with(PROD, _efa_on(EFA_POOL, ["g6e.12xlarge", "g6e.24xlarge"])),
        "node_pools[2].efa",
        "'g6e.24xlarge' has 2 EFA interfaces, 'g6e.12xlarge' has 1",
    ),
]


@pytest.mark.parametrize(("name", "text", "field", "needle"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_efa_input_is_one_line_exit_2_and_writes_nothing(tmp_path, name, text, field, needle):
    config = tmp_path / f"{name}.yaml"
    config.write_text(text)
    outdir = tmp_path / "out"
    result = subprocess.run(
        [LLMSTACKS, "synth", "--config", str(config), "--outdir", str(outdir)],
        capture_output=True,
        text=True,
        timeout=waits.COMMAND,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {config}: {field}: "), line
    assert needle in line
    assert result.stdout == "" and not outdir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [config.name]
