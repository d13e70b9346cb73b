"""A platform team's own cdktf app, built from the llm-serving-stacks constructs.

It serves models on a GPU pool of an existing EKS cluster, with weights in
an encrypted bucket that only the serving pods may read. Run it with
`python main.py` (writes cdktf.out/) or `cdktf synth` in this directory.
"""

from __future__ import annotations

import os

# infra first: it points jsii at a supported Node.js before cdktf starts it.
from infra import EncryptionKey, ExistingCluster, GpuNodePool, ModelBucket, NodePool, NodeRole, ServingIdentity

from cdktf import App, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider
from constructs import Construct

ACCOUNT = "123456789012"
REGION = "us-west-2"


class TeamServing(TerraformStack):
    def __init__(self, scope: Construct, id: str):
        super().__init__(scope, id)
        AwsProvider(self, "aws", region=REGION, allowed_account_ids=[ACCOUNT])

        key = EncryptionKey(
            self, "key", alias="team-llm", description="Team LLM weights", account_id=ACCOUNT, region=REGION
        )
        weights = ModelBucket(
            self, "weights", bucket_name=f"team-llm-weights-{ACCOUNT}", kms_key_arn=key.key_arn, region=REGION
        )

        cluster = ExistingCluster(self, "cluster", name="ml-platform")
        nodes = NodeRole(self, "nodes", role_name="team-llm-nodes")
        # The Ray head's pool keeps a node (pools default to 0-1 nodes).
        NodePool(
            self,
            "system",
            cluster_name=cluster.name,
            node_group_name="team-llm-system",
            pool_name="system",
            node_role=nodes,
            subnet_ids=cluster.subnet_ids,
            instance_types=["m7i.xlarge"],
            min_size=1,
            max_size=3,
        )
        gpus = GpuNodePool(
            self,
            "l4",
            cluster_name=cluster.name,
            node_group_name="team-llm-l4",
            pool_name="l4",
            node_role=nodes,
            subnet_ids=cluster.subnet_ids,
            instance_types=["g6.2xlarge"],
            capacity_type="SPOT",
            max_size=4,
        )

        pods = ServingIdentity(
            self,
            "serving",
            role_name="team-llm-serving",
            cluster_name=cluster.name,
            namespace="team-llm",
            service_account="ray",
            account_id=ACCOUNT,
        )
        weights.grant_read(pods, "models")

        TerraformOutput(self, "weights_bucket", value=weights.bucket_name)
        TerraformOutput(self, "serving_role_arn", value=pods.role_arn)
        TerraformOutput(self, "gpu_node_group", value=gpus.node_group_name)


def build(app: App) -> TerraformStack:
    return TeamServing(app, "team-serving")


if __name__ == "__main__":
    # `cdktf synth` passes its output directory in CDKTF_OUTDIR.
    app = App(outdir=os.environ.get("CDKTF_OUTDIR", "cdktf.out"))
    build(app)
    app.synth()
