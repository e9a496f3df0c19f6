"""Moved to `infra.rollout`: Pulumi code lives in `infra/`, and `delivery/` is plain Python.

Kept because stack state written before the move pickles the dynamic provider by reference to
this module (`delivery.pulumi_rollout.RolloutProvider`); `pulumi up` on such a stack must still
resolve it, to the very same class. New code imports `infra.rollout`.
"""

from infra.rollout import (
    Rollout,
    RolloutArgs,
    RolloutProvider,
    code_hash,
    connect,
    connect_alerts,
    connect_autoscale,
    rollout_props,
)

__all__ = [
    "Rollout",
    "RolloutArgs",
    "RolloutProvider",
    "code_hash",
    "connect",
    "connect_alerts",
    "connect_autoscale",
    "rollout_props",
]
