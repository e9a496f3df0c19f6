"""Pattern 2, token analysis: how likely the model finds each token of a text.

For every token after the first: its log-probability, its rank among the whole vocabulary
(1 = the model's top choice) and the top-k alternatives; per text: perplexity, mean
log-probability and GLTR buckets (ranks within 10 / 100 / 1000 / beyond).

Work follows the tokens that are really there. Texts are grouped by length, so a batch of one long
and many short texts does not pad every short one to the long one's length (:func:`plan_groups`;
the padded positions are what the request limits count). Each group runs through the model a
slice of positions at a time over a KV cache, so attention memory is ``slice x length`` rather
than ``length x length``, and the request's deadline and cancellation are checked between slices.
Logits are then projected a chunk of positions at a time, so peak memory is ``chunk x vocab``
instead of ``tokens x vocab``. Ranks count the logits above the actual token's, which needs no
sort, and log-probabilities subtract a logsumexp instead of materialising a full ``log_softmax``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from scoring.generation import new_cache
from scoring.model import LoadedModel

log = logging.getLogger(__name__)

BUCKET_LIMITS = (10, 100, 1000)
# A group may pad its texts to at most this many times their real positions: 1000 + 15 x 1 tokens
# become two groups (15 x 1 and 1 x 1000) instead of 16 x 1000 positions.
MAX_PADDING_RATIO = 1.25


@dataclass(frozen=True)
class TokenScores:
    """Scores of the predicted tokens of one text: row t scores token t+1."""

    ids: list[int]  # every token of the text, the first included
    logprobs: torch.Tensor  # (T-1,) float32
    ranks: torch.Tensor  # (T-1,) int64, 1-based
    top_ids: torch.Tensor  # (T-1, k)
    top_logprobs: torch.Tensor  # (T-1, k)


def bucket_counts(ranks: list[int]) -> dict[str, int]:
    """GLTR buckets: ranks 1-10, 11-100, 101-1000, beyond."""
    counts = {"top10": 0, "top100": 0, "top1000": 0, "beyond": 0}
    for rank in ranks:
        if rank <= BUCKET_LIMITS[0]:
            counts["top10"] += 1
        elif rank <= BUCKET_LIMITS[1]:
            counts["top100"] += 1
        elif rank <= BUCKET_LIMITS[2]:
            counts["top1000"] += 1
        else:
            counts["beyond"] += 1
    return counts


def perplexity(logprobs: list[float]) -> float | None:
    """exp(-mean log p); undefined for a text with a single token."""
    return math.exp(-sum(logprobs) / len(logprobs)) if logprobs else None


def _project(lm: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    """The model's own output head on a chunk of hidden states, in fp32."""
    logits = lm.model.get_output_embeddings()(hidden).float()
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    if cap:  # Gemma-style models cap logits inside forward(); keep the same numbers.
        logits = torch.tanh(logits / cap) * cap
    return logits


def _lse_and_rank(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-prob and rank of each target, and the logsumexp, from (c, V) logits."""
    actual = logits.gather(1, targets[:, None])  # (c, 1)
    peak = logits.amax(dim=-1, keepdim=True)
    lse = peak + (logits - peak).exp().sum(dim=-1, keepdim=True).log()  # (c, 1), stable
    # Softmax is monotonic: the rank is one plus the count of logits above the actual one.
    ranks = (logits > actual).sum(dim=-1) + 1
    return (actual - lse).squeeze(1), ranks, lse


class _CompiledKernel:
    """``_lse_and_rank`` fused into one pass by ``torch.compile`` (vLLM does the same for ranks).

    Eager PyTorch walks the (c, V) logits five times and materialises a (c, V) bool tensor; the
    compiled kernel reads them once. Where no compiler backend exists (no C++ toolchain on CPU, no
    Triton on GPU) the first call fails, the reason is logged, and the eager path takes over.
    """

    def __init__(self) -> None:
        self._compiled = torch.compile(_lse_and_rank, dynamic=True)
        self._failed = False

    def __call__(
        self, logits: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self._failed:
            try:
                return self._compiled(logits, targets)
            except Exception as error:  # backend missing: log why, then serve eagerly
                log.warning("compiled analysis kernel unavailable, using eager: %s", error)
                self._failed = True
        return _lse_and_rank(logits, targets)


@functools.cache
def _compiled_kernel() -> _CompiledKernel:
    return _CompiledKernel()


def position_stats(
    logits: torch.Tensor, targets: torch.Tensor, top_k: int, compiled: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-prob, rank and top-k of each target, from (c, V) logits, without a sort."""
    kernel = _compiled_kernel() if compiled else _lse_and_rank
    logprobs, ranks, lse = kernel(logits, targets)
    values, indices = logits.topk(top_k, dim=-1)
    return logprobs, ranks, indices, values - lse


def plan_groups(lengths: list[int], max_ratio: float | None = None) -> list[list[int]]:
    """Indices of the texts, grouped by length so each group's padded positions stay within
    ``max_ratio`` (default :data:`MAX_PADDING_RATIO`) of its real ones; a text alone is never
    padded."""
    max_ratio = MAX_PADDING_RATIO if max_ratio is None else max_ratio
    groups: list[list[int]] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        group = groups[-1] if groups else []
        # Sorted ascending: the newcomer sets the group's width.
        if group and lengths[i] * (len(group) + 1) > max_ratio * (real + lengths[i]):
            group = []
        if not group:
            groups.append(group)
            real = 0
        group.append(i)
        real += lengths[i]
    return groups


def padded_positions(lengths: list[int], max_ratio: float | None = None) -> int:
    """Positions the model runs for these texts: what the token limits are checked against."""
    return sum(len(g) * max(lengths[i] for i in g) for g in plan_groups(lengths, max_ratio))


def _pad(batch: list[list[int]], pad_id: int) -> torch.Tensor:
    """Right-padded ids: under causal attention no real token sees a pad after it."""
    width = max(map(len, batch))
    return torch.tensor([seq + [pad_id] * (width - len(seq)) for seq in batch])


@torch.inference_mode()
def score_tokens(
    lm: LoadedModel,
    batch: list[list[int]],
    top_k: int = 5,
    chunk: int = 256,
    compiled: bool = True,
    *,
    forward_tokens: int = 512,
    check: Callable[[], None] | None = None,
) -> list[TokenScores]:
    """Score every text of ``batch`` (token ids), a length group at a time; results in order.

    ``forward_tokens`` bounds the positions (rows x slice) of one forward call; ``check`` runs
    before each call and raises to stop the work (deadline passed, client gone).
    """
    results: list[TokenScores | None] = [None] * len(batch)
    for group in plan_groups([len(seq) for seq in batch]):
        scored = _score_group(
            lm, [batch[i] for i in group], top_k, chunk, compiled, forward_tokens, check
        )
        for i, scores in zip(group, scored, strict=True):
            results[i] = scores
    return [r for r in results if r is not None]


def _score_group(
    lm: LoadedModel,
    batch: list[list[int]],
    top_k: int,
    chunk: int,
    compiled: bool,
    forward_tokens: int,
    check: Callable[[], None] | None,
) -> list[TokenScores]:
    ids = _pad(batch, lm.tokenizer.pad_token_id or 0).to(lm.device)  # (B, T)
    rows, width = ids.shape
    # Row r predicts its token p + 1 at position p, for p < len - 1; flat index offset[r] + p.
    scored = [max(len(seq) - 1, 0) for seq in batch]
    offsets = torch.tensor([0, *scored]).cumsum(0)[:-1]
    predicts = torch.arange(width - 1)[None, :] < torch.tensor(scored)[:, None]  # (B, T-1)
    n = sum(scored)
    logprobs, ranks = torch.empty(n), torch.empty(n, dtype=torch.long)
    top_ids, top_lp = torch.empty((n, top_k), dtype=torch.long), torch.empty((n, top_k))

    cache = new_cache(lm.model.config)
    step = max(1, forward_tokens // rows)
    for start in range(0, width - 1, step):
        if check is not None:
            check()
        stop = min(start + step, width - 1)
        hidden = lm.model.base_model(
            input_ids=ids[:, start:stop], past_key_values=cache, use_cache=True
        ).last_hidden_state  # (B, c, H)
        where = predicts[:, start:stop]
        row_of, column = where.nonzero(as_tuple=True)
        flat = offsets[row_of] + column + start
        states = hidden[where.to(hidden.device)]
        targets = ids[:, start + 1 : stop + 1][where.to(ids.device)]
        for first in range(0, targets.shape[0], chunk):
            part = slice(first, first + chunk)
            logits = _project(lm, states[part])  # (c, V) fp32
            stats = position_stats(logits, targets[part], top_k, compiled)
            index = flat[part]
            logprobs[index], ranks[index], top_ids[index], top_lp[index] = (t.cpu() for t in stats)

    return [
        TokenScores(
            seq,
            logprobs[o : o + k],
            ranks[o : o + k],
            top_ids[o : o + k],
            top_lp[o : o + k],
        )
        for seq, o, k in zip(batch, offsets.tolist(), scored, strict=True)
    ]


@torch.inference_mode()
def naive_token_scores(lm: LoadedModel, ids: list[int], top_k: int = 5) -> TokenScores:
    """The straightforward reference: full logits, full log_softmax, full sort per position.

    Used by the tests and the benchmark as ground truth and baseline; not by the server.
    """
    tensor = torch.tensor([ids], device=lm.device)
    logits = lm.model(input_ids=tensor).logits[0, :-1].float()  # (T-1, V): row t predicts ids[t+1]
    logprobs = torch.log_softmax(logits, dim=-1)
    order = logprobs.argsort(dim=-1, descending=True)  # (T-1, V)
    targets = tensor[0, 1:, None]
    ranks = (order == targets).int().argmax(dim=-1) + 1
    return TokenScores(
        ids,
        logprobs.gather(1, targets).squeeze(1).cpu(),
        ranks.cpu(),
        order[:, :top_k].cpu(),
        logprobs.gather(1, order[:, :top_k]).cpu(),
    )
