"""Batched generation: same results as one-at-a-time, per-request params, stop, seeds."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from scoring.batching import plain_generate
from scoring.generation import (
    DecodeBatch,
    GrowingLayer,
    PrefixCache,
    Row,
    SamplingParams,
    generate,
)
from scoring.model import LoadedModel

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three colors.",
    "hi",
]


def chat_ids(lm: LoadedModel, question: str) -> list[int]:
    text = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return lm.tokenizer(text, add_special_tokens=False).input_ids


@pytest.mark.slow
def test_greedy_batched_equals_one_at_a_time_and_hf_generate(demo_lm: LoadedModel) -> None:
    prompts = [chat_ids(demo_lm, q) for q in QUESTIONS]
    params = SamplingParams(max_new_tokens=16)
    alone = [generate(demo_lm, [p], [params])[0] for p in prompts]
    together = generate(demo_lm, prompts, [params] * len(prompts))
    assert [g.text for g in together] == [g.text for g in alone]
    assert alone[0].text == "The capital of France is Paris."
    hf = demo_lm.model.generate(torch.tensor([prompts[1]]), max_new_tokens=16, do_sample=False)
    assert (
        demo_lm.tokenizer.decode(hf[0, len(prompts[1]) :], skip_special_tokens=True)
        == alone[1].text
    )


@pytest.mark.slow
def test_rows_joining_a_running_batch_get_the_same_text(demo_lm: LoadedModel) -> None:
    prompts = [chat_ids(demo_lm, q) for q in QUESTIONS]
    params = SamplingParams(max_new_tokens=12)
    expected = [g.text for g in generate(demo_lm, prompts, [params] * 4)]
    batch = DecodeBatch(demo_lm)
    rows = [Row(p, params) for p in prompts]
    batch.admit(rows[:1])
    for _ in range(3):
        batch.step()
    batch.admit(rows[1:3])  # joins with a longer cache: left-padded and merged
    batch.step()
    batch.admit(rows[3:])
    while len(batch):
        batch.step()
    assert [r.result().text for r in rows] == expected


def test_seeded_sampling_does_not_depend_on_batch_neighbours(tiny_lm: LoadedModel) -> None:
    prompt = tiny_lm.tokenizer("the quick brown").input_ids
    sampled = SamplingParams(max_new_tokens=10, temperature=0.9, top_p=0.9, top_k=50, seed=7)
    alone = generate(tiny_lm, [prompt], [sampled])[0]
    neighbours = [tiny_lm.tokenizer("hello world").input_ids] * 2
    mixed = generate(
        tiny_lm, [*neighbours, prompt], [SamplingParams(max_new_tokens=4)] * 2 + [sampled]
    )
    assert mixed[2].text == alone.text
    other_seed = generate(tiny_lm, [prompt], [SamplingParams(**{**sampled.__dict__, "seed": 8})])[0]
    assert other_seed.completion_tokens >= 1


def test_max_new_tokens_ends_with_length(tiny_lm: LoadedModel) -> None:
    tiny_lm.model.generation_config.eos_token_id = None  # random weights might emit EOS
    try:
        result = generate(tiny_lm, [tiny_lm.tokenizer("hello").input_ids], [SamplingParams(5)])[0]
    finally:
        tiny_lm.model.generation_config.eos_token_id = tiny_lm.tokenizer.eos_token_id
    assert (result.finish_reason, result.completion_tokens) == ("length", 5)
    assert result.prompt_tokens == len(tiny_lm.tokenizer("hello").input_ids)


@pytest.mark.slow
def test_stop_string_ends_generation_and_is_not_returned(demo_lm: LoadedModel) -> None:
    prompt = chat_ids(demo_lm, QUESTIONS[0])
    result = generate(demo_lm, [prompt], [SamplingParams(max_new_tokens=30, stop=("Paris",))])[0]
    assert result.text == "The capital of France is "
    assert result.finish_reason == "stop"


@pytest.mark.slow
def test_plain_generate_baseline_matches_the_batch_loop(demo_lm: LoadedModel) -> None:
    prompt = chat_ids(demo_lm, QUESTIONS[1])
    for params in [SamplingParams(max_new_tokens=12), SamplingParams(40, stop=("\n",))]:
        plain = plain_generate(demo_lm, prompt, params)
        batched = generate(demo_lm, [prompt], [params])[0]
        assert replace(plain, queue_wait_s=0.0) == replace(batched, queue_wait_s=0.0)


def test_prefix_cache_reuses_the_shared_start_and_leaves_one_token() -> None:
    cache = PrefixCache(ids=list(range(20)), min_tokens=8)
    assert cache.shared_length([[*range(12), 99], [*range(15), 7]]) == 12
    assert cache.shared_length([list(range(10))]) == 9  # the last token is always prefilled
    assert cache.shared_length([[*range(5), 99]]) == 0  # too short to be worth it
    assert PrefixCache().shared_length([[1, 2, 3]]) == 0


@pytest.mark.slow
def test_prompts_sharing_the_chat_preamble_hit_the_prefix_cache(demo_lm: LoadedModel) -> None:
    prompts = [chat_ids(demo_lm, q) for q in QUESTIONS]
    params = SamplingParams(max_new_tokens=10)
    fresh = [generate(demo_lm, [p], [params])[0].text for p in prompts]
    batch = DecodeBatch(demo_lm)
    rows = [Row(p, params) for p in prompts]
    batch.admit(rows[:1])
    assert batch.prefix.shared_length([r.prompt_ids for r in rows[1:]]) > 20  # system turn
    batch.admit(rows[1:])
    while len(batch):
        batch.step()
    assert [r.result().text for r in rows] == fresh


def test_growing_layer_appends_without_copying_and_rebuffers_after_edits() -> None:
    layer = GrowingLayer()
    keys = torch.randn(2, 3, 5, 4)
    layer.update(keys, keys + 1)
    buffer = layer._k
    step = torch.randn(2, 3, 1, 4)
    out_keys, out_values = layer.update(step, step)
    assert layer._k is buffer  # appended in place
    assert torch.equal(out_keys, torch.cat([keys, step], dim=2))
    assert torch.equal(out_values, torch.cat([keys + 1, step], dim=2))
    layer.keys, layer.values = layer.keys[:1], layer.values[:1]  # a row left the batch
    out_keys, _ = layer.update(step[:1], step[:1])
    assert torch.equal(out_keys, torch.cat([keys[:1], step[:1], step[:1]], dim=2))


def test_a_new_group_primes_the_prefix_it_shares(tiny_lm: LoadedModel) -> None:
    preamble = tiny_lm.tokenizer("the quick brown fox jumps over the lazy dog and").input_ids
    prompts = [preamble + tiny_lm.tokenizer(f" hello {w}").input_ids for w in ("a", "bb", "ccc")]
    params = SamplingParams(max_new_tokens=4)
    alone = [generate(tiny_lm, [p], [params])[0].text for p in prompts]
    batch = DecodeBatch(tiny_lm)
    rows = [Row(p, params) for p in prompts]
    primed: list[int] = []
    prime = batch._prime
    batch._prime = lambda group: primed.append(prime(group)) or primed[-1]  # type: ignore[method-assign]
    batch.admit(rows)
    assert primed[0] >= len(preamble) - 1  # the shared preamble was prefilled once
    while len(batch):
        batch.step()
    assert [r.result().text for r in rows] == alone
