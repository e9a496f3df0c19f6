"""Autoscale per slot: each blue/green deployment gets its own Azure Monitor autoscale setting.

An autoscale setting's `targetResourceUri` is create-only: Azure refuses to re-point an existing
setting at another deployment (`TargetResourceIdIsImmutable`). So a setting is named after its slot
(`<endpoint>-<slot>-autoscale`) and only ever targets that slot. The rollout creates the new slot's
setting before the slot takes traffic, and deletes the old slot's setting when the old slot is
scaled down to standby or deleted (autoscale would otherwise scale a standby back up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, Protocol

from pydantic import model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from delivery.credential import ARM_ENDPOINT
from delivery.fields import (
    HHMM,
    SPEC_CONFIG,
    Flag,
    NotInStackFile,
    Spec,
    Text,
    invalid,
    one_of,
    whole,
)
from delivery.workspace import WorkspaceRef

AUTOSCALE_API_VERSION = "2022-10-01"
WORK_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
ALL_DAYS = (*WORK_DAYS, "Saturday", "Sunday")


class TargetResourceIdIsImmutableError(RuntimeError):
    """An autoscale setting may not be re-pointed at another resource (Azure's error code)."""


def autoscale_name(endpoint: str, slot: str) -> str:
    """The autoscale setting of one slot; the name pins the target, so it never changes."""
    return f"{endpoint}-{slot}-autoscale"


# Deployment metrics Azure Monitor autoscale can act on; which fit a deployment depends on its
# SKU (an LLM on a GPU is GPU-bound), which the stack config checks (`infra.config_endpoints`).
CPU_AUTOSCALE_METRICS = ("CpuUtilizationPercentage", "CpuMemoryUtilizationPercentage")
GPU_AUTOSCALE_METRICS = ("GpuUtilizationPercentage", "GpuMemoryUtilizationPercentage")
AUTOSCALE_METRICS = (*CPU_AUTOSCALE_METRICS, *GPU_AUTOSCALE_METRICS)
# Managed online deployments cannot scale to zero.
Instances = whole(1, 20)


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class OffHours(Spec):
    """A smaller capacity range outside working hours (recurring weekly profiles)."""

    min_instances: Instances = 1
    max_instances: Instances = 1
    # Windows time zone name, as Azure Monitor autoscale takes it (`W. Europe Standard Time`).
    time_zone: Text = "UTC"
    # `HH:MM` when the working-hours range starts, and when the off-hours range starts.
    workday_start: HHMM = "07:00"
    workday_end: HHMM = "19:00"
    # Off-hours all Saturday and Sunday too.
    weekends: Flag = True

    @model_validator(mode="after")
    def _ordered(self) -> OffHours:
        if self.workday_end <= self.workday_start:
            raise invalid(
                f"later than workdayStart {self.workday_start}", "workdayEnd", self.workday_end
            )
        if self.max_instances < self.min_instances:
            raise invalid(
                f"at least minInstances ({self.min_instances})", "maxInstances", self.max_instances
            )
        return self

    def to_props(self) -> dict[str, Any]:
        """Plain values: the spec's own fields (a subclass's stack-file switches left out)."""
        return {f.name: getattr(self, f.name) for f in fields(OffHours)}


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class AutoscaleSpec(Spec):
    """Capacity range and the metric rules, the same for whichever slot is live.

    A stack file sets the range and rules; the deployment supplies where the setting lives, the
    instance count it starts at, and its tags (`infra.endpoints`).
    """

    min_instances: Instances = 1
    max_instances: Instances = 2
    # None until the deployment's SKU picks it (`infra.config_endpoints`: GPU metrics on GPUs).
    metric: one_of(*AUTOSCALE_METRICS) | None = None
    scale_out_above: whole(1, 100) = 70
    scale_in_below: whole(0, 99) = 25
    # GPU instances take minutes to provision; a short cooldown would overshoot.
    cooldown_minutes: whole(1, 1440) = 15
    off_hours: OffHours | None = None
    location: NotInStackFile[str] = ""
    default_instances: NotInStackFile[int | None] = None
    tags: NotInStackFile[Mapping[str, str] | None] = None

    @model_validator(mode="after")
    def _ranges(self) -> AutoscaleSpec:
        hi, lo = self.max_instances, self.min_instances
        if hi < lo:
            raise invalid(f"at least minInstances ({lo})", "maxInstances", hi)
        off = self.off_hours
        if off is not None and off.max_instances > hi:
            allowed = f"at most maxInstances ({hi}): off-hours only scale down"
            raise invalid(allowed, "offHours.maxInstances", off.max_instances)
        if self.scale_in_below >= self.scale_out_above:
            allowed = f"below scaleOutAbove ({self.scale_out_above})"
            raise invalid(allowed, "scaleInBelow", self.scale_in_below)
        if self.default_instances is not None:
            self.check_instances("defaultInstances", self.default_instances)
        return self

    def check_instances(self, key: str, count: int) -> None:
        """A deployment's instance count must lie within the range (`key` names it)."""
        if not self.min_instances <= count <= self.max_instances:
            allowed = f"within autoscale {self.min_instances}..{self.max_instances}"
            raise invalid(allowed, key, count)

    def for_deployment(
        self, location: str, instances: int, tags: Mapping[str, str]
    ) -> AutoscaleSpec:
        """This spec for one deployment (its region, starting instance count and tags), as a
        plain AutoscaleSpec: a stack file's switches (`enabled`) stay with the config."""
        props = {**self.to_props(), "location": location, "default_instances": instances}
        return AutoscaleSpec.from_props({**props, "tags": dict(tags)})

    def setting(self, target_id: str) -> dict[str, Any]:
        """The ARM body of the autoscale setting for one deployment."""
        if self.metric is None or self.default_instances is None or not self.location:
            raise ValueError("autoscale needs its metric, location and default_instances first")
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
        props = {f.name: getattr(self, f.name) for f in fields(AutoscaleSpec)}
        props["off_hours"] = self.off_hours.to_props() if self.off_hours is not None else None
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
        from delivery.credential import arm_client

        return cls(ref, arm_client())

    def _send(self, method: str, name: str, body: Mapping[str, Any] | None = None) -> Any:
        from azure.core.rest import HttpRequest

        url = (
            f"{ARM_ENDPOINT}/subscriptions/{self._ref.subscription_id}/resourceGroups/"
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
