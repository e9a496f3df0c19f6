"""Token-level comparison gate: does the new deployment read text like the current one?

Before live traffic moves, both slots score the same probe texts with the token-analysis pattern
(`{"task": "analyze"}`), each text sent to each slot by name. The gate then compares, pooled over
every scored token: mean log-probability, the worst per-text perplexity ratio, the distribution of
ranks over the GLTR buckets (total variation distance), p95 latency and the error rate. Each check
has a threshold from stack config; the report names what was compared and why it passed or not.

A model that tokenizes the same texts into the same tokens and predicts them as well passes; a
damaged or mis-converted model (wrong dtype, truncated weights, a different tokenizer) does not.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from pydantic.dataclasses import dataclass as pydantic_dataclass

from delivery.fields import SPEC_CONFIG, Flag, Spec, items, number, whole
from delivery.workspace import WorkspaceClient

BUCKETS = ("top10", "top100", "top1000", "beyond")
_BUCKET_LIMITS = (10, 100, 1000)

# Varied registers (prose, code, numbers, dialogue, instructions), about 30 tokens each: enough
# for a few hundred scored tokens in one short request per text.
DEFAULT_PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
    "Azure Machine Learning serves models behind managed online endpoints with blue and green "
    "deployments.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong stepped onto the surface first.",
    "Please summarise the attached report in three bullet points for the board meeting.",
    "Water boils at 100 degrees Celsius at sea level, but at a lower temperature in the mountains.",
    '"Are you coming tonight?" she asked. "Only if the train is on time," he replied.',
    "To reset your password, open the settings page, choose security, and follow the link.",
)


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class GatePolicy(Spec):
    """Probe texts and the thresholds the candidate must meet against the current deployment."""

    enabled: Flag = True
    probe_texts: Annotated[
        tuple[str, ...],
        items(lambda t: isinstance(t, str) and t.strip(), "a list of non-empty strings"),
    ] = DEFAULT_PROBE_TEXTS
    # nats per token the candidate's pooled mean log-probability may fall below the current's
    max_mean_logprob_drop: number(0.0, 10.0) = 0.10
    # worst candidate/current perplexity ratio over the probe texts
    max_perplexity_ratio: number(1.0, 100.0) = 1.25
    # total variation distance between the two pooled GLTR bucket distributions (0..1)
    max_bucket_shift: number(0.0, 1.0) = 0.10
    # candidate p95 latency <= current p95 x ratio + slack (slack absorbs tiny-latency noise)
    max_latency_ratio: number(1.0, 100.0) = 1.5
    latency_slack_ms: number(0, 60_000) = 50.0
    # share of the candidate's probe requests that may fail
    max_error_rate: number(0.0, 1.0) = 0.0
    # fewer scored tokens than this is no evidence: the gate fails rather than guess
    min_scored_tokens: whole(1, 1_000_000) = 50

    def __post_init__(self) -> None:
        if self.enabled and not self.probe_texts:
            raise ValueError("gate probe_texts must not be empty when the gate is enabled")

    def to_props(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        props = asdict(self)
        props["probe_texts"] = list(self.probe_texts)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> GatePolicy:
        """Rebuild from `to_props` output (Pulumi turns ints into floats; undo that)."""
        values = dict(props)
        values["probe_texts"] = tuple(values.get("probe_texts") or DEFAULT_PROBE_TEXTS)
        if "min_scored_tokens" in values:
            values["min_scored_tokens"] = int(values["min_scored_tokens"])
        return cls(**values)


@dataclass(frozen=True)
class TextScore:
    """One probe text as a deployment scored it."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # one per predicted token (the first token has none)
    ranks: tuple[int, ...]

    @property
    def perplexity(self) -> float:
        """exp(-mean log p) over the predicted tokens."""
        return math.exp(-sum(self.logprobs) / len(self.logprobs))


@dataclass(frozen=True)
class Sample:
    """What one deployment answered to the probe set."""

    deployment: str
    scores: tuple[TextScore | None, ...]  # None where the request failed
    latencies_s: tuple[float, ...]
    errors: tuple[str, ...] = ()

    @property
    def calls(self) -> int:
        """Requests sent."""
        return len(self.scores)

    @property
    def error_rate(self) -> float:
        """Share of failed requests."""
        return len(self.errors) / self.calls if self.calls else 1.0


@dataclass(frozen=True)
class GateCheck:
    """One statistic, its limit and the verdict."""

    name: str
    passed: bool
    observed: str
    limit: str


@dataclass(frozen=True)
class GateReport:
    """What was compared and why the gate passed or failed."""

    current: str
    candidate: str
    texts: int
    scored_tokens: int
    checks: tuple[GateCheck, ...] = field(default_factory=tuple)
    note: str = ""

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if not c.passed)

    def summary(self) -> str:
        """A few lines for logs, errors and the stack output."""
        verdict = "passed" if self.passed else "FAILED"
        lines = [
            f"gate {verdict}: {self.candidate} (candidate) vs {self.current} (current) on "
            f"{self.texts} probe texts, {self.scored_tokens} scored tokens"
        ]
        if self.note:
            lines.append(f"  note: {self.note}")
        for c in self.checks:
            lines.append(
                f"  {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.observed} (limit {c.limit})"
            )
        return "\n".join(lines)


class GateFailedError(RuntimeError):
    """The candidate did not meet the gate; traffic stayed on the current deployment."""

    def __init__(self, endpoint: str, report: GateReport) -> None:
        super().__init__(
            f"{endpoint}: {report.summary()}\ntraffic stays on {report.current}; the update failed"
        )
        self.report = report


def probe_request(text: str) -> str:
    """The analysis request one probe text is sent as (no alternatives: only ranks matter)."""
    return json.dumps({"task": "analyze", "text": text, "top_k": 0})


def parse_analysis(body: str) -> TextScore:
    """Token ids, log-probs and ranks from an analysis response body."""
    payload = json.loads(body)
    tokens = payload["tokens"]
    scored = [t for t in tokens if t.get("logprob") is not None]
    if not scored:
        raise ValueError("the analysis scored no tokens")
    return TextScore(
        token_ids=tuple(int(t["id"]) for t in tokens),
        logprobs=tuple(float(t["logprob"]) for t in scored),
        ranks=tuple(int(t["rank"]) for t in scored),
    )


def measure(
    invoke: Callable[[str], str],
    deployment: str,
    texts: Sequence[str],
    clock: Callable[[], float] = time.perf_counter,
) -> Sample:
    """Send each probe text once through `invoke`; time it and parse the answer."""
    scores: list[TextScore | None] = []
    latencies: list[float] = []
    errors: list[str] = []
    for text in texts:
        start = clock()
        try:
            scores.append(parse_analysis(invoke(probe_request(text))))
        except Exception as exc:  # any failure is an error the gate counts, with its text
            scores.append(None)
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        latencies.append(clock() - start)
    return Sample(deployment, tuple(scores), tuple(latencies), tuple(errors))


def bucket_shares(ranks: Sequence[int]) -> dict[str, float]:
    """Share of ranks in each GLTR bucket (1-10, 11-100, 101-1000, beyond)."""
    counts = dict.fromkeys(BUCKETS, 0)
    for rank in ranks:
        index = next((i for i, limit in enumerate(_BUCKET_LIMITS) if rank <= limit), 3)
        counts[BUCKETS[index]] += 1
    total = max(len(ranks), 1)
    return {b: counts[b] / total for b in BUCKETS}


def p95(values: Sequence[float]) -> float:
    """95th percentile, nearest rank (no interpolation: the samples are few)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)] if ordered else 0.0


def compare(current: Sample, candidate: Sample, policy: GatePolicy) -> GateReport:
    """Judge the candidate against the current deployment on the same probe texts."""
    pairs = [
        (c, n)
        for c, n in zip(current.scores, candidate.scores, strict=True)
        if c is not None and n is not None
    ]
    cand_scored = [n for n in candidate.scores if n is not None]
    tokens = sum(len(n.logprobs) for n in cand_scored)
    checks = [
        GateCheck(
            "error rate",
            candidate.error_rate <= policy.max_error_rate,
            f"{len(candidate.errors)}/{candidate.calls}"
            + (f" ({candidate.errors[0]})" if candidate.errors else ""),
            f"{policy.max_error_rate:.0%}",
        )
    ]
    note = ""
    if not pairs:
        # The current slot cannot answer analysis (e.g. deployed before the gate existed):
        # nothing to compare against, so only the candidate's own health is judged.
        note = f"{current.deployment} answered no probe ({'; '.join(current.errors[:1])})"
        checks.append(
            GateCheck(
                "scored tokens",
                tokens >= policy.min_scored_tokens,
                str(tokens),
                f">= {policy.min_scored_tokens}",
            )
        )
        return GateReport(
            current.deployment, candidate.deployment, len(pairs), tokens, tuple(checks), note
        )

    cur_lp = [lp for c, _ in pairs for lp in c.logprobs]
    new_lp = [lp for _, n in pairs for lp in n.logprobs]
    scored = min(len(cur_lp), len(new_lp))
    checks.append(
        GateCheck(
            "scored tokens",
            scored >= policy.min_scored_tokens,
            str(scored),
            f">= {policy.min_scored_tokens}",
        )
    )
    drop = sum(cur_lp) / len(cur_lp) - sum(new_lp) / len(new_lp)
    checks.append(
        GateCheck(
            "mean log-prob drop",
            drop <= policy.max_mean_logprob_drop,
            f"{drop:+.4f} nats/token ({sum(new_lp) / len(new_lp):.4f} vs "
            f"{sum(cur_lp) / len(cur_lp):.4f})",
            f"{policy.max_mean_logprob_drop:.4f}",
        )
    )
    ratios = [n.perplexity / c.perplexity for c, n in pairs]
    worst = max(range(len(ratios)), key=ratios.__getitem__)
    checks.append(
        GateCheck(
            "worst perplexity ratio",
            ratios[worst] <= policy.max_perplexity_ratio,
            f"{ratios[worst]:.4f} on text {worst + 1} "
            f"({pairs[worst][1].perplexity:.2f} vs {pairs[worst][0].perplexity:.2f})",
            f"{policy.max_perplexity_ratio:.4f}",
        )
    )
    cur_b = bucket_shares([r for c, _ in pairs for r in c.ranks])
    new_b = bucket_shares([r for _, n in pairs for r in n.ranks])
    shift = 0.5 * sum(abs(cur_b[b] - new_b[b]) for b in BUCKETS)
    checks.append(
        GateCheck(
            "GLTR bucket shift (TVD)",
            shift <= policy.max_bucket_shift,
            f"{shift:.4f} (top10 {new_b['top10']:.1%} vs {cur_b['top10']:.1%})",
            f"{policy.max_bucket_shift:.4f}",
        )
    )
    if any(c.token_ids != n.token_ids for c, n in pairs):
        note = "the slots tokenize the probe texts differently: per-token figures are pooled"
    cur_p95, new_p95 = p95(current.latencies_s) * 1000, p95(candidate.latencies_s) * 1000
    allowed = cur_p95 * policy.max_latency_ratio + policy.latency_slack_ms
    checks.append(
        GateCheck(
            "p95 latency",
            new_p95 <= allowed,
            f"{new_p95:.0f} ms vs {cur_p95:.0f} ms",
            f"{allowed:.0f} ms",
        )
    )
    return GateReport(
        current.deployment, candidate.deployment, len(pairs), scored, tuple(checks), note
    )


def run_gate(
    workspace: WorkspaceClient,
    endpoint: str,
    current: str,
    candidate: str,
    policy: GatePolicy,
    clock: Callable[[], float] = time.perf_counter,
) -> GateReport:
    """Probe both deployments by name (0% traffic is fine) and compare them."""
    samples = [
        measure(
            lambda body, name=name: workspace.invoke(endpoint, name, body),
            name,
            policy.probe_texts,
            clock,
        )
        for name in (current, candidate)
    ]
    return compare(samples[0], samples[1], policy)
