"""Autoscale per slot: each blue/green deployment gets its own Azure Monitor autoscale setting.

An autoscale setting's `targetResourceUri` is create-only: Azure refuses to re-point an existing
setting at another deployment (`TargetResourceIdIsImmutable`). So a setting is named after its slot
(`<endpoint>-<slot>-autoscale`) and only ever targets that slot. The rollout creates the new slot's
setting before the slot takes traffic, and deletes the old slot's setting when the old slot is
scaled down to standby or deleted (autoscale would otherwise scale a standby back up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from delivery.workspace import WorkspaceRef

AUTOSCALE_API_VERSION = "2022-10-01"
WORK_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
ALL_DAYS = (*WORK_DAYS, "Saturday", "Sunday")


class TargetResourceIdIsImmutableError(RuntimeError):
    """An autoscale setting may not be re-pointed at another resource (Azure's error code)."""


def autoscale_name(endpoint: str, slot: str) -> str:
    """The autoscale setting of one slot; the name pins the target, so it never changes."""
    return f"{endpoint}-{slot}-autoscale"


@dataclass(frozen=True)
class OffHours:
    """A smaller capacity range outside working hours (recurring weekly profiles)."""

    min_instances: int
    max_instances: int
    time_zone: str
    workday_start: str
    workday_end: str
    weekends: bool = True


@dataclass(frozen=True)
class AutoscaleSpec:
    """Capacity range and the metric rules, the same for whichever slot is live."""

    location: str
    min_instances: int
    max_instances: int
    default_instances: int
    metric: str = "RequestsPerMinute"
    scale_out_above: int = 70
    scale_in_below: int = 30
    cooldown_minutes: int = 5
    off_hours: OffHours | None = None
    tags: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_instances <= self.default_instances <= self.max_instances:
            raise ValueError(
                "autoscale needs 1 <= min_instances <= default_instances <= max_instances, got "
                f"{self.min_instances}, {self.default_instances}, {self.max_instances}"
            )

    def setting(self, target_id: str) -> dict[str, Any]:
        """The ARM body of the autoscale setting for one deployment."""
        rules = [
            _rule(
                self.metric,
                target_id,
                "Increase",
                "GreaterThan",
                self.scale_out_above,
                self.cooldown_minutes,
            ),
            # Scale in more slowly than out: GPU capacity is slow to get back.
            _rule(
                self.metric,
                target_id,
                "Decrease",
                "LessThan",
                self.scale_in_below,
                2 * self.cooldown_minutes,
            ),
        ]
        working = (self.min_instances, self.max_instances, self.default_instances)
        profiles = [_profile("default", *working, rules)]
        if self.off_hours is not None:
            off = self.off_hours
            profiles += [
                _profile("working-hours", *working, rules, _recurrence(off, off.workday_start)),
                _profile(
                    "off-hours",
                    off.min_instances,
                    off.max_instances,
                    off.min_instances,
                    rules,
                    _recurrence(off, off.workday_end),
                ),
            ]
        return {
            "location": self.location,
            "tags": dict(self.tags or {}),
            "properties": {
                "enabled": True,
                "targetResourceUri": target_id,
                "profiles": profiles,
            },
        }

    def to_props(self) -> dict[str, Any]:
        """Plain values for Pulumi inputs."""
        props = asdict(self)
        props["tags"] = dict(self.tags or {})
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> AutoscaleSpec:
        """Rebuild from `to_props` (Pulumi hands numbers back as floats)."""
        values = dict(props)
        for key in (
            "min_instances",
            "max_instances",
            "default_instances",
            "scale_out_above",
            "scale_in_below",
            "cooldown_minutes",
        ):
            values[key] = int(values[key])
        if values.get("off_hours") is not None:
            off = dict(values["off_hours"])
            off["min_instances"] = int(off["min_instances"])
            off["max_instances"] = int(off["max_instances"])
            values["off_hours"] = OffHours(**off)
        values["tags"] = dict(values.get("tags") or {})
        return cls(**values)


class AutoscaleClient(Protocol):
    """Azure Monitor autoscale settings in the workspace's resource group."""

    def get_autoscale(self, name: str) -> Mapping[str, Any] | None:
        """The setting's ARM body, or None."""
        ...

    def put_autoscale(self, name: str, setting: Mapping[str, Any]) -> None:
        """Create or update a setting (refused when it would change its target)."""
        ...

    def delete_autoscale(self, name: str) -> None:
        """Delete a setting (absent is fine)."""
        ...


def ensure_slot_autoscale(
    client: AutoscaleClient, spec: AutoscaleSpec, endpoint: str, slot: str, target_id: str
) -> None:
    """Give `slot` its own setting, targeting it; call before it takes traffic."""
    client.put_autoscale(autoscale_name(endpoint, slot), spec.setting(target_id))


def drop_slot_autoscale(client: AutoscaleClient, endpoint: str, slot: str) -> None:
    """Remove a slot's setting, as the slot is scaled to standby or deleted."""
    client.delete_autoscale(autoscale_name(endpoint, slot))


class AzureAutoscale:
    """AutoscaleClient over the ARM REST API (azure-mgmt-core's pipeline, no extra SDK)."""

    def __init__(self, ref: WorkspaceRef, client: Any) -> None:
        self._ref = ref
        self._client = client

    @classmethod
    def connect(cls, ref: WorkspaceRef) -> AzureAutoscale:
        """Authenticate with the release credential (`delivery.credential`)."""
        from azure.mgmt.core import ARMPipelineClient
        from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

        from delivery.credential import ARM_SCOPE, credential

        policy = ARMChallengeAuthenticationPolicy(credential(), ARM_SCOPE)
        return cls(
            ref,
            ARMPipelineClient(
                base_url="https://management.azure.com", authentication_policy=policy
            ),
        )

    def _send(self, method: str, name: str, body: Mapping[str, Any] | None = None) -> Any:
        from azure.core.rest import HttpRequest

        url = (
            f"/subscriptions/{self._ref.subscription_id}/resourceGroups/"
            f"{self._ref.resource_group}/providers/Microsoft.Insights/autoscalesettings/{name}"
        )
        request = HttpRequest(method, url, params={"api-version": AUTOSCALE_API_VERSION}, json=body)
        return self._client.send_request(request)

    def get_autoscale(self, name: str) -> Mapping[str, Any] | None:
        response = self._send("GET", name)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def put_autoscale(self, name: str, setting: Mapping[str, Any]) -> None:
        response = self._send("PUT", name, setting)
        if response.status_code == 400 and "TargetResourceIdIsImmutable" in response.text():
            raise TargetResourceIdIsImmutableError(f"{name}: {response.text()}")
        response.raise_for_status()

    def delete_autoscale(self, name: str) -> None:
        response = self._send("DELETE", name)
        if response.status_code not in (200, 204, 404):
            response.raise_for_status()


def _rule(
    metric: str, target: str, direction: str, operator: str, threshold: int, cooldown: int
) -> dict[str, Any]:
    return {
        "metricTrigger": {
            "metricName": metric,
            "metricResourceUri": target,
            "timeGrain": "PT1M",
            "statistic": "Average",
            "timeWindow": "PT5M",
            "timeAggregation": "Average",
            "operator": operator,
            "threshold": threshold,
        },
        "scaleAction": {
            "direction": direction,
            "type": "ChangeCount",
            "value": "1",
            "cooldown": f"PT{cooldown}M",
        },
    }


def _profile(
    name: str,
    minimum: int,
    maximum: int,
    default: int,
    rules: Sequence[Mapping[str, Any]],
    recurrence: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "name": name,
        "capacity": {"minimum": str(minimum), "maximum": str(maximum), "default": str(default)},
        "rules": list(rules),
    }
    if recurrence is not None:
        profile["recurrence"] = recurrence
    return profile


def _recurrence(off: OffHours, start: str) -> dict[str, Any]:
    # A recurring profile runs from its start until the next profile starts: with weekends off,
    # the off-hours profile that starts Friday evening lasts until Monday morning.
    hour, minute = (int(x) for x in start.split(":"))
    return {
        "frequency": "Week",
        "schedule": {
            "timeZone": off.time_zone,
            "days": list(WORK_DAYS if off.weekends else ALL_DAYS),
            "hours": [hour],
            "minutes": [minute],
        },
    }
