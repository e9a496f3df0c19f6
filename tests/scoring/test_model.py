"""Model loading: Azure ML mount layout, safetensors only, device choice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from scoring.model import ModelLoadError, find_model_folder, load_model, pick_device


def test_loads_a_local_folder_on_cpu_in_fp32(tiny_model_dir: Path) -> None:
    lm = load_model(str(tiny_model_dir), device="cpu")
    assert lm.device.type == "cpu"
    assert lm.model.dtype == torch.float32
    assert lm.model.config._attn_implementation == "sdpa"
    assert lm.tokenizer.padding_side == "left"
    assert lm.context_length == 256


def test_azureml_mount_has_the_model_one_level_down(tiny_model_dir: Path, tmp_path: Path) -> None:
    # AZUREML_MODEL_DIR=/var/azureml-app/azureml-models/<name>/<version>/<uploaded folder>/
    mounted = tmp_path / "azureml-models" / "smollm" / "3"
    shutil.copytree(tiny_model_dir, mounted / "model")
    assert find_model_folder(mounted) == mounted / "model"
    assert load_model(str(mounted), device="cpu").vocab_size > 0


def test_a_mount_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        find_model_folder(tmp_path)


def test_pickle_only_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelLoadError, match=r"only pickle weights \(pytorch_model.bin\)"):
        load_model(str(folder), device="cpu")


def test_cuda_requested_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ModelLoadError, match="no GPU"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"
