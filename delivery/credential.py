"""The one credential every delivery call uses, chosen by where the release runs.

A release can run for hours (provisioning, mirror bake, steps, final bake), and it needs tokens for
several audiences (ARM, `https://ml.azure.com` for `invoke`, storage for uploads). Every Azure
client in `delivery/` therefore takes a credential that can mint a fresh token for any scope at any
time, never a token or a CLI login made once at the start:

- **On the release runner** (a Container Apps job in the VNet, `infra.release_runner`): the job's
  user-assigned managed identity (`IDENTITY_ENDPOINT` is set by Container Apps). No secret, no
  expiry: the platform refreshes it.
- **In a GitHub-hosted job** (dev): `ClientAssertionCredential` whose callback asks GitHub for a
  *fresh* OIDC ID token on every token request. The Azure CLI login that `azure/login` makes holds
  one GitHub token (valid minutes) and fails with AADSTS700024 once it expires.
- **On a laptop**: `DefaultAzureCredential` (az login, VS Code, ...).
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport
    from azure.mgmt.core import ARMPipelineClient

# The audience Entra ID expects in a federated credential's assertion.
GITHUB_AUDIENCE = "api://AzureADTokenExchange"
ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = f"{ARM_ENDPOINT}/.default"
AML_SCOPE = "https://ml.azure.com/.default"
STORAGE_SCOPE = "https://storage.azure.com/.default"


class CredentialConfigError(RuntimeError):
    """The environment names a way to authenticate but lacks what it needs."""


@dataclass(frozen=True)
class GitHubIdToken:
    """Callable for `ClientAssertionCredential`: a fresh GitHub Actions OIDC ID token per call.

    GitHub gives a job `ACTIONS_ID_TOKEN_REQUEST_URL` and `..._TOKEN` when it has
    `permissions: id-token: write`; each request returns a new, short-lived JWT.
    """

    request_url: str
    request_token: str
    audience: str = GITHUB_AUDIENCE
    timeout_s: float = 10.0

    def __call__(self) -> str:
        separator = "&" if urllib.parse.urlparse(self.request_url).query else "?"
        url = f"{self.request_url}{separator}audience={urllib.parse.quote(self.audience, safe='')}"
        request = urllib.request.Request(
            url, headers={"Authorization": f"bearer {self.request_token}"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            value = json.loads(response.read()).get("value")
        if not value:
            raise CredentialConfigError(f"GitHub returned no ID token from {self.request_url}")
        return str(value)


def credential(
    env: Mapping[str, str] | None = None,
    *,
    assertion_transport: object | None = None,
    github_token: Callable[[], str] | None = None,
) -> TokenCredential:
    """The credential for this process (see the module docstring for the order)."""
    env = os.environ if env is None else env
    client_id = env.get("AZURE_CLIENT_ID")
    if env.get("IDENTITY_ENDPOINT") and client_id:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id)
    if env.get("ACTIONS_ID_TOKEN_REQUEST_URL") or github_token is not None:
        from azure.identity import ClientAssertionCredential

        tenant_id = env.get("AZURE_TENANT_ID")
        if not (tenant_id and client_id):
            raise CredentialConfigError(
                "a GitHub Actions job with id-token: write needs AZURE_TENANT_ID and "
                "AZURE_CLIENT_ID (the federated app registration or identity) in its env"
            )
        func = github_token or GitHubIdToken(
            env["ACTIONS_ID_TOKEN_REQUEST_URL"], env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
        )
        extra = {"transport": assertion_transport} if assertion_transport is not None else {}
        return ClientAssertionCredential(tenant_id, client_id, func, **extra)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def arm_client(*, transport: HttpTransport | None = None) -> ARMPipelineClient:
    """A client for ARM REST calls that have no SDK here (azure-mgmt-core's pipeline), with the
    credential for this process and azure-core's retry policy."""
    from azure.core.configuration import Configuration
    from azure.core.pipeline.policies import RetryPolicy
    from azure.mgmt.core import ARMPipelineClient
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    # ARMPipelineClient builds its pipeline from a Configuration; with `authentication_policy`
    # alone it refuses to start ("requires to pass 'config' if you don't pass 'policies'").
    config: Configuration = Configuration()
    config.authentication_policy = ARMChallengeAuthenticationPolicy(credential(), ARM_SCOPE)
    config.retry_policy = RetryPolicy()
    extra = {"transport": transport} if transport is not None else {}
    return ARMPipelineClient(base_url=ARM_ENDPOINT, config=config, **extra)
