"""The serving operators: KubeRay's and Anyscale's releases, and the Anyscale operator's role and storage.

One AWS stack (pools, the Anyscale bucket and roles) and one platform stack built from its plain
values, each synthesized once per module.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from cdktf import TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider
from cdktf_cdktf_provider_helm.provider import HelmProvider

import conftest
from conftest import cdktf_app, TESTS, resources
from infra import (
    AnyscaleInstanceType,
    AnyscaleOperator,
    AnyscaleOperatorIdentity,
    GpuNodePool,
    KubeRayOperator,
    ModelBucket,
    NodePool,
    NodeRole,
    PodIdentityRole,
    Taint,
)
from infra import rules
from infra.catalog import GPUS
from infra.platform.charts import CHARTS
from infra.platform.helm import ChartRelease

ACCOUNT, REGION, CLUSTER, ORG = "123456789012", "us-west-2", "ml-test", "org_abc123"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "test-anyscale-123456789012"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
DEPLOYMENT = "cldrsrc_abcdefgh12345678ijklmnop12"
SCHEMAS = TESTS / "schemas"
SAFE_TO_EVICT = "/metadata/annotations/cluster-autoscaler.kubernetes.io~1safe-to-evict"


synth = conftest.synth_stack


@pytest.fixture(scope="module")
def aws():
    stack = TerraformStack(cdktf_app(), "aws")
    AwsProvider(stack, "aws", region=REGION)
    role = NodeRole(stack, "nodes", role_name="test-nodes")
    system = NodePool(
        stack,
        "system",
        cluster_name=CLUSTER,
        node_group_name="test-system",
        pool_name="system",
        node_role=role,
        subnet_ids=SUBNETS,
        instance_types=["m7i.xlarge"],
    )
    l4 = GpuNodePool(
        stack,
        "l4",
        cluster_name=CLUSTER,
        node_group_name="test-l4",
        pool_name="l4",
        node_role=role,
        subnet_ids=SUBNETS,
        instance_types=["g6.4xlarge", "g6.2xlarge"],
        capacity_type="SPOT",
        taints=[Taint("dedicated", "llm")],
    )
    storage = ModelBucket(stack, "anyscale", bucket_name=BUCKET, kms_key_arn=KEY, region=REGION)
    operator = AnyscaleOperatorIdentity(
        stack,
        "operator",
        role_name="test-anyscale-operator",
        cluster_name=CLUSTER,
        account_id=ACCOUNT,
        storage=storage,
        organization_id=ORG,
    )
    workers = PodIdentityRole(
        stack,
        "workers",
        role_name="test-anyscale-workers",
        cluster_name=CLUSTER,
        namespace="anyscale-operator",
        service_account="ray-workers",
        description="Ray pods",
        kind="custom",
    )
    operator.grant_storage(workers)
    return {"tf": synth(stack), "system": system, "l4": l4, "operator": operator}


@pytest.fixture(scope="module")
def platform(aws):
    """The platform stack gets plain values only: instance types are built from the pools' Python attributes."""
    stack = TerraformStack(cdktf_app(), "platform")
    HelmProvider(stack, "helm")
    KubeRayOperator(stack, "kuberay", watch_namespaces=["llm-serving"])
    KubeRayOperator(stack, "plain", watch_namespaces=["a", "b"], namespace="ray-system", annotate_ray_pods=False)
    types = [
        AnyscaleInstanceType.from_pool(aws["system"], cpu=2, memory_gib=12),
        AnyscaleInstanceType.from_pool(aws["l4"]),
        AnyscaleInstanceType("8xB200", 180, 1800, {"llm-serving-stacks/node-pool": "b200"}, gpu=GPUS["B200"], gpus=8),
    ]
    AnyscaleOperator(
        stack,
        "anyscale",
        cloud_deployment_id=DEPLOYMENT,
        region=REGION,
        instance_types=types,
        workload_service_account="ray-workers",
        ingress_class="anyscale-nginx",
    )
    tf = synth(stack)
    assert not tf.get("data") and "aws" not in tf.get("provider", {})  # nothing read from the AWS stack
    return {r["namespace"]: (r, yaml.safe_load(r["values"][0])) for r in resources(tf, "helm_release").values()}


def statements_named(tf: dict, name: str) -> dict[str, dict]:
    """The statements of the policies called `name` (the same grant on several roles is the same policy)."""
    (policy,) = {p["policy"] for p in resources(tf, "aws_iam_role_policy").values() if p["name"] == name}
    return {s["Sid"]: s for s in json.loads(policy)["Statement"]}


def role_ref(tf: dict, name: str) -> str:
    (rid,) = [rid for rid, r in resources(tf, "aws_iam_role").items() if r["name"] == name]
    return f"${{aws_iam_role.{rid}.name}}"


def key_paths(values: dict, free_form: set[str], prefix: tuple[str, ...] = ()):
    for key, value in values.items():
        path = (*prefix, key)
        yield path
        if isinstance(value, dict) and ".".join(path) not in free_form:
            yield from key_paths(value, free_form, path)


def assert_keys_in_chart(values: dict, schema: str, free_form: set[str], commented: set[str] = frozenset()):
    """Every key path set is in the chart's values file; `commented` keys are ones the file documents in a comment."""
    text = (SCHEMAS / schema).read_text()
    chart = yaml.safe_load(text)
    for path in key_paths(values, free_form):
        if path[-1] in commented and len(path) == 1:
            assert re.search(rf"^# {re.escape(path[0])}:", text, re.MULTILINE), path
            continue
        node = chart
        for key in path:
            assert isinstance(node, dict) and key in node, f"{'.'.join(path)} is not in {schema}"
            node = node[key]


# --- KubeRay --------------------------------------------------------------------------


def test_kuberay_watches_only_the_serving_namespace_with_namespaced_rbac(platform):
    release, values = platform["kuberay-system"]
    chart = CHARTS["kuberay-operator"]
    assert (release["name"], release["repository"], release["version"]) == (
        "kuberay-operator",
        chart.repository,
        "1.7.0",
    )
    assert values == {
        "singleNamespaceInstall": True,
        "watchNamespace": ["llm-serving"],
        "crNamespacedRbacEnable": True,
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
        "configuration": {
            "enabled": True,
            "defaultPodAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        },
    }


def test_kuberay_pod_annotations_can_be_left_to_the_specs(platform):
    _, values = platform["ray-system"]
    assert "configuration" not in values and values["watchNamespace"] == ["a", "b"]


def test_a_chart_release_of_the_same_id_becomes_the_operator_in_place():
    """Swapping ChartRelease(id="kuberay-operator") for KubeRayOperator keeps the Terraform address."""
    addresses = []
    for build in (
        lambda s: ChartRelease(s, "kuberay-operator", chart=CHARTS["kuberay-operator"], namespace="kuberay-system"),
        lambda s: KubeRayOperator(s, "kuberay-operator", watch_namespaces=["llm-serving"]),
    ):
        stack = TerraformStack(cdktf_app(), "swap")
        HelmProvider(stack, "helm")
        build(stack)
        addresses.append(set(resources(synth(stack), "helm_release")))
    assert addresses[0] == addresses[1]


def test_kuberay_keys_are_in_the_charts_values_file(platform):
    for namespace in ("kuberay-system", "ray-system"):
        assert_keys_in_chart(
            platform[namespace][1],
            "kuberay-operator-values.yaml",
            {"resources", "configuration.defaultPodAnnotations"},
            commented={"watchNamespace"},
        )


# --- Anyscale: the AWS side -------------------------------------------------------------


def test_anyscale_operator_role_is_pod_identity_for_the_charts_service_account(aws):
    tf = aws["tf"]
    (role,) = [r for r in resources(tf, "aws_iam_role").values() if r["name"] == "test-anyscale-operator"]
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {
        "aws:RequestTag/eks-cluster-name": CLUSTER,
        "aws:RequestTag/kubernetes-namespace": "anyscale-operator",
        "aws:RequestTag/kubernetes-service-account": "anyscale-operator",
    }
    assert role["tags"] == {"llm-serving-stacks:identity": "anyscale-operator"}
    associations = {
        (a["namespace"], a["service_account"]) for a in resources(tf, "aws_eks_pod_identity_association").values()
    }
    assert associations == {("anyscale-operator", "anyscale-operator"), ("anyscale-operator", "ray-workers")}


def test_anyscale_roles_read_and_write_the_clouds_bucket_under_the_organization_only(aws):
    tf = aws["tf"]
    for role in ("test-anyscale-operator", "test-anyscale-workers"):
        names = sorted(
            p["name"] for p in resources(tf, "aws_iam_role_policy").values() if p["role"] == role_ref(tf, role)
        )
        assert names == [f"delete-anyscale-{ORG}", f"read-anyscale-{ORG}", f"write-anyscale-{ORG}"]
    objects = f"{BUCKET_ARN}/{ORG}/*"
    read, write = statements_named(tf, f"read-anyscale-{ORG}"), statements_named(tf, f"write-anyscale-{ORG}")
    assert read["ReadObjects"]["Resource"] == [objects]
    assert read["ListPrefix"]["Condition"] == {"StringLike": {"s3:prefix": [ORG, f"{ORG}/*"]}}
    assert write["WriteObjects"]["Resource"] == [objects]
    assert statements_named(tf, f"delete-anyscale-{ORG}")["DeleteObjects"]["Resource"] == [objects]
    assert read["DecryptObjects"]["Resource"] == [KEY]
    every = [s for p in resources(tf, "aws_iam_role_policy").values() for s in json.loads(p["policy"])["Statement"]]
    assert not [s for s in every if "*" in s["Resource"] or any("*" in a for a in s["Action"])]


def test_the_clouds_bucket_keeps_model_bucket_defaults(aws):
    tf = aws["tf"]
    (bucket,) = [b for b in resources(tf, "aws_s3_bucket").values() if b["bucket"] == BUCKET]
    assert bucket["force_destroy"] is False
    assert len(resources(tf, "aws_s3_bucket_public_access_block")) == 1
    (sse,) = resources(tf, "aws_s3_bucket_server_side_encryption_configuration").values()
    assert sse["rule"][0]["apply_server_side_encryption_by_default"] == {
        "sse_algorithm": "aws:kms",
        "kms_master_key_id": KEY,
    }


def test_registration_uses_names_known_at_synth(aws):
    operator = aws["operator"]
    arn = f"arn:aws:iam::{ACCOUNT}:role/test-anyscale-operator"
    assert operator.operator_iam_identity == arn
    assert operator.register_command(
        cloud_name="llm-dev", region=REGION, kubernetes_zones=["us-west-2a", "us-west-2b"]
    ) == (
        f"anyscale cloud register --name llm-dev --provider aws --compute-stack k8s --region {REGION} "
        f"--s3-bucket-id {BUCKET} --kubernetes-zones us-west-2a,us-west-2b --anyscale-operator-iam-identity {arn}"
    )
    assert "'my cloud'" in operator.register_command(cloud_name="my cloud", region=REGION, kubernetes_zones=["a"])


# --- Anyscale: the release ----------------------------------------------------------------


def test_anyscale_release_is_pinned_and_registers_without_irsa(platform):
    release, values = platform["anyscale-operator"]
    chart = CHARTS["anyscale-operator"]
    assert (release["name"], release["repository"], release["version"]) == (
        "anyscale-operator",
        "https://anyscale.github.io/helm-charts",
        "1.8.0",
    )
    assert chart.chosen_on == "2026-11-26" and "anyscale-operator-1.8.0" in chart.source
    assert values["global"] == {"cloudDeploymentId": DEPLOYMENT, "cloudProvider": "aws", "aws": {"region": REGION}}
    assert "auth" not in values["global"]  # iamIdentity would annotate the service account for IRSA
    assert values["operator"] == {"serviceAccount": {"name": "anyscale-operator"}}
    assert values["workloads"]["serviceAccount"] == {"name": "ray-workers"}
    assert values["networking"] == {"ingress": {"classNameOverride": "anyscale-nginx"}}
    assert values["patches"] == [{"kind": "Pod", "patch": [{"op": "add", "path": SAFE_TO_EVICT, "value": "false"}]}]


def test_anyscale_offers_exactly_the_pools_instance_types(platform, aws):
    _, values = platform["anyscale-operator"]
    types = values["workloads"]["instanceTypes"]
    assert types["enableDefaults"] is False
    l4 = aws["l4"]
    assert types["additional"] == {
        "m7i.xlarge": {
            "resources": {"CPU": 2, "memory": "12Gi"},
            "nodeSelector": {"llm-serving-stacks/node-pool": "system"},
        },
        # The pool's first type names it; the smallest (g6.2xlarge: 8 vCPUs, 32 GiB) sizes it.
        "g6.4xlarge": {
            "resources": {"CPU": 6, "memory": "25Gi", "GPU": 1, "accelerators": ["L4"]},
            "nodeSelector": {"llm-serving-stacks/node-pool": "l4", "nvidia.com/gpu.product": "NVIDIA-L4"},
            "tolerations": l4.tolerations(),
        },
        "8xB200": {
            "resources": {"CPU": 180, "memory": "1800Gi", "GPU": 8, "accelerators": ["B200"]},
            "nodeSelector": {"llm-serving-stacks/node-pool": "b200"},
        },
    }
    assert {
        "key": "node.anyscale.com/capacity-type",
        "operator": "Equal",
        "value": "SPOT",
        "effect": "NoSchedule",
    } in l4.tolerations()
    # B200 is missing from the chart's AWS table; L4 maps to the same value the chart has.
    assert values["workloads"]["accelerator"] == {
        "nodeSelectors": {"additional": {"L4": "NVIDIA-L4", "B200": "NVIDIA-B200"}}
    }


def test_anyscale_keys_are_in_the_charts_values_file(platform):
    _, values = platform["anyscale-operator"]
    assert_keys_in_chart(
        values,
        "anyscale-operator-values.yaml",
        {"workloads.instanceTypes.additional", "workloads.accelerator.nodeSelectors.additional"},
    )
    text = (SCHEMAS / "anyscale-operator-values.yaml").read_text()
    schema = text.split("# Instance Type Schema:")[1].split("additional: {}")[0]
    for field in ("resources:", "CPU:", "memory:", "GPU:", "accelerators:", "nodeSelector:", "tolerations:"):
        assert f"#   {field}" in schema or f"#     {field}" in schema, field
    assert "#   - kind: Pod" in text and "#     patch:" in text


# --- props that are refused -------------------------------------------------------------


def _identity(**kw):
    def build(s):
        storage = ModelBucket(s, "b", bucket_name=BUCKET, kms_key_arn=KEY, region=REGION)
        props = {
            "role_name": "r",
            "cluster_name": CLUSTER,
            "account_id": ACCOUNT,
            "storage": storage,
            "organization_id": ORG,
            **kw,
        }
        return AnyscaleOperatorIdentity(s, "i", **props)

    return build


def _anyscale(**kw):
    gpu = AnyscaleInstanceType("g6.xlarge", 2, 12, {"p": "l4"}, gpu=GPUS["L4"], gpus=1)
    props = {
        "cloud_deployment_id": DEPLOYMENT,
        "region": REGION,
        "instance_types": [gpu],
        "workload_service_account": "ray",
        **kw,
    }
    return lambda s: AnyscaleOperator(s, "a", **props)


def _type(**kw):
    props = {
        "name": "g6.xlarge",
        "cpu": 2,
        "memory_gib": 12,
        "node_selector": {"p": "l4"},
        "gpu": GPUS["L4"],
        "gpus": 1,
        **kw,
    }
    return lambda s: AnyscaleInstanceType(**props)


def _cpu_pool(s):
    return NodePool(
        s,
        "p",
        cluster_name=CLUSTER,
        node_group_name="g",
        pool_name="system",
        node_role=NodeRole(s, "r", role_name="r"),
        subnet_ids=SUBNETS,
        instance_types=["m7i.large"],
    )


INVALID = [
    ("kuberay-no-namespaces", lambda s: KubeRayOperator(s, "k", watch_namespaces=[]), "watch_namespaces"),
    ("kuberay-bad-watch", lambda s: KubeRayOperator(s, "k", watch_namespaces=["LLM"]), "watch_namespaces"),
    ("kuberay-twice", lambda s: KubeRayOperator(s, "k", watch_namespaces=["a", "a"]), "watch_namespaces.*twice"),
    ("kuberay-namespace", lambda s: KubeRayOperator(s, "k", watch_namespaces=["a"], namespace="Ray"), "namespace"),
    ("identity-organization", _identity(organization_id="acme"), "organization_id"),
    ("identity-organization-slash", _identity(organization_id="org_a/b"), "organization_id"),
    ("identity-role-name", _identity(role_name="a b"), "role_name"),
    ("identity-cluster", _identity(cluster_name="bad name"), "cluster_name"),
    ("identity-account", _identity(account_id="1"), "account_id"),
    ("identity-partition", _identity(partition="aws-iso"), "partition"),
    ("identity-namespace", _identity(namespace="Anyscale"), "namespace"),
    ("identity-service-account", _identity(service_account="a b"), "service_account"),
    (
        "register-region",
        lambda s: _identity()(s).register_command(cloud_name="c", region="west", kubernetes_zones=["a"]),
        "region",
    ),
    (
        "register-zones",
        lambda s: _identity()(s).register_command(cloud_name="c", region=REGION, kubernetes_zones=[]),
        "kubernetes_zones",
    ),
    ("type-name", _type(name="a b"), "name"),
    ("type-cpu", _type(cpu=0), "cpu/memory_gib"),
    ("type-memory", _type(memory_gib=0), "cpu/memory_gib"),
    ("type-gpu-no-count", _type(gpus=0), "gpu/gpus"),
    ("type-count-no-gpu", _type(gpu=None), "gpu/gpus"),
    ("type-no-selector", _type(node_selector={}), "node_selector"),
    ("type-bad-selector", _type(node_selector={"bad key": "x"}), "node_selector"),
    ("type-cpu-pool-unsized", lambda s: AnyscaleInstanceType.from_pool(_cpu_pool(s)), "cpu/memory_gib"),
    ("anyscale-deployment-id", _anyscale(cloud_deployment_id="cld_123"), "cloud_deployment_id"),
    ("anyscale-region", _anyscale(region="mars"), "region"),
    ("anyscale-namespace", _anyscale(namespace="A"), "namespace"),
    ("anyscale-operator-sa", _anyscale(operator_service_account="A"), "operator_service_account"),
    ("anyscale-workload-sa", _anyscale(workload_service_account="a/b"), "workload_service_account"),
    ("anyscale-no-types", _anyscale(instance_types=[]), "instance_types"),
    ("anyscale-types-twice", lambda s: _anyscale(instance_types=[_type()(s), _type()(s)])(s), "instance_types.*twice"),
    ("anyscale-ingress-class", _anyscale(ingress_class="Nginx!"), "ingress_class"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_props_are_rejected_with_the_prop_named(build, needle):
    stack = TerraformStack(cdktf_app(), "invalid")
    AwsProvider(stack, "aws", region=REGION)
    with pytest.raises(ValueError, match=needle):
        build(stack)


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (rules.cloud_deployment_id_problem, DEPLOYMENT, ["cld_abc", "cldrsrc_", "cldrsrc_a-b", f"{DEPLOYMENT}\n"]),
        (rules.organization_id_problem, ORG, ["org_", "acme", "org_a/b", "org_a\n"]),
        (rules.instance_type_name_problem, "g6.2xlarge", ["-a", "a b", "a" * 65, ""]),
        (rules.ingress_class_problem, "anyscale-nginx", ["Nginx", "a/b", ""]),
        (rules.watch_namespaces_problem, ["llm-serving"], [[], ["a", "a"], ["A"]]),
    ],
)
def test_operator_rules_accept_the_good_and_name_what_is_wrong_with_the_bad(rule, good, bad):
    assert rule(good) is None
    for value in bad:
        assert rule(value), value
