"""Token analysis: the fast path equals the full-softmax, full-sort reference."""

from __future__ import annotations

import math

import pytest
import torch

from scoring.analysis import (
    bucket_counts,
    naive_token_scores,
    padded_positions,
    perplexity,
    plan_groups,
    score_tokens,
)
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


class ForwardPositions:
    """Counts the positions (rows x columns) every forward call of the model runs."""

    def __init__(self, lm: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int]] = []
        base = lm.model.base_model
        forward = base.forward

        def counted(*args: object, **kwargs: object) -> object:
            ids = kwargs["input_ids"]
            self.calls.append(tuple(ids.shape))  # type: ignore[union-attr,arg-type]
            return forward(*args, **kwargs)

        monkeypatch.setattr(base, "forward", counted)

    @property
    def total(self) -> int:
        return sum(rows * cols for rows, cols in self.calls)


def test_groups_keep_padding_within_a_quarter_of_the_real_positions() -> None:
    assert plan_groups([1000, *[1] * 15]) == [list(range(1, 16)), [0]]
    assert plan_groups([30, 28, 29]) == [[1, 2, 0]]  # similar lengths share one batch
    assert padded_positions([1000, *[1] * 15]) == 1015
    assert padded_positions([30, 25]) == 60  # grouped: the padding is counted
    for lengths in ([5, 9, 13, 40, 41, 400, 3], [7] * 10, [1, 2, 4, 8, 16, 32, 64]):
        groups = plan_groups(lengths)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        for group in groups:
            real = sum(lengths[i] for i in group)
            assert len(group) * max(lengths[i] for i in group) <= 1.25 * real or len(group) == 1


def test_one_long_text_and_fifteen_short_ones_cost_what_the_long_one_costs(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure 2: the batch used to run 16 x the long text's length."""
    long_ids = tiny_lm.tokenizer(" ".join(["hello"] * 240)).input_ids
    short = [tiny_lm.tokenizer("a").input_ids] * 15
    alone = ForwardPositions(tiny_lm, monkeypatch)
    score_tokens(tiny_lm, [long_ids], top_k=1)
    alone_total = alone.total
    monkeypatch.undo()
    together = ForwardPositions(tiny_lm, monkeypatch)
    scores = score_tokens(tiny_lm, [long_ids, *short], top_k=1)
    assert together.total <= 1.5 * alone_total
    assert [s.ids for s in scores] == [long_ids, *short]  # request order kept


def test_forward_slices_give_the_reference_scores(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["the quick brown fox jumps over the lazy dog", "hello world, hello tokens"]
    batch = [tiny_lm.tokenizer(t).input_ids for t in texts]
    calls = ForwardPositions(tiny_lm, monkeypatch)
    sliced = score_tokens(tiny_lm, batch, top_k=3, forward_tokens=6)
    assert max(rows * cols for rows, cols in calls.calls) <= 6
    for ids, scores in zip(batch, sliced, strict=True):
        ref = naive_token_scores(tiny_lm, ids, top_k=3)
        assert torch.equal(scores.ranks, ref.ranks)
        assert torch.allclose(scores.logprobs, ref.logprobs, atol=1e-4)
        assert torch.equal(scores.top_ids, ref.top_ids)


def test_check_runs_between_forward_slices_and_stops_the_work(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = tiny_lm.tokenizer(" ".join(["hello"] * 100)).input_ids
    calls = ForwardPositions(tiny_lm, monkeypatch)
    checks: list[int] = []

    def check() -> None:
        checks.append(len(calls.calls))
        if len(checks) == 3:
            raise TimeoutError("budget spent")

    with pytest.raises(TimeoutError):
        score_tokens(tiny_lm, [ids], top_k=1, forward_tokens=10, check=check)
    assert len(calls.calls) == 2  # stopped before the third slice
