"""Built-in facts about AWS GPU instances (GPUs, prices, EFA interfaces) and EKS versions.

Pure data (no cdktf import) so the environment checks, the constructs and
the capacity planner share one source. GPU names are Ray's accelerator
type names (`ray.util.accelerators`); `product_label` is the value NVIDIA
GPU Feature Discovery puts in the `nvidia.com/gpu.product` node label.
Regions and their partitions are the region rules' table
(`infra.rules.REGIONS`), so the rules need nothing from here.
"""

from __future__ import annotations

from dataclasses import dataclass


# On-demand Linux prices, USD per hour, us-east-1, from AWS's public price list on this date
# (after the June 2025 P4/P5 price cuts). Other regions and Spot differ: treat as estimates.
PRICES_AS_OF = "2025-06-10"


@dataclass(frozen=True)
class Gpu:
    name: str  # Ray accelerator type, e.g. "A10G"
    memory_gib: int  # nominal device memory
    product_label: str  # nvidia.com/gpu.product
    # What CUDA reports as total memory (torch.cuda.mem_get_info), which vLLM's
    # gpu_memory_utilization multiplies; ECC and the driver take the rest.
    usable_gib: float = 0.0


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: Gpu
    gpus: int
    vcpus: int
    memory_gib: int
    price_per_hour: float = 0.0  # on-demand, USD, see PRICES_AS_OF


GPUS: dict[str, Gpu] = {
    g.name: g
    for g in (
        Gpu("A10G", 24, "NVIDIA-A10G", 22.07),
        Gpu("L4", 24, "NVIDIA-L4", 22.05),
        Gpu("L40S", 48, "NVIDIA-L40S", 44.39),
        Gpu("A100-40G", 40, "NVIDIA-A100-SXM4-40GB", 39.39),
        Gpu("A100-80G", 80, "NVIDIA-A100-SXM4-80GB", 79.15),
        Gpu("H100", 80, "NVIDIA-H100-80GB-HBM3", 79.19),
        Gpu("H200", 141, "NVIDIA-H200", 139.81),
        Gpu("B200", 180, "NVIDIA-B200", 178.36),
    )
}


def _family(prefix: str, gpu: str, sizes: dict[str, tuple[int, int, int, float]]) -> list[InstanceType]:
    return [
        InstanceType(f"{prefix}.{size}", GPUS[gpu], gpus, vcpus, mem, price)
        for size, (gpus, vcpus, mem, price) in sizes.items()
    ]


# size: (GPUs, vCPUs, memory GiB, on-demand USD/hour)
_G5 = {
    "xlarge": (1, 4, 16, 1.006),
    "2xlarge": (1, 8, 32, 1.212),
    "4xlarge": (1, 16, 64, 1.624),
    "8xlarge": (1, 32, 128, 2.448),
    "16xlarge": (1, 64, 256, 4.096),
    "12xlarge": (4, 48, 192, 5.672),
    "24xlarge": (4, 96, 384, 8.144),
    "48xlarge": (8, 192, 768, 16.288),
}
_G6 = {
    "xlarge": (1, 4, 16, 0.8048),
    "2xlarge": (1, 8, 32, 0.9776),
    "4xlarge": (1, 16, 64, 1.3232),
    "8xlarge": (1, 32, 128, 2.0144),
    "16xlarge": (1, 64, 256, 3.3968),
    "12xlarge": (4, 48, 192, 4.6016),
    "24xlarge": (4, 96, 384, 6.6752),
    "48xlarge": (8, 192, 768, 13.3504),
}
_G6E = {
    "xlarge": (1, 4, 32, 1.861),
    "2xlarge": (1, 8, 64, 2.24208),
    "4xlarge": (1, 16, 128, 3.00424),
    "8xlarge": (1, 32, 256, 4.52856),
    "16xlarge": (1, 64, 512, 7.57719),
    "12xlarge": (4, 48, 384, 10.49264),
    "24xlarge": (4, 96, 768, 15.06559),
    "48xlarge": (8, 192, 1536, 30.13118),
}

INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        *_family("g5", "A10G", _G5),
        *_family("g6", "L4", _G6),
        *_family("g6e", "L40S", _G6E),
        *_family("p4d", "A100-40G", {"24xlarge": (8, 96, 1152, 21.96)}),
        *_family("p4de", "A100-80G", {"24xlarge": (8, 96, 1152, 27.45)}),
        *_family("p5", "H100", {"4xlarge": (1, 16, 256, 6.88), "48xlarge": (8, 192, 2048, 55.04)}),
        *_family("p5e", "H200", {"48xlarge": (8, 192, 2048, 60.00)}),
        *_family("p5en", "H200", {"48xlarge": (8, 192, 2048, 63.30)}),
        *_family("p6-b200", "B200", {"48xlarge": (8, 192, 2048, 113.93)}),
    )
}

# Elastic Fabric Adapter: how many EFA interfaces an instance of each type takes (its network cards;
# one EFA per card). Types missing here have no EFA (g5/g6/g6e below 8xlarge). Sources: Amazon EC2
# User Guide, "Elastic Fabric Adapter", Supported instance types
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa.html#efa-instance-types) and "Maximize
# network bandwidth on Amazon EC2 instances with multiple network cards"
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-acc-inst-types.html); the counts are
# DescribeInstanceTypes' NetworkInfo.EfaInfo.MaximumEfaInterfaces, as moto 5.2 bundles it
# (tests/infra/compute/efa/test_efa_rules.py compares them). Read on 2026-11-26.
EFA_INTERFACES: dict[str, int] = {
    **{
        f"{family}.{size}": 1
        for family in ("g5", "g6", "g6e")
        for size in ("8xlarge", "12xlarge", "16xlarge", "24xlarge")
    },
    "g5.48xlarge": 1,
    "g6.48xlarge": 1,
    "g6e.24xlarge": 2,
    "g6e.48xlarge": 4,
    "p4d.24xlarge": 4,
    "p4de.24xlarge": 4,
    "p5.4xlarge": 1,
    "p5.48xlarge": 32,
    "p5e.48xlarge": 32,
    "p5en.48xlarge": 16,
    "p6-b200.48xlarge": 8,
}


def gpu_instance(name: str) -> InstanceType | None:
    """The catalog entry of a GPU instance type, or None for CPU/unknown types."""
    return INSTANCE_TYPES.get(name)


def efa_interfaces(name: str) -> int:
    """The EFA interfaces an instance of type `name` takes; 0 for types without EFA (or unknown)."""
    return EFA_INTERFACES.get(name, 0)


@dataclass(frozen=True)
class EksVersion:
    version: str
    end_of_standard_support: str  # YYYY-MM-DD; extended (paid) support follows for 12 months


# Amazon EKS Kubernetes versions and the end of their standard support (14 months after release;
# AWS EKS user guide, "Kubernetes version lifecycle", and endoflife.date/amazon-eks).
EKS_VERSIONS: dict[str, EksVersion] = {
    v.version: v
    for v in (
        EksVersion("1.29", "2025-03-23"),
        EksVersion("1.30", "2025-07-23"),
        EksVersion("1.31", "2025-11-26"),
        EksVersion("1.32", "2026-03-23"),
        EksVersion("1.33", "2026-07-29"),
        EksVersion("1.34", "2026-12-02"),
        EksVersion("1.35", "2027-03-27"),
    )
}
# What created clusters run unless the environment says otherwise: in standard support on
# 2026-11-26, when it was chosen, until 2027-03-27.
DEFAULT_EKS_VERSION = "1.35"
