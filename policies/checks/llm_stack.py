"""The stack as a whole: it can only touch its own account, and its state is encrypted and locked."""

from __future__ import annotations

import re

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.provider.base_check import BaseProviderCheck

from llm_document import Entity, as_list, truthy


class PinsAccount(BaseProviderCheck):
    def __init__(self) -> None:
        super().__init__(
            name="The AWS provider pins allowed_account_ids, so an environment cannot touch another's account",
            id="CKV_LLM_12",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_provider=["aws"],
        )

    def scan_provider_conf(self, conf):
        accounts = as_list(Entity(self.entity_path).provider.get("allowed_account_ids"))
        valid = accounts and all(isinstance(a, str) and re.fullmatch(r"\d{12}", a) for a in accounts)
        return CheckResult.PASSED if valid else CheckResult.FAILED


class StateEncryptedAndLocked(BaseProviderCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Terraform state lives in an S3 backend that encrypts it and locks it",
            id="CKV_LLM_13",
            categories=[CheckCategories.BACKUP_AND_RECOVERY],
            supported_provider=["aws"],
        )

    def scan_provider_conf(self, conf):
        backend = Entity(self.entity_path).document.get("terraform", {}).get("backend", {}).get("s3")
        if not backend:
            return CheckResult.FAILED
        locked = truthy(backend.get("use_lockfile")) or bool(backend.get("dynamodb_table"))
        return CheckResult.PASSED if truthy(backend.get("encrypt")) and locked else CheckResult.FAILED


pins_account = PinsAccount()
state = StateEncryptedAndLocked()
