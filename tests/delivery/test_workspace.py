"""The real WorkspaceClient maps onto MLClient calls (checked with a stand-in MLClient)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint
from azure.core.exceptions import ResourceNotFoundError

from delivery.fake import FakeWorkspace
from delivery.rollout import DeploymentSpec, RolloutPolicy
from delivery.workspace import AzureMLWorkspace, DeploymentState, WorkspaceRef
from tests.delivery.conftest import ENDPOINT, deploy, register_spec, write_tiny_model

WORKSPACE_ID = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-byom-dev"
    "/providers/Microsoft.MachineLearningServices/workspaces/mlw-byom-dev"
)


def test_workspace_ids_parse_and_round_trip() -> None:
    """An ARM id gives subscription, resource group and name; anything else is refused."""
    ref = WorkspaceRef.parse(WORKSPACE_ID)
    assert ref == WorkspaceRef(
        "11111111-1111-1111-1111-111111111111", "rg-byom-dev", "mlw-byom-dev"
    )
    assert ref.arm_id == WORKSPACE_ID
    with pytest.raises(ValueError, match="not a workspace id"):
        WorkspaceRef.parse("/subscriptions/x/resourceGroups/y")


def test_missing_assets_read_as_none() -> None:
    """ResourceNotFoundError from the SDK becomes None, so callers can register what is absent."""
    ml = MagicMock()
    ml.models.get.side_effect = ResourceNotFoundError("nope")
    ml.online_endpoints.get.side_effect = ResourceNotFoundError("nope")
    workspace = AzureMLWorkspace(ml)
    assert workspace.get_model("m", "1") is None
    assert workspace.get_endpoint("ep") is None


def test_set_traffic_updates_the_endpoint_entity_and_waits() -> None:
    """Traffic goes through the endpoint's own create_or_update, and the call waits for it."""
    ml = MagicMock()
    endpoint = ManagedOnlineEndpoint(name="ep", auth_mode="aad_token", traffic={"blue": 100})
    ml.online_endpoints.get.return_value = endpoint
    AzureMLWorkspace(ml).set_traffic("ep", {"blue": 90, "green": 10}, {})
    sent = ml.online_endpoints.begin_create_or_update.call_args.args[0]
    assert sent.traffic == {"blue": 90, "green": 10}
    assert sent.mirror_traffic == {}
    ml.online_endpoints.begin_create_or_update.return_value.result.assert_called_once()


def test_invoke_sends_the_request_file_to_the_named_deployment() -> None:
    """invoke targets one deployment and passes the request as the file the SDK expects."""
    ml = MagicMock()
    seen = {}

    def invoke(endpoint_name: str, deployment_name: str, request_file: str) -> str:
        seen.update(endpoint=endpoint_name, deployment=deployment_name)
        seen["body"] = json.loads(Path(request_file).read_text())
        return '{"text": "hi"}'

    ml.online_endpoints.invoke.side_effect = invoke
    body = AzureMLWorkspace(ml).invoke("ep", "green", '{"prompt": "x"}')
    assert body == '{"text": "hi"}'
    assert seen == {"endpoint": "ep", "deployment": "green", "body": {"prompt": "x"}}


def test_a_pending_update_never_reads_as_succeeded() -> None:
    """While the create/update poller runs, a stale Succeeded is reported as Updating."""
    ml = MagicMock()
    deployment = ManagedOnlineDeployment(name="green", endpoint_name="ep", instance_count=1)
    deployment._provisioning_state = "Succeeded"
    ml.online_deployments.get.return_value = deployment
    poller = ml.online_deployments.begin_create_or_update.return_value
    poller.done.return_value = False
    workspace = AzureMLWorkspace(ml)
    workspace.begin_create_or_update_deployment(deployment)
    assert workspace.get_deployment("ep", "green").provisioning_state == "Updating"
    poller.done.return_value = True
    assert workspace.get_deployment("ep", "green").provisioning_state == "Succeeded"


class _StaleReads(FakeWorkspace):
    """A service whose reads lag: right after an update it still shows the old deployment."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stale: dict[tuple[str, str], tuple[DeploymentState, int]] = {}

    def begin_create_or_update_deployment(self, deployment: ManagedOnlineDeployment) -> None:
        old = super().get_deployment(deployment.endpoint_name, deployment.name)
        super().begin_create_or_update_deployment(deployment)
        if old is not None:
            self.stale[(deployment.endpoint_name, deployment.name)] = (old, 2)

    def get_deployment(self, endpoint: str, name: str) -> DeploymentState | None:
        old, reads = self.stale.get((endpoint, name), (None, 0))
        if reads:
            self.stale[(endpoint, name)] = (old, reads - 1)
            return old
        return super().get_deployment(endpoint, name)


def test_a_stale_succeeded_of_the_old_spec_is_not_ready(tmp_path: Path, code_dir: Path) -> None:
    """Rollout waits until the slot reports the new spec, so it never smoke-tests the old one."""
    fake = _StaleReads(storage=tmp_path / "store")
    fake.add_endpoint(ENDPOINT)
    policy = RolloutPolicy(step_wait_s=0, poll_interval_s=0)
    specs: list[DeploymentSpec] = [
        register_spec(fake, write_tiny_model(tmp_path / f"v{i}", seed=i), code_dir)
        for i in range(3)
    ]
    for spec in specs:  # v0 -> blue, v1 -> green, v2 -> blue again (an update of a slot)
        deploy(fake, spec, policy)
    live = fake.deployments[(ENDPOINT, "blue")].entity
    assert live.model == specs[2].model
    assert fake.traffic(ENDPOINT) == {"blue": 100, "green": 0}
    assert fake.stale[(ENDPOINT, "blue")][1] == 0  # both stale reads were consumed, then waited


def test_specs_are_plain_values_without_azure_ai_ml() -> None:
    """Specs, gate and smoke import no azure-ai-ml (and no Pulumi): infra parses config straight
    into them cheaply; only delivery.workspace builds Azure entities."""
    code = (
        "import sys, delivery.spec, delivery.gate, delivery.smoke; "
        "print(sorted(m for m in sys.modules if m.startswith(('azure.ai.ml', 'pulumi'))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert completed.stdout.strip() == "[]"
