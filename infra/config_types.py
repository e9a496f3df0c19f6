"""The vocabulary the stack config is declared in: pydantic field types whose errors read well.

Each type checks its value the way `pulumi config set` leaves it (booleans and numbers may
arrive as strings) and, when the value is wrong, says what is allowed in words (`an integer from
1 to 20`, `public, internal, confidential, restricted`). `validate()` turns the first pydantic
error into a `ConfigError` naming the full key, the value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A stack configuration value is missing or invalid."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        super().__init__(f"config {key} = {value!r} is invalid; allowed: {allowed}")


def invalid(allowed: str, at: str = "", value: Any = None) -> PydanticCustomError:
    """A validation error saying what is allowed; `at` names a key below the one validated."""
    return PydanticCustomError("config", "{allowed}", {"allowed": allowed, "at": at, "v": value})


def flag(value: Any) -> Any:
    # Values set with `pulumi config set` arrive as strings.
    value = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
    if not isinstance(value, bool):
        raise invalid("true, false")
    return value


def whole(lo: int, hi: int) -> Any:
    def check(value: Any) -> int:
        value = int(value) if isinstance(value, str) and value.isdigit() else value
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise invalid(f"an integer from {lo} to {hi}")
        return value

    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(check)]


def number(lo: float, hi: float) -> Any:
    def check(value: Any) -> float:
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise invalid(f"a number from {lo:g} to {hi:g}")
        return float(value)

    return Annotated[float, Field(ge=lo, le=hi), BeforeValidator(check)]


def text(pattern: str | None = None, describe: str = "") -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise invalid(describe or "a non-empty string")
        if pattern is not None and not re.match(pattern, value):
            raise invalid(describe or pattern)
        return value

    return Annotated[str, Field(min_length=1, pattern=pattern), BeforeValidator(check)]


def one_of(*choices: Any, allowed: str = "") -> Any:
    def check(value: Any) -> Any:
        if value not in choices or isinstance(value, bool):
            raise invalid(allowed or ", ".join(map(str, choices)))
        return value

    return Annotated[Literal[choices], BeforeValidator(check)]  # type: ignore[valid-type]


def items(ok: Any, allowed: str, each: bool = False) -> Any:
    """A list whose items pass `ok`; `each`: the error shows the bad item, not the list."""

    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise invalid("a list")
        for item in value:
            if not ok(item):
                raise invalid(allowed, value=item if each else value)
        return tuple(value)

    return BeforeValidator(check)


Flag = Annotated[bool, BeforeValidator(flag)]
Text = text()
Cidr = Annotated[
    text(describe="an IPv4 CIDR such as 10.20.0.0/16"), AfterValidator(lambda v: cidr(v))
]
HHMM = text(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "a 24-hour time such as '07:00'")
OrNone = AfterValidator(lambda v: v or None)  # 0 means "not set" for these keys


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
        if not isinstance(raw, Mapping):
            raise invalid("an object (YAML mapping)")
        known = sorted(f.alias or name for name, f in cls.model_fields.items())
        for key, value in raw.items():
            if key not in known:
                raise invalid(
                    "one of the known keys: " + ", ".join(known), at=str(key), value=value
                )
        # A key set to null is the same as a key left out: its default applies.
        return {k: v for k, v in raw.items() if v is not None}


Toggle = BeforeValidator(disabled_is_none)


def _path(loc: list[Any]) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc if p != ""]
    return "".join(parts).lstrip(".")


def validate(model: type[ConfigModel], raw: Any, key: str) -> Any:
    """`model` from `raw`, or the first error as a ConfigError naming the full key under `key`."""
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        error = exc.errors()[0]
        ctx = error.get("ctx") or {}
        loc = [*error["loc"], *str(ctx.get("at") or "").split(".")]
        if error["type"] == "missing":
            allowed, value = "a value (the key is required)", None
        else:
            allowed = ctx.get("allowed", error["msg"])
            value = ctx["v"] if ctx.get("v") is not None else error.get("input")
        path = _path(loc)
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
