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
        # A stack rule sees every resource at once; any other rule sees one resource at a time.
        policy, validate = (
            (StackValidationPolicy, _stack_validator(spec))
            if spec.stack_rule is not None
            else (ResourceValidationPolicy, _validator(spec))
        )
        policies.append(
            policy(
                name=spec.name,
                description=spec.description,
                validate=validate,
                config_schema=schema,
                remediation_steps=spec.remediation,
            )
        )
    return policies
