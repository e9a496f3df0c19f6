"""Token analysis: the fast path equals the full-softmax, full-sort reference."""

from __future__ import annotations

import math

import pytest
import torch

from scoring.analysis import bucket_counts, naive_token_scores, perplexity, score_tokens
from scoring.model import LoadedModel

TEXT = "The quick brown fox jumps over the lazy dog. Azure ML serves the model behind an endpoint."


@pytest.mark.slow
def test_fast_scores_equal_the_reference_on_the_demo_model(demo_lm: LoadedModel) -> None:
    ids = demo_lm.tokenizer(TEXT).input_ids
    fast = score_tokens(demo_lm, [ids], top_k=5, chunk=7)[0]  # odd chunk: crosses boundaries
    ref = naive_token_scores(demo_lm, ids, top_k=5)
    assert torch.equal(fast.ranks, ref.ranks)
    assert torch.allclose(fast.logprobs, ref.logprobs, atol=1e-4)
    assert torch.equal(fast.top_ids, ref.top_ids)
    assert torch.allclose(fast.top_logprobs, ref.top_logprobs, atol=1e-4)
    # "fox" after "The quick brown" is the model's first choice.
    fox = demo_lm.tokenizer(" fox", add_special_tokens=False).input_ids[0]
    assert fast.ranks[ids.index(fox) - 1] == 1


def test_a_batch_scores_each_text_as_if_alone(tiny_lm: LoadedModel) -> None:
    texts = ["the quick brown fox", "hello world, hello tokens and queues", "a"]
    batch = [tiny_lm.tokenizer(t).input_ids for t in texts]
    together = score_tokens(tiny_lm, batch, top_k=3)
    for ids, scores in zip(batch, together, strict=True):
        alone = score_tokens(tiny_lm, [ids], top_k=3)[0]
        assert scores.ids == ids
        assert torch.equal(scores.ranks, alone.ranks)
        assert torch.allclose(scores.logprobs, alone.logprobs, atol=1e-5)
    assert together[2].logprobs.numel() == len(batch[2]) - 1


def test_ranks_are_one_based_and_consistent_with_top_k(tiny_lm: LoadedModel) -> None:
    ids = tiny_lm.tokenizer("the lazy dog jumps over the quick fox").input_ids
    scores = score_tokens(tiny_lm, [ids], top_k=4)[0]
    assert int(scores.ranks.min()) >= 1
    for t, rank in enumerate(scores.ranks.tolist()):
        if rank <= 4:
            assert int(scores.top_ids[t, rank - 1]) == ids[t + 1]
    assert (scores.top_logprobs[:, :-1] >= scores.top_logprobs[:, 1:]).all()


def test_buckets_follow_gltr_thresholds() -> None:
    assert bucket_counts([1, 10, 11, 100, 101, 1000, 1001]) == {
        "top10": 2,
        "top100": 2,
        "top1000": 2,
        "beyond": 1,
    }


def test_perplexity_is_exp_of_negative_mean_logprob() -> None:
    assert perplexity([math.log(0.5), math.log(0.25)]) == pytest.approx(2**1.5)
    assert perplexity([]) is None


def test_compiled_kernel_equals_eager(tiny_lm: LoadedModel) -> None:
    ids = tiny_lm.tokenizer("the quick brown fox jumps over the lazy dog").input_ids
    eager = score_tokens(tiny_lm, [ids], top_k=3, compiled=False)[0]
    fused = score_tokens(tiny_lm, [ids], top_k=3, compiled=True)[0]
    assert torch.equal(eager.ranks, fused.ranks)
    assert torch.allclose(eager.logprobs, fused.logprobs, atol=1e-5)
    assert torch.equal(eager.top_ids, fused.top_ids)
