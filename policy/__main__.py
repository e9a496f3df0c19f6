"""CrossGuard entry point: `pulumi preview --policy-pack policy --policy-pack-config ...`.

Pulumi runs this file from the `policy/` directory; the repository root goes on the path so the
pack imports `policy.rules` exactly as the tests and `python -m policy.check` do.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policy.pack import DEFAULT_ENFORCEMENT, PACK_NAME, build_policies

PolicyPack(
    name=PACK_NAME,
    enforcement_level=DEFAULT_ENFORCEMENT,
    policies=build_policies(),
    description="Azure ML bring-your-own-model platform: network isolation, auth, RBAC, cost.",
    provider="azure",
)
