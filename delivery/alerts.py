"""Which of an endpoint's metric alerts are firing, and for which deployment.

The infrastructure stack declares the alert rules (`infra.monitoring`): scoped to the endpoint and
split by its `deployment` dimension, so an alert instance names the slot it fired for. A rollout
watches the rules by name while it bakes each traffic step and rolls back when one fires for the
new slot (or for the endpoint as a whole).

`AzureMonitorAlerts` reads fired alerts from the Alerts Management API with `delivery.credential`;
tests use `delivery.fake.FakeWorkspace`, which implements the same `AlertSource` protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from delivery.credential import ARM_ENDPOINT
from delivery.workspace import WorkspaceRef

ALERTS_API_VERSION = "2019-05-05-preview"
DEPLOYMENT_DIMENSION = "deployment"


@dataclass(frozen=True)
class FiredAlert:
    """An alert rule in the Fired condition; `deployment` is None when no slot is named."""

    rule: str
    deployment: str | None = None
    severity: str = ""

    def __str__(self) -> str:
        where = f" for {self.deployment}" if self.deployment else ""
        return f"{self.rule}{where}" + (f" ({self.severity})" if self.severity else "")


class AlertSource(Protocol):
    """Fired alerts of an endpoint, restricted to the named rules."""

    def fired(self, endpoint: str, rules: Sequence[str]) -> list[FiredAlert]:
        """Alerts of `rules` now firing on `endpoint`."""
        ...


def concerning(alerts: Iterable[FiredAlert], deployment: str) -> list[FiredAlert]:
    """The alerts that implicate `deployment`: fired for it, or for no slot in particular."""
    return [a for a in alerts if a.deployment in (None, deployment)]


class AzureMonitorAlerts:
    """AlertSource over the Alerts Management REST API (no extra SDK: azure-mgmt-core's client)."""

    def __init__(self, ref: WorkspaceRef, client: Any) -> None:
        self._ref = ref
        self._client = client

    @classmethod
    def connect(cls, ref: WorkspaceRef) -> AzureMonitorAlerts:
        """Authenticate with the release credential (`delivery.credential`)."""
        from delivery.credential import arm_client

        return cls(ref, arm_client())

    def fired(self, endpoint: str, rules: Sequence[str]) -> list[FiredAlert]:
        from azure.core.rest import HttpRequest

        target = f"{self._ref.arm_id}/onlineEndpoints/{endpoint}"
        request = HttpRequest(
            "GET",
            f"{ARM_ENDPOINT}/subscriptions/{self._ref.subscription_id}/providers/"
            "Microsoft.AlertsManagement/alerts",
            params={
                "api-version": ALERTS_API_VERSION,
                "targetResource": target,
                "monitorCondition": "Fired",
                "includeContext": "true",
                "timeRange": "1d",
            },
        )
        response = self._client.send_request(request)
        response.raise_for_status()
        return parse_alerts(response.json().get("value", []), rules)


def parse_alerts(items: Iterable[Mapping[str, Any]], rules: Sequence[str]) -> list[FiredAlert]:
    """FiredAlerts from Alerts Management `alerts` items, keeping the named rules only."""
    wanted = {r.lower() for r in rules}
    found = []
    for item in items:
        properties = item.get("properties") or {}
        essentials = properties.get("essentials") or {}
        rule = str(essentials.get("alertRule", "")).rstrip("/").rsplit("/", 1)[-1]
        if rule.lower() not in wanted or essentials.get("monitorCondition") != "Fired":
            continue
        found.append(
            FiredAlert(
                rule, _deployment_of(properties.get("context")), essentials.get("severity", "")
            )
        )
    return found


def _deployment_of(context: Any) -> str | None:
    # Metric alert context: context.condition.allOf[].dimensions[] = {name, value}.
    inner = (context or {}).get("context", context) if isinstance(context, Mapping) else {}
    condition = inner.get("condition") if isinstance(inner, Mapping) else None
    for criterion in (condition or {}).get("allOf") or []:
        for dimension in criterion.get("dimensions") or []:
            if str(dimension.get("name", "")).lower() == DEPLOYMENT_DIMENSION:
                return str(dimension.get("value"))
    return None
