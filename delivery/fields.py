"""Field types for values read from stack files and built in code: checks that read well.

Specs (`delivery.spec`, `delivery.gate.GatePolicy`) and the stack config (`infra.config`) are
declared with these, so each bound is written once. Each type accepts a value the way
`pulumi config set` leaves it (booleans and numbers may arrive as strings) and, when the value is
wrong, says what is allowed in words (`an integer from 1 to 20`, `Minute, Hour, Day`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

# Specs: camelCase keys in stack files, snake_case names (and positions) in code.
SPEC_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
# A spec field that code sets but a stack file may not (kept out of the published schema too).
NotInStackFile = SkipJsonSchema


def invalid(allowed: str, at: str = "", value: Any = None) -> PydanticCustomError:
    """A validation error saying what is allowed; `at` names a key below the one validated."""
    return PydanticCustomError("config", "{allowed}", {"allowed": allowed, "at": at, "v": value})


def flag(value: Any) -> Any:
    """A boolean; `pulumi config set` stores `true`/`false` as strings."""
    value = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
    if not isinstance(value, bool):
        raise invalid("true, false")
    return value


def whole(lo: int, hi: int) -> Any:
    """An integer from `lo` to `hi` (not a bool, not a float)."""

    def check(value: Any) -> int:
        value = int(value) if isinstance(value, str) and value.isdigit() else value
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise invalid(f"an integer from {lo} to {hi}")
        return value

    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(check)]


def number(lo: float, hi: float) -> Any:
    """A number from `lo` to `hi`, as a float."""

    def check(value: Any) -> float:
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise invalid(f"a number from {lo:g} to {hi:g}")
        return float(value)

    return Annotated[float, Field(ge=lo, le=hi), BeforeValidator(check)]


def text(pattern: str | None = None, describe: str = "") -> Any:
    """A non-empty string, matching `pattern` when given (`describe` says what it is)."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise invalid(describe or "a non-empty string")
        if pattern is not None and not re.match(pattern, value):
            raise invalid(describe or pattern)
        return value

    return Annotated[str, Field(min_length=1, pattern=pattern), BeforeValidator(check)]


def one_of(*choices: Any, allowed: str = "") -> Any:
    """One of `choices`."""

    def check(value: Any) -> Any:
        if value not in choices or isinstance(value, bool):
            raise invalid(allowed or ", ".join(map(str, choices)))
        return value

    return Annotated[Literal[choices], BeforeValidator(check)]  # type: ignore[valid-type]


def items(ok: Callable[[Any], Any], allowed: str, each: bool = False) -> BeforeValidator:
    """A list whose items pass `ok`, as a tuple; `each`: errors show the bad item, not the list."""

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
HHMM = text(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "a 24-hour time such as '07:00'")
OrNone = AfterValidator(lambda v: v or None)  # 0 means "not set" for these keys


def known_keys(names: Mapping[str, Any], raw: Any) -> dict[str, Any]:
    """`raw` as a stack file holds it: a mapping of known keys, nulls meaning "not set"."""
    if not isinstance(raw, Mapping):
        raise invalid("an object (YAML mapping)")
    known = sorted(names)
    for key, value in raw.items():
        if key not in known:
            raise invalid("one of the known keys: " + ", ".join(known), at=str(key), value=value)
    return {k: v for k, v in raw.items() if v is not None}


def stack_keys(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Keys a stack file may set: each field's alias, unless it is `NotInStackFile`."""
    return {
        (f.alias or name): f
        for name, f in fields.items()
        if not any(isinstance(m, SkipJsonSchema) for m in f.metadata)
    }


@dataclass(frozen=True, config=SPEC_CONFIG)
class Spec:
    """Base of spec dataclasses: from a stack file (a mapping) only stack keys are accepted;
    code builds specs by name or position, as plain frozen dataclasses."""

    @model_validator(mode="before")
    @classmethod
    def _stack_file_keys(cls, raw: Any) -> Any:
        if isinstance(raw, Mapping):
            return known_keys(stack_keys(cls.__pydantic_fields__), raw)  # type: ignore[attr-defined]
        return raw


def first_error(exc: ValidationError) -> tuple[str, Any, str]:
    """The first error of `exc` as (dotted key path, value, what is allowed)."""
    error = exc.errors()[0]
    ctx = error.get("ctx") or {}
    loc = [*error["loc"], *str(ctx.get("at") or "").split(".")]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc if p != "")
    if error["type"] == "missing":
        return path.lstrip("."), None, "a value (the key is required)"
    value = ctx["v"] if ctx.get("v") is not None else error.get("input")
    return path.lstrip("."), value, ctx.get("allowed", error["msg"])


def check(field_type: Any, name: str, value: Any) -> None:
    """Check a value built in code (not read from a stack file) against a field type, so a bound
    is enforced by the same code either way; a ValueError names the field and what is allowed."""
    try:
        TypeAdapter(field_type).validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"{name} must be {first_error(exc)[2]}, got {value!r}") from None
