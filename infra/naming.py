"""Azure resource names: one helper that knows each type's length and character rules.

Names follow the Cloud Adoption Framework abbreviations (`rg-`, `st`, `kv-`, `cr`, `mlw-`...) and
end in a short suffix hashed from organization, subscription, project and stack, so that the
globally unique names (storage, key vault, registry, endpoints) do not collide between stacks or
between teams that deploy this project, yet stay the same on every run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

SUFFIX_LENGTH = 6


@dataclass(frozen=True)
class NameRule:
    """Azure's naming constraints for one resource type."""

    abbreviation: str
    max_length: int
    min_length: int = 1
    lowercase: bool = False
    hyphens: bool = True
    """Whether `-` is allowed; types that refuse it get the parts concatenated."""
    underscores: bool = False
    starts_with_letter: bool = False
    suffixed: bool = True
    """Whether the name carries the stack suffix (off for names unique only inside a workspace)."""


class Kind(Enum):
    """Resource types this project names, with Azure's rules for each."""

    RESOURCE_GROUP = NameRule("rg", 90)
    STORAGE_ACCOUNT = NameRule("st", 24, 3, lowercase=True, hyphens=False)
    KEY_VAULT = NameRule("kv", 24, 3, starts_with_letter=True)
    CONTAINER_REGISTRY = NameRule("cr", 50, 5, lowercase=True, hyphens=False)
    LOG_ANALYTICS = NameRule("log", 63, 4)
    APP_INSIGHTS = NameRule("appi", 255)
    # REST pattern ^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$
    ML_WORKSPACE = NameRule("mlw", 33, 3, underscores=True)
    VIRTUAL_NETWORK = NameRule("vnet", 64, 2)
    SUBNET = NameRule("snet", 80)
    NETWORK_SECURITY_GROUP = NameRule("nsg", 80)
    PRIVATE_ENDPOINT = NameRule("pep", 64, 2)
    MANAGED_IDENTITY = NameRule("id", 128, 3)
    # Compute instance names are unique per Azure region, across all workspaces.
    COMPUTE_INSTANCE = NameRule("ci", 24, 3, lowercase=True, starts_with_letter=True)
    COMPUTE_CLUSTER = NameRule("cc", 16, 2, lowercase=True, starts_with_letter=True, suffixed=False)
    # Online endpoint names are unique per Azure region, across all subscriptions.
    ONLINE_ENDPOINT = NameRule("ep", 32, 3, lowercase=True, starts_with_letter=True)
    ONLINE_DEPLOYMENT = NameRule("", 32, 3, lowercase=True, starts_with_letter=True)
    AUTOSCALE_SETTING = NameRule("as", 260)
    NAT_GATEWAY = NameRule("ng", 80)
    PUBLIC_IP = NameRule("pip", 80)
    CONTAINER_APPS_ENVIRONMENT = NameRule("cae", 60, 2, lowercase=True, starts_with_letter=True)
    # Container Apps job names: 2-32 lowercase letters, digits and hyphens, starting with a letter.
    CONTAINER_APPS_JOB = NameRule("caj", 32, 2, lowercase=True, starts_with_letter=True)
    ACTION_GROUP = NameRule("ag", 260)
    METRIC_ALERT = NameRule("alert", 260)
    MANAGEMENT_LOCK = NameRule("lock", 90)
    MONITOR_PRIVATE_LINK_SCOPE = NameRule("ampls", 64)


class InvalidNameError(ValueError):
    """A name cannot satisfy the Azure rules for its type."""


def unique_suffix(*parts: str | None, length: int = SUFFIX_LENGTH) -> str:
    """Deterministic lowercase hex suffix from the given parts (sha256, first `length` chars).

    A missing part (None: no organization on a DIY state backend) counts as empty.
    """
    digest = hashlib.sha256("/".join(p or "" for p in parts).encode()).hexdigest()
    return digest[:length]


def _clean(part: str, rule: NameRule) -> str:
    if not rule.underscores:
        part = part.replace("_", "-")
    if not rule.hyphens:
        part = part.replace("-", "")
    allowed = "a-zA-Z0-9" + ("-" if rule.hyphens else "") + ("_" if rule.underscores else "")
    cleaned = re.sub(r"-{2,}", "-", re.sub(f"[^{allowed}]", "", part)).strip("-_")
    return cleaned.lower() if rule.lowercase else cleaned


@dataclass(frozen=True)
class Namer:
    """Builds `<abbr>-<workload>[-<qualifier>]-<environment>-<suffix>` within each type's rules."""

    workload: str
    environment: str
    suffix: str

    def name(self, kind: Kind, qualifier: str = "") -> str:
        """Name for a resource of `kind`; `qualifier` tells apart several of the same type."""
        rule = kind.value
        parts = [rule.abbreviation, self.workload, qualifier, self.environment]
        head = [_clean(p, rule) for p in parts if p]
        tail = _clean(self.suffix, rule) if rule.suffixed else ""
        sep = "-" if rule.hyphens else ""
        budget = rule.max_length - len(tail) - (len(sep) if tail else 0)
        # Trim the longest middle parts first, keeping the abbreviation and the suffix intact,
        # because the suffix carries the uniqueness and the abbreviation the type.
        while len(sep.join(head)) > budget and any(len(p) > 1 for p in head[1:]):
            i = max(range(1, len(head)), key=lambda j: len(head[j]))
            head[i] = head[i][:-1].rstrip("-_")
        name = sep.join([*head, tail] if tail else head).strip("-")
        return self._check(kind, name)

    def plain(self, kind: Kind, name: str) -> str:
        """Validate a name chosen elsewhere (config, a derived deployment name) against `kind`."""
        return self._check(kind, _clean(name, kind.value))

    @staticmethod
    def _check(kind: Kind, name: str) -> str:
        rule = kind.value
        if not rule.min_length <= len(name) <= rule.max_length:
            raise InvalidNameError(
                f"{kind.name.lower()} name {name!r} must be {rule.min_length}-{rule.max_length} "
                f"characters, got {len(name)}"
            )
        if rule.starts_with_letter and not name[0].isalpha():
            raise InvalidNameError(f"{kind.name.lower()} name {name!r} must start with a letter")
        if not name[0].isalnum() or not name[-1].isalnum():
            raise InvalidNameError(
                f"{kind.name.lower()} name {name!r} must start and end with a letter or digit"
            )
        if "--" in name:
            raise InvalidNameError(f"{kind.name.lower()} name {name!r} must not contain '--'")
        return name
