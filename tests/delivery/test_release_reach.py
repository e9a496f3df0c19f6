"""Where a prod release can run from, and with which credential it lasts.

Prod disables public network access: the data-plane calls of a release (uploads to the workspace
storage, smoke and gate requests to the scoring URI) only work from inside the VNet. A release also
outlives any single token: every call must get a valid token at that moment.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError

from delivery.credential import credential
from delivery.fake import INTERNET, VNET, FakeWorkspace, PublicAccessDisabledError
from delivery.fake_identity import FakeEntra, FakeGitHubOIDC
from delivery.rollout import RolloutPolicy, rollout
from delivery.workspace import deployment_entity
from tests.delivery.conftest import ENDPOINT, register_spec, write_tiny_model

TWO_HOURS = 2 * 3600.0


class SimulatedTime:
    """One clock for the release, the fake services, azure-identity and MSAL."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1.0)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> SimulatedTime:
    clock = SimulatedTime()
    # azure-identity and MSAL decide token freshness with time.time().
    monkeypatch.setattr(time, "time", clock)
    return clock


def _prod(tmp_path: Path, **kwargs) -> FakeWorkspace:
    workspace = FakeWorkspace(
        storage=tmp_path / "prod-storage",
        storage_account="stbyomprod",
        public_network_access="Disabled",
        **kwargs,
    )
    workspace.add_endpoint(ENDPOINT)
    return workspace


def _release(workspace: FakeWorkspace, spec, policy: RolloutPolicy, sim=None):
    kwargs = {"sleep": sim.sleep, "clock": sim} if sim else {"sleep": lambda _: None}
    return rollout(workspace, ENDPOINT, spec, policy, alerts=workspace, **kwargs)


def test_a_prod_release_from_outside_the_network_fails_naming_call_and_target(
    tmp_path: Path, tiny_model: Path, code_dir: Path, fast_policy: RolloutPolicy
) -> None:
    """A GitHub-hosted runner reaches ARM but not the private storage account or scoring URI."""
    prod = _prod(tmp_path)
    prod.origin = VNET  # assets were promoted from the runner
    spec = register_spec(prod, tiny_model, code_dir)
    prod.origin = INTERNET

    with pytest.raises(PublicAccessDisabledError) as refused:
        _release(prod, spec, fast_policy)

    message = str(refused.value)
    assert "begin_create_or_update_deployment" in message
    assert "https://stbyomprod.blob.core.windows.net" in message
    assert "public network access is disabled" in message
    assert prod.traffic(ENDPOINT) == {}
    assert not prod.deployments


def test_smoke_requests_from_outside_are_refused_at_the_private_scoring_uri(
    tmp_path: Path, tiny_model: Path, code_dir: Path
) -> None:
    """Even with the slot created, invoke posts straight to the scoring URI: refused."""
    prod = _prod(tmp_path, origin=VNET)
    spec = register_spec(prod, tiny_model, code_dir)
    prod.begin_create_or_update_deployment(deployment_entity(spec, ENDPOINT, "blue"))
    prod.origin = INTERNET
    with pytest.raises(PublicAccessDisabledError, match=r"invoke: https://byom-generate-dev\."):
        prod.invoke(ENDPOINT, "blue", '{"prompt": "hi"}')


def test_the_same_release_from_the_runner_in_the_vnet_succeeds(
    tmp_path: Path, tiny_model: Path, code_dir: Path, fast_policy: RolloutPolicy
) -> None:
    prod = _prod(tmp_path, origin=VNET)
    first = register_spec(prod, tiny_model, code_dir)
    _release(prod, first, fast_policy)
    second = register_spec(prod, write_tiny_model(tmp_path / "v2", seed=2), code_dir)
    result = _release(prod, second, fast_policy)
    assert result.live == "green"
    assert prod.traffic(ENDPOINT)["green"] == 100


def _two_hour_policy() -> RolloutPolicy:
    # mirror 40 min + two 40-minute step bakes + provisioning polls: over two hours.
    return RolloutPolicy(
        traffic_steps=(10, 50, 100),
        mirror_percent=10,
        step_wait_s=40 * 60,
        poll_interval_s=60,
        final_bake_s=0,
        watch_alerts=("byom-generate-errors",),  # polled every minute while baking
    )


def _long_release(tmp_path: Path, tiny_model: Path, code_dir: Path, sim, azure_credential):
    entra = FakeEntra(clock=sim, token_lifetime_s=300)
    prod = _prod(tmp_path, origin=VNET, credential=azure_credential(entra), entra=entra)
    first = register_spec(prod, tiny_model, code_dir)
    _release(prod, first, RolloutPolicy(step_wait_s=0, poll_interval_s=60), sim)
    second = register_spec(prod, write_tiny_model(tmp_path / "v2", seed=2), code_dir)
    started = sim()
    result = _release(prod, second, _two_hour_policy(), sim)
    return prod, entra, result, sim() - started


def test_five_minute_tokens_last_a_two_hour_release_with_a_fresh_assertion_per_token(
    tmp_path: Path, tiny_model: Path, code_dir: Path, sim: SimulatedTime
) -> None:
    """The GitHub-job credential asks GitHub for a new ID token whenever it needs a token."""
    github = FakeGitHubOIDC(clock=sim, lifetime_s=300)
    env = {"AZURE_TENANT_ID": "tenant", "AZURE_CLIENT_ID": "client"}

    def azure_credential(entra: FakeEntra):
        return credential(env, assertion_transport=entra, github_token=github)

    prod, entra, result, took = _long_release(tmp_path, tiny_model, code_dir, sim, azure_credential)

    assert took >= TWO_HOURS
    assert result.live == "green"
    assert prod.traffic(ENDPOINT)["green"] == 100
    assert not entra.refusals
    # A fresh assertion roughly every token lifetime, never one for the whole run.
    assert github.issued >= took / 300 - 1


def test_a_login_made_once_from_one_github_token_fails_mid_release(
    tmp_path: Path, tiny_model: Path, code_dir: Path, sim: SimulatedTime
) -> None:
    """What `azure/login` + the CLI do: one GitHub token, exchanged again after it expired."""
    github = FakeGitHubOIDC(clock=sim, lifetime_s=300)
    env = {"AZURE_TENANT_ID": "tenant", "AZURE_CLIENT_ID": "client"}
    login_token = github()

    def azure_credential(entra: FakeEntra):
        return credential(env, assertion_transport=entra, github_token=lambda: login_token)

    with pytest.raises(ClientAuthenticationError, match="AADSTS700024"):
        _long_release(tmp_path, tiny_model, code_dir, sim, azure_credential)


def test_on_the_runner_the_managed_identity_is_the_credential() -> None:
    from azure.identity import ClientAssertionCredential, ManagedIdentityCredential

    runner = {"IDENTITY_ENDPOINT": "http://localhost:42356/msi/token", "AZURE_CLIENT_ID": "c"}
    assert isinstance(credential(runner), ManagedIdentityCredential)
    github = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions/x?api-version=2.0",
        "AZURE_TENANT_ID": "t",
        "AZURE_CLIENT_ID": "c",
    }
    assert isinstance(credential(github), ClientAssertionCredential)
