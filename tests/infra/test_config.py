"""Stack configuration is validated once; errors name the key, the value and what is allowed."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

from infra.config import ALLOWED_REGIONS, ConfigError, parse_settings, stack_file_schema
from infra.plan import REPO_ROOT, STACKS, read_stack_config

VALID: dict[str, Any] = {
    "location": "swedencentral",
    "tags": {"owner": "team@example.com", "costCenter": "CC-1", "dataClassification": "internal"},
}


def parse(**changes: Any) -> Any:
    """Parse VALID with top-level keys replaced."""
    values = copy.deepcopy(VALID)
    values.update(changes)
    return parse_settings(values, stack="dev")


def test_defaults_are_the_secure_choice() -> None:
    """With only the required keys, the stack is private and isolated."""
    settings = parse()
    assert settings.network.private is True
    assert settings.public_network_access == "Disabled"
    assert settings.workspace.isolation_mode == "AllowOnlyApprovedOutbound"
    assert settings.workspace.registry_sku == "Premium"
    assert settings.workspace.storage_shared_key_access is False


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"location": "eastus"}, "azureml-byom:location", ", ".join(ALLOWED_REGIONS)),
        ({"location": None}, "azureml-byom:location", "required"),
        (
            {"tags": {"owner": "a", "costCenter": "b"}},
            "azureml-byom:tags.dataClassification",
            "required",
        ),
        (
            {"tags": {**VALID["tags"], "dataClassification": "secret"}},
            "azureml-byom:tags.dataClassification",
            "public, internal, confidential, restricted",
        ),
        (
            {"network": {"addressSpace": "10.0.0.0/33"}},
            "azureml-byom:network.addressSpace",
            "IPv4 CIDR",
        ),
        (
            {"network": {"privateEndpointSubnet": "192.168.0.0/24"}},
            "azureml-byom:network.privateEndpointSubnet",
            "inside addressSpace",
        ),
        ({"network": {"privat": False}}, "azureml-byom:network.privat", "known keys"),
        ({"workspace": {"registrySku": "Basic"}}, "azureml-byom:workspace.registrySku", "Premium"),
        (
            {"workspace": {"isolationMode": "Disabled"}},
            "azureml-byom:workspace.isolationMode",
            "when network.private",
        ),
        (
            {
                "tags": {**VALID["tags"], "dataClassification": "confidential"},
                "network": {"private": False},
                "workspace": {"isolationMode": "Disabled"},
            },
            "azureml-byom:network.private",
            "confidential",
        ),
        (
            {"identity": {"dataScientists": {"objectId": "not-a-guid", "type": "Group"}}},
            "azureml-byom:identity.dataScientists.objectId",
            "GUID",
        ),
        (
            {
                "identity": {
                    "invokers": [
                        {"objectId": "2b0e6d8a-4c1f-4f6e-9a53-0d1c2e3f4a5b", "type": "Robot"}
                    ]
                }
            },
            "azureml-byom:identity.invokers[0].type",
            "User, Group, ServicePrincipal",
        ),
        (
            {
                "compute": {
                    "instance": {
                        "assignedUserObjectId": "2b0e6d8a-4c1f-4f6e-9a53-0d1c2e3f4a5b",
                        "idleShutdownMinutes": 5,
                    }
                }
            },
            "azureml-byom:compute.instance.idleShutdownMinutes",
            "from 15 to 4320",
        ),
        (
            {"compute": {"instance": {"vmSize": "Standard_DS3_v2"}}},
            "azureml-byom:compute.instance.assignedUserObjectId",
            "required",
        ),
        ({"workload": "Has Spaces"}, "azureml-byom:workload", "lowercase"),
    ],
)
def test_invalid_config_fails_naming_the_key(changes: dict, key: str, fragment: str) -> None:
    """Each invalid value raises ConfigError with the full key, the value and the allowed set."""
    with pytest.raises(ConfigError) as caught:
        parse(**changes)
    assert caught.value.key == key
    assert key in str(caught.value)
    assert fragment in str(caught.value)


def test_settings_values_set_by_cli_as_strings_are_accepted() -> None:
    """`pulumi config set --path` stores booleans and numbers as strings."""
    settings = parse(
        network={"private": "false"},
        workspace={"isolationMode": "Disabled", "registrySku": "Basic"},
    )
    assert settings.network.private is False


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_parse(stack: str) -> None:
    """Pulumi.<stack>.yaml holds a valid configuration."""
    project, config = read_stack_config(stack)
    prefix = f"{project}:"
    values = {
        key[len(prefix) :]: (json.loads(v) if v[:1] in "{[" else v)
        for key, v in config.items()
        if key.startswith(prefix)
    }
    settings = parse_settings(values, stack=stack, project=project)
    assert settings.stack == stack


SCHEMA_FILE = REPO_ROOT / "infra" / "stack-config.schema.json"


def _schema_errors(document: Any) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_published_schema_is_up_to_date() -> None:
    """The committed JSON schema is exactly what the config models declare."""
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(committed)
    assert committed == stack_file_schema(), (
        "infra/stack-config.schema.json is stale: run "
        "`python -m infra.config > infra/stack-config.schema.json`"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_match_the_published_schema(stack: str) -> None:
    """Each Pulumi.<stack>.yaml validates against the published schema (as editors check it)."""
    document = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    assert _schema_errors(document) == []


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"network": {"privat": False}}, "config/azureml-byom:network"),
        ({"location": "eastus"}, "config/azureml-byom:location"),
        ({"workspace": {"logRetentionDays": 5}}, "config/azureml-byom:workspace/logRetentionDays"),
        ({"tags": {"owner": "a"}}, "config/azureml-byom:tags"),
    ],
)
def test_published_schema_refuses_what_the_config_refuses(changes: dict, path: str) -> None:
    """An unknown key, a value outside the allowed set or range, a missing key: both refuse."""
    values = {**copy.deepcopy(VALID), **changes}
    with pytest.raises(ConfigError):
        parse_settings(values, stack="dev")
    document = {"config": {f"azureml-byom:{k}": v for k, v in values.items()}}
    assert any(e.startswith(path) for e in _schema_errors(document)), _schema_errors(document)
