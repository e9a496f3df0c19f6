"""Stack config of operations: alerts, their receivers, request capture, release runners.

`MonitoringSettings` is `azureml-byom:monitoring` (read by `infra.monitoring`);
`ReleaseRunnerSettings` is `azureml-byom:releaseRunner` (read by `infra.release_runner`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from delivery.fields import SPEC_CONFIG, Flag, OrNone, Text, invalid, items, text, whole
from delivery.spec import REQUEST_TIMEOUT_MS, DataCollectionSpec, SamplingRate
from infra.config_types import GUID, Cidr, ConfigModel

# Metric alert windows Azure accepts (minutes).
ALERT_WINDOWS = (1, 5, 15, 30, 60)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)


def _window(minutes: int) -> int:
    if minutes not in ALERT_WINDOWS:
        raise invalid(", ".join(map(str, ALERT_WINDOWS)))
    return minutes


def _short_name(name: str) -> str:
    if len(name) > 12:
        raise invalid("at most 12 characters")
    return name


class AlertSettings(ConfigModel):
    """Metric alerts per deployment pattern, split by slot (`deployment` dimension)."""

    enabled: Flag = True
    server_errors_per_minute: whole(1, 100_000) = 1
    throttled_per_minute: whole(1, 100_000) = 10
    latency_p95_ms: Annotated[whole(0, REQUEST_TIMEOUT_MS[1]), OrNone] = None
    """None: 80% of each deployment's request timeout."""
    window_minutes: Annotated[whole(1, 60), AfterValidator(_window)] = 5
    severity: whole(0, 4) = 2


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class DataCollectionSettings(DataCollectionSpec):
    """Request/response capture with Azure ML's data collector, redacted by the scoring package."""

    enabled: Flag | None = None
    """None as parsed: off where the data is confidential (capture is then an explicit choice)."""
    sampling_rate: SamplingRate = 0.1
    redact_fields: Annotated[
        tuple[str, ...], items(lambda f: isinstance(f, str) and f, "a list of JSON field names")
    ] = ()
    """JSON field names whose values are replaced before capture (on top of pattern redaction)."""


class ActionGroupSettings(ConfigModel):
    """Who is notified when an alert fires."""

    short_name: Annotated[Text, Field(max_length=12), AfterValidator(_short_name)] = "byom-ops"
    emails: Annotated[
        tuple[str, ...],
        items(lambda e: isinstance(e, str) and EMAIL.match(e), "e-mail addresses", True),
    ] = ()
    """Empty as parsed: the owner tag, when it is a mailbox."""


class MonitoringSettings(ConfigModel):
    """Action group, alerts and data collection for the endpoints."""

    action_group: ActionGroupSettings = ActionGroupSettings()
    alerts: AlertSettings = AlertSettings()
    data_collection: DataCollectionSettings = Field(default_factory=DataCollectionSettings)

    @property
    def action_group_short_name(self) -> str:
        """Action group short name (SMS and e-mail sender, at most 12 characters)."""
        return self.action_group.short_name

    @property
    def emails(self) -> tuple[str, ...]:
        """Receivers of the action group."""
        return self.action_group.emails


class ReleaseRunnerSettings(ConfigModel):
    """`releaseRunner` (private stacks): ephemeral GitHub runners in the VNet for release jobs.

    Read by `infra.release_runner`; see docs/delivery-pipeline.md for the one-time set-up.
    """

    github_owner: Text
    github_repo: Text
    github_app_id: text(r"^\d+$", "the GitHub App's numeric id")
    github_installation_id: text(r"^\d+$", "the App installation's numeric id")
    app_key_secret_uri: text(
        r"^https://[a-z0-9-]+\.vault\.azure\.net/secrets/[A-Za-z0-9-]+",
        "https://<vault>.vault.azure.net/secrets/<name>",
    )
    """Key Vault secret holding the GitHub App's private key (read by reference, never copied)."""
    image: text(r"^[^@\s]+@sha256:[0-9a-f]{64}$", "an image pinned by digest (<repo>@sha256:...)")
    subnet: Cidr
    """Runner subnet inside `network.addressSpace`; Container Apps needs a /23 or larger."""
    max_runners: whole(1, 10) = 2
    timeout_minutes: whole(30, 1440) = 180
    """A release job's hard limit (the job's replica timeout): longer than a release's waits."""
    autoscaler_role_id: (
        text(GUID, "the GUID of the release autoscaler role created once (docs/infrastructure.md)")
        | None
    ) = None
    """None: this stack declares the role (its deployer then needs roleDefinitions/write)."""

    @model_validator(mode="after")
    def _big_enough(self) -> ReleaseRunnerSettings:
        if ipaddress.IPv4Network(self.subnet).prefixlen > 23:
            raise invalid("a /23 or larger (Container Apps environment)", "subnet", self.subnet)
        return self
