"""Pattern 1, text generation: a decode loop over a batch whose rows join and leave at any step.

Each row keeps its own sampling parameters, stop strings and random generator, so a request's
output does not depend on which other requests shared its batch. Rows are left-padded; the KV
cache of rows admitted later is left-padded to the running length and concatenated, and the
leading columns that no remaining row attends to are cropped when rows leave.
"""

from __future__ import annotations

import logging
import secrets
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import DynamicLayer

from scoring.model import LoadedModel

if TYPE_CHECKING:
    from scoring.engine import Job

log = logging.getLogger(__name__)

SEED_BITS = 63
# A decoded tail that may still change: U+FFFD is a multi-byte character whose bytes have not all
# arrived; whitespace may be folded into the next token by a tokenizer's clean-up (" ." -> ".").
UNSETTLED_TAIL = "\ufffd" + string.whitespace


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding parameters; ``temperature == 0`` means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    """What one request gets back."""

    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int
    queue_wait_s: float = 0.0  # from submission to the prefill that admitted it
    token_ids: tuple[int, ...] = ()  # the sampled ids (may run past a stop string's cut)


def _stop_prefix(text: str, stop: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that a stop string starts with."""
    return max(
        (n for s in stop for n in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:n])),
        default=0,
    )


@dataclass(eq=False)
class TextStream:
    """Hands a generation's text to ``sink`` piece by piece, never a piece it may take back.

    The engine passes the whole text so far (decoded from every generated id, cut at the first
    stop string) after each token. Held back: an unfinished multi-byte character, trailing
    whitespace, and an end that could be the start of a stop string. :meth:`finish` sends the rest,
    so the pieces joined equal the final text. If the sink raises (the client is gone),
    ``on_failure`` is called and nothing more is sent.
    """

    sink: Callable[[str], None] | None
    stop: tuple[str, ...] = ()
    on_failure: Callable[[], None] | None = None
    sent: str = ""

    def update(self, text: str) -> None:
        if self.sink is None or not text.startswith(self.sent):
            return
        settled = text.rstrip(UNSETTLED_TAIL)
        end = len(settled) - _stop_prefix(settled, self.stop)
        if end > len(self.sent):
            self._send(text[len(self.sent) : end])

    def finish(self, text: str) -> str:
        """Send what is left; returns the final text (which starts with everything sent)."""
        if self.sink is None:
            return text
        if not text.startswith(self.sent):  # a tokenizer rewrote settled text: keep what was sent
            log.warning("decoded text changed after it was streamed; keeping the streamed part")
            same = 0
            while same < min(len(self.sent), len(text)) and self.sent[same] == text[same]:
                same += 1
            text = self.sent + text[same:]
        if len(text) > len(self.sent):
            self._send(text[len(self.sent) :])
        return text

    def _send(self, piece: str) -> None:
        assert self.sink is not None
        try:
            self.sink(piece)
        except Exception as error:
            log.info("streaming sink failed (%s); stopping the request", error)
            self.sink = None
            if self.on_failure is not None:
                self.on_failure()
            return
        self.sent += piece


@dataclass(eq=False)
class Row:
    """One request inside the running batch (compared by identity).

    ``job`` (deadline, cancellation, streaming sink) is optional so that offline batches
    (:func:`generate`, tests) need none.
    """

    prompt_ids: list[int]
    params: SamplingParams
    job: Job | None = None
    created: float = field(default_factory=time.monotonic)
    admitted: float | None = None
    generated: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    generator: torch.Generator = field(init=False)
    stream: TextStream = field(init=False)

    def __post_init__(self) -> None:
        seed = self.params.seed if self.params.seed is not None else secrets.randbits(SEED_BITS)
        self.generator = torch.Generator().manual_seed(seed)
        job = self.job
        self.stream = TextStream(
            job.on_text if job else None, self.params.stop, job.cancelled.set if job else None
        )

    def stop_error(self, now: float) -> Exception | None:
        """Why this row must leave the batch unfinished (cancelled, past deadline), or None."""
        return self.job.stop_error(now) if self.job is not None else None

    def result(self) -> Generation:
        assert self.finish_reason is not None
        wait = (self.admitted or self.created) - self.created
        return Generation(
            self.text,
            self.finish_reason,
            len(self.prompt_ids),
            len(self.generated),
            wait,
            tuple(self.generated),
        )


def eos_ids(lm: LoadedModel) -> set[int]:
    """The ids that end a generation: the generation config's, else the tokenizer's."""
    eos = lm.model.generation_config.eos_token_id
    eos = eos if eos is not None else lm.tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """The text before the earliest stop string (excluded, as OpenAI does), and whether one hit."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def sample_next(logits: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
    """Pick one token per row with that row's temperature, top-k, top-p and generator."""
    # logits: (B, V) float32
    greedy = logits.argmax(dim=-1)
    if all(row.params.temperature == 0 for row in rows):
        return greedy
    temps = torch.tensor([max(r.params.temperature, 1e-5) for r in rows])[:, None]
    top_k = torch.tensor([r.params.top_k for r in rows])[:, None]
    top_p = torch.tensor([r.params.top_p for r in rows])[:, None]
    # One uniform draw per row from the row's own generator: reproducible per seed, batch-blind.
    uniform = torch.stack([torch.rand((), generator=r.generator) for r in rows])[:, None]

    sorted_logits, order = (logits / temps).sort(dim=-1, descending=True)  # (B, V)
    rank = torch.arange(logits.shape[-1])[None, :]
    sorted_logits = sorted_logits.masked_fill((top_k > 0) & (rank >= top_k), float("-inf"))
    probs = sorted_logits.softmax(dim=-1)
    # Nucleus: drop tokens once the mass before them reaches top_p (the first always stays).
    probs = probs.masked_fill(probs.cumsum(dim=-1) - probs >= top_p, 0.0)
    cdf = probs.cumsum(dim=-1) / probs.sum(dim=-1, keepdim=True)
    choice = (cdf < uniform).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    sampled = order.gather(1, choice).squeeze(1)
    is_greedy = torch.tensor([r.params.temperature == 0 for r in rows])
    return torch.where(is_greedy, greedy, sampled)


def _left_pad(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class GrowingLayer(DynamicLayer):
    """A KV cache layer that appends into spare capacity instead of re-concatenating.

    ``DynamicLayer`` copies its whole cache at every decode step (``torch.cat``): 14% of a batch-16
    CPU step on the demo model. Here a step writes only its new positions and capacity doubles
    when full. ``DecodeBatch`` replaces ``keys``/``values`` when rows join or leave; the next
    update sees a tensor that is not its own view and re-buffers it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._view: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        have = self.keys.shape[-2] if self.keys.dim() == 4 else 0
        need = have + key_states.shape[-2]
        if self.keys is not self._view or self._k is None or need > self._k.shape[-2]:
            capacity = max(2 * need, 64)
            b, h, _, d = key_states.shape  # (B, heads, T, head_dim)
            self._k = key_states.new_empty((b, h, capacity, d))
            self._v = value_states.new_empty((b, h, capacity, value_states.shape[-1]))
            if have:
                self._k[:, :, :have], self._v[:, :, :have] = self.keys, self.values
        assert self._v is not None
        self._k[:, :, have:need], self._v[:, :, have:need] = key_states, value_states
        self.keys, self.values = self._k[:, :, :need], self._v[:, :, :need]
        self._view = self.keys
        return self.keys, self.values


def new_cache(
    config: PretrainedConfig, data: list[tuple[torch.Tensor, torch.Tensor]] | None = None
) -> DynamicCache:
    """A decode cache of ``GrowingLayer``s, optionally holding ``data`` per layer already."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    for layer, (keys, values) in zip(cache.layers, data or [], strict=False):
        layer.update(keys, values)
    return cache


def common_prefix(sequences: list[list[int]], limit: int) -> int:
    """Length of the prefix all ``sequences`` share, at most ``limit``."""
    length = 0
    while length < limit and all(seq[length] == sequences[0][length] for seq in sequences):
        length += 1
    return length


@dataclass
class PrefixCache:
    """The KV cache of the last admitted prompt, reused for the prefix new prompts share with it.

    Chat requests start with the same rendered system turn, so most of a prompt's prefill is work
    already done for the previous request (vLLM and TGI call this prefix caching).
    """

    ids: list[int] = field(default_factory=list)
    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (1,H,T,D)
    min_tokens: int = 8

    def shared_length(self, prompts: list[list[int]]) -> int:
        """Tokens every prompt shares with the cached one; each keeps at least one to prefill."""
        limit = min(len(self.ids), *(len(p) - 1 for p in prompts))
        length = common_prefix([self.ids, *prompts], limit) if self.ids else 0
        return length if length >= self.min_tokens else 0

    def seed(self, length: int, rows: int, config: PretrainedConfig) -> DynamicCache:
        """A cache holding the first ``length`` cached positions for each of ``rows`` rows."""
        if not length:
            return new_cache(config)
        data = [
            (
                k[:, :, :length].expand(rows, -1, -1, -1).contiguous(),
                v[:, :, :length].expand(rows, -1, -1, -1).contiguous(),
            )
            for k, v in self.layers
        ]
        return new_cache(config, data)

    def remember(self, ids: list[int], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Keep row 0's prompt: its unmasked cache columns, in order."""
        keep = mask.bool()  # (T,)
        self.ids = list(ids)
        self.layers = [
            (layer.keys[:1, :, keep], layer.values[:1, :, keep]) for layer in cache.layers
        ]


@dataclass(eq=False)
class Prefill:
    """New rows whose prompts run through the model a slice at a time, between decode steps."""

    rows: list[Row]
    ids: torch.Tensor  # (B, W) prompt suffixes after the shared prefix, left-padded
    mask: torch.Tensor  # (B, shared + W)
    positions: torch.Tensor  # (B, W)
    cache: DynamicCache
    shared: int
    done: int = 0  # columns of ``ids`` already run

    def without(self, leaving: set[int]) -> Prefill | None:
        """This group less the rows in ``leaving`` (by id); None when none is left."""
        if not leaving:
            return self
        keep = [i for i, r in enumerate(self.rows) if id(r) not in leaving]
        if not keep:
            return None
        index = torch.tensor(keep, device=self.ids.device)
        self.cache.batch_select_indices(index)
        self.rows = [self.rows[i] for i in keep]
        self.ids, self.mask = self.ids[index], self.mask[index]
        self.positions = self.positions[index]
        return self


class DecodeBatch:
    """The running batch: rows, their KV cache, attention mask and next positions."""

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self.rows: list[Row] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=lm.device)  # (B, T)
        self.next_tokens = torch.zeros((0,), dtype=torch.long, device=lm.device)  # (B,)
        self.prefix = PrefixCache()
        self.eos_ids = eos_ids(lm)
        self.prefilling: Prefill | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @torch.inference_mode()
    def admit(self, new_rows: list[Row]) -> list[Row]:
        """Prefill new rows whole, sample their first token, join them; return finished."""
        self.start_prefill(new_rows)
        finished: list[Row] = []
        while self.prefilling is not None:
            finished = self.prefill_step(budget=None)
        return finished

    @torch.inference_mode()
    def start_prefill(self, new_rows: list[Row]) -> None:
        """Lay out new rows' prompts for prefill; :meth:`prefill_step` then runs them."""
        assert self.prefilling is None, "one prefill group at a time"
        now = time.monotonic()
        for row in new_rows:
            row.admitted = now
        prompts = [r.prompt_ids for r in new_rows]
        shared = self.prefix.shared_length(prompts)
        if not shared and len(prompts) > 1:
            shared = self._prime(prompts)
        pad = self.lm.tokenizer.pad_token_id
        suffixes = [r.prompt_ids[shared:] for r in new_rows]
        width = max(map(len, suffixes))
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes], device=self.lm.device)
        # Row layout: [shared prefix][left padding][own suffix]; masked pads may sit mid-row.
        mask = torch.tensor(
            [[1] * shared + [0] * (width - len(s)) + [1] * len(s) for s in suffixes],
            device=self.lm.device,
        )
        self.prefilling = Prefill(
            rows=list(new_rows),
            ids=ids,
            mask=mask,
            positions=(mask.cumsum(-1) - 1).clamp(min=0)[:, shared:],
            cache=self.prefix.seed(shared, len(new_rows), self.lm.model.config),
            shared=shared,
        )

    @torch.inference_mode()
    def prefill_step(self, budget: int | None) -> list[Row]:
        """Run the next slice of the prefill: at most ``budget`` positions (rows x columns), all
        that is left when None. When the prompts are done, sample each row's first token and join
        the rows to the batch; returns the rows that already finished."""
        group = self.prefilling
        assert group is not None
        rows, width = group.ids.shape
        columns = width - group.done if budget is None else max(1, budget // rows)
        start, stop = group.done, min(group.done + columns, width)
        out = self.lm.model(
            input_ids=group.ids[:, start:stop],
            attention_mask=group.mask[:, : group.shared + stop],
            position_ids=group.positions[:, start:stop],
            past_key_values=group.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        group.done = stop
        if stop < width:
            return []
        self.prefilling = None
        new_rows = group.rows
        self.prefix.remember(new_rows[0].prompt_ids, group.cache, group.mask[0])
        tokens = sample_next(out.logits[:, -1, :].float().cpu(), new_rows)
        self._merge(new_rows, group.cache, group.mask)
        self.next_tokens = torch.cat([self.next_tokens, tokens.to(self.lm.device)])
        return self._record(tokens, offset=len(self.rows) - len(new_rows))

    def _prime(self, prompts: list[list[int]]) -> int:
        """Prefill the prefix new prompts share among themselves once, into the prefix cache."""
        length = common_prefix(prompts, min(map(len, prompts)) - 1)
        if length < self.prefix.min_tokens:
            return 0
        ids = torch.tensor([prompts[0][:length]], device=self.lm.device)
        cache = new_cache(self.lm.model.config)
        self.lm.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.prefix.remember(
            prompts[0][:length], cache, torch.ones(length, dtype=torch.long, device=self.lm.device)
        )
        return length

    @torch.inference_mode()
    def step(self) -> list[Row]:
        """One decode step for every row; returns the rows that finished."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        out = self.lm.model(
            input_ids=self.next_tokens[:, None],
            attention_mask=self.mask,
            position_ids=self.mask.sum(-1, keepdim=True) - 1,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.next_tokens = sample_next(out.logits[:, -1, :].float().cpu(), self.rows).to(
            self.lm.device
        )
        return self._record(self.next_tokens.cpu(), offset=0)

    def evict(self, now: float) -> list[tuple[Row, Exception]]:
        """Rows whose job was cancelled or ran out of time leave the batch (or the prefill
        group) unfinished."""
        leaving = [(r, e) for r in self.rows if (e := r.stop_error(now)) is not None]
        self._drop({id(r) for r, _ in leaving})
        if self.prefilling is not None:
            late = [(r, e) for r in self.prefilling.rows if (e := r.stop_error(now)) is not None]
            self.prefilling = self.prefilling.without({id(r) for r, _ in late})
            leaving += late
        return leaving

    def _record(self, tokens: torch.Tensor, offset: int) -> list[Row]:
        finished = []
        for row, token in zip(self.rows[offset:], tokens.tolist(), strict=True):
            self._append(row, token)
            if row.finish_reason is not None:
                row.text = row.stream.finish(row.text)
                finished.append(row)
            else:
                row.stream.update(row.text)
        self._drop(set(map(id, finished)))
        return finished

    def _append(self, row: Row, token: int) -> None:
        if token in self.eos_ids:
            row.finish_reason = "stop"
            return
        row.generated.append(token)
        row.text = self.lm.tokenizer.decode(row.generated, skip_special_tokens=True)
        row.text, stopped = cut_at_stop(row.text, row.params.stop)
        if stopped:
            row.finish_reason = "stop"
        elif len(row.generated) >= row.params.max_new_tokens:
            row.finish_reason = "length"

    def _merge(self, new_rows: list[Row], cache: DynamicCache, mask: torch.Tensor) -> None:
        if self.cache is None or not self.rows:
            self.rows, self.cache, self.mask = list(new_rows), cache, mask
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            # keys/values: (B, heads, T, head_dim)
            old.keys = torch.cat([_left_pad(old.keys, width, 2), _left_pad(new.keys, width, 2)])
            old.values = torch.cat(
                [_left_pad(old.values, width, 2), _left_pad(new.values, width, 2)]
            )
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(mask, width, 1)])
        self.rows.extend(new_rows)

    def _drop(self, leaving: set[int]) -> None:
        if not leaving:
            return
        keep = [i for i, r in enumerate(self.rows) if id(r) not in leaving]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, self.mask[:0, :0]
            self.next_tokens = self.next_tokens[:0]
            return
        index = torch.tensor(keep, device=self.lm.device)
        self.mask, self.next_tokens = self.mask[index], self.next_tokens[index]
        assert self.cache is not None
        self.cache.batch_select_indices(index)
        # Columns that only departed rows attended to are dead weight in every later step.
        start = int(self.mask.any(dim=0).nonzero()[0])
        if start > 0:
            self.mask = self.mask[:, start:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]


def generate(
    lm: LoadedModel, prompts: list[list[int]], params: list[SamplingParams]
) -> list[Generation]:
    """Generate for a fixed set of prompts in one batch (no scheduler); results in input order."""
    batch = DecodeBatch(lm)
    rows = [Row(p, sp) for p, sp in zip(prompts, params, strict=True)]
    batch.admit(rows)
    while len(batch):
        batch.step()
    return [r.result() for r in rows]
