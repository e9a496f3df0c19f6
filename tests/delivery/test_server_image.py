"""The OpenAI-compatible server's custom-container environment and deployments that use it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from starlette.routing import Route

from delivery.codeasset import SCORING_DIR, server_files
from delivery.environment import (
    BASE_IMAGE,
    INFERENCE_CONFIG,
    SERVER_DIR,
    SERVER_ENTRY,
    SERVER_PORT,
    ServerImageSpec,
    register_environment,
)
from delivery.fake import FakeWorkspace
from delivery.rollout import DeploymentSpec, RolloutPolicy
from delivery.workspace import deployment_entity
from scoring.serve import OpenAIServer, create_app
from tests.delivery.conftest import ENDPOINT, deploy, register_spec

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-scoring.txt"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.strip().partition("==")
            pins[name.lower()] = version
    return pins


def test_the_server_pins_agree_with_the_scoring_group() -> None:
    server = _pins(SERVER_DIR / "requirements.txt")
    assert {"starlette", "sse-starlette", "uvicorn", "prometheus-client"} <= server.keys()
    required = _pins(REQUIREMENTS)
    for name, version in server.items():
        assert required.get(name) == version, f"{name}: {version} vs requirements-scoring.txt"


def test_the_build_context_is_staged_with_a_concrete_base_image(tmp_path: Path) -> None:
    context = ServerImageSpec().stage(tmp_path)
    dockerfile = (context / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={BASE_IMAGE}\n" in dockerfile
    assert (context / "inference-gpu.conda.yaml").is_file()
    assert (context / "requirements.txt").is_file()
    assert (context / "scoring" / "serve.py").is_file()
    # The container's command serves on the port the inference_config names.
    assert '"scoring.serve", "--host", "0.0.0.0", "--port", "8000"' in dockerfile
    assert f"EXPOSE {SERVER_PORT}" in dockerfile


def test_the_environment_is_a_custom_container_with_its_routes() -> None:
    spec = ServerImageSpec()
    with spec.staged() as environment:
        assert Path(environment.build.path, "Dockerfile").is_file()
        assert environment.inference_config == INFERENCE_CONFIG
        assert environment.version == spec.version
        assert environment.tags == {"specHash": spec.spec_hash}
    assert not Path(environment.build.path).exists()  # the staging folder is cleaned up
    assert INFERENCE_CONFIG["scoring_route"] == {"port": 8000, "path": "/"}


def test_the_probe_routes_are_routes_of_the_server() -> None:
    """Each route the inference_config names is a GET route the app serves."""
    app = create_app(OpenAIServer(load=lambda: None))  # type: ignore[arg-type, return-value]
    gets = {r.path for r in app.routes if isinstance(r, Route) and "GET" in (r.methods or ())}
    for route in ("liveness_route", "readiness_route"):
        assert INFERENCE_CONFIG[route]["path"] in gets
    posts = {r.path for r in app.routes if isinstance(r, Route) and "POST" in (r.methods or ())}
    assert {"/", "/score", "/v1/chat/completions", "/v1/completions"} <= posts


def test_a_code_change_is_a_new_image_version(tmp_path: Path) -> None:
    scoring = shutil.copytree(
        SCORING_DIR, tmp_path / "scoring", ignore=shutil.ignore_patterns("__pycache__")
    )
    before = ServerImageSpec(scoring_dir=scoring).version
    assert before == ServerImageSpec().version
    (scoring / "serve.py").write_text((scoring / "serve.py").read_text() + "\n# changed\n")
    assert ServerImageSpec(scoring_dir=scoring).version != before
    assert ServerImageSpec(image=BASE_IMAGE + "-other").version != before


def test_the_image_holds_only_the_files_that_serve(tmp_path: Path) -> None:
    """The same rule as the code asset: the server's entry module and what it imports."""
    package = ServerImageSpec().stage(tmp_path) / "scoring"
    staged = sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file())
    assert staged == list(server_files(SCORING_DIR, SERVER_ENTRY))
    assert "serve.py" in staged
    assert not {"client.py", "cli.py", "report.py", "demo.py", "local_server.py"} & set(staged)
    dockerfile = (package.parent / "Dockerfile").read_text()
    assert f'"scoring.{SERVER_ENTRY.removesuffix(".py")}"' in dockerfile


def test_the_staged_server_imports_only_from_the_image(tmp_path: Path) -> None:
    """`python -m scoring.serve` in the build context finds every module it imports there."""
    context = ServerImageSpec().stage(tmp_path)
    probe = (
        "import json, sys, scoring.serve, scoring.engines, scoring.vllm_engine\n"
        "print(json.dumps({n: m.__file__ for n, m in sys.modules.items()"
        " if n.split('.')[0] == 'scoring'}))"
    )
    env = {**os.environ, "PYTHONPATH": str(context)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=context, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert "scoring.serve" in loaded
    for name, path in loaded.items():
        assert Path(path).is_relative_to(context), f"{name} came from {path}"


def test_editing_the_client_or_report_keeps_the_image_version(tmp_path: Path) -> None:
    scoring = shutil.copytree(
        SCORING_DIR, tmp_path / "scoring", ignore=shutil.ignore_patterns("__pycache__")
    )
    before = ServerImageSpec(scoring_dir=scoring).version
    for tool in ("report.py", "client.py", "cli.py", "demo.py"):
        (scoring / tool).write_text((scoring / tool).read_text() + "\n# changed\n")
    assert ServerImageSpec(scoring_dir=scoring).version == before


def test_a_dockerfile_without_the_base_image_argument_is_refused(tmp_path: Path) -> None:
    server_dir = shutil.copytree(SERVER_DIR, tmp_path / "server")
    dockerfile = server_dir / "Dockerfile"
    dockerfile.write_text(re.sub(r"ARG BASE_IMAGE\n", "", dockerfile.read_text()))
    with pytest.raises(ValueError, match="ARG BASE_IMAGE"):
        ServerImageSpec(server_dir=server_dir).stage(tmp_path / "context")


def test_an_openai_deployment_runs_the_image_without_a_code_asset(
    fake: FakeWorkspace, tiny_model: Path, code_dir: Path
) -> None:
    image = register_environment(fake, ServerImageSpec())
    spec = register_spec(fake, tiny_model, code_dir, environment=image.asset_id, server="openai")
    entity = deployment_entity(spec, ENDPOINT, "blue")
    assert entity.code_configuration is None
    policy = RolloutPolicy(traffic_steps=(100,), step_wait_s=0, poll_interval_s=0)
    result = deploy(fake, spec, policy)
    assert fake.traffic(ENDPOINT) == {result.live: 100}


def test_the_service_refuses_a_scriptless_deployment_on_a_conda_environment(
    fake: FakeWorkspace, tiny_model: Path, code_dir: Path
) -> None:
    """Without inference_config Azure ML's server runs the image and needs a scoring script."""
    spec = register_spec(fake, tiny_model, code_dir, server="openai")
    with pytest.raises(HttpResponseError, match="inference_config"):
        fake.begin_create_or_update_deployment(deployment_entity(spec, ENDPOINT, "blue"))


def test_the_default_server_keeps_existing_fingerprints(
    fake: FakeWorkspace, tiny_model: Path, code_dir: Path
) -> None:
    spec = register_spec(fake, tiny_model, code_dir)
    assert spec.server == "azmlinfsrv"
    props = spec.to_props()
    props.pop("server")
    assert DeploymentSpec.from_props(props).fingerprint() == spec.fingerprint()
    openai = DeploymentSpec.from_props({**spec.to_props(), "server": "openai"})
    assert openai.fingerprint() != spec.fingerprint()
    with pytest.raises(ValueError, match="server must be one of"):
        DeploymentSpec.from_props({**spec.to_props(), "server": "vllm"})
