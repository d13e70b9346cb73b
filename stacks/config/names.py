"""Deterministic resource names, derived from prefix + environment (+ account).

Known at synth time, so the service spec can name the buckets and roles it
uses and a pull request shows them. S3 names carry the account id because
bucket names are global.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.spec import adapters_uri, weights_uri
from stacks.config.schema import Environment


@dataclass(frozen=True)
class Names:
    env: Environment

    @property
    def stack(self) -> str:
        return self.env.name

    @property
    def base(self) -> str:
        return f"{self.env.prefix}-{self.env.name}"

    @property
    def weights_bucket(self) -> str:
        return f"{self.base}-weights-{self.env.aws.account_id}"

    @property
    def lora_bucket(self) -> str:
        return f"{self.base}-lora-{self.env.aws.account_id}"

    @property
    def access_log_bucket(self) -> str:
        return f"{self.base}-logs-{self.env.aws.account_id}"

    @property
    def anyscale_bucket(self) -> str:
        """The Anyscale cloud's object storage (target anyscale)."""
        return f"{self.base}-anyscale-{self.env.aws.account_id}"

    @property
    def kms_alias(self) -> str:
        return f"{self.base}-data"

    @property
    def cluster(self) -> str:
        cluster = self.env.cluster
        if cluster.existing is not None:
            return cluster.existing.name
        return cluster.create.name or self.base

    def node_group(self, pool: str) -> str:
        return f"{self.base}-{pool}"

    @property
    def node_role(self) -> str:
        return f"{self.base}-node"

    @property
    def serving_role(self) -> str:
        return f"{self.base}-serving"

    @property
    def writer_role(self) -> str:
        return f"{self.base}-artifact-writer"

    @property
    def autoscaler_role(self) -> str:
        return f"{self.base}-cluster-autoscaler"

    @property
    def anyscale_operator_role(self) -> str:
        return f"{self.base}-anyscale-operator"

    @property
    def platform_stack(self) -> str:
        """The in-cluster stack, deployed after `stack`."""
        return f"{self.env.name}-platform"

    @property
    def state_key(self) -> str:
        return self.state_key_of(self.stack)

    def state_key_of(self, stack: str) -> str:
        return f"{self.env.state.key_prefix}/{self.env.name}/{stack}.tfstate"

    @property
    def service(self) -> str:
        return self.env.serving.anyscale.service_name or self.base

    def model_weights_uri(self, model_id: str, snapshot: str) -> str:
        return weights_uri(self.weights_bucket, model_id, snapshot)

    def model_adapters_uri(self, model_id: str) -> str:
        return adapters_uri(self.lora_bucket, model_id)
