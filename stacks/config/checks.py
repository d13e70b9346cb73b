"""Cross-field checks of an environment, run before anything is planned or built.

Each problem names the field a user has to change, in the file's own terms
(`node_pools[1].ami_type`), and says what is allowed. The rules themselves
are the constructs' own (`infra.rules`, `infra.compute.scheduling`), applied here to
the values the stack will pass them, so a construct never meets a value it
refuses. Checks that need pool arithmetic or the capacity planner are the
planner's (`stacks.planning`).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.spec import engine_kwarg_problem
from infra import rules
from infra.catalog import INSTANCE_TYPES, gpu_instance
from infra.compute.scheduling import Taint, node_labels, node_taints, pool_labels_problem, pool_taints_problem
from stacks.config.names import Names
from stacks.config.schema import Environment, NodePool

# What the constructs use when the file sets no ami_type.
DEFAULT_AMI = {True: "BOTTLEROCKET_x86_64_NVIDIA", False: "AL2023_x86_64_STANDARD"}


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


def check_environment(env: Environment) -> list[Problem]:
    problems: list[Problem] = []
    problems += _unique(env)
    problems += _node_pools(env)
    problems += _models(env)
    problems += _partition(env)
    problems += _writer(env)
    problems += _serving(env)
    problems += _names(env)
    return problems


def _unique(env: Environment) -> list[Problem]:
    problems = []
    for collection, key in (("node_pools", "name"), ("models", "id")):
        first: dict[str, int] = {}
        for i, item in enumerate(getattr(env, collection)):
            value = getattr(item, key)
            if value in first:
                problems.append(
                    Problem(
                        f"{collection}[{i}].{key}",
                        f"{value!r} is used more than once (also {collection}[{first[value]}]); {key}s must be unique",
                    )
                )
            first.setdefault(value, i)
    return problems


def _node_pools(env: Environment) -> list[Problem]:
    problems = []
    for i, pool in enumerate(env.node_pools):
        where = f"node_pools[{i}]"
        problems += _instance_types(pool, where)
        if problem := rules.ami_type_problem(pool.ami_type or DEFAULT_AMI[pool.has_gpus], gpu=pool.has_gpus):
            problems.append(Problem(f"{where}.ami_type", problem))
        # The labels and taints the node group will carry: the file's and the pool's own.
        gpu = gpu_instance(pool.instance_types[0]) if pool.has_gpus else None
        derived = node_labels(pool.name, None, gpu.gpu if gpu else None, gpu.gpus if gpu else 0)
        if problem := pool_labels_problem(pool.labels, derived):
            problems.append(Problem(f"{where}.labels", problem))
        taints = node_taints(
            [Taint(t.key, t.value, t.effect) for t in pool.taints],
            gpu=pool.has_gpus,
            capacity_type=pool.capacity_type.upper(),
        )
        if problem := pool_taints_problem(taints):
            problems.append(Problem(f"{where}.taints", problem))
    if env.models and not any(not p.has_gpus for p in env.node_pools):
        problems.append(
            Problem("node_pools", "no CPU pool (a pool without accelerator) for the Ray head and ingress; add one")
        )
    return problems


def _instance_types(pool: NodePool, where: str) -> list[Problem]:
    """A GPU pool's types are catalog types of its accelerator with one GPU count; a CPU pool has no GPU types."""
    problems = []
    gpu_types = {t: gpu_instance(t) for t in pool.instance_types}
    if pool.accelerator is None:
        for j, (name, entry) in enumerate(gpu_types.items()):
            if entry is not None:
                problems.append(
                    Problem(
                        f"{where}.instance_types[{j}]",
                        f"{name} has {entry.gpus} {entry.gpu.name} GPU(s); set accelerator: {entry.gpu.name} or use a CPU instance type",
                    )
                )
        return problems
    counts = set()
    for j, (name, entry) in enumerate(gpu_types.items()):
        if entry is None:
            problems.append(
                Problem(
                    f"{where}.instance_types[{j}]",
                    f"{name} is not a GPU instance type in the catalog; known types with {pool.accelerator}: "
                    + ", ".join(t for t, e in INSTANCE_TYPES.items() if e.gpu.name == pool.accelerator),
                )
            )
        elif entry.gpu.name != pool.accelerator:
            problems.append(
                Problem(
                    f"{where}.instance_types[{j}]",
                    f"{name} has {entry.gpu.name} GPUs, not the pool's accelerator {pool.accelerator}",
                )
            )
        else:
            counts.add(entry.gpus)
    if len(counts) > 1:
        problems.append(
            Problem(
                f"{where}.instance_types",
                f"instance types have different GPU counts per node ({', '.join(map(str, sorted(counts)))}); "
                "use types with the same count so every replica fits every node",
            )
        )
    return problems


def _models(env: Environment) -> list[Problem]:
    problems = []
    pools = [p.name for p in env.node_pools]
    for i, model in enumerate(env.models):
        where = f"models[{i}]"
        for key in model.engine_kwargs.as_dict():
            if problem := engine_kwarg_problem(key):
                problems.append(Problem(f"{where}.engine_kwargs.{key}", problem))
        if model.routing is not None and model.routing.policy == "prefix_aware" and not model.prefix_caching:
            problems.append(
                Problem(
                    f"{where}.routing",
                    "prefix_aware routing sends requests to the replica caching "
                    "their prefix, but engine_kwargs.enable_prefix_caching is false: turn caching on "
                    "or use power_of_two",
                )
            )
        # The default (chat) workload is capped at max_model_len by the planner; a written one must fit.
        work = model.workload
        if "workload" in model.model_fields_set and work.p95_tokens > model.max_model_len:
            problems.append(
                Problem(
                    f"{where}.workload",
                    f"a p95 request (prompt {work.prompt_tokens.p95:,} + output "
                    f"{work.output_tokens.p95:,} tokens) is longer than max_model_len "
                    f"{model.max_model_len:,}; vLLM refuses such requests",
                )
            )
        if model.weights.hf_token_secret and model.server_cls is not None:
            problems.append(
                Problem(
                    f"{where}.server_cls",
                    "a gated model (weights.hf_token_secret) runs "
                    "app.gated_server:GatedModelServer; a server of your own must subclass it",
                )
            )
        if model.weights.source == "bucket" and model.weights.snapshot is None:
            problems.append(
                Problem(
                    f"{where}.weights.snapshot",
                    (
                        f"required for bucket weights: the snapshot `llmstacks upload-model --model {model.id}` printed, or one "
                        f"`llmstacks list-models` shows; a model published before snapshots (models/{model.id}/ holding the files "
                        "themselves) must be published again with upload-model"
                    ),
                )
            )
        if pattern := model.pattern_problem():
            problems.append(Problem(f"{where}.{pattern[0]}", pattern[1]))
            continue
        for part in model.deployments(i):
            pool = env.node_pool(part.node_pool)
            if pool is None:
                problems.append(
                    Problem(
                        f"{part.field}.node_pool",
                        f"node pool {part.node_pool!r} is not defined (defined: {', '.join(pools)})",
                    )
                )
            elif not pool.has_gpus:
                problems.append(
                    Problem(
                        f"{part.field}.node_pool",
                        f"node pool {pool.name!r} has no GPUs; models need a pool with an accelerator",
                    )
                )
    return problems


def _partition(env: Environment) -> list[Problem]:
    """ARNs name the environment's partition (its region's): the constructs refuse any other."""
    partition, problems = env.partition, []
    arns = [("buckets.kms_key_arn", env.buckets.kms_key_arn, rules.kms_key_arn_problem)]
    arns += [(f"writer.role_arns[{i}]", arn, rules.role_arn_problem) for i, arn in enumerate(env.writer.role_arns)]
    if env.cluster.create is not None:
        arns += [
            (f"cluster.create.admin_principal_arns[{i}]", arn, rules.principal_arn_problem)
            for i, arn in enumerate(env.cluster.create.admin_principal_arns)
        ]
    for field, arn, check in arns:
        if arn is not None and (problem := check(arn, partition)):
            problems.append(Problem(field, f"{problem} (aws.region {env.aws.region} is in partition {partition!r})"))
    return problems


def _serving(env: Environment) -> list[Problem]:
    if env.serving.target != "anyscale":
        return []
    problems = []
    if env.serving.anyscale.cloud is None:
        problems.append(
            Problem(
                "serving.anyscale.cloud",
                "required with serving.target anyscale: the Anyscale cloud "
                "registered for this cluster (without one, a deploy goes to the organization's default cloud)",
            )
        )
    if env.serving.anyscale.organization_id is None:
        problems.append(
            Problem(
                "serving.anyscale.organization_id",
                "required with serving.target anyscale: the "
                "organization (org_..., in the Anyscale console) whose cloud stores its objects in this "
                "environment's Anyscale bucket",
            )
        )
    offered: dict[str, str] = {}
    for i, pool in enumerate(env.node_pools):
        name = env.serving.anyscale.instance_type_of(pool)
        if problem := rules.instance_type_name_problem(name):
            problems.append(Problem(f"serving.anyscale.instance_types.{pool.name}", problem))
        elif name in offered:
            problems.append(
                Problem(
                    f"node_pools[{i}]",
                    f"pools {offered[name]!r} and {pool.name!r} would both be Anyscale "
                    f"instance type {name!r}: name one in serving.anyscale.instance_types",
                )
            )
        offered.setdefault(name, pool.name)
    zones = env.serving.anyscale.kubernetes_zones
    if not zones:
        problems.append(
            Problem(
                "serving.anyscale.kubernetes_zones",
                "required with serving.target anyscale: the "
                "availability zones of the node pools' subnets (e.g. [us-west-2a, us-west-2b])",
            )
        )
    problems += [
        Problem(f"serving.anyscale.kubernetes_zones[{i}]", problem)
        for i, zone in enumerate(zones)
        if (problem := rules.availability_zone_problem(zone, env.aws.region))
    ]
    return problems


def _writer(env: Environment) -> list[Problem]:
    wildcards = env.writer.allow_context_wildcards
    return [
        Problem(f"writer.github_subjects[{i}]", problem)
        for i, subject in enumerate(env.writer.github_subjects)
        if (problem := rules.github_subject_problem(subject, allow_context_wildcards=wildcards))
    ]


def _names(env: Environment) -> list[Problem]:
    """Names derived from prefix and environment name, checked with the rules AWS applies to them."""
    names = Names(env)
    problems = []
    for bucket in (names.weights_bucket, names.lora_bucket, names.access_log_bucket, names.anyscale_bucket):
        if problem := rules.bucket_name_problem(bucket):
            problems.append(Problem("prefix", f"derived {problem}; shorten prefix or name"))
    for role in (
        names.serving_role,
        names.writer_role,
        names.node_role,
        names.autoscaler_role,
        names.anyscale_operator_role,
    ):
        if problem := rules.role_name_problem(role):
            problems.append(Problem("prefix", f"derived IAM role name: {problem}; shorten prefix or name"))
    if env.cluster.create is not None and env.cluster.create.name is None:
        if problem := rules.cluster_name_problem(names.cluster):
            problems.append(Problem("cluster.create.name", f"derived cluster name: {problem}; set cluster.create.name"))
    if problem := rules.kms_alias_problem(names.kms_alias):
        problems.append(Problem("prefix", f"derived KMS alias: {problem}"))
    for i, pool in enumerate(env.node_pools):
        if problem := rules.node_group_name_problem(names.node_group(pool.name)):
            problems.append(Problem(f"node_pools[{i}].name", f"derived node group name: {problem}"))
    return problems
