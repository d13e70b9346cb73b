"""IAM: the serving identity only reads; no role of ours holds wildcard permissions."""

from __future__ import annotations

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from llm_document import IDENTITY_TAG, Entity, as_list, statements

# Verbs that only read; anything else on the serving role is a write, delete or admin action.
READ_VERBS = ("Get", "List", "Describe", "Decrypt")


class ServingIdentityReadsOnly(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="The serving identity has no write or delete permission (weights and adapters are read-only to Ray)",
            id="CKV_LLM_1", categories=[CheckCategories.IAM], supported_resources=["aws_iam_role_policy"],
        )

    def scan_resource_conf(self, conf):
        entity = Entity(self.entity_path)
        role = entity.resolve(entity.body.get("role")) or {}
        if role.get("tags", {}).get(IDENTITY_TAG) != "serving":
            return CheckResult.PASSED
        for statement in statements(entity.body.get("policy")):
            if statement.get("Effect") != "Allow":
                continue
            if "NotAction" in statement:
                return CheckResult.FAILED
            for action in as_list(statement.get("Action")):
                verb = action.split(":", 1)[-1]
                if "*" in action or not verb.startswith(READ_VERBS):
                    return CheckResult.FAILED
        return CheckResult.PASSED


class NoWildcardPermissions(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="IAM policies grant no '*' or 'service:*' actions, no NotAction, and no unscoped '*' resources",
            id="CKV_LLM_2", categories=[CheckCategories.IAM],
            supported_resources=["aws_iam_role_policy", "aws_iam_policy", "aws_iam_user_policy", "aws_iam_group_policy"],
        )

    def scan_resource_conf(self, conf):
        entity = Entity(self.entity_path)
        policy = entity.body.get("policy")
        found = statements(policy)
        if not found:
            # A policy that is not literal JSON (a data source or reference) cannot be checked: fail it.
            return CheckResult.FAILED
        for statement in found:
            if statement.get("Effect") != "Allow":
                continue
            if "NotAction" in statement or "NotResource" in statement:
                return CheckResult.FAILED
            if any(a == "*" or a.endswith(":*") for a in as_list(statement.get("Action"))):
                return CheckResult.FAILED
            if "*" in as_list(statement.get("Resource")):
                return CheckResult.FAILED
        return CheckResult.PASSED


serving_reads_only = ServingIdentityReadsOnly()
no_wildcards = NoWildcardPermissions()
