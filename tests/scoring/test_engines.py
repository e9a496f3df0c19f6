"""The three engines behind one seam: each setting gives that engine, and they agree.

vLLM starts once per test session (``vllm_opened`` in conftest: about a minute or more here),
so every vLLM check shares that one engine; the transformers engines share the demo weights.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from scoring import settings as settings_module
from scoring.analysis import naive_token_scores
from scoring.batching import GenerationEngine, SerialEngine
from scoring.engine import CancelledError, DeadlineExceededError, Engine, Job
from scoring.engines import (
    OpenedModel,
    open_model,
    transformers_engine,
    vllm_config,
    vllm_max_model_len,
)
from scoring.generation import SamplingParams
from scoring.model import LoadedModel, ModelInfo
from scoring.service import ScoringService
from scoring.settings import ScoringSettings

QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for writing clear code.",
    "Name a colour of the sky.",
]
PANGRAM = "The quick brown fox jumps over the lazy dog. " * 3


def chat_ids(tokenizer: object, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
    return tokenizer(text, add_special_tokens=False).input_ids  # type: ignore[operator]


def test_default_engine_is_vllm_exactly_where_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = settings_module.importlib.util.find_spec("vllm") is not None
    assert ScoringSettings().engine == ("vllm" if installed else "continuous")
    monkeypatch.setattr(settings_module.importlib.util, "find_spec", lambda name: None)
    assert ScoringSettings().engine == "continuous"
    monkeypatch.setenv("SCORING_ENGINE", "serial")
    assert ScoringSettings().engine == "serial"


@pytest.mark.parametrize(
    ("name", "kind"), [("serial", SerialEngine), ("continuous", GenerationEngine)]
)
def test_each_transformers_setting_gives_that_engine(
    name: str, kind: type, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCORING_ENGINE", name)
    monkeypatch.setenv("SCORING_MODEL_DIR", str(tiny_model_dir))
    opened = open_model(ScoringSettings())
    assert type(opened.engine) is kind
    assert opened.engine.name == name
    assert isinstance(opened.lm, LoadedModel)
    # The service built on it runs that engine, for both patterns.
    service = ScoringService(opened.lm, ScoringSettings(), engine=opened.engine)
    assert service.engine is opened.engine


def test_a_service_around_loaded_weights_refuses_an_explicit_vllm(tiny_lm: LoadedModel) -> None:
    with pytest.raises(ValueError, match="open_model"):
        ScoringService(tiny_lm, ScoringSettings(engine="vllm"))
    # Left to its default, a service handed transformers weights runs this project's engine.
    assert ScoringService(tiny_lm, ScoringSettings()).engine.name == "continuous"


def test_importing_the_entry_script_starts_no_vllm() -> None:
    """vLLM spawns its engine core, which re-imports the parent's main module: nothing may start
    (or even import vllm) at import time, only in init()."""
    code = "import sys, scoring.score, scoring.engines; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_vllm_is_sized_from_the_deployment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_KV_CACHE_GIB", "5")  # what infra/sizing.py sets on a DS3_v2
    settings = ScoringSettings(
        max_input_tokens=1024, max_new_tokens=256, max_batch_size=8, max_queue=4, max_top_k=7
    )
    assert vllm_max_model_len(settings, context_length=8192) == 1280
    assert vllm_max_model_len(settings, context_length=512) == 512  # never past the model's
    info = ModelInfo(None, torch.device("cpu"), 1280, "m", "/models/m")  # type: ignore[arg-type]
    cpu = vllm_config(settings, info)
    args = cpu.engine_args()
    assert (args["max_model_len"], args["max_num_seqs"], args["max_logprobs"]) == (1280, 8, 7)
    assert args["dtype"] == "float32"  # as the transformers engines on CPU: same numbers
    assert args["kv_cache_memory_bytes"] == 5 << 30
    assert cpu.max_queue == 4
    gpu = vllm_config(
        ScoringSettings(gpu_memory_utilization=0.8), replace(info, device=torch.device("cuda"))
    ).engine_args()
    assert (gpu["dtype"], gpu["gpu_memory_utilization"]) == ("bfloat16", 0.8)
    assert "kv_cache_memory_bytes" not in gpu


# vLLM ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vllm_setting_gives_vllm_without_loading_transformers_weights(
    vllm_opened: OpenedModel,
) -> None:
    from scoring.vllm_engine import VllmEngine

    assert type(vllm_opened.engine) is VllmEngine
    assert vllm_opened.engine.name == "vllm"
    assert isinstance(vllm_opened.lm, ModelInfo)  # tokenizer and config only
    assert not hasattr(vllm_opened.lm, "model")


@pytest.fixture(scope="module")
def engines(demo_lm: LoadedModel, vllm_opened: OpenedModel) -> dict[str, Engine]:
    serial = transformers_engine(demo_lm, ScoringSettings(engine="serial", max_queue=8))
    continuous = transformers_engine(demo_lm, ScoringSettings(engine="continuous", max_queue=8))
    return {"serial": serial, "continuous": continuous, "vllm": vllm_opened.engine}


def run_all(engines: dict[str, Engine], ids: list[int], params: SamplingParams) -> dict[str, str]:
    return {n: e.submit(ids, params, Job.within(120)).text for n, e in engines.items()}


@pytest.mark.slow
def test_greedy_results_are_equal_across_engines(
    engines: dict[str, Engine], demo_lm: LoadedModel
) -> None:
    for question in QUESTIONS:
        ids = chat_ids(demo_lm.tokenizer, question)
        results = {
            name: engine.submit(ids, SamplingParams(max_new_tokens=24), Job.within(120))
            for name, engine in engines.items()
        }
        texts = {name: r.text for name, r in results.items()}
        assert len(set(texts.values())) == 1, texts
        assert len({(r.finish_reason, r.completion_tokens) for r in results.values()}) == 1
    assert texts  # the last question's answers, for the record


@pytest.mark.slow
def test_seeded_sampling_is_reproducible_on_every_engine(
    engines: dict[str, Engine], demo_lm: LoadedModel
) -> None:
    ids = demo_lm.tokenizer("Once upon a time").input_ids
    for name, engine in engines.items():
        seeded = SamplingParams(max_new_tokens=16, temperature=0.9, top_p=0.95, top_k=50, seed=7)
        first = engine.submit(ids, seeded, Job.within(120)).text
        again = engine.submit(ids, seeded, Job.within(120)).text
        other = engine.submit(
            ids, SamplingParams(16, 0.9, 0.95, 50, (), seed=8), Job.within(120)
        ).text
        assert first == again, name
        assert first != other, name


@pytest.mark.slow
def test_stop_strings_and_token_limits_mean_the_same_on_every_engine(
    engines: dict[str, Engine], demo_lm: LoadedModel
) -> None:
    ids = chat_ids(demo_lm.tokenizer, QUESTIONS[0])
    for name, engine in engines.items():
        stopped = engine.submit(ids, SamplingParams(24, stop=("Paris",)), Job.within(120))
        assert (stopped.text, stopped.finish_reason) == ("The capital of France is ", "stop"), name
        short = engine.submit(ids, SamplingParams(max_new_tokens=3), Job.within(120))
        assert (short.completion_tokens, short.finish_reason) == (3, "length"), name
        assert short.prompt_tokens == len(ids)


@pytest.mark.slow
def test_vllm_streams_deltas_that_join_to_the_text(
    vllm_opened: OpenedModel, demo_lm: LoadedModel
) -> None:
    pieces: list[str] = []
    ids = chat_ids(demo_lm.tokenizer, QUESTIONS[1])
    result = vllm_opened.engine.submit(
        ids, SamplingParams(32, stop=("\n\n",)), Job.within(120, on_text=pieces.append)
    )
    assert len(pieces) > 1
    assert "".join(pieces) == result.text


@pytest.mark.slow
def test_vllm_cancel_aborts_within_a_step_and_frees_the_slot(
    vllm_opened: OpenedModel, demo_lm: LoadedModel
) -> None:
    engine = vllm_opened.engine
    ids = demo_lm.tokenizer("Count from one to one thousand: one, two,").input_ids
    job = Job.within(120)
    first_piece = threading.Event()
    job.on_text = lambda piece: first_piece.set()
    outcome: list[BaseException] = []

    def client() -> None:
        try:
            engine.submit(ids, SamplingParams(max_new_tokens=400), job)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=client)
    thread.start()
    assert first_piece.wait(60)
    job.cancelled.set()  # the client disconnected
    cancelled_at = time.monotonic()
    thread.join(10)
    assert isinstance(outcome[0], CancelledError)
    assert time.monotonic() - cancelled_at < 1.0
    # vLLM dropped the request: nothing left running, and the admission slot is back.
    deadline = time.monotonic() + 5
    while engine.unfinished_requests() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.unfinished_requests() == 0
    assert engine.free_slots() == engine.capacity


@pytest.mark.slow
def test_vllm_deadline_stops_a_long_generation(
    vllm_opened: OpenedModel, demo_lm: LoadedModel
) -> None:
    ids = demo_lm.tokenizer("Count from one to one thousand: one, two,").input_ids
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        vllm_opened.engine.submit(ids, SamplingParams(max_new_tokens=1000), Job.within(0.5))
    assert time.monotonic() - started < 2.0


@pytest.mark.slow
def test_vllm_analysis_matches_the_full_sort_reference(
    vllm_opened: OpenedModel, demo_lm: LoadedModel
) -> None:
    texts = [PANGRAM, "Colorless green ideas sleep furiously beneath quantum marmalade."]
    batch = [demo_lm.tokenizer(t).input_ids for t in texts]
    got = vllm_opened.engine.analyze(batch, 5, Job.within(120))
    for ids, scores in zip(batch, got, strict=True):
        reference = naive_token_scores(demo_lm, ids, top_k=5)
        assert scores.ids == ids
        assert torch.equal(scores.ranks, reference.ranks)
        assert torch.allclose(scores.logprobs, reference.logprobs, atol=1e-3)
        assert torch.equal(scores.top_ids, reference.top_ids)
        assert torch.allclose(scores.top_logprobs, reference.top_logprobs, atol=1e-3)


@pytest.mark.slow
def test_the_service_runs_both_patterns_on_vllm(vllm_opened: OpenedModel) -> None:
    settings = ScoringSettings(engine="vllm", max_new_tokens=64)
    service = ScoringService(vllm_opened.lm, settings, engine=vllm_opened.engine)
    generated = service.handle(
        b'{"messages": [{"role": "user", "content": "What is the capital of France?"}],'
        b' "max_new_tokens": 20}'
    )
    assert generated.status == 200, generated.body
    assert generated.body["text"] == "The capital of France is Paris."
    analysed = service.handle(
        b'{"text": "The quick brown fox jumps over the lazy dog.", "top_k": 3}'
    )
    assert analysed.status == 200, analysed.body
    fox = next(t for t in analysed.body["tokens"] if t["token"] == " fox")
    assert fox["rank"] == 1
    assert len(fox["top"]) == 3
