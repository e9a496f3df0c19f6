"""Components built from settings literals, each run alone under the mocks."""

from __future__ import annotations

import json

import pytest

from infra.naming import Namer
from infra.network import PRIVATE_DNS_ZONES, Network, NetworkArgs, PrivateLinkTarget
from infra.plan import main, run

NAMER = Namer("byom", "test", "abc123")
TAGS = {"environment": "test", "owner": "o", "costCenter": "c", "dataClassification": "internal"}


def test_network_declares_one_zone_per_needed_name_and_a_group_per_endpoint() -> None:
    """Zones are shared between endpoints; each endpoint's group lists all its zones."""

    def program() -> None:
        Network(
            "net",
            NetworkArgs(
                namer=NAMER,
                location="swedencentral",
                resource_group_name="rg",
                tags=TAGS,
                address_space="10.1.0.0/16",
                private_endpoint_subnet="10.1.0.0/24",
                targets=[
                    PrivateLinkTarget("workspace", "/ws", "amlworkspace", ("api", "notebooks")),
                    PrivateLinkTarget("blob", "/st", "blob", ("blob",)),
                ],
            ),
        )

    resources = run(program, stack="test", config={}).resources
    zones = {
        r.props["privateZoneName"]
        for r in resources
        if r.type == "azure-native:privatedns:PrivateZone"
    }
    assert zones == {PRIVATE_DNS_ZONES[k] for k in ("api", "notebooks", "blob")}
    links = [r for r in resources if r.type == "azure-native:privatedns:VirtualNetworkLink"]
    assert len(links) == 3
    assert all(r.props["registrationEnabled"] is False for r in links)
    groups = {r.name: r for r in resources if r.type == "azure-native:network:PrivateDnsZoneGroup"}
    assert len(groups["net-pep-workspace-dns"].props["privateDnsZoneConfigs"]) == 2


def test_plan_cli_summary_says_it_is_offline(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m infra.plan --summary` is honest about being a mock run and counts resources."""
    assert main(["--stack", "dev", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "Offline plan" in out
    assert "not a cloud preview" in out
    assert "azure-native:machinelearningservices:Workspace" in out


def test_plan_cli_json_lists_resources_with_parents(capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON form carries type, name, urn, parent and props for every resource."""
    assert main(["--stack", "prod", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["offline"] is True
    assert data["stack"] == "prod"
    first = data["resources"][0]
    assert {"type", "name", "urn", "parent_urn", "props", "custom"} <= set(first)


def test_plan_cli_runs_the_azure_rules_and_fails_on_a_finding(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m infra.plan` reports the rule set and exits 1 when Azure would refuse (the
    rule set itself runs on both stacks in test_azure_rules)."""
    from infra import azure_rules, plan

    checked: list[str] = []
    monkeypatch.setattr(plan, "check_rules", lambda stack: checked.append(stack) or [])
    assert main(["--stack", "prod", "--summary"]) == 0
    assert checked == ["prod"]
    assert "Azure rules" in capsys.readouterr().out
    finding = azure_rules.Finding("create-only", "workspace-registry", "zoneRedundancy changes")
    monkeypatch.setattr(plan, "check_rules", lambda stack: [finding])
    assert main(["--stack", "prod", "--summary"]) == 1
    assert "create-only: workspace-registry: zoneRedundancy changes" in capsys.readouterr().out
