"""Kubernetes values: label keys and values, taint effects, namespaces, service accounts and
ingress classes, an operator's watched namespaces, and the Anyscale ids its operator is given."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from infra.rules.problems import matches, quoted, repeated

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")
# A namespace is a DNS label; a service account a DNS subdomain.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SERVICE_ACCOUNT = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# The ids Anyscale gives: `anyscale cloud register` prints the cloud deployment id (cldrsrc_...),
# the console shows the organization id (org_...).
_CLOUD_DEPLOYMENT_ID = re.compile(r"cldrsrc_[A-Za-z0-9]{1,64}")
_ORGANIZATION_ID = re.compile(r"org_[A-Za-z0-9]{1,64}")


def label_key_problem(key: str) -> str | None:
    if not matches(_LABEL_KEY, key):
        return f"{quoted(key)} is not a Kubernetes label key, e.g. example.com/team"
    return None


def label_value_problem(value: str) -> str | None:
    if not matches(_LABEL_VALUE, value):
        return f"{quoted(value)} is not a Kubernetes label value (up to 63 letters, digits, '-', '_' or '.')"
    return None


def labels_problem(labels: Mapping[str, str]) -> str | None:
    for key, value in labels.items():
        if problem := label_key_problem(key) or label_value_problem(value):
            return problem
    return None


def taint_effect_problem(effect: str) -> str | None:
    if effect not in TAINT_EFFECTS:
        return f"{quoted(effect)}: use one of {', '.join(TAINT_EFFECTS)}"
    return None


def namespace_problem(namespace: str) -> str | None:
    if not matches(_NAMESPACE, namespace):
        return f"{quoted(namespace)} is not a Kubernetes namespace name (a lowercase DNS label)"
    return None


def service_account_problem(name: str) -> str | None:
    if not matches(_SERVICE_ACCOUNT, name):
        return f"{quoted(name)} is not a Kubernetes service account name (a lowercase DNS subdomain)"
    return None


def ingress_class_problem(name: str) -> str | None:
    if not matches(_SERVICE_ACCOUNT, name):  # an object name: a DNS subdomain
        return f"{quoted(name)} is not an IngressClass name (a lowercase DNS subdomain)"
    return None


def watch_namespaces_problem(namespaces: Sequence[str]) -> str | None:
    """At least one namespace, each a DNS label, none twice."""
    if not namespaces:
        return "list at least one namespace (the operator then watches only those)"
    if twice := repeated(namespaces):
        return f"{', '.join(twice)} appears twice"
    for namespace in namespaces:
        if problem := namespace_problem(namespace):
            return problem
    return None


# --- The Anyscale operator ----------------------------------------------------------


def cloud_deployment_id_problem(value: str) -> str | None:
    if not matches(_CLOUD_DEPLOYMENT_ID, value):
        return (
            f"{quoted(value)} is not an Anyscale cloud deployment id (cldrsrc_..., printed by "
            "`anyscale cloud register`, or `anyscale cloud config get --name <cloud>`)"
        )
    return None


def organization_id_problem(value: str) -> str | None:
    if not matches(_ORGANIZATION_ID, value):
        return f"{quoted(value)} is not an Anyscale organization id (org_..., shown in the Anyscale console)"
    return None
