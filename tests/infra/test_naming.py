"""The naming helper keeps every name inside Azure's rules and stable across runs."""

from __future__ import annotations

import re

import pytest

from infra.naming import InvalidNameError, Kind, Namer, unique_suffix


def test_suffix_is_deterministic_and_differs_per_stack() -> None:
    """The same organization/project/stack always gives the same suffix; stacks differ."""
    assert unique_suffix("org", "azureml-byom", "dev") == unique_suffix(
        "org", "azureml-byom", "dev"
    )
    assert unique_suffix("org", "azureml-byom", "dev") != unique_suffix(
        "org", "azureml-byom", "prod"
    )


@pytest.mark.parametrize("kind", [k for k in Kind if k.value.abbreviation])
def test_every_kind_fits_its_length_limit_even_with_a_long_qualifier(kind: Kind) -> None:
    """Long qualifiers are trimmed, never the abbreviation or the suffix."""
    namer = Namer("byomllm", "production", "a1b2c3")
    name = namer.name(kind, "a-very-long-qualifier-for-testing")
    rule = kind.value
    assert rule.min_length <= len(name) <= rule.max_length, name
    assert name.startswith(rule.abbreviation), name
    if rule.suffixed:
        assert name.endswith("a1b2c3"), name


def test_storage_account_names_are_lowercase_alphanumeric() -> None:
    """Storage accounts allow 3-24 lowercase letters and digits only."""
    name = Namer("ByOm", "dev", "a1b2c3").name(Kind.STORAGE_ACCOUNT, "model_data")
    assert re.fullmatch(r"[a-z0-9]{3,24}", name), name


def test_key_vault_names_have_no_double_hyphen_and_fit_24() -> None:
    """Key vault names: 3-24 characters, letters, digits and single hyphens."""
    name = Namer("byom", "dev", "a1b2c3").name(Kind.KEY_VAULT, "x")
    assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]", name)
    assert "--" not in name


def test_plain_rejects_a_name_that_breaks_the_rules() -> None:
    """Names chosen elsewhere are checked too; the message names the type and the name."""
    with pytest.raises(InvalidNameError, match="online_endpoint name '1abc'"):
        Namer("byom", "dev", "a1b2c3").plain(Kind.ONLINE_ENDPOINT, "1abc")
