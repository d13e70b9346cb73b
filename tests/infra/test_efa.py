"""Elastic Fabric Adapter: the catalog's counts, the rule, the network EFA pools share, their
launch templates and node groups, the device plugin, the pods' resources, and bad input.

One construct stack (a created cluster) and one with a looked-up cluster, each synthesized once
per module; prod with one pool turned to EFA is synthesized once and compared with prod as shipped.
"""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import conftest
from conftest import resources
from infra import EksCluster, ExistingCluster, GpuNodePool, NodePool, NodeRole
from infra.catalog import EFA_INTERFACES, INSTANCE_TYPES, efa_interfaces
from infra.platform.charts import CHARTS
from infra.compute.efa.plugin import EFA_RESOURCE, device_plugin_values, interface_layout, pod_resources
from infra.platform.efa_anyscale import EfaAnyscaleInstanceType
from infra.compute.efa.network import EfaNetwork
from infra.compute.efa.rules import efa_instance_types_problem, efa_subnets_problem
from infra.compute.scheduling import POOL_LABEL
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.specs.render import RAYSERVICE_FILE, render_specs

ACCOUNT, REGION = "123456789012", "eu-west-1"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
PROD = yaml.safe_load((ENVIRONMENTS_DIR / "prod.yaml").read_text())
DEV = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
EFA_POOL = 2  # prod's l40s-x4: g6e.12xlarge, 4 x L40S, one EFA interface


def body(resource: dict) -> dict:
    """A resource without cdktf's metadata (its construct path names the stack)."""
    return {k: v for k, v in resource.items() if k != "//"}


def pool(stack, cluster, role, name: str, instance_types: list[str], **options) -> GpuNodePool:
    return GpuNodePool(stack, name, cluster_name=cluster.name, node_group_name=f"test-{name}", pool_name=name,
                       node_role=role, instance_types=instance_types, **{"subnet_ids": SUBNETS, **options})


def _cluster_stack(name: str, *, with_efa: bool) -> dict:
    stack = conftest.new_stack(name, REGION)
    cluster = EksCluster(stack, "cluster", name="test", version="1.35", subnet_ids=SUBNETS, kms_key_arn=KEY, account_id=ACCOUNT)
    role = NodeRole(stack, "nodes", role_name="test-nodes")
    built = {"cluster": cluster}
    if with_efa:
        network = EfaNetwork(stack, "efa", cluster=cluster, name="test-efa", subnet_ids=SUBNETS)
        built["network"] = network
        built["p5"] = pool(stack, cluster, role, "p5", ["p5.48xlarge"], subnet_ids=network.subnet_ids, efa=network,
                           autoscaler_cluster_name="test")
        built["g6e"] = pool(stack, cluster, role, "g6e", ["g6e.8xlarge", "g6e.16xlarge"], subnet_ids=network.subnet_ids,
                            efa=network)
    built["plain"] = pool(stack, cluster, role, "plain", ["g6e.12xlarge"], autoscaler_cluster_name="test")
    built["tf"] = conftest.synth_stack(stack)
    return built


@pytest.fixture(scope="module")
def built():
    """Two EFA pools (32 and 1 interfaces) on one network, and a pool without EFA, on a created cluster."""
    return _cluster_stack("efa", with_efa=True)


@pytest.fixture(scope="module")
def without_efa():
    """The same stack without the EFA network and pools."""
    return _cluster_stack("no-efa", with_efa=False)


@pytest.fixture(scope="module")
def looked_up():
    """An EFA pool on a looked-up cluster whose subnets are known only at plan time."""
    stack = conftest.new_stack("efa-existing", REGION)
    cluster = ExistingCluster(stack, "cluster", name="ml")
    role = NodeRole(stack, "nodes", role_name="ml-nodes")
    network = EfaNetwork(stack, "efa", cluster=cluster, name="ml-efa", subnet_ids=cluster.subnet_ids)
    pool(stack, cluster, role, "p5", ["p5.48xlarge"], subnet_ids=network.subnet_ids, efa=network)
    return conftest.synth_stack(stack)


def launch_template(tf: dict, pool_name: str) -> dict:
    (template,) = [t for t in resources(tf, "aws_launch_template").values() if t["name_prefix"] == f"test-{pool_name}-"]
    return template


def node_group(tf: dict, pool_name: str) -> dict:
    (group,) = [g for g in resources(tf, "aws_eks_node_group").values() if g["node_group_name"] == f"test-{pool_name}"]
    return group


def group_ref(tf: dict) -> str:
    (sid,) = resources(tf, "aws_security_group")
    return f"${{aws_security_group.{sid}.id}}"


# --- The catalog and the rule -----------------------------------------------------------


def test_the_catalog_counts_are_what_ec2_describes():
    """Every catalog type's EFA interfaces equal DescribeInstanceTypes' MaximumEfaInterfaces (moto bundles it)."""
    import moto

    described = json.loads(gzip.decompress((Path(moto.__file__).parent / "ec2/resources/instance_types.json.gz").read_bytes()))
    for name in INSTANCE_TYPES:
        network = described[name]["NetworkInfo"]
        expected = network["EfaInfo"]["MaximumEfaInterfaces"] if network.get("EfaSupported") else 0
        assert efa_interfaces(name) == expected, name
    assert set(EFA_INTERFACES) <= set(INSTANCE_TYPES)
    assert (efa_interfaces("p5.48xlarge"), efa_interfaces("p5en.48xlarge"), efa_interfaces("g6e.48xlarge")) == (32, 16, 4)
    assert efa_interfaces("g6.4xlarge") == efa_interfaces("m7i.large") == 0


@pytest.mark.parametrize(("instance_types", "needle"), [
    (["g6e.12xlarge", "g6e.xlarge"], "'g6e.xlarge' has no EFA"),
    (["m7i.xlarge"], "'m7i.xlarge' is not in the catalog"),
    (["g6e.12xlarge", "g6e.24xlarge"], "'g6e.24xlarge' has 2 EFA interfaces, 'g6e.12xlarge' has 1"),
    (["p5.48xlarge", "p5en.48xlarge"], "'p5en.48xlarge' has 16 EFA interfaces, 'p5.48xlarge' has 32"),
])
def test_the_rule_names_the_instance_type_in_one_line(instance_types, needle):
    problem = efa_instance_types_problem(instance_types)
    assert needle in problem and "\n" not in problem
    if "no EFA" in needle:
        assert "g6e from 8xlarge" in problem and "every p5" in problem  # what to pick instead


def test_the_rule_accepts_efa_types_with_one_count():
    for types in (["p5.48xlarge"], ["p5.48xlarge", "p5e.48xlarge"], ["g6e.8xlarge", "g6e.16xlarge"], ["g5.8xlarge"]):
        assert efa_instance_types_problem(types) is None
    assert efa_subnets_problem(["subnet-0123456789abcdef0"]) is None
    assert "one subnet" in efa_subnets_problem(SUBNETS)
    assert efa_subnets_problem(["${tolist(data.x.subnet_ids)}", "#{TfToken[TOKEN.1]}"]) is None  # known at plan time


def test_one_efa_per_network_card_the_primary_at_device_0():
    layout = interface_layout(4)
    assert [(i.network_card_index, i.device_index, i.interface_type) for i in layout] == [
        (0, 0, "efa"), (1, 1, "efa"), (2, 1, "efa"), (3, 1, "efa")]
    with pytest.raises(ValueError, match="at least one"):
        interface_layout(0)
    assert pod_resources(32) == {EFA_RESOURCE: "32"} and pod_resources(0) == {}


# --- The shared network -----------------------------------------------------------------


def test_the_security_group_admits_only_its_members_and_sends_only_to_them(built):
    tf = built["tf"]
    (group,) = resources(tf, "aws_security_group").values()
    assert (group["name_prefix"], group["tags"]) == ("test-efa-", {"Name": "test-efa"})
    assert group["lifecycle"] == {"create_before_destroy": True}  # replaced only once the pools moved off it
    assert group["vpc_id"].endswith(".vpc_config[0].vpc_id}")
    assert "ingress" not in group and "egress" not in group  # Terraform also removes EC2's allow-all egress
    ref = group_ref(tf)
    (ingress,) = resources(tf, "aws_vpc_security_group_ingress_rule").values()
    (egress,) = resources(tf, "aws_vpc_security_group_egress_rule").values()
    for rule in (ingress, egress):
        assert body(rule) == {"security_group_id": ref, "referenced_security_group_id": ref, "ip_protocol": "-1",
                              "description": rule["description"]}
        assert rule["description"].startswith("EFA: all traffic")
    assert not resources(tf, "aws_security_group_rule")


def test_efa_interfaces_are_in_the_efa_and_the_cluster_security_groups_without_a_subnet(built):
    tf = built["tf"]
    interfaces = launch_template(tf, "p5")["network_interfaces"]
    assert len(interfaces) == 32
    cluster_group = "${aws_eks_cluster.cluster_A4C38409.vpc_config[0].cluster_security_group_id}"
    for card, interface in enumerate(interfaces):
        assert interface == {
            "network_card_index": card, "device_index": 0 if card == 0 else 1, "interface_type": "efa",
            "security_groups": [group_ref(tf), cluster_group], "delete_on_termination": "true",
            "associate_public_ip_address": "false", "description": f"EFA, network card {card}",
        }
        assert "subnet_id" not in interface  # EKS takes subnets from the node group only
    assert len(launch_template(tf, "g6e")["network_interfaces"]) == 1
    assert (built["p5"].efa_interfaces, built["g6e"].efa_interfaces, built["plain"].efa_interfaces) == (32, 1, 0)


def test_efa_pools_keep_imdsv2_encryption_and_tags(built):
    for name in ("p5", "g6e"):
        template = launch_template(built["tf"], name)
        assert template["metadata_options"] == {"http_endpoint": "enabled", "http_tokens": "required",
                                                "http_put_response_hop_limit": 1}
        assert all(d["ebs"]["encrypted"] == "true" and d["ebs"]["volume_type"] == "gp3"
                   for d in template["block_device_mappings"])
        assert [s["resource_type"] for s in template["tag_specifications"]] == ["instance", "volume"]
        assert "vpc_security_group_ids" not in template


def test_efa_pools_launch_in_one_subnet_and_share_the_security_group(built):
    tf = built["tf"]
    assert node_group(tf, "p5")["subnet_ids"] == node_group(tf, "g6e")["subnet_ids"] == [SUBNETS[0]]
    assert node_group(tf, "plain")["subnet_ids"] == SUBNETS
    groups = {tuple(i["security_groups"]) for name in ("p5", "g6e") for i in launch_template(tf, name)["network_interfaces"]}
    assert len(groups) == 1  # prefill and decode pools reach each other


def test_a_looked_up_clusters_first_subnet_by_id_and_its_security_group(looked_up):
    (group,) = resources(looked_up, "aws_eks_node_group").values()
    assert group["subnet_ids"] == ["${element(sort(tolist(data.aws_eks_cluster.cluster_A4C38409.vpc_config[0].subnet_ids)), 0)}"]
    (interface,) = launch_template(looked_up, "p5")["network_interfaces"][:1]
    assert interface["security_groups"][1] == "${data.aws_eks_cluster.cluster_A4C38409.vpc_config[0].cluster_security_group_id}"
    (sg,) = resources(looked_up, "aws_security_group").values()
    assert sg["vpc_id"] == "${data.aws_eks_cluster.cluster_A4C38409.vpc_config[0].vpc_id}"


def test_a_pool_scaled_to_zero_shows_the_autoscaler_its_efa_interfaces(built):
    tags = {t["tag"]["key"]: t["tag"] for t in resources(built["tf"], "aws_autoscaling_group_tag").values()}
    efa = tags[f"k8s.io/cluster-autoscaler/node-template/resources/{EFA_RESOURCE}"]
    assert (efa["value"], efa["propagate_at_launch"]) == ("32", False)
    assert sum(EFA_RESOURCE in key for key in tags) == 1  # the plain pool's template has none


def test_a_pool_without_efa_synthesizes_as_before(built, without_efa):
    """The plain pool is the same Terraform with or without EFA pools beside it, and lists no interfaces."""
    for kind in ("aws_launch_template", "aws_eks_node_group", "aws_autoscaling_group_tag"):
        mine = {k: body(v) for k, v in resources(built["tf"], kind).items() if k.startswith("plain_")}
        alone = {k: body(v) for k, v in resources(without_efa["tf"], kind).items() if k.startswith("plain_")}
        assert mine and mine == alone, kind
    assert "network_interfaces" not in launch_template(built["tf"], "plain")
    assert not any(k in without_efa["tf"]["resource"] for k in ("aws_security_group", "aws_vpc_security_group_ingress_rule"))


@pytest.mark.parametrize(("options", "needle"), [
    ({"instance_types": ["g6e.xlarge"]}, "instance_types: 'g6e.xlarge' has no EFA"),
    ({"instance_types": ["g6e.12xlarge", "g6e.24xlarge"]}, "instance_types: 'g6e.24xlarge' has 2 EFA interfaces"),
    ({"subnet_ids": SUBNETS[:2]}, "subnet_ids: 2 subnets: an EFA pool launches in one subnet"),
])
def test_an_efa_pool_refuses_what_efa_cannot_do(options, needle):
    stack = conftest.new_stack("bad", REGION)
    cluster = ExistingCluster(stack, "cluster", name="ml")
    network = EfaNetwork(stack, "efa", cluster=cluster, name="ml-efa", subnet_ids=SUBNETS)
    role = NodeRole(stack, "nodes", role_name="ml-nodes")
    settings = {"instance_types": ["p5.48xlarge"], "subnet_ids": network.subnet_ids, **options}
    with pytest.raises(ValueError, match=needle):
        pool(stack, cluster, role, "p5", settings.pop("instance_types"), efa=network, **settings)
    with pytest.raises(ValueError, match="'m7i.large' is not in the catalog"):
        NodePool(stack, "cpu", cluster_name="ml", node_group_name="ml-cpu", pool_name="cpu", node_role=role,
                 subnet_ids=network.subnet_ids, instance_types=["m7i.large"], efa=network)
    with pytest.raises(ValueError, match="name: 'sg-efa'"):
        EfaNetwork(stack, "efa2", cluster=cluster, name="sg-efa", subnet_ids=SUBNETS)
    with pytest.raises(ValueError, match="subnet_ids"):
        EfaNetwork(stack, "efa3", cluster=cluster, name="ml-efa", subnet_ids=["subnet-1"])


# --- The device plugin ------------------------------------------------------------------


def test_the_device_plugin_runs_on_the_efa_pools_only_and_tolerates_their_taints():
    gpu = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    spot = {"key": "node.anyscale.com/capacity-type", "operator": "Equal", "value": "SPOT", "effect": "NoSchedule"}
    values = device_plugin_values(["prefill", "decode", "prefill"], [gpu, spot, gpu])
    assert values == {"supportedInstanceLabels": {"keys": [POOL_LABEL], "values": ["decode", "prefill"]},
                      "tolerations": [gpu, spot]}
    with pytest.raises(ValueError, match="at least one EFA pool"):
        device_plugin_values([])


def test_device_plugin_keys_are_in_the_charts_values_file():
    chart = yaml.safe_load((SCHEMAS / "aws-efa-k8s-device-plugin-values.yaml").read_text())
    values = device_plugin_values(["p5"])
    assert set(values) <= set(chart)
    assert set(values["supportedInstanceLabels"]) == set(chart["supportedInstanceLabels"])
    assert chart["tolerations"] == [] and chart["nodeSelector"] == {}


def test_the_chart_is_pinned_with_its_source():
    chart = CHARTS["aws-efa-k8s-device-plugin"]
    assert (chart.repository, chart.version, chart.chosen_on) == ("https://aws.github.io/eks-charts", "v0.5.30", "2026-11-26")
    assert "github.com/aws/eks-charts" in chart.source
    header = (SCHEMAS / "aws-efa-k8s-device-plugin-values.yaml").read_text().splitlines()[1]
    assert chart.version in header


# --- An environment with an EFA pool ----------------------------------------------------


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
    stacks = {name: json.loads((out / "stacks" / name / "cdk.tf.json").read_text()) for name in ("prod", "prod-platform")}
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
    assert {d.split(".")[0] for d in pool_resources} == {"aws_launch_template", "aws_eks_node_group", "aws_autoscaling_group_tag"}
    assert {d.split(".")[0] for d in network} == {"aws_security_group", "aws_vpc_security_group_ingress_rule",
                                                  "aws_vpc_security_group_egress_rule"}


def test_the_platform_installs_the_device_plugin_only_with_efa_pools(efa_prod, synthesized):
    releases = resources(efa_prod["prod-platform"], "helm_release")
    (plugin,) = [r for r in releases.values() if r["name"] == "aws-efa-k8s-device-plugin"]
    assert (plugin["repository"], plugin["chart"], plugin["version"], plugin["namespace"]) == (
        "https://aws.github.io/eks-charts", "aws-efa-k8s-device-plugin", "v0.5.30", "kube-system")
    values = yaml.safe_load(plugin["values"][0])
    assert values["supportedInstanceLabels"] == {"keys": [POOL_LABEL], "values": ["l40s-x4"]}
    taints = {(t["key"], t["value"], t["effect"]) for t in values["tolerations"]}
    assert taints == {("nvidia.com/gpu", "present", "NoSchedule"), ("node.anyscale.com/accelerator-type", "GPU", "NoSchedule"),
                      ("node.anyscale.com/capacity-type", "ON_DEMAND", "NoSchedule")}
    # Beside it, only the serving objects' prerequisites and the Anyscale operator's instance types change.
    assert changed(synthesized["prod-platform"], efa_prod["prod-platform"]) <= {
        f"helm_release.{name}" for name, r in releases.items()
        if r["name"] in ("aws-efa-k8s-device-plugin", "llm-serving-platform", "anyscale-operator")}
    for env in ("dev", "staging", "prod"):
        assert all(r["name"] != "aws-efa-k8s-device-plugin" for r in resources(synthesized[f"{env}-platform"], "helm_release").values())


def test_workers_on_an_efa_pool_request_and_limit_every_interface(efa_prod, shipped_plans):
    rayservice = render_specs(efa_prod["plan"]).documents[RAYSERVICE_FILE]
    groups = {g["groupName"]: g for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    (efa_worker,) = groups["l40s-x4"]["template"]["spec"]["containers"]
    resources_ = efa_worker["resources"]
    assert resources_["requests"][EFA_RESOURCE] == resources_["limits"][EFA_RESOURCE] == "1"
    (plain_worker,) = groups["l40s"]["template"]["spec"]["containers"]
    assert EFA_RESOURCE not in plain_worker["resources"]["limits"]
    shipped = render_specs(shipped_plans["prod"]).documents[RAYSERVICE_FILE]
    (shipped_group,) = [g for g in shipped["spec"]["rayClusterConfig"]["workerGroupSpecs"] if g["groupName"] == "l40s-x4"]
    (shipped_worker,) = shipped_group["template"]["spec"]["containers"]
    for kind in ("requests", "limits"):
        assert {k: v for k, v in resources_[kind].items() if k != EFA_RESOURCE} == shipped_worker["resources"][kind]


def test_anyscale_pods_on_an_efa_pool_request_every_interface(efa_prod, synthesized):
    def instance_types(platform: dict) -> dict:
        (operator,) = [r for r in resources(platform, "helm_release").values() if r["name"] == "anyscale-operator"]
        return yaml.safe_load(operator["values"][0])["workloads"]["instanceTypes"]["additional"]

    efa, shipped = instance_types(efa_prod["prod-platform"]), instance_types(synthesized["prod-platform"])
    assert efa["g6e.12xlarge"]["resources"][EFA_RESOURCE] == 1
    assert {k: v for k, v in efa["g6e.12xlarge"]["resources"].items() if k != EFA_RESOURCE} == \
        shipped["g6e.12xlarge"]["resources"]
    assert {k: v for k, v in efa.items() if k != "g6e.12xlarge"} == {k: v for k, v in shipped.items() if k != "g6e.12xlarge"}


def test_an_efa_instance_type_needs_its_gpus_and_interfaces():
    from infra.catalog import GPUS

    shape = {"name": "p5.48xlarge", "cpu": 190, "memory_gib": 1638, "node_selector": {POOL_LABEL: "p5"}}
    assert EfaAnyscaleInstanceType(**shape, gpu=GPUS["H100"], gpus=8, efa_interfaces=32).values()["resources"] == {
        "CPU": 190, "memory": "1638Gi", "GPU": 8, "accelerators": ["H100"], EFA_RESOURCE: 32}
    for wrong in ({"gpu": GPUS["H100"], "gpus": 8, "efa_interfaces": 0}, {"efa_interfaces": 32}):
        with pytest.raises(ValueError, match="efa_interfaces"):
            EfaAnyscaleInstanceType(**shape, **wrong)


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
    ("efa-counts-differ", "prod", _with(PROD, _efa_on(EFA_POOL, ["g6e.12xlarge", "g6e.24xlarge"])), "node_pools[2].efa",
     "'g6e.24xlarge' has 2 EFA interfaces, 'g6e.12xlarge' has 1"),
]


@pytest.mark.parametrize(("name", "text", "field", "needle"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_efa_input_is_one_line_exit_2_and_writes_nothing(tmp_path, name, text, field, needle):
    config = tmp_path / f"{name}.yaml"
    config.write_text(text)
    outdir = tmp_path / "out"
    result = subprocess.run([LLMSTACKS, "synth", "--config", str(config), "--outdir", str(outdir)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {config}: {field}: "), line
    assert needle in line
    assert result.stdout == "" and not outdir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [config.name]
