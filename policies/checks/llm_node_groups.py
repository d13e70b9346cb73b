"""EKS node groups: GPU pools run NVIDIA images behind the GPU taint; every node requires IMDSv2
and encrypts its volumes."""

from __future__ import annotations

import re

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from llm_document import Entity, as_list, truthy

# EC2 families with NVIDIA GPUs that EKS schedules onto.
GPU_FAMILY = re.compile(r"^(g4dn|g5|g6|g6e|g6f|gr6|g7e|p3|p3dn|p4d|p4de|p5|p5e|p5en|p6-[a-z0-9]+|p6e-[a-z0-9]+)\.")
GPU_TAINT = ("nvidia.com/gpu", "NO_SCHEDULE")


def is_gpu_group(group: dict, launch_template: dict | None) -> bool:
    types = as_list(group.get("instance_types")) + as_list((launch_template or {}).get("instance_type"))
    return any(GPU_FAMILY.match(t) for t in types if isinstance(t, str)) or "NVIDIA" in str(group.get("ami_type", ""))


def launch_template_of(entity: Entity) -> dict | None:
    for spec in as_list(entity.body.get("launch_template")):
        found = entity.resolve(spec.get("id")) or entity.resolve(spec.get("name"))
        if found is not None:
            return found
    return None


class GpuGroupRunsNvidiaBehindTaint(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="GPU node groups use an NVIDIA AMI type and carry the nvidia.com/gpu NoSchedule taint",
            id="CKV_LLM_9",
            categories=[CheckCategories.KUBERNETES],
            supported_resources=["aws_eks_node_group"],
        )

    def scan_resource_conf(self, conf):
        entity = Entity(self.entity_path)
        group = entity.body
        if not is_gpu_group(group, launch_template_of(entity)):
            return CheckResult.PASSED
        nvidia_ami = "NVIDIA" in str(group.get("ami_type", ""))
        tainted = any((t.get("key"), t.get("effect")) == GPU_TAINT for t in as_list(group.get("taint")))
        return CheckResult.PASSED if nvidia_ami and tainted else CheckResult.FAILED


class NodesRequireImdsV2AndEncryptVolumes(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Node groups launch from a template that requires IMDSv2 and encrypts every EBS volume",
            id="CKV_LLM_10",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["aws_eks_node_group"],
        )

    def scan_resource_conf(self, conf):
        template = launch_template_of(Entity(self.entity_path))
        if template is None:  # EKS's default template allows IMDSv1
            return CheckResult.FAILED
        imds = as_list(template.get("metadata_options"))
        requires_tokens = bool(imds) and all(m.get("http_tokens") == "required" for m in imds)
        volumes = [m.get("ebs") or {} for m in as_list(template.get("block_device_mappings"))]
        encrypted = bool(volumes) and all(truthy(v.get("encrypted")) for v in volumes)
        return CheckResult.PASSED if requires_tokens and encrypted else CheckResult.FAILED


gpu_groups = GpuGroupRunsNvidiaBehindTaint()
imds_and_volumes = NodesRequireImdsV2AndEncryptVolumes()
