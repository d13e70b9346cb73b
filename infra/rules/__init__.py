"""Input rules for AWS, EKS and Kubernetes values, each written once as a plain function.

A `*_problem` function returns why a value is not allowed, or None. The
constructs call them through `require` (a ValueError naming the prop); the
environment schema calls the same functions, so a bad value in an
environment file is reported with its file and field before anything is
built. Values Terraform resolves at plan time (cdktf tokens) cannot be
checked at synth time and pass. Nothing here imports cdktf, and nothing
else of `infra`: every construct may use the rules.

- `aws`: partitions, regions, accounts, ARNs, IAM, S3, KMS and Secrets Manager names, networks.
- `eks`: clusters, node groups and Cluster Autoscaler's settings.
- `kubernetes`: labels, taints, namespaces, object names, the Anyscale operator's ids.
- `problems`: what they share: whole matches, quoting, tokens, names listed twice, `require`.
"""

from __future__ import annotations

from infra.rules.aws import (
    GITHUB_OIDC_HOST,
    PARTITIONS,
    REGIONS,
    account_id_problem,
    arn_problem,
    availability_zone_problem,
    bucket_name_problem,
    cidr_problem,
    github_subject_problem,
    kms_alias_problem,
    kms_key_arn_problem,
    known_region_problem,
    partition_problem,
    principal_arn_problem,
    region_problem,
    role_arn_problem,
    role_name_problem,
    secret_name_problem,
    subnet_id_problem,
)
from infra.rules.eks import (
    ASG_TAG_KEY_LIMIT,
    AUTOSCALER_EXPANDERS,
    CAPACITY_TYPES,
    CPU_AMI_TYPES,
    GPU_AMI_TYPES,
    LOG_RETENTION_DAYS,
    MIN_ROOT_VOLUME_GIB,
    ami_type_problem,
    asg_tag_key_problem,
    capacity_type_problem,
    cluster_name_problem,
    cluster_reference_problem,
    cluster_subnets_problem,
    eks_version_problem,
    expander_problem,
    instance_type_name_problem,
    log_retention_problem,
    minutes_problem,
    node_group_name_problem,
    node_template_taints_problem,
    pool_size_problem,
    public_endpoint_problem,
    root_volume_problem,
)
from infra.rules.kubernetes import (
    TAINT_EFFECTS,
    cloud_deployment_id_problem,
    ingress_class_problem,
    label_key_problem,
    label_value_problem,
    labels_problem,
    namespace_problem,
    organization_id_problem,
    service_account_problem,
    taint_effect_problem,
    watch_namespaces_problem,
)
from infra.rules.problems import is_token, matches, quoted, repeated, require

__all__ = [
    # problems
    "is_token",
    "matches",
    "quoted",
    "repeated",
    "require",
    # aws
    "GITHUB_OIDC_HOST",
    "PARTITIONS",
    "REGIONS",
    "account_id_problem",
    "arn_problem",
    "availability_zone_problem",
    "bucket_name_problem",
    "cidr_problem",
    "github_subject_problem",
    "kms_alias_problem",
    "kms_key_arn_problem",
    "known_region_problem",
    "partition_problem",
    "principal_arn_problem",
    "region_problem",
    "role_arn_problem",
    "role_name_problem",
    "secret_name_problem",
    "subnet_id_problem",
    # eks
    "ASG_TAG_KEY_LIMIT",
    "AUTOSCALER_EXPANDERS",
    "CAPACITY_TYPES",
    "CPU_AMI_TYPES",
    "GPU_AMI_TYPES",
    "LOG_RETENTION_DAYS",
    "MIN_ROOT_VOLUME_GIB",
    "ami_type_problem",
    "asg_tag_key_problem",
    "capacity_type_problem",
    "cluster_name_problem",
    "cluster_reference_problem",
    "cluster_subnets_problem",
    "eks_version_problem",
    "expander_problem",
    "instance_type_name_problem",
    "log_retention_problem",
    "minutes_problem",
    "node_group_name_problem",
    "node_template_taints_problem",
    "pool_size_problem",
    "public_endpoint_problem",
    "root_volume_problem",
    # kubernetes
    "TAINT_EFFECTS",
    "cloud_deployment_id_problem",
    "ingress_class_problem",
    "label_key_problem",
    "label_value_problem",
    "labels_problem",
    "namespace_problem",
    "organization_id_problem",
    "service_account_problem",
    "taint_effect_problem",
    "watch_namespaces_problem",
]
