"""The offline runtime harness: run a Pulumi program under mocks and record what it registers.

Pulumi has no public API for this (`pulumi preview --json` needs the CLI and a backend), so the
harness uses private parts of the Pulumi Python SDK, all of them in this module and listed in
`PRIVATE_APIS`. It is tested with the pinned SDK (`TESTED_WITH`); `tests/infra/test_offline.py`
fails naming the installed version when one of them changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.offline.mocks import MOCK_ORGANIZATION, MOCK_SUBSCRIPTION_ID, PlanMocks

TESTED_WITH = "3.272.0"  # requirements-infra.txt: pulumi==3.272.0
# (module, attribute path) of every private or internal SDK API the harness relies on.
PRIVATE_APIS = (
    ("pulumi.runtime.sync_await", "_sync_await"),
    ("pulumi.runtime.stack", "run_pulumi_func"),
    ("pulumi.runtime.settings", "set_root_resource"),
    ("pulumi.runtime.settings", "SETTINGS.rpc_manager.clear"),
    ("pulumi.runtime.settings", "SETTINGS.outputs.clear"),
    ("pulumi.runtime.mocks", "MockMonitor.RegisterResource"),
    ("pulumi.runtime.rpc", "deserialize_properties"),
)


@dataclass(frozen=True)
class PlannedResource:
    """One resource the program registers, with the inputs the Pulumi engine would receive."""

    type: str
    """Type token, e.g. `azure-native:storage:StorageAccount` or `byom:network:Network`."""
    name: str
    """Logical (Pulumi) name."""
    urn: str
    parent_urn: str | None
    """URN of the parent; the stack's URN for top-level components."""
    custom: bool
    """True for cloud resources, False for components."""
    props: dict[str, Any]
    """Inputs with camelCase wire names (`publicNetworkAccess`), ints as floats."""
    dependencies: tuple[str, ...] = ()
    """URNs of explicit and implicit dependencies."""
    ignore_changes: tuple[str, ...] = ()
    """Property paths Pulumi leaves alone on update (`ignore_changes`)."""
    replace_on_changes: tuple[str, ...] = ()
    """Property paths whose change makes Pulumi replace the resource (`replace_on_changes`)."""
    protect: bool = False
    """Whether Pulumi refuses to delete the resource (`protect`)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """What the mocks answered (inputs plus invented `id`, `principalId`...)."""


@dataclass(frozen=True)
class Plan:
    """The result of running a stack's program offline."""

    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any] = field(default_factory=dict)


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each registration's parent and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.records: list[PlannedResource] = []

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.records.append(
                PlannedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent_urn=request.parent or None,
                    custom=bool(request.custom),
                    props=_without_provider(rpc.deserialize_properties(request.object)),
                    dependencies=tuple(request.dependencies),
                    ignore_changes=tuple(request.ignoreChanges),
                    replace_on_changes=tuple(request.replaceOnChanges),
                    protect=bool(request.protect),
                    outputs=_without_provider(rpc.deserialize_properties(response.object)),
                )
            )
        return response


def _without_provider(props: dict[str, Any]) -> dict[str, Any]:
    # Dynamic resources carry their pickled provider as an input; it is noise in a plan.
    return {k: v for k, v in props.items() if k != "__provider"}


def run(
    program: Callable[[], Any],
    *,
    stack: str,
    config: Mapping[str, str],
    project: str = "azureml-byom",
    subscription_id: str = MOCK_SUBSCRIPTION_ID,
    live_slot: str = "blue",
) -> Plan:
    """Run `program` under mocks with the given config; returns what it registered and exported."""
    mocks = PlanMocks(subscription_id, live_slot)
    monitor = _RecordingMonitor(mocks)
    # Pulumi's runtime is process-global: start each run from a clean root, config and RPC state.
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_all_config(dict(config), [])
    pulumi.runtime.set_mocks(
        mocks,
        project=project,
        stack=stack,
        preview=False,
        monitor=monitor,
        organization=MOCK_ORGANIZATION,
    )
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    result: dict[str, Any] = {}

    async def body() -> None:
        outputs = program()
        if outputs is not None:
            result.update(await pulumi.Output.from_input(outputs).future() or {})

    _sync_await(run_pulumi_func(body))
    return Plan(stack=stack, resources=list(monitor.records), outputs=result)
