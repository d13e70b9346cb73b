"""The per-environment AWS stack: composes the `infra` constructs, holds no resource details.

It reads an environment's plan and its rendered specs (`stacks.planning`,
`stacks.specs`); it neither re-checks nor re-renders them. One method per
concern. The plan's checks apply the constructs' own rules, so no construct
should refuse a planned value; if one still does, its ValueError is reported
as a `ConfigError` naming the environment's field, never as a traceback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf: picks the Node runtime)
from cdktf import TerraformOutput, TerraformStack

from app.spec import ADAPTERS_PREFIX, STAGING_PREFIX, UNPINNED_TAG, WEIGHTS_PREFIX
from infra import (
    AccessLogBucket,
    AnyscaleOperatorIdentity,
    ArtifactWriterIdentity,
    Cluster,
    ClusterAutoscalerIdentity,
    EfaNetwork,
    EksCluster,
    EncryptionKey,
    ExistingCluster,
    GpuNodePool,
    ModelBucket,
    NodePool,
    NodeRole,
    ServingIdentity,
    TaggedExpiration,
    Taint,
)
from stacks.config.schema import Bucket
from stacks.errors import ConfigError
from stacks.planning.plan import EnvironmentPlan
from stacks.specs.app_package import CODE_PREFIX, app_zip, app_zip_key
from stacks.specs.render import ServiceSpecs
from stacks.synth.provider import aws_provider_and_state

STAGING_EXPIRATION_DAYS = 7
# The Anyscale operator runs beside the serving pods it manages, as this service account
# (the chart's operator.serviceAccount.name).
ANYSCALE_OPERATOR_ACCOUNT = "anyscale-operator"


class ServingStack(TerraformStack):
    """Everything one environment needs on AWS to serve its models.

    Build it from a plan and its specs:
    `plan = plan_file(path); ServingStack(app, plan, render_specs(plan))`.
    """

    def __init__(self, scope: Construct, plan: EnvironmentPlan, specs: ServiceSpecs):
        super().__init__(scope, plan.names.stack)
        self.plan, self.specs, self.names = plan, specs, plan.names
        env = plan.env
        self.region, self.partition, self.account = env.aws.region, env.partition, env.aws.account_id
        with self._field("aws"):
            aws_provider_and_state(self, env, state_key=self.names.state_key)
        with self._field("buckets"):
            self.key_arn = self._encryption_key()
            self.weights = self._bucket(
                "weights",
                self.names.weights_bucket,
                env.buckets.weights,
                expire_tagged=self._unpinned_snapshots_expire(),
            )
            # upload-adapter stages there first; what an interrupted upload leaves stays resumable this long.
            self.lora = self._bucket(
                "lora", self.names.lora_bucket, env.buckets.lora, {STAGING_PREFIX: STAGING_EXPIRATION_DAYS}
            )
            # The Anyscale cloud's object storage (target anyscale), a bucket of its own.
            # Anyscale's services write it with encryption headers of their own choosing: the upload
            # rule of the data buckets is left off (its default SSE-KMS with the key still applies).
            self.anyscale_storage = (
                self._bucket(
                    "anyscale-storage",
                    self.names.anyscale_bucket,
                    Bucket(),
                    purpose="anyscale-storage",
                    require_kms_uploads=False,
                )
                if env.serving.target == "anyscale"
                else None
            )
            self.access_logs = self._access_logs()
        with self._field("cluster"):
            self.cluster, subnet_ids = self._cluster()
        with self._field("cluster.node_autoscaler"):
            self.autoscaler_identity = self._node_autoscaler()
        self.pools = self._node_pools(subnet_ids)
        with self._field("serving"):
            self.serving_identity = self._serving_identity()
        with self._field("serving.anyscale"):
            self.anyscale_identity = self._anyscale_operator()
        with self._field("writer"):
            self.writer_identity = self._writer_identity()
        with self._field("serving"):
            self.spec_prefix = self._publish_specs()
        self._outputs()

    @contextmanager
    def _field(self, field: str) -> Iterator[None]:
        try:
            yield
        except ValueError as exc:
            raise ConfigError(self.plan.source, field, str(exc)) from None

    def _encryption_key(self) -> str:
        buckets = self.plan.env.buckets
        if buckets.kms_key_arn:
            self.key = None
            return buckets.kms_key_arn
        self.key = EncryptionKey(
            self,
            "data-key",
            alias=self.names.kms_alias,
            description=f"{self.names.base}: model weights, LoRA adapters and cluster secrets",
            account_id=self.account,
            region=self.region,
            partition=self.partition,
            prevent_destroy=buckets.prevent_destroy,
            allow_cloudwatch_logs=self.plan.env.cluster.create is not None,
        )
        return self.key.key_arn

    def _unpinned_snapshots_expire(self) -> list[TaggedExpiration]:
        """Snapshots publish with UNPINNED_TAG and `llmstacks pin` removes it: only never-pinned ones expire."""
        days = self.plan.env.buckets.weights.unpinned_snapshot_days
        if days is None:
            return []
        return [TaggedExpiration("expire-unpinned-snapshots", prefix=WEIGHTS_PREFIX, tag=UNPINNED_TAG, days=days)]

    def _bucket(
        self,
        id: str,
        name: str,
        settings: Bucket,
        expire_prefixes: dict[str, int] | None = None,
        purpose: str | None = None,
        expire_tagged: list[TaggedExpiration] | None = None,
        require_kms_uploads: bool = True,
    ) -> ModelBucket:
        return ModelBucket(
            self,
            id,
            bucket_name=name,
            kms_key_arn=self.key_arn,
            region=self.region,
            partition=self.partition,
            noncurrent_version_retention_days=settings.noncurrent_version_retention_days,
            abort_incomplete_uploads_days=settings.abort_incomplete_uploads_days,
            prevent_destroy=self.plan.env.buckets.prevent_destroy,
            expire_prefixes=expire_prefixes,
            purpose=purpose,
            expire_tagged=expire_tagged or (),
            require_kms_uploads=require_kms_uploads,
        )

    def _access_logs(self) -> AccessLogBucket | None:
        """Every request to the data buckets, logged by S3 to a bucket of its own."""
        settings = self.plan.env.buckets.access_logs
        if not settings.enabled:
            return None
        logged = [b for b in (self.weights, self.lora, self.anyscale_storage) if b is not None]
        logs = AccessLogBucket(
            self,
            "access-logs",
            bucket_name=self.names.access_log_bucket,
            source_buckets=[b.bucket_name for b in logged],
            account_id=self.account,
            partition=self.partition,
            retention_days=settings.retention_days,
            prevent_destroy=self.plan.env.buckets.prevent_destroy,
            # An environment that may be torn down takes its logs with it.
            delete_logs_on_destroy=not self.plan.env.buckets.prevent_destroy,
        )
        for bucket in logged:
            bucket.log_access_to(logs)
        return logs

    def _cluster(self) -> tuple[Cluster, list[str]]:
        config = self.plan.env.cluster
        if config.existing is not None:
            existing = config.existing
            cluster = ExistingCluster(
                self, "cluster", name=existing.name, install_pod_identity_agent=existing.install_pod_identity_agent
            )
            return cluster, existing.node_subnet_ids or cluster.subnet_ids
        new = config.create
        cluster = EksCluster(
            self,
            "cluster",
            name=self.names.cluster,
            version=new.version,
            subnet_ids=new.subnet_ids,
            kms_key_arn=self.key_arn,
            account_id=self.account,
            partition=self.partition,
            endpoint_public_access=new.endpoint_public_access,
            public_access_cidrs=new.public_access_cidrs,
            admin_principal_arns=new.admin_principal_arns,
            log_retention_days=new.log_retention_days,
        )
        return cluster, new.subnet_ids

    def _node_autoscaler(self) -> ClusterAutoscalerIdentity | None:
        """Cluster Autoscaler's role: it scales only node groups tagged for this cluster (the pools)."""
        if self.plan.env.cluster.node_autoscaler != "cluster-autoscaler":
            return None
        return ClusterAutoscalerIdentity(
            self,
            "cluster-autoscaler",
            role_name=self.names.autoscaler_role,
            cluster_name=self.cluster.name,
            account_id=self.account,
            region=self.region,
            partition=self.partition,
        )

    def _node_pools(self, subnet_ids: list[str]) -> dict[str, NodePool]:
        with self._field("prefix"):
            node_role = NodeRole(self, "node-role", role_name=self.names.node_role, partition=self.partition)
        # One EFA network for every EFA pool, so prefill and decode pools reach each other over it.
        with self._field("node_pools"):
            self.efa = (
                EfaNetwork(self, "efa", cluster=self.cluster, name=f"{self.names.base}-efa", subnet_ids=subnet_ids)
                if any(p.efa for p in self.plan.env.node_pools)
                else None
            )
        pools: dict[str, NodePool] = {}
        for i, pool in enumerate(self.plan.env.node_pools):
            optional = {
                k: v
                for k, v in (
                    ("ami_type", pool.ami_type),
                    ("root_volume_gib", pool.root_volume_gib),
                    ("desired_size", pool.desired_size),
                )
                if v is not None
            }
            if self.autoscaler_identity is not None:
                optional["autoscaler_cluster_name"] = self.cluster.name
            if pool.efa:
                optional["efa"] = self.efa
            construct = GpuNodePool if pool.has_gpus else NodePool
            with self._field(f"node_pools[{i}]"):
                pools[pool.name] = construct(
                    self,
                    f"pool-{pool.name}",
                    cluster_name=self.cluster.name,
                    node_group_name=self.names.node_group(pool.name),
                    pool_name=pool.name,
                    node_role=node_role,
                    subnet_ids=self.efa.subnet_ids if pool.efa else subnet_ids,
                    instance_types=pool.instance_types,
                    capacity_type=pool.capacity_type.upper(),
                    min_size=pool.min_size,
                    max_size=pool.max_size,
                    labels=pool.labels,
                    taints=[Taint(t.key, t.value, t.effect) for t in pool.taints],
                    tags={"llm-serving-stacks:node-pool": pool.name},
                    **optional,
                )
        return pools

    def _serving_identity(self) -> ServingIdentity:
        serving = self.plan.env.serving
        identity = ServingIdentity(
            self,
            "serving",
            role_name=self.names.serving_role,
            cluster_name=self.cluster.name,
            namespace=serving.namespace,
            service_account=serving.service_account,
            account_id=self.account,
            partition=self.partition,
        )
        self.weights.grant_read(identity, WEIGHTS_PREFIX)
        self.lora.grant_read(identity, ADAPTERS_PREFIX)
        # KubeRay pods download the app's code zip (Ray py_modules) from here.
        self.lora.grant_read(identity, CODE_PREFIX)
        # Gated Hugging Face models: the app reads the token at start-up on the cluster.
        for secret in sorted(
            {m.config.weights.hf_token_secret for m in self.plan.models if m.config.weights.hf_token_secret}
        ):
            identity.grant_read_secret(secret, region=self.region, account_id=self.account, partition=self.partition)
        return identity

    def _anyscale_operator(self) -> AnyscaleOperatorIdentity | None:
        """The Anyscale operator's role, beside the serving pods; those pods (the serving identity)
        read and write the cloud's storage too, as Anyscale requires of every pod it runs."""
        if self.anyscale_storage is None:
            return None
        settings = self.plan.env.serving.anyscale
        identity = AnyscaleOperatorIdentity(
            self,
            "anyscale-operator",
            role_name=self.names.anyscale_operator_role,
            cluster_name=self.cluster.name,
            account_id=self.account,
            storage=self.anyscale_storage,
            organization_id=settings.organization_id,
            namespace=self.plan.env.serving.namespace,
            service_account=ANYSCALE_OPERATOR_ACCOUNT,
            partition=self.partition,
        )
        identity.grant_storage(self.serving_identity)
        self.anyscale_register_command = identity.register_command(
            cloud_name=settings.cloud, region=self.region, kubernetes_zones=settings.kubernetes_zones
        )
        return identity

    def _writer_identity(self) -> ArtifactWriterIdentity:
        writer = self.plan.env.writer
        identity = ArtifactWriterIdentity(
            self,
            "writer",
            role_name=self.names.writer_role,
            account_id=self.account,
            partition=self.partition,
            github_subjects=writer.github_subjects,
            trusted_role_arns=writer.role_arns,
            allow_context_wildcards=writer.allow_context_wildcards,
        )
        for bucket, prefix in (
            (self.weights, WEIGHTS_PREFIX),
            (self.lora, ADAPTERS_PREFIX),
            (self.lora, STAGING_PREFIX),
        ):
            bucket.grant_read(identity, prefix)
            bucket.grant_write(identity, prefix)
            bucket.grant_delete(identity, prefix)
        # Snapshots upload tagged UNPINNED_TAG, and `llmstacks pin` removes the tag.
        self.weights.grant_tag(identity, WEIGHTS_PREFIX)
        return identity

    def _publish_specs(self) -> str:
        """The specs at a content-addressed prefix: a pull request shows the exact spec, a deploy
        publishes a new prefix, and older ones stay readable. Returns the prefix."""
        prefix = self.specs.prefix(self.plan.env.name)
        self.lora.add_object(
            "app-code",
            app_zip_key(),
            base64.b64encode(app_zip()).decode(),
            content_type="application/zip",
            base64_content=True,
        )
        for name, text in self.specs.texts.items():
            self.lora.add_object(
                f"spec-{name.removesuffix('.yaml')}", f"{prefix}/{name}", text, content_type="application/yaml"
            )
        return prefix

    def _outputs(self) -> None:
        outputs = {
            "weights_bucket": self.weights.bucket_name,
            "lora_bucket": self.lora.bucket_name,
            "kms_key_arn": self.key_arn,
            "cluster_name": self.cluster.name,
            "serving_role_arn": self.serving_identity.role_arn,
            "writer_role_arn": self.writer_identity.role_arn,
            "spec_prefix": f"s3://{self.names.lora_bucket}/{self.spec_prefix}",
            "access_log_bucket": self.access_logs.bucket_name if self.access_logs else "",
            "autoscaler_role_arn": self.autoscaler_identity.role_arn if self.autoscaler_identity else "",
            # Register the Anyscale cloud with this (once), then set serving.anyscale.cloud_deployment_id.
            "anyscale_register_command": self.anyscale_register_command if self.anyscale_identity else "",
            "node_groups": json.dumps({name: p.node_group_name for name, p in self.pools.items()}, sort_keys=True),
        }
        for name, value in outputs.items():
            TerraformOutput(self, name, value=value)
