"""The dynamic provider: diffs on inputs, rolls out on create/update, serializes like Pulumi."""

from __future__ import annotations

import base64
import importlib
import io
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from delivery.autoscale import AutoscaleSpec
from delivery.fake import FakeWorkspace
from delivery.rollout import DeploymentSpec, RolloutPolicy, rollback
from infra import rollout as infra_rollout
from infra.rollout import (
    RolloutArgs,
    RolloutProvider,
    code_hash,
    rollout_props,
)
from tests.delivery.conftest import ENDPOINT, register_spec, write_tiny_model

REPO = Path(__file__).resolve().parents[2]


def _inputs(spec: DeploymentSpec, **changes) -> dict:
    props = {
        "subscription_id": "00000000-0000-0000-0000-000000000000",
        "resource_group_name": "rg-byom",
        "workspace_name": "mlw-byom",
        "endpoint_name": ENDPOINT,
        "deployment": spec.to_props(),
        "policy": RolloutPolicy(step_wait_s=0, poll_interval_s=0).to_props(),
    }
    props.update(changes)
    return props


def _as_pulumi_returns(props: dict) -> dict:
    # State comes back through JSON-ish protobuf structs: ints as floats, tuples as lists.
    return json.loads(json.dumps(props), parse_int=float)


@pytest.fixture
def provider(fake: FakeWorkspace) -> RolloutProvider:
    """A provider whose workspace is the fake."""
    return RolloutProvider(workspace_factory=lambda ref: fake)


@pytest.fixture
def spec(fake: FakeWorkspace, tiny_model: Path, code_dir: Path) -> DeploymentSpec:
    """A registered first version."""
    return register_spec(fake, tiny_model, code_dir)


def test_unchanged_inputs_diff_to_no_change(
    provider: RolloutProvider, spec: DeploymentSpec
) -> None:
    """Same inputs (even with Pulumi's float numbers) mean no update: nothing reaches Azure."""
    olds = _as_pulumi_returns(
        {**_inputs(spec), "live_deployment": "blue", "traffic": {"blue": 100}}
    )
    assert not provider.diff("id", olds, _inputs(spec)).changes


def test_a_new_model_is_an_update_and_a_new_endpoint_a_replacement(
    provider: RolloutProvider, spec: DeploymentSpec
) -> None:
    """Deployment changes update in place (blue/green inside); another endpoint replaces."""
    olds = _as_pulumi_returns(_inputs(spec))
    newer = DeploymentSpec.from_props({**spec.to_props(), "model": "azureml:tiny-llm:2"})
    update = provider.diff("id", olds, _inputs(newer))
    assert update.changes
    assert update.replaces == []
    moved = provider.diff("id", olds, _inputs(spec, endpoint_name="other-endpoint"))
    assert moved.replaces == ["endpoint_name"]


def test_create_rolls_out_and_exports_the_live_deployment(
    provider: RolloutProvider, spec: DeploymentSpec, fake: FakeWorkspace
) -> None:
    """create runs the rollout; outputs carry the live slot, its ARM id and the traffic."""
    result = provider.create(_inputs(spec))
    assert result.id.endswith(f"/workspaces/mlw-byom/onlineEndpoints/{ENDPOINT}")
    assert result.outs["live_deployment"] == "blue"
    assert result.outs["live_deployment_id"].endswith("/deployments/blue")
    assert result.outs["traffic"] == {"blue": 100}
    assert fake.traffic(ENDPOINT) == {"blue": 100}


def test_update_rolls_a_new_version_to_the_other_slot(
    provider: RolloutProvider,
    spec: DeploymentSpec,
    fake: FakeWorkspace,
    tmp_path: Path,
    code_dir: Path,
) -> None:
    """update with a new model version (as floats from state) moves traffic to green."""
    created = provider.create(_inputs(spec))
    newer = register_spec(fake, write_tiny_model(tmp_path / "v2", seed=7), code_dir)
    news = _as_pulumi_returns(_inputs(newer))
    updated = provider.update(created.id, _as_pulumi_returns(created.outs), news)
    assert updated.outs["live_deployment"] == "green"
    assert updated.outs["previous_deployment"] == "blue"
    assert fake.traffic(ENDPOINT) == {"green": 100, "blue": 0}


def test_delete_takes_traffic_off_and_removes_both_slots(
    provider: RolloutProvider, spec: DeploymentSpec, fake: FakeWorkspace
) -> None:
    """Destroying the resource leaves the endpoint empty for the infrastructure to delete."""
    created = provider.create(_inputs(spec))
    provider.delete(created.id, created.outs)
    assert fake.traffic(ENDPOINT) == {}
    assert fake.list_deployments(ENDPOINT) == []


def test_check_reports_an_invalid_spec_at_preview(
    provider: RolloutProvider, spec: DeploymentSpec
) -> None:
    """A bad deployment spec fails `pulumi preview`, naming the property."""
    bad = _inputs(spec)
    bad["deployment"] = {**bad["deployment"], "pattern": "classify"}
    failures = provider.check({}, bad).failures
    assert [f.property for f in failures] == ["deployment"]
    assert "classify" in failures[0].reason


def test_the_provider_serializes_without_a_client(provider: RolloutProvider) -> None:
    """The default provider pickles with Pulumi's serializer and holds no credentials or client."""
    serialized = serialize_provider(RolloutProvider())
    restored = dill.loads(base64.b64decode(serialized))
    assert isinstance(restored, RolloutProvider)
    assert len(serialized) < 4096


def test_props_carry_a_code_hash_that_follows_the_code(
    code_dir: Path, spec: DeploymentSpec
) -> None:
    """Editing the scoring code changes the inputs; bytecode caches do not."""
    args = RolloutArgs(
        "sub", "rg", "ws", ENDPOINT, DeploymentSpec.from_props({**spec.to_props(), "code_hash": ""})
    )
    before = rollout_props(args)["deployment"]["code_hash"]
    assert before == code_hash(code_dir)
    (code_dir / "__pycache__").mkdir()
    (code_dir / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"\0")
    assert rollout_props(args)["deployment"]["code_hash"] == before
    (code_dir / "score.py").write_text("def init():\n    pass\n")
    assert rollout_props(args)["deployment"]["code_hash"] != before


def test_the_resource_registers_under_pulumi_mocks_without_azure(tmp_path: Path) -> None:
    """A Rollout declared in a mocked program registers its inputs; no Azure call happens."""
    script = tmp_path / "program.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            import pulumi

            class Mocks(pulumi.runtime.Mocks):
                def new_resource(self, args):
                    print(json.dumps({"type": args.typ, "name": args.name,
                                      "endpoint": args.inputs.get("endpoint_name"),
                                      "pattern": args.inputs["deployment"]["pattern"],
                                      "code_hash": args.inputs["deployment"]["code_hash"]}))
                    return args.name + "_id", args.inputs
                def call(self, args):
                    return {}, None

            pulumi.runtime.set_mocks(Mocks(), preview=True)
            from infra.rollout import Rollout, RolloutArgs
            from delivery.rollout import DeploymentSpec

            @pulumi.runtime.test
            def declare():
                spec = DeploymentSpec(pattern="analyze", model="azureml:m:1",
                                      environment="azureml:e:1", instance_type="Standard_DS3_v2",
                                      code_dir=sys.argv[1])
                rollout = Rollout("analyze", RolloutArgs("sub", "rg", "ws", "ep-analyze", spec))
                return rollout.urn

            declare()
            """
        )
    )
    code = tmp_path / "scoring"
    code.mkdir()
    (code / "score.py").write_text("x = 1\n")
    completed = subprocess.run(
        [sys.executable, str(script), str(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    [registered] = [
        json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")
    ]
    assert registered["type"] == "pulumi-python:dynamic/byom:Rollout"
    assert registered["endpoint"] == "ep-analyze"
    assert registered["pattern"] == "analyze"
    assert registered["code_hash"] == code_hash(code)


SCALE = AutoscaleSpec(
    location="westeurope",
    min_instances=1,
    max_instances=3,
    default_instances=1,
    metric="CpuUtilizationPercentage",
)


@pytest.fixture
def scaled_provider(fake: FakeWorkspace) -> RolloutProvider:
    """A provider whose workspace, alerts and autoscale are the fake."""
    return RolloutProvider(
        workspace_factory=lambda ref: fake,
        alerts_factory=lambda ref: fake,
        autoscale_factory=lambda ref: fake,
    )


def test_refresh_after_a_manual_rollback_shows_the_drift(
    scaled_provider: RolloutProvider,
    spec: DeploymentSpec,
    fake: FakeWorkspace,
    tmp_path: Path,
    code_dir: Path,
) -> None:
    """`pulumi refresh` reads the real split and live slot; the next `up` is no longer a no-op."""
    created = scaled_provider.create(_inputs(spec, autoscale=SCALE.to_props()))
    newer = register_spec(fake, write_tiny_model(tmp_path / "v2", seed=7), code_dir)
    news = _as_pulumi_returns(_inputs(newer, autoscale=SCALE.to_props()))
    updated = scaled_provider.update(created.id, _as_pulumi_returns(created.outs), news)
    assert updated.outs["live_deployment"] == "green"
    assert scaled_provider.diff(created.id, _as_pulumi_returns(updated.outs), news).changes is False

    rollback(fake, ENDPOINT, autoscale=fake, sleep=lambda _: None)  # by hand, outside Pulumi

    read = scaled_provider.read(created.id, _as_pulumi_returns(updated.outs))
    assert read.id == created.id
    assert read.outs["live_deployment"] == "blue"
    assert read.outs["traffic"] == {"blue": 100, "green": 0}
    assert read.outs["live_deployment_id"].endswith("/deployments/blue")
    assert read.outs["previous_deployment"] == "green"
    assert read.outs["deployment"] == updated.outs["deployment"]  # inputs are left as declared
    diff = scaled_provider.diff(created.id, _as_pulumi_returns(read.outs), news)
    assert diff.changes is True  # the declared model is not what serves: up reconciles
    assert not diff.replaces

    reconciled = scaled_provider.update(created.id, _as_pulumi_returns(read.outs), news)
    assert reconciled.outs["live_deployment"] == "green"
    assert fake.traffic(ENDPOINT)["green"] == 100
    assert fake.autoscaled(ENDPOINT, "green")


def test_refresh_of_a_deleted_endpoint_drops_the_resource(
    provider: RolloutProvider, spec: DeploymentSpec, fake: FakeWorkspace
) -> None:
    created = provider.create(_inputs(spec))
    del fake.endpoints[ENDPOINT]
    assert provider.read(created.id, _as_pulumi_returns(created.outs)).id is None


def test_the_provider_gives_the_live_slot_its_own_autoscale(
    scaled_provider: RolloutProvider, spec: DeploymentSpec, fake: FakeWorkspace
) -> None:
    created = scaled_provider.create(_inputs(spec, autoscale=SCALE.to_props()))
    assert fake.autoscaled(ENDPOINT, created.outs["live_deployment"])


def _staged(spec: DeploymentSpec, **changes) -> dict:
    policy = RolloutPolicy(step_wait_s=0, poll_interval_s=0, release="stage").to_props()
    return _inputs(spec, policy=policy, **changes)


def test_in_stage_mode_pulumi_up_declares_and_the_release_job_rolls_out(
    provider: RolloutProvider,
    spec: DeploymentSpec,
    fake: FakeWorkspace,
    tmp_path: Path,
    code_dir: Path,
) -> None:
    """`pulumi up` returns at once without touching traffic; `delivery release` does the work."""
    from delivery import __main__ as delivery_cli

    fake.mutations.clear()
    created = provider.create(_staged(spec))
    assert fake.traffic(ENDPOINT) == {}
    assert fake.mutations == []
    assert created.outs["live_deployment"] is None
    assert created.outs["deployment"] == spec.to_props()

    out = io.StringIO()
    outputs = {"releases": {"generate": _as_pulumi_returns(created.outs)}}
    status = delivery_cli.main(
        ["release", "--stack", "prod"],
        workspace_factory=lambda ref: fake,
        out=out,
        autoscale_factory=lambda ref: fake,
        outputs_reader=lambda stack: outputs,
    )
    assert status == 0
    assert "generate: released on blue" in out.getvalue()
    assert fake.traffic(ENDPOINT) == {"blue": 100}

    # A new version: `up` records it (traffic untouched), refresh shows what really serves.
    newer = register_spec(fake, write_tiny_model(tmp_path / "v2", seed=7), code_dir)
    updated = provider.update(created.id, _as_pulumi_returns(created.outs), _staged(newer))
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    assert updated.outs["live_deployment"] == "blue"
    assert updated.outs["deployment"] == newer.to_props()
    diff = provider.diff(created.id, _as_pulumi_returns(updated.outs), _staged(newer))
    assert diff.changes is True  # declared but not yet serving: the plan says so


def test_state_written_before_the_move_still_finds_the_provider() -> None:
    """Stack state pickles the provider by reference to `delivery.pulumi_rollout`: that path
    must keep resolving, to the very same class and functions as `infra.rollout`."""
    old = importlib.import_module("delivery.pulumi_rollout")
    for name in old.__all__:
        assert getattr(old, name) is getattr(infra_rollout, name), name
    # The reference as an old state blob holds it (a pickle GLOBAL: module, then name).
    assert pickle.loads(b"cdelivery.pulumi_rollout\nRolloutProvider\n.") is RolloutProvider
    restored = dill.loads(dill.dumps(old.RolloutProvider()))
    assert type(restored) is RolloutProvider


def test_delivery_is_plain_python_without_pulumi() -> None:
    """Only the compatibility module in delivery/ mentions Pulumi; the rest imports without it."""
    offenders = [
        path.name
        for path in (REPO / "delivery").glob("*.py")
        if path.name != "pulumi_rollout.py" and "import pulumi" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
