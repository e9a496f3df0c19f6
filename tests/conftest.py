"""Shared fixtures: the real demo model (built once per machine) and a tiny random model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from scoring.engines import OpenedModel
    from scoring.model import LoadedModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a model generates text one token at a time",
    "azure machine learning serves models behind managed online endpoints",
    "hello world, hello tokens, hello batching and queues",
] * 20


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (``make model`` builds it)."""
    from scoring.demo_model import DEFAULT_OUT, ensure_demo_model

    return ensure_demo_model(Path(os.environ.get("DEMO_MODEL_DIR", DEFAULT_OUT)).expanduser())


@pytest.fixture(scope="session")
def demo_lm(demo_model_dir: Path) -> LoadedModel:
    from scoring.model import load_model

    return load_model(str(demo_model_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with a BPE tokenizer trained here: fast, offline, gibberish."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=256,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path) -> LoadedModel:
    from scoring.model import load_model

    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def vllm_opened(demo_model_dir: Path) -> Iterator[OpenedModel]:
    """One vLLM engine on the demo model for the whole session: it takes a minute or more to start.

    Sized small (1 GiB of KV cache, 8 sequences) so it fits beside other work on a 2-core box.
    """
    pytest.importorskip("vllm")
    from scoring.engines import open_model
    from scoring.settings import ScoringSettings

    settings = ScoringSettings(
        engine="vllm",
        model_dir=demo_model_dir,
        device="cpu",
        max_input_tokens=1024,
        max_new_tokens=1024,
        max_batch_size=8,
        max_queue=8,
        kv_cache_gib=1.0,
    )
    opened = open_model(settings)
    yield opened
    opened.engine.shutdown()  # type: ignore[attr-defined]
