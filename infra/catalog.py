"""Built-in facts about AWS GPU instances and regions.

Pure data (no cdktf import) so the environment checks, the constructs and
the capacity planner share one source. GPU names are Ray's accelerator
type names (`ray.util.accelerators`); `product_label` is the value NVIDIA
GPU Feature Discovery puts in the `nvidia.com/gpu.product` node label.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str  # Ray accelerator type, e.g. "A10G"
    memory_gib: int  # nominal device memory
    product_label: str  # nvidia.com/gpu.product


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: Gpu
    gpus: int
    vcpus: int
    memory_gib: int


GPUS: dict[str, Gpu] = {
    g.name: g
    for g in (
        Gpu("A10G", 24, "NVIDIA-A10G"),
        Gpu("L4", 24, "NVIDIA-L4"),
        Gpu("L40S", 48, "NVIDIA-L40S"),
        Gpu("A100-40G", 40, "NVIDIA-A100-SXM4-40GB"),
        Gpu("A100-80G", 80, "NVIDIA-A100-SXM4-80GB"),
        Gpu("H100", 80, "NVIDIA-H100-80GB-HBM3"),
        Gpu("H200", 141, "NVIDIA-H200"),
        Gpu("B200", 180, "NVIDIA-B200"),
    )
}


def _family(prefix: str, gpu: str, sizes: dict[str, tuple[int, int, int]]) -> list[InstanceType]:
    return [
        InstanceType(f"{prefix}.{size}", GPUS[gpu], gpus, vcpus, mem)
        for size, (gpus, vcpus, mem) in sizes.items()
    ]


# size: (GPUs, vCPUs, memory GiB)
_G5_G6 = {
    "xlarge": (1, 4, 16),
    "2xlarge": (1, 8, 32),
    "4xlarge": (1, 16, 64),
    "8xlarge": (1, 32, 128),
    "16xlarge": (1, 64, 256),
    "12xlarge": (4, 48, 192),
    "24xlarge": (4, 96, 384),
    "48xlarge": (8, 192, 768),
}
_G6E = {
    "xlarge": (1, 4, 32),
    "2xlarge": (1, 8, 64),
    "4xlarge": (1, 16, 128),
    "8xlarge": (1, 32, 256),
    "16xlarge": (1, 64, 512),
    "12xlarge": (4, 48, 384),
    "24xlarge": (4, 96, 768),
    "48xlarge": (8, 192, 1536),
}

INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        *_family("g5", "A10G", _G5_G6),
        *_family("g6", "L4", _G5_G6),
        *_family("g6e", "L40S", _G6E),
        *_family("p4d", "A100-40G", {"24xlarge": (8, 96, 1152)}),
        *_family("p4de", "A100-80G", {"24xlarge": (8, 96, 1152)}),
        *_family("p5", "H100", {"4xlarge": (1, 16, 256), "48xlarge": (8, 192, 2048)}),
        *_family("p5e", "H200", {"48xlarge": (8, 192, 2048)}),
        *_family("p5en", "H200", {"48xlarge": (8, 192, 2048)}),
        *_family("p6-b200", "B200", {"48xlarge": (8, 192, 2048)}),
    )
}

# Commercial, GovCloud and China regions, with their ARN partition.
REGIONS: dict[str, str] = {
    **{
        r: "aws"
        for r in (
            "us-east-1", "us-east-2", "us-west-1", "us-west-2",
            "af-south-1",
            "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2",
            "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
            "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
            "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
            "ca-central-1", "ca-west-1",
            "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
            "eu-west-1", "eu-west-2", "eu-west-3",
            "il-central-1", "me-central-1", "me-south-1", "mx-central-1", "sa-east-1",
        )
    },
    "us-gov-east-1": "aws-us-gov",
    "us-gov-west-1": "aws-us-gov",
    "cn-north-1": "aws-cn",
    "cn-northwest-1": "aws-cn",
}


def partition(region: str) -> str:
    return REGIONS[region]


def gpu_instance(name: str) -> InstanceType | None:
    """The catalog entry of a GPU instance type, or None for CPU/unknown types."""
    return INSTANCE_TYPES.get(name)
