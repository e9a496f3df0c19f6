"""The rules of `policy.rules` as CrossGuard `ResourceValidationPolicy` objects."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
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


def build_policies() -> list[ResourceValidationPolicy]:
    """One resource validation policy per rule, with its config schema."""
    return [
        ResourceValidationPolicy(
            name=spec.name,
            description=spec.description,
            validate=_validator(spec),
            config_schema=PolicyConfigSchema(properties=dict(spec.schema)) if spec.schema else None,
            remediation_steps=spec.remediation,
        )
        for spec in POLICIES
    ]
