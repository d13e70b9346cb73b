"""The per-environment stack: composes the `infra` constructs, holds no resource details."""

from __future__ import annotations

import base64
import json

from constructs import Construct

from infra import node_runtime  # noqa: F401  (before cdktf: picks the Node runtime)
from cdktf import S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags

from infra import (
    ArtifactWriterIdentity,
    EksCluster,
    EncryptionKey,
    ExistingCluster,
    GpuNodePool,
    ModelBucket,
    NodePool,
    NodeRole,
    ServingIdentity,
    Taint,
)
from stacks.app_package import CODE_PREFIX, app_zip, app_zip_key
from stacks.checks import check_environment
from stacks.environment import Bucket, Environment
from stacks.loader import ConfigError
from stacks.names import ADAPTERS_PREFIX, STAGING_PREFIX, WEIGHTS_PREFIX, Names
from stacks.service_spec import ANYSCALE_FILE, RAYSERVICE_FILE, SERVE_FILE, SPECS_PREFIX, render, spec_version, to_yaml

MANAGED_BY = "llm-serving-stacks"
STAGING_EXPIRATION_DAYS = 7


class ServingStack(TerraformStack):
    """Everything one environment needs on AWS to serve its models.

    Checks the environment first (a platform team may build an `Environment`
    in code), so a model that cannot run never reaches Terraform.
    """

    def __init__(self, scope: Construct, env: Environment, *, source: str = "<environment>"):
        problems = check_environment(env)
        if problems:
            raise ConfigError(source, problems[0].field, problems[0].message, more=len(problems) - 1)
        names = Names(env)
        super().__init__(scope, names.stack)
        self.env, self.names = env, names
        region, partition, account = env.aws.region, env.partition, env.aws.account_id

        AwsProvider(
            self,
            "aws",
            region=region,
            # A dev config can never touch another account's resources.
            allowed_account_ids=[account],
            default_tags=[AwsProviderDefaultTags(tags={
                **env.tags,
                "llm-serving-stacks:environment": env.name,
                "managed-by": MANAGED_BY,
            })],
        )
        backend = S3Backend(
            self,
            bucket=env.state.bucket,
            key=names.state_key,
            region=env.state.region or region,
            encrypt=True,
        )
        # Native S3 state locking (Terraform >= 1.10); cdktf 0.21 has no typed field.
        backend.add_override("use_lockfile", True)

        if env.buckets.kms_key_arn:
            self.key = None
            key_arn = env.buckets.kms_key_arn
        else:
            self.key = EncryptionKey(
                self,
                "data-key",
                alias=names.kms_alias,
                description=f"{names.base}: model weights, LoRA adapters and cluster secrets",
                account_id=account,
                region=region,
                partition=partition,
                prevent_destroy=env.buckets.prevent_destroy,
                allow_cloudwatch_logs=env.cluster.create is not None,
            )
            key_arn = self.key.key_arn

        def data_bucket(id: str, name: str, settings: Bucket, expire_prefixes: dict[str, int] | None = None) -> ModelBucket:
            return ModelBucket(
                self,
                id,
                bucket_name=name,
                kms_key_arn=key_arn,
                region=region,
                partition=partition,
                noncurrent_version_expiration_days=settings.noncurrent_version_retention_days,
                abort_incomplete_multipart_upload_days=settings.abort_incomplete_uploads_days,
                prevent_destroy=env.buckets.prevent_destroy,
                expire_prefixes=expire_prefixes,
            )

        self.weights = data_bucket("weights", names.weights_bucket, env.buckets.weights)
        # upload-adapter stages there first; what an interrupted upload leaves stays resumable this long.
        self.lora = data_bucket("lora", names.lora_bucket, env.buckets.lora, {STAGING_PREFIX: STAGING_EXPIRATION_DAYS})

        if env.cluster.existing is not None:
            existing = env.cluster.existing
            self.cluster = ExistingCluster(
                self, "cluster", name=existing.name, install_pod_identity_agent=existing.install_pod_identity_agent
            )
            subnet_ids = existing.node_subnet_ids or self.cluster.subnet_ids
        else:
            new = env.cluster.create
            self.cluster = EksCluster(
                self,
                "cluster",
                name=names.cluster,
                version=new.version,
                subnet_ids=new.subnet_ids,
                kms_key_arn=key_arn,
                account_id=account,
                partition=partition,
                endpoint_public_access=new.endpoint_public_access,
                public_access_cidrs=new.public_access_cidrs,
                admin_principal_arns=new.admin_principal_arns,
                log_retention_days=new.log_retention_days,
            )
            subnet_ids = new.subnet_ids

        node_role = NodeRole(self, "node-role", role_name=names.node_role, partition=partition)
        self.pools: dict[str, NodePool] = {}
        for pool in env.node_pools:
            optional = {
                k: v
                for k, v in (("ami_type", pool.ami_type), ("root_volume_gib", pool.root_volume_gib), ("desired_size", pool.desired_size))
                if v is not None
            }
            construct = GpuNodePool if pool.has_gpus else NodePool
            self.pools[pool.name] = construct(
                self,
                f"pool-{pool.name}",
                cluster_name=self.cluster.name,
                node_group_name=names.node_group(pool.name),
                pool_name=pool.name,
                node_role=node_role,
                subnet_ids=subnet_ids,
                instance_types=pool.instance_types,
                capacity_type=pool.capacity_type.upper(),
                min_size=pool.min_size,
                max_size=pool.max_size,
                labels=pool.labels,
                taints=[Taint(t.key, t.value, t.effect) for t in pool.taints],
                tags={"llm-serving-stacks:node-pool": pool.name},
                **optional,
            )

        self.serving_identity = ServingIdentity(
            self,
            "serving",
            role_name=names.serving_role,
            cluster_name=self.cluster.name,
            namespace=env.serving.namespace,
            service_account=env.serving.service_account,
            account_id=account,
            partition=partition,
        )
        self.weights.grant_read(self.serving_identity, WEIGHTS_PREFIX)
        self.lora.grant_read(self.serving_identity, ADAPTERS_PREFIX)
        # KubeRay pods download the app's code zip (Ray py_modules) from here.
        self.lora.grant_read(self.serving_identity, CODE_PREFIX)
        # Gated Hugging Face models: the app reads the token at start-up on the cluster.
        for secret in sorted({m.weights.hf_token_secret for m in env.models if m.weights.hf_token_secret}):
            self.serving_identity.grant_read_secret(secret, region=region, account_id=account, partition=partition)

        self.writer_identity = ArtifactWriterIdentity(
            self,
            "writer",
            role_name=names.writer_role,
            account_id=account,
            partition=partition,
            github_subjects=env.writer.github_subjects,
            trusted_role_arns=env.writer.role_arns,
        )
        for bucket, prefix in ((self.weights, WEIGHTS_PREFIX), (self.lora, ADAPTERS_PREFIX), (self.lora, STAGING_PREFIX)):
            bucket.grant_read(self.writer_identity, prefix)
            bucket.grant_write(self.writer_identity, prefix)
            bucket.grant_delete(self.writer_identity, prefix)

        # The service specs, content-addressed: a pull request shows the exact
        # spec, a deploy publishes a new prefix, and older ones stay readable.
        self.spec_texts = documents = {name: to_yaml(doc) for name, doc in render(env).items()}
        self.spec_prefix = f"{SPECS_PREFIX}/{env.name}/{spec_version(documents)}"
        self.lora.add_object("app-code", app_zip_key(), base64.b64encode(app_zip()).decode(), content_type="application/zip",
                             base64_content=True)
        for name in (ANYSCALE_FILE, SERVE_FILE, RAYSERVICE_FILE):
            self.lora.add_object(f"spec-{name.removesuffix('.yaml')}", f"{self.spec_prefix}/{name}",
                                 documents[name], content_type="application/yaml")

        outputs = {
            "weights_bucket": self.weights.bucket_name,
            "lora_bucket": self.lora.bucket_name,
            "kms_key_arn": key_arn,
            "cluster_name": self.cluster.name,
            "serving_role_arn": self.serving_identity.role_arn,
            "writer_role_arn": self.writer_identity.role_arn,
            "spec_prefix": f"s3://{names.lora_bucket}/{self.spec_prefix}",
            "node_groups": json.dumps({name: p.node_group_name for name, p in self.pools.items()}, sort_keys=True),
        }
        for name, value in outputs.items():
            TerraformOutput(self, name, value=value)
