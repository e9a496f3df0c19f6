"""Model packaging: validation, content hash, hash-derived versions, real Model entities."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Model

from delivery.fake import FakeWorkspace
from delivery.packaging import (
    AssetConflictError,
    HubModel,
    LocalFolder,
    ModelValidationError,
    package_model,
    parse_source,
    register_model,
    version_from_hash,
)

COMMIT = "a" * 40


def test_same_bytes_in_another_folder_hash_the_same(tiny_model: Path, tmp_path: Path) -> None:
    """The hash depends on relative paths and bytes, not on where the folder lives."""
    copy = shutil.copytree(tiny_model, tmp_path / "elsewhere" / "copy")
    first = package_model("tiny", LocalFolder(tiny_model))
    second = package_model("tiny", LocalFolder(copy))
    assert first.content_hash == second.content_hash
    assert first.content_hash.startswith("sha256:")
    assert len(first.content_hash) == 71
    assert first.version == version_from_hash(first.content_hash) == first.content_hash[7:23]


def test_packaging_twice_registers_one_version(tiny_model: Path, fake: FakeWorkspace) -> None:
    """Registering the same bytes again finds the existing version and uploads nothing."""
    first = register_model(fake, package_model("tiny", LocalFolder(tiny_model)))
    second = register_model(fake, package_model("tiny", LocalFolder(tiny_model)))
    assert first.created
    assert not second.created
    assert first.version == second.version
    assert list(fake.models) == [("tiny", first.version)]
    assert [m for m in fake.mutations if m[0] == "create_model"] == [
        ("create_model", "tiny", first.version)
    ]


def test_one_changed_byte_makes_a_new_version(tiny_model: Path, fake: FakeWorkspace) -> None:
    """Flipping one byte of the weights changes the hash and registers a second version."""
    first = register_model(fake, package_model("tiny", LocalFolder(tiny_model)))
    weights = tiny_model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    second = register_model(fake, package_model("tiny", LocalFolder(tiny_model)))
    assert second.created
    assert second.version != first.version
    assert len(fake.models) == 2


def test_renaming_a_file_changes_the_hash(tiny_model: Path) -> None:
    """Paths are part of the hash: moving bytes to another name is different content."""
    before = package_model("tiny", LocalFolder(tiny_model)).content_hash
    (tiny_model / "tokenizer_config.json").rename(tiny_model / "special_tokens_map.json")
    assert package_model("tiny", LocalFolder(tiny_model)).content_hash != before


@pytest.mark.parametrize(
    "names", [["pytorch_model.bin"], ["weights.pt", "optimizer.pth"], ["sub/extra.pkl", "x.ckpt"]]
)
def test_pickle_weights_are_refused_by_name(tiny_model: Path, names: list[str]) -> None:
    """Any pickle file is refused, and the message names every one of them."""
    for name in names:
        (tiny_model / name).parent.mkdir(parents=True, exist_ok=True)
        (tiny_model / name).write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelValidationError, match="pickle weights") as error:
        package_model("tiny", LocalFolder(tiny_model))
    for name in names:
        assert name in str(error.value)


def test_a_pickle_only_folder_is_refused_before_anything_else(tmp_path: Path) -> None:
    """A classic PyTorch checkpoint folder gets the pickle message, not a missing-file one."""
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ModelValidationError, match=r"pickle weights.*pytorch_model\.bin"):
        package_model("old", LocalFolder(folder))


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("config.json", "no config.json"),
        ("tokenizer.json", "no tokenizer"),
        ("model.safetensors", "no \\*.safetensors weights"),
    ],
)
def test_incomplete_folders_are_refused(tiny_model: Path, remove: str, message: str) -> None:
    """Config, tokenizer and safetensors weights are all required."""
    (tiny_model / remove).unlink()
    with pytest.raises(ModelValidationError, match=message):
        package_model("tiny", LocalFolder(tiny_model))


def test_unknown_files_and_git_history_are_refused(tiny_model: Path) -> None:
    """Only model files are packaged: code, other weight formats and .git are refused."""
    (tiny_model / "modeling_custom.py").write_text("import os")
    (tiny_model / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelValidationError, match=r"model\.gguf, modeling_custom\.py"):
        package_model("tiny", LocalFolder(tiny_model))
    for name in ("modeling_custom.py", "model.gguf"):
        (tiny_model / name).unlink()
    (tiny_model / ".git").mkdir()
    with pytest.raises(ModelValidationError, match=r"\.git"):
        package_model("tiny", LocalFolder(tiny_model))


def test_a_git_lfs_pointer_is_not_safetensors(tiny_model: Path) -> None:
    """A weights file that is really a Git LFS pointer fails validation with a hint."""
    (tiny_model / "model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n"
    )
    with pytest.raises(ModelValidationError, match="Git LFS pointer"):
        package_model("tiny", LocalFolder(tiny_model))


def test_a_shard_index_must_name_existing_shards(tiny_model: Path) -> None:
    """A sharded checkpoint whose index names a missing shard is refused."""
    (tiny_model / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}'
    )
    with pytest.raises(ModelValidationError, match=r"model-00002-of-00002\.safetensors"):
        package_model("tiny", LocalFolder(tiny_model))


def test_hub_sources_need_a_commit_sha() -> None:
    """A branch or tag name is not a pinned revision."""
    with pytest.raises(ValueError, match="commit"):
        HubModel("HuggingFaceTB/SmolLM2-135M-Instruct", "main")
    with pytest.raises(ValueError, match="pinned commit"):
        parse_source("hf:HuggingFaceTB/SmolLM2-135M-Instruct")
    source = parse_source(f"hf:HuggingFaceTB/SmolLM2-135M-Instruct@{COMMIT}")
    assert source == HubModel("HuggingFaceTB/SmolLM2-135M-Instruct", COMMIT)


def test_hub_model_goes_through_the_download_seam(tiny_model: Path) -> None:
    """A hub source is fetched by the downloader at its commit and tagged with it."""
    calls = []

    def download(repo_id: str, revision: str) -> Path:
        calls.append((repo_id, revision))
        return tiny_model

    packaged = package_model("smol", HubModel("org/smol", COMMIT), download=download)
    assert calls == [("org/smol", COMMIT)]
    model = packaged.to_model()
    assert model.tags == {
        "contentHash": packaged.content_hash,
        "source": "hf:org/smol",
        "revision": COMMIT,
    }


def test_the_model_entity_is_a_custom_model_with_hash_tags(tiny_model: Path) -> None:
    """The entity handed to azure-ai-ml is a real custom_model asset pointing at the folder."""
    packaged = package_model("tiny-llm", LocalFolder(tiny_model))
    model = packaged.to_model()
    assert isinstance(model, Model)
    assert model.type == AssetTypes.CUSTOM_MODEL == "custom_model"
    assert (model.name, model.version) == ("tiny-llm", packaged.version)
    assert Path(model.path) == tiny_model.resolve()
    assert model.tags["contentHash"] == packaged.content_hash
    assert model.tags["source"] == "local:tiny-llm"
    assert model.tags["revision"] == ""
    assert packaged.asset_id == f"azureml:tiny-llm:{packaged.version}"


def test_a_version_holding_other_bytes_is_a_conflict(tiny_model: Path, tmp_path: Path) -> None:
    """If the service holds the version with another hash tag, registration stops."""
    workspace = FakeWorkspace()
    packaged = package_model("tiny", LocalFolder(tiny_model))
    impostor = packaged.to_model()
    impostor.tags["contentHash"] = "sha256:" + "0" * 64
    workspace.create_model(impostor)
    with pytest.raises(AssetConflictError, match="must never change its bytes"):
        register_model(workspace, packaged)


@pytest.mark.slow
def test_the_demo_model_packages_to_one_version(tmp_path: Path) -> None:
    """The real SmolLM2 demo folder validates, and packaging it twice registers one version."""
    demo = Path(
        os.environ.get(
            "DEMO_MODEL_DIR", Path.home() / ".cache" / "azureml-byom" / "smollm2-135m-instruct"
        )
    )
    if not (demo / "config.json").is_file():
        pytest.skip(f"demo model not built at {demo} (run `make model`)")
    workspace = FakeWorkspace()  # no storage: the fake references the folder instead of copying
    first = register_model(workspace, package_model("smollm2-135m-instruct", LocalFolder(demo)))
    second = register_model(workspace, package_model("smollm2-135m-instruct", LocalFolder(demo)))
    assert first.created
    assert not second.created
    assert first.version == second.version
    assert len(workspace.models) == 1
    # a tampered copy is a new version
    copy = shutil.copytree(demo, tmp_path / "demo-copy")
    with (copy / "config.json").open("a") as handle:
        handle.write(" ")
    third = register_model(workspace, package_model("smollm2-135m-instruct", LocalFolder(copy)))
    assert third.created
    assert third.version != first.version
