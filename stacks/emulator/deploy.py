"""Apply a synthesized environment with real Terraform against a local AWS (moto over TLS).

`LocalDeployment.start` brings up the emulator with what the environment expects to
exist already (the state bucket; an existing EKS cluster), writes the emulator copy
of the stack (`differences.for_emulator`) and initializes Terraform from the local
provider mirror; `apply` applies it with its S3 backend (encrypted, `use_lockfile`)
on the emulator. Nothing here contacts AWS.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from stacks.emulator.differences import Difference, for_emulator, real_changes
from stacks.emulator.server import Emulator
from stacks.emulator.terraform import Mirror, Terraform, find_mirror
from stacks.planning.plan import EnvironmentPlan

# The VPC an existing cluster is looked up in (moto wants real subnets for it).
EXISTING_VPC_CIDR = "10.0.0.0/16"


@dataclass
class LocalDeployment:
    plan: EnvironmentPlan
    workdir: Path
    emulator: Emulator
    mirror: Mirror
    terraform: Terraform
    differences: list[Difference] = field(default_factory=list)
    outputs: dict[str, object] = field(default_factory=dict)
    applied_seconds: float = 0.0

    @classmethod
    def start(cls, plan: EnvironmentPlan, stack_file: Path, workdir: Path) -> LocalDeployment:
        """The emulator running and prepared, the emulator copy written and `terraform init` done."""
        mirror = find_mirror()  # fail before starting anything if Terraform or the mirror is missing
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        emulator = Emulator(plan.env.aws.account_id, plan.env.aws.region, workdir / "emulator").__enter__()
        try:
            _prepare(emulator, plan)
            tf, differences = for_emulator(json.loads(Path(stack_file).read_text()), emulator.endpoint, mirror.version)
            deployment = cls(plan, workdir, emulator, mirror, Terraform(workdir, mirror, emulator.env), differences)
            deployment.write(tf)
            deployment.terraform.init()
            return deployment
        except BaseException:
            emulator.__exit__(None, None, None)
            raise

    def write(self, tf: dict) -> None:
        (self.workdir / "cdk.tf.json").write_text(json.dumps(tf, indent=2))

    def switch_to(self, stack_file: Path) -> None:
        """Put another synthesis of the same environment in place (an upgrade), same state."""
        tf, self.differences = for_emulator(
            json.loads(Path(stack_file).read_text()), self.emulator.endpoint, self.mirror.version
        )
        self.write(tf)

    def apply(self) -> dict[str, object]:
        started = time.monotonic()
        self.terraform.apply()
        self.applied_seconds = time.monotonic() - started
        self.outputs = self.terraform.outputs()
        return self.outputs

    def pending_changes(self) -> list[dict]:
        """What a plan would change now, apart from the fields the emulator invents."""
        return real_changes(self.terraform.plan_changes())

    def close(self) -> None:
        self.emulator.__exit__(None, None, None)


def _prepare(aws: Emulator, plan: EnvironmentPlan) -> None:
    """What the environment names but does not create: its state bucket, an existing cluster."""
    env = plan.env
    state_region = env.state.region or env.aws.region
    s3 = aws.client("s3", region=state_region)
    location = (
        {} if state_region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": state_region}}
    )
    s3.create_bucket(Bucket=env.state.bucket, **location)
    s3.put_bucket_versioning(Bucket=env.state.bucket, VersioningConfiguration={"Status": "Enabled"})
    if env.cluster.existing is not None:
        ec2, iam = aws.client("ec2"), aws.client("iam")
        vpc = ec2.create_vpc(CidrBlock=EXISTING_VPC_CIDR)["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"] for i in range(2)]
        role = iam.create_role(
            RoleName=f"{env.cluster.existing.name}-cluster",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        aws.client("eks").create_cluster(
            name=env.cluster.existing.name, roleArn=role, resourcesVpcConfig={"subnetIds": subnets}
        )
