"""Images by digest: the fake workspace builds as Azure ML does (and fails where its managed network
blocks the package hosts), the fake registry imports as ACR does (by digest, keeping it)."""

from __future__ import annotations

import pytest
from azure.ai.ml.entities import Environment, Model
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from delivery.assets import ImageRef
from delivery.environment import EnvironmentSpec, ServerImageSpec, register_environment
from delivery.fake import FakeRegistry, FakeWorkspace, ImageBuildError
from delivery.images import PYPI_HOSTS, build_hosts, package_hosts, register_image_environment
from delivery.packaging import AssetConflictError
from delivery.spec import DeploymentSpec
from delivery.workspace import WorkspaceRef, deployment_entity

DEV = WorkspaceRef("11111111-1111-1111-1111-111111111111", "rg-byom-dev", "mlw-byom-dev")
PROD = WorkspaceRef("11111111-1111-1111-1111-111111111111", "rg-byom-prod", "mlw-byom-prod")
# Prod's managed network before this change: PyPI only.
PYPI_ONLY = ("pypi.org", "files.pythonhosted.org")


def _locked_down(**kwargs: object) -> FakeWorkspace:
    return FakeWorkspace(
        PROD, isolation_mode="AllowOnlyApprovedOutbound", outbound_fqdns=PYPI_ONLY, **kwargs
    )


def _deploy(workspace: FakeWorkspace, environment: str, server: str = "azmlinfsrv") -> None:
    workspace.add_endpoint("byom-generate")
    workspace.models[("m", "1")] = Model(name="m", version="1", path=".")
    spec = DeploymentSpec(
        pattern="generate",
        model="azureml:m:1",
        environment=environment,
        instance_type="Standard_NC24ads_A100_v4",
        server=server,
    )
    workspace.begin_create_or_update_deployment(deployment_entity(spec, "byom-generate", "blue"))


def test_the_conda_spec_needs_conda_pytorch_and_pypi_hosts() -> None:
    """What a build of environments/ downloads from: more than the two PyPI hosts."""
    with EnvironmentSpec().staged() as environment:
        hosts = build_hosts(environment)
    assert hosts == {"conda.anaconda.org", "download.pytorch.org", *PYPI_HOSTS}
    with ServerImageSpec().staged() as server:
        assert build_hosts(server) == hosts  # the same conda spec, plus PyPI pins
    image = Environment(name="x", version="1", image="r.azurecr.io/x@sha256:" + "0" * 64)
    assert build_hosts(image) is None  # nothing to build


def test_package_hosts_follow_channels_and_indexes() -> None:
    spec = {
        "channels": ["defaults", "https://conda.example.com/main"],
        "dependencies": ["python=3.11", {"pip": ["-i https://pypi.example.com/simple", "x==1"]}],
    }
    assert package_hosts(spec) == {
        "repo.anaconda.com",
        "conda.example.com",
        "pypi.example.com",
        *PYPI_HOSTS,
    }


@pytest.mark.parametrize("spec", [EnvironmentSpec(), ServerImageSpec()], ids=["conda", "context"])
def test_a_locked_down_workspace_cannot_build_from_a_spec(spec: object) -> None:
    """Azure accepts the registration; the build on first use fails, naming what is missing."""
    prod = _locked_down()
    registered = register_environment(prod, spec)  # type: ignore[arg-type]
    server = "openai" if isinstance(spec, ServerImageSpec) else "azmlinfsrv"
    with pytest.raises(ImageBuildError) as failure:
        _deploy(prod, registered.asset_id, server)
    message = str(failure.value)
    assert f"environment {registered.name}:{registered.version}" in message
    assert "conda.anaconda.org" in message
    assert "download.pytorch.org" in message
    assert "pypi.org" not in message.split("no outbound rule for")[1].split("which")[0]
    assert prod.deployments == {}
    assert prod.built_images == {}


def test_the_same_network_builds_when_every_package_host_is_allowed() -> None:
    """The rule is about hosts: allow them all and the build goes through."""
    hosts = build_hosts(EnvironmentSpec().to_environment())
    workspace = FakeWorkspace(
        PROD, isolation_mode="AllowOnlyApprovedOutbound", outbound_fqdns=sorted(hosts or ())
    )
    registered = register_environment(workspace, EnvironmentSpec())
    _deploy(workspace, registered.asset_id)
    assert workspace.built_image(registered.name, registered.version) is not None


def test_dev_builds_into_its_registry_on_first_use_and_a_rebuild_is_another_image() -> None:
    """The built image is in the workspace registry by digest; the same spec built in another
    workspace is other bytes (unpinned transitive packages), which is why prod must not build."""
    dev = FakeWorkspace(DEV)
    registered = register_environment(dev, EnvironmentSpec())
    assert dev.built_image(registered.name, registered.version) is None  # not used yet
    _deploy(dev, registered.asset_id)
    built = dev.built_image(registered.name, registered.version)
    assert built is not None
    assert dev.acr.holds(built)
    assert built.registry == dev.acr.login_server
    other = FakeWorkspace(PROD)
    register_environment(other, EnvironmentSpec())
    rebuilt = other.build_environment(registered.name, registered.version)
    assert rebuilt.digest != built.digest


def test_import_copies_by_digest_and_keeps_it() -> None:
    tenant: dict = {}
    dev = FakeRegistry("crbyomdev", directory=tenant)
    prod = FakeRegistry("crbyomprod", public_network_access="Disabled", directory=tenant)
    built = dev.push("azureml/azureml_0f3c", "latest", b"manifest of the dev build")
    imported = prod.import_image(dev.registry_id, built, "byom/byom-inference-gpu:9a8b")
    assert imported == ImageRef("crbyomprod.azurecr.io", "byom/byom-inference-gpu", built.digest)
    assert prod.holds(imported)
    assert prod.digest("byom/byom-inference-gpu", "9a8b") == built.digest
    # Moving the tag in dev afterwards changes nothing in prod: prod holds the digest.
    dev.push("azureml/azureml_0f3c", "latest", b"a rebuild")
    assert prod.holds(imported)


def test_importing_a_digest_the_source_does_not_hold_fails() -> None:
    tenant: dict = {}
    dev = FakeRegistry("crbyomdev", directory=tenant)
    prod = FakeRegistry("crbyomprod", directory=tenant)
    dev.push("azureml/azureml_0f3c", "latest", b"built")
    missing = ImageRef(dev.login_server, "azureml/azureml_0f3c", "sha256:" + "e" * 64)
    with pytest.raises(ResourceNotFoundError, match="manifest unknown"):
        prod.import_image(dev.registry_id, missing, "byom/x:1")
    assert prod.manifests == {}


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ({"export_enabled": False}, "export policy is disabled"),
        ({"public_network_access": "Disabled", "trusted_services": False}, "trusted Azure"),
    ],
)
def test_import_keeps_acr_network_and_export_rules(source: dict, match: str) -> None:
    tenant: dict = {}
    dev = FakeRegistry("crbyomdev", directory=tenant, **source)
    prod = FakeRegistry("crbyomprod", directory=tenant)
    built = dev.push("azureml/azureml_0f3c", "latest", b"built")
    with pytest.raises(HttpResponseError, match=match):
        prod.import_image(dev.registry_id, built, "byom/x:1")


def test_an_environment_from_a_digest_deploys_without_a_build() -> None:
    """Registered from an image in its own registry: pulled, not built, even when locked down."""
    prod = _locked_down()
    image = prod.acr.push("byom/byom-inference-gpu", "9a8b", b"dev's image")
    assert register_image_environment(prod, "byom-inference-gpu", "9a8b", image)
    _deploy(prod, "azureml:byom-inference-gpu:9a8b")
    assert ("build_environment", "byom-inference-gpu", "9a8b") not in prod.mutations
    assert prod.built_image("byom-inference-gpu", "9a8b") == image
    # Registering the same version again is a no-op; another digest is a conflict.
    assert not register_image_environment(prod, "byom-inference-gpu", "9a8b", image)
    other = ImageRef(image.registry, image.repository, "sha256:" + "1" * 64)
    with pytest.raises(AssetConflictError, match="immutable"):
        register_image_environment(prod, "byom-inference-gpu", "9a8b", other)


def test_a_digest_the_locked_down_workspace_cannot_pull_is_refused() -> None:
    """Not imported (still in dev's registry, or never pushed): the deployment cannot pull it."""
    prod = _locked_down()
    elsewhere = ImageRef("crbyomdev.azurecr.io", "azureml/azureml_0f3c", "sha256:" + "2" * 64)
    register_image_environment(prod, "byom-inference-gpu", "9a8b", elsewhere)
    with pytest.raises(ImageBuildError, match="import it first"):
        _deploy(prod, "azureml:byom-inference-gpu:9a8b")


def test_acr_import_sends_the_digest_by_source_resource_id() -> None:
    """The real RegistryClient: one `importImage` naming the source registry by resource id (which
    works when its public access is off) and the image by digest; it waits for the operation."""
    from unittest.mock import MagicMock

    from delivery.images import AzureContainerRegistry

    client = MagicMock()
    prod_id = FakeRegistry("crbyomprod", "rg-byom-prod").registry_id
    dev_id = FakeRegistry("crbyomdev", "rg-byom-dev").registry_id
    registry = AzureContainerRegistry(client, prod_id, "crbyomprod.azurecr.io")
    built = ImageRef("crbyomdev.azurecr.io", "azureml/azureml_0f3c", "sha256:" + "3" * 64)
    imported = registry.import_image(dev_id, built, "byom/byom-inference-gpu:9a8b")
    group, name, parameters = client.registries.begin_import_image.call_args.args
    assert (group, name) == ("rg-byom-prod", "crbyomprod")
    assert parameters.source.resource_id == dev_id
    assert parameters.source.source_image == f"azureml/azureml_0f3c@{built.digest}"
    assert parameters.target_tags == ["byom/byom-inference-gpu:9a8b"]
    client.registries.begin_import_image.return_value.result.assert_called_once()
    assert str(imported) == f"crbyomprod.azurecr.io/byom/byom-inference-gpu@{built.digest}"


def test_the_real_workspace_resolves_the_built_image_to_a_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AzureMLWorkspace.built_image: Azure ML's image details name the repository in the
    workspace registry; the registry's manifest gives the digest. An environment registered from
    a digest answers with it directly."""
    from unittest.mock import MagicMock

    import azure.containerregistry
    from azure.core import PipelineClient

    from delivery.workspace import AzureMLWorkspace

    ml = MagicMock(subscription_id=DEV.subscription_id, resource_group_name=DEV.resource_group)
    ml.workspace_name = DEV.workspace_name
    ml.workspaces.get.return_value.discovery_url = "https://swedencentral.api.azureml.ms/discovery"
    ml.environments.get.return_value = EnvironmentSpec().to_environment()
    requested: list[str] = []

    def send_request(self: object, request: object, **_: object) -> MagicMock:
        url = request.url  # type: ignore[attr-defined]
        requested.append(url)
        answer = (
            {"api": "https://swedencentral.api.azureml.ms"}
            if url.endswith("/discovery")
            else {
                "imageExistsInRegistry": True,
                "dockerImage": {
                    "name": "azureml/azureml_0f3c",
                    "registry": {"address": "crbyomdev.azurecr.io"},
                },
            }
        )
        return MagicMock(json=MagicMock(return_value=answer))

    registry_client = MagicMock()
    digest = "sha256:" + "4" * 64
    registry_client.return_value.__enter__.return_value.get_manifest_properties.return_value = (
        MagicMock(digest=digest)
    )
    monkeypatch.setattr(PipelineClient, "send_request", send_request)
    monkeypatch.setattr(azure.containerregistry, "ContainerRegistryClient", registry_client)
    workspace = AzureMLWorkspace(ml, credential=MagicMock())
    image = workspace.built_image("byom-inference-gpu", "9a8b")
    assert image == ImageRef("crbyomdev.azurecr.io", "azureml/azureml_0f3c", digest)
    assert requested[1] == (
        f"https://swedencentral.api.azureml.ms/environment/v1.0{DEV.arm_id}"
        "/environments/byom-inference-gpu/versions/9a8b/image"
    )
    lookup = registry_client.return_value.__enter__.return_value.get_manifest_properties
    lookup.assert_called_once_with("azureml/azureml_0f3c", "latest")
    # Registered from a digest (prod): the reference itself, no lookup.
    pinned = Environment(name="e", version="1", image=str(image))
    ml.environments.get.return_value = pinned
    assert workspace.built_image("e", "1") == image
    assert len(requested) == 2
