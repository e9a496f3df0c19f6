"""The rules of `policy.rules` as CrossGuard `ResourceValidationPolicy` objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.rules import POLICIES, PolicySpec

PACK_NAME = "azureml-byom-policies"
# Secure by default: a stack's config file (policy/config.<stack>.json) may relax a policy.
DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY


def _validator(spec: PolicySpec):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for reason in spec.check(args.resource_type, args.props, args.get_config()):
            report_violation(reason, None)

    return validate


@dataclass(frozen=True)
class _Resource:
    """CrossGuard's `PolicyResource` as stack rules read it (`policy.rules.StackResource`)."""

    type: str
    name: str
    urn: str
    props: Any
    protect: bool


def _stack_validator(spec: PolicySpec):
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            _Resource(r.resource_type, r.name, r.urn, r.props, bool(r.opts.protect))
            for r in args.resources
        ]
        for resource, reason in spec.check_stack(resources, args.get_config()):
            report_violation(reason, resource.urn if resource else None)

    return validate


def build_policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """One resource (or stack) validation policy per rule, with its config schema."""
    policies: list[ResourceValidationPolicy | StackValidationPolicy] = []
    for spec in POLICIES:
        schema = PolicyConfigSchema(properties=dict(spec.schema)) if spec.schema else None
        if spec.stack_rule is not None:
            policies.append(
                StackValidationPolicy(
                    name=spec.name,
                    description=spec.description,
                    validate=_stack_validator(spec),
                    config_schema=schema,
                    remediation_steps=spec.remediation,
                )
            )
        else:
            policies.append(
                ResourceValidationPolicy(
                    name=spec.name,
                    description=spec.description,
                    validate=_validator(spec),
                    config_schema=schema,
                    remediation_steps=spec.remediation,
                )
            )
    return policies
