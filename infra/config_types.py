"""How the stack config is declared and checked: the model base, infra's own field types, and
`validate()`, which turns the first pydantic error into a `ConfigError` naming the full key, the
value and what is allowed. The shared field vocabulary is `delivery.fields` (specs use it too).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from delivery.fields import first_error, flag, invalid, known_keys, stack_keys, text


class ConfigError(ValueError):
    """A stack configuration value is missing or invalid."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        super().__init__(f"config {key} = {value!r} is invalid; allowed: {allowed}")


Cidr = Annotated[
    text(describe="an IPv4 CIDR such as 10.20.0.0/16"), AfterValidator(lambda v: cidr(v))
]
GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def cidr(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        raise invalid("an IPv4 CIDR such as 10.20.0.0/16") from None


def disabled_is_none(value: Any) -> Any:
    """An optional block with `enabled: false` is absent (and its other keys are not checked)."""
    if isinstance(value, Mapping) and value.get("enabled") is not None:
        return None if not flag(value["enabled"]) else value
    return value


class ConfigModel(BaseModel):
    """A config object (`azureml-byom:network`): camelCase keys, frozen, unknown keys refused."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, validate_default=False
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, raw: Any) -> Any:
        return known_keys(stack_keys(cls.model_fields), raw)


Toggle = BeforeValidator(disabled_is_none)


def validate(model: type[ConfigModel], raw: Any, key: str, context: Any = None) -> Any:
    """`model` from `raw`, or the first error as a ConfigError naming the full key under `key`."""
    try:
        return model.model_validate(raw if raw is not None else {}, context=context)
    except ValidationError as exc:
        path, value, allowed = first_error(exc)
        full = f"{key}{'' if key.endswith(':') or not path else '.'}{path}"
        raise ConfigError(full, value, allowed) from None


def file_schema(title: str, namespaces: Mapping[str, type[BaseModel]]) -> dict[str, Any]:
    """JSON schema of a Pulumi stack file whose `config:` holds each model's keys under its
    namespace (`azureml-byom:network`); other namespaces (providers) are left to their owners."""
    defs: dict[str, Any] = {}
    props: dict[str, Any] = {}
    required: list[str] = []
    for namespace, model in namespaces.items():
        schema = model.model_json_schema()
        defs.update(schema.pop("$defs", {}))
        props.update({f"{namespace}:{k}": v for k, v in schema["properties"].items()})
        if namespace == next(iter(namespaces)):
            required += [f"{namespace}:{k}" for k in schema.get("required", [])]
    others = "|".join(re.escape(n) for n in namespaces)
    config = {
        "type": "object",
        "properties": props,
        "required": required,
        "patternProperties": {f"^(?!({others}):)[A-Za-z0-9_.-]+:": {}},
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": {
            "config": config,
            "encryptionsalt": {"type": "string"},
            "secretsprovider": {"type": "string"},
        },
        "additionalProperties": False,
        "$defs": defs,
    }
