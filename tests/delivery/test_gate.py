"""Token-level gate: statistics on fixed inputs, and real models scored by the scoring service."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable

import pytest
import torch

from delivery.alerts import FiredAlert, concerning, parse_alerts
from delivery.gate import (
    GateFailedError,
    GatePolicy,
    GateReport,
    Sample,
    TextScore,
    bucket_shares,
    compare,
    measure,
    p95,
    parse_analysis,
)
from scoring.model import LoadedModel
from scoring.service import ScoringService
from scoring.settings import ScoringSettings

POLICY = GatePolicy(min_scored_tokens=4)


def text(logprobs: list[float], ranks: list[int]) -> TextScore:
    """A scored text with token ids 0..n (the first token is never scored)."""
    return TextScore(tuple(range(len(logprobs) + 1)), tuple(logprobs), tuple(ranks))


def sample(name: str, texts: list[TextScore | None], latency_s: float = 0.1) -> Sample:
    """A probe sample with one fixed latency per text and an error where a text is None."""
    errors = tuple("HttpResponseError: 500" for t in texts if t is None)
    return Sample(name, tuple(texts), tuple(latency_s for _ in texts), errors)


BASE = [text([-1.0, -2.0, -0.5], [1, 3, 1]), text([-3.0, -1.5], [20, 2])]


def scorer(lm: LoadedModel) -> Callable[[str], str]:
    """An invoke function answering through the real scoring service over `lm`."""
    service = ScoringService(lm, ScoringSettings(patterns="analyze"))
    return lambda body: json.dumps(service.handle(body.encode()).body)


def fixed_clock() -> Callable[[], float]:
    """A clock that advances 10 ms per reading: every request 'takes' 10 ms."""
    ticks = itertools.count()
    return lambda: next(ticks) * 0.01


def with_scaled_head(lm: LoadedModel, factor: float) -> LoadedModel:
    """A copy whose output head is scaled: sharper, wrong predictions (a bad conversion)."""
    model = copy.deepcopy(lm.model)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(factor)
    return LoadedModel(model, lm.tokenizer, lm.device, lm.context_length, lm.name)


def with_noise(lm: LoadedModel, scale: float) -> LoadedModel:
    """A copy with Gaussian noise of `scale` x each matrix's std added (damaged weights)."""
    model = copy.deepcopy(lm.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.add_(torch.randn(weight.shape, generator=generator) * weight.std() * scale)
    return LoadedModel(model, lm.tokenizer, lm.device, lm.context_length, lm.name)


def test_identical_answers_pass_every_check() -> None:
    """The same scores on both sides: zero drop, ratio 1, no bucket shift."""
    report = compare(sample("blue", BASE), sample("green", BASE), POLICY)
    assert report.passed, report.summary()
    assert report.scored_tokens == 5


def test_a_lower_mean_logprob_fails_with_the_drop_in_the_report() -> None:
    """Each token 0.5 nats less likely: the drop check fails and says by how much."""
    worse = [text([lp - 0.5 for lp in t.logprobs], list(t.ranks)) for t in BASE]
    report = compare(sample("blue", BASE), sample("green", worse), POLICY)
    assert [c.name for c in report.failures] == ["mean log-prob drop", "worst perplexity ratio"]
    assert "+0.5000 nats/token" in report.summary()


def test_a_more_confident_candidate_is_not_a_drop() -> None:
    """Higher log-probs are no regression."""
    better = [text([lp + 0.3 for lp in t.logprobs], list(t.ranks)) for t in BASE]
    assert compare(sample("blue", BASE), sample("green", better), POLICY).passed


def test_a_rank_distribution_shift_fails_the_bucket_check() -> None:
    """Same log-probs but the ranks move out of the top 10: the GLTR check fails."""
    shifted = [text(list(t.logprobs), [500] * len(t.ranks)) for t in BASE]
    report = compare(sample("blue", BASE), sample("green", shifted), POLICY)
    assert [c.name for c in report.failures] == ["GLTR bucket shift (TVD)"]


def test_candidate_errors_fail_the_error_rate_check() -> None:
    """One failed probe of two is a 50% error rate against a 0% limit."""
    report = compare(sample("blue", BASE), sample("green", [BASE[0], None]), POLICY)
    assert "error rate" in [c.name for c in report.failures]
    assert "1/2 (HttpResponseError: 500)" in report.summary()


def test_slower_candidate_fails_the_latency_check() -> None:
    """p95 3x the current's, above ratio 1.5 plus 50 ms slack."""
    report = compare(sample("blue", BASE, 0.2), sample("green", BASE, 0.6), POLICY)
    assert [c.name for c in report.failures] == ["p95 latency"]


def test_too_few_tokens_is_no_evidence() -> None:
    """Below min_scored_tokens the gate fails instead of guessing."""
    policy = GatePolicy(min_scored_tokens=100)
    report = compare(sample("blue", BASE), sample("green", BASE), policy)
    assert [c.name for c in report.failures] == ["scored tokens"]


def test_a_current_slot_without_analysis_judges_the_candidate_alone() -> None:
    """A current deployment that cannot answer probes leaves only the candidate's health."""
    report = compare(sample("blue", [None, None]), sample("green", BASE), POLICY)
    assert report.passed
    assert "blue answered no probe" in report.note


def test_statistics_helpers_on_fixed_inputs() -> None:
    """Nearest-rank p95 and bucket shares over the GLTR limits."""
    assert p95([0.1 * i for i in range(1, 21)]) == pytest.approx(1.9)
    assert bucket_shares([1, 10, 11, 100, 101, 1000, 1001, 5]) == {
        "top10": 3 / 8,
        "top100": 2 / 8,
        "top1000": 2 / 8,
        "beyond": 1 / 8,
    }


def test_parse_analysis_skips_the_unscored_first_token() -> None:
    """The first token has logprob null; it counts as a token id, not a score."""
    body = json.dumps(
        {
            "tokens": [
                {"id": 7, "token": "a", "logprob": None, "rank": None, "top": []},
                {"id": 9, "token": " b", "logprob": -1.25, "rank": 3, "top": []},
            ],
            "summary": {
                "num_tokens": 2,
                "scored_tokens": 1,
                "mean_logprob": -1.25,
                "perplexity": 3.49,
                "buckets": {"top10": 1, "top100": 0, "top1000": 0, "beyond": 0},
            },
        }
    )
    assert parse_analysis(body) == TextScore((7, 9), (-1.25,), (3,))


def test_an_answer_outside_the_contract_is_refused() -> None:
    """The gate reads analyses through the scoring contract: a malformed one is an error."""
    with pytest.raises(ValueError, match="summary"):
        parse_analysis(json.dumps({"tokens": []}))


def test_gate_failure_message_names_both_slots_and_the_failed_check() -> None:
    """The error a failed gate raises carries the whole report."""
    report = GateReport("blue", "green", 2, 5, ())
    worse = compare(
        sample("blue", BASE), sample("green", [text([-9.0] * 3, [900] * 3)] * 2), POLICY
    )
    error = GateFailedError("ep", worse)
    assert "green (candidate) vs blue (current)" in str(error)
    assert "FAIL mean log-prob drop" in str(error)
    assert report.passed  # no checks, nothing failed


def test_the_same_tiny_model_passes_the_gate(tiny_lm: LoadedModel) -> None:
    """Two deployments of one model score the probe texts identically."""
    policy = GatePolicy()
    current = measure(scorer(tiny_lm), "blue", policy.probe_texts, fixed_clock())
    candidate = measure(scorer(tiny_lm), "green", policy.probe_texts, fixed_clock())
    report = compare(current, candidate, policy)
    assert report.passed, report.summary()
    assert report.scored_tokens >= policy.min_scored_tokens


def test_a_badly_converted_tiny_model_fails_the_gate(tiny_lm: LoadedModel) -> None:
    """Output head scaled 4x: the probe texts become far less likely, and the gate says so."""
    policy = GatePolicy()
    current = measure(scorer(tiny_lm), "blue", policy.probe_texts, fixed_clock())
    broken = measure(
        scorer(with_scaled_head(tiny_lm, 4.0)), "green", policy.probe_texts, fixed_clock()
    )
    report = compare(current, broken, policy)
    assert not report.passed
    assert {c.name for c in report.failures} >= {"mean log-prob drop", "worst perplexity ratio"}


@pytest.mark.slow
def test_the_demo_model_passes_against_itself_and_fails_against_a_noisy_copy(
    demo_lm: LoadedModel,
) -> None:
    """SmolLM2: identical copies pass; 10% weight noise fails on log-prob and perplexity."""
    policy = GatePolicy()
    texts = policy.probe_texts[:4]
    current = measure(scorer(demo_lm), "blue", texts, fixed_clock())
    same = measure(scorer(demo_lm), "green", texts, fixed_clock())
    assert compare(current, same, policy).passed
    noisy = measure(scorer(with_noise(demo_lm, 0.1)), "green", texts, fixed_clock())
    report = compare(current, noisy, policy)
    assert {c.name for c in report.failures} >= {"mean log-prob drop", "worst perplexity ratio"}


def test_alert_items_are_parsed_with_their_deployment_dimension() -> None:
    """Alerts Management items: rule name from the rule id, slot from the dimension."""
    items = [
        {
            "properties": {
                "essentials": {
                    "alertRule": "/subscriptions/s/resourceGroups/rg/providers/microsoft.insights/"
                    "metricAlerts/alert-byom-dev-generate-5xx",
                    "monitorCondition": "Fired",
                    "severity": "Sev1",
                },
                "context": {
                    "context": {
                        "condition": {
                            "allOf": [{"dimensions": [{"name": "deployment", "value": "green"}]}]
                        }
                    }
                },
            }
        },
        {"properties": {"essentials": {"alertRule": "other", "monitorCondition": "Fired"}}},
    ]
    fired = parse_alerts(items, ["alert-byom-dev-generate-5xx"])
    assert fired == [FiredAlert("alert-byom-dev-generate-5xx", "green", "Sev1")]
    assert concerning(fired, "blue") == []
    assert concerning([FiredAlert("endpoint-wide")], "blue") == [FiredAlert("endpoint-wide")]
