"""Load a causal language model once: local folder, Azure ML model mount, or hub id.

GPU when available (bf16, SDPA attention), CPU otherwise (fp32: bf16 matmuls are slow on most
CPUs). Weights load from safetensors only; a folder that offers only pickle weights is refused,
because unpickling runs arbitrary code from the model's author.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class ModelLoadError(RuntimeError):
    """The model source cannot be served; the message says why."""


@dataclass(frozen=True)
class LoadedModel:
    """A model, its tokenizer and where they run. Shared read-only by all requests."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    context_length: int
    name: str

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])


@dataclass(frozen=True)
class ModelInfo:
    """What the service needs of a model an engine loads itself (vLLM): no weights in this process.

    ``source`` is the checked local folder or the hub id; ``revision`` pins a hub id.
    """

    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    context_length: int
    name: str
    source: str
    revision: str | None = None

    def within(self, context_length: int) -> ModelInfo:
        """The same model served with a shorter context (the engine's own limit)."""
        return replace(self, context_length=min(context_length, self.context_length))


def find_model_folder(root: Path) -> Path:
    """The folder holding ``config.json``: ``root`` itself or one level below.

    Azure ML mounts a registered model at ``AZUREML_MODEL_DIR/<uploaded folder name>/``, so the
    files sit one level below the mount point.
    """
    if (root / "config.json").is_file():
        return root
    candidates = sorted(p.parent for p in root.glob("*/config.json"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelLoadError(f"no config.json in {root} or its subfolders")
    raise ModelLoadError(f"several model folders in {root}: {[str(c) for c in candidates]}")


def check_safetensors_only(folder: Path) -> None:
    """Refuse folders whose weights are pickles; safetensors cannot run code when loaded."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{folder} has only pickle weights ({', '.join(pickles)}); convert them to safetensors"
        )
    raise ModelLoadError(f"{folder} has no *.safetensors weights")


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` means the first GPU when one is visible."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {requested!r} requested but no GPU is visible")
    return device


def _attention_implementation(device: torch.device) -> str:
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def _locate(source: str, revision: str | None) -> tuple[str, str | None]:
    """A local folder (checked for safetensors; no revision) or the hub id and its revision."""
    path = Path(source).expanduser()
    if path.exists():
        path = find_model_folder(path)
        check_safetensors_only(path)
        return str(path), None
    return source, revision


def _tokenizer(location: str, revision: str | None) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
    if tokenizer.pad_token_id is None:
        # Batching left-pads; any id works because padded positions are masked out.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _context_length(config: object, tokenizer: PreTrainedTokenizerBase) -> int:
    return int(getattr(config, "max_position_embeddings", 0) or tokenizer.model_max_length)


def load_model_info(source: str, *, revision: str | None = None, device: str = "auto") -> ModelInfo:
    """Tokenizer and config only, checked like :func:`load_model`, for an engine that loads
    the weights itself."""
    location, revision = _locate(source, revision)
    tokenizer = _tokenizer(location, revision)
    config = AutoConfig.from_pretrained(location, revision=revision)
    return ModelInfo(
        tokenizer,
        pick_device(device),
        _context_length(config, tokenizer),
        name=Path(location).name,
        source=location,
        revision=revision,
    )


def load_model(source: str, *, revision: str | None = None, device: str = "auto") -> LoadedModel:
    """Load from a local folder (checked for safetensors) or a hub id pinned to ``revision``."""
    location, revision = _locate(source, revision)
    target = pick_device(device)
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32

    tokenizer = _tokenizer(location, revision)
    model = AutoModelForCausalLM.from_pretrained(
        location,
        revision=revision,
        dtype=dtype,
        use_safetensors=True,
        attn_implementation=_attention_implementation(target),
    ).to(target)
    model.eval()
    context = _context_length(model.config, tokenizer)
    log.info("loaded %s on %s (%s, context %d)", location, target, dtype, context)
    return LoadedModel(model, tokenizer, target, context, name=Path(location).name)
