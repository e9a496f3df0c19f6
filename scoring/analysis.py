"""Pattern 2, token analysis: how likely the model finds each token of a text.

For every token after the first: its log-probability, its rank among the whole vocabulary
(1 = the model's top choice) and the top-k alternatives; per text: perplexity, mean
log-probability and GLTR buckets (ranks within 10 / 100 / 1000 / beyond).

One forward pass per batch of texts computes hidden states; logits are then projected a chunk of
positions at a time, so peak memory is ``chunk x vocab`` instead of ``tokens x vocab``. Ranks count
the logits above the actual token's, which needs no sort, and log-probabilities subtract a
logsumexp instead of materialising a full ``log_softmax``.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import torch

from scoring.model import LoadedModel
from scoring.schemas import RANK_BUCKETS, rank_bucket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenScores:
    """Scores of the predicted tokens of one text: row t scores token t+1."""

    ids: list[int]  # every token of the text, the first included
    logprobs: torch.Tensor  # (T-1,) float32
    ranks: torch.Tensor  # (T-1,) int64, 1-based
    top_ids: torch.Tensor  # (T-1, k)
    top_logprobs: torch.Tensor  # (T-1, k)


def bucket_counts(ranks: list[int]) -> dict[str, int]:
    """GLTR buckets (`scoring.schemas.RANK_BUCKETS`): ranks 1-10, 11-100, 101-1000, beyond."""
    counts = {key: 0 for key, _ in RANK_BUCKETS}
    for rank in ranks:
        counts[rank_bucket(rank)] += 1
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


def _pad(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, batch))
    ids = torch.tensor([seq + [pad_id] * (width - len(seq)) for seq in batch])
    mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in batch])
    return ids, mask


@torch.inference_mode()
def score_tokens(
    lm: LoadedModel,
    batch: list[list[int]],
    top_k: int = 5,
    chunk: int = 256,
    compiled: bool = True,
) -> list[TokenScores]:
    """Score every text of ``batch`` (token ids) with one forward pass and chunked heads."""
    ids, mask = _pad(batch, lm.tokenizer.pad_token_id or 0)
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    hidden = lm.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B,T,H)

    # Flatten to the positions that predict a real next token: (N, H) and targets (N,).
    predicts = mask[:, 1:].bool()
    states = hidden[:, :-1][predicts]
    targets = ids[:, 1:][predicts]

    n = targets.shape[0]
    logprobs, ranks = torch.empty(n), torch.empty(n, dtype=torch.long)
    top_ids, top_lp = torch.empty((n, top_k), dtype=torch.long), torch.empty((n, top_k))
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        logits = _project(lm, states[rows])  # (c, V) fp32
        stats = position_stats(logits, targets[rows], top_k, compiled)
        logprobs[rows], ranks[rows], top_ids[rows], top_lp[rows] = (t.cpu() for t in stats)

    scores, offset = [], 0
    for seq in batch:
        rows = slice(offset, offset + max(len(seq) - 1, 0))
        scores.append(TokenScores(seq, logprobs[rows], ranks[rows], top_ids[rows], top_lp[rows]))
        offset = rows.stop
    return scores


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
