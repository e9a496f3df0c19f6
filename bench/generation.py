"""Generation throughput through the real HTTP server: continuous batching vs one at a time.

Starts ``azmlinfsrv`` twice on the demo model: once with ``SCORING_ENGINE=serial`` (the naive
baseline: one request at a time, plain ``model.generate`` per request) driven by one client, and
once with the continuous-batching engine driven by 1, 4 and 16 concurrent clients. Prints
aggregate generated tokens/s, p50/p95 latency and the ratio against the baseline.

    python -m bench.generation --model-dir ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.machine import describe_machine
from scoring.client import ScoringClient
from scoring.demo_model import DEFAULT_OUT
from scoring.local_server import LocalServer

QUESTIONS = [
    "Explain what a managed online endpoint is.",
    "Write a short poem about the ocean.",
    "Give three tips for writing clear code.",
    "What is the capital of Italy and what is it known for?",
    "Describe a cat to someone who has never seen one.",
    "Why is the sky blue?",
    "List some fruits that are rich in vitamin C.",
    "What does a platform team do?",
]


@dataclass(frozen=True)
class RunResult:
    clients: int
    requests: int
    tokens: int
    wall_s: float
    latencies: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def drive(url: str, clients: int, requests_per_client: int, max_new_tokens: int) -> RunResult:
    """``clients`` closed-loop clients, each sending its requests back to back."""
    client = ScoringClient(url + "/score", timeout_s=600, max_attempts=1)

    def one_client(index: int) -> tuple[int, list[float]]:
        tokens, latencies = 0, []
        for n in range(requests_per_client):
            question = QUESTIONS[(index + n) % len(QUESTIONS)]
            start = time.perf_counter()
            result = client.generate(
                messages=[{"role": "user", "content": question}], max_new_tokens=max_new_tokens
            )
            latencies.append(time.perf_counter() - start)
            tokens += result["usage"]["completion_tokens"]
        return tokens, latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = list(pool.map(one_client, range(clients)))
    wall = time.perf_counter() - start
    return RunResult(
        clients,
        clients * requests_per_client,
        sum(t for t, _ in outcomes),
        wall,
        [lat for _, lats in outcomes for lat in lats],
    )


def row(label: str, result: RunResult, baseline: float) -> str:
    return (
        f"{label:<28}{result.clients:>8}{result.requests:>9}{result.tokens:>8}"
        f"{result.tokens_per_s:>10.1f}{result.percentile(0.5):>9.2f}{result.percentile(0.95):>9.2f}"
        f"{result.tokens_per_s / baseline:>8.1f}x"
    )


def serial_baseline(model_dir: Path, args: argparse.Namespace) -> RunResult:
    """One client, one request at a time, plain ``model.generate`` per request."""
    with LocalServer(model_dir, env={"SCORING_ENGINE": "serial"}, threads=4) as server:
        drive(server.url, 1, 1, 4)  # warm-up
        return drive(server.url, 1, args.baseline_requests, args.max_new_tokens)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="requests per client")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args(argv)
    model_dir = args.model_dir.expanduser()
    print(describe_machine())
    print(f"model {model_dir.name}; greedy chat requests, max_new_tokens {args.max_new_tokens}\n")

    baselines = [serial_baseline(model_dir, args)]
    widest = max(args.concurrency)
    batched_env = {"SCORING_MAX_BATCH_SIZE": str(widest), "SCORING_MAX_QUEUE": str(4 * widest)}
    results = []
    with LocalServer(model_dir, env=batched_env, threads=widest) as server:
        drive(server.url, 1, 1, 4)
        for clients in args.concurrency:
            results.append(drive(server.url, clients, args.rounds, args.max_new_tokens))
    # Measured before and after; the faster of the two makes the ratio conservative under noise.
    baselines.append(serial_baseline(model_dir, args))
    base = max(baselines, key=lambda r: r.tokens_per_s)

    header = f"{'':<28}{'clients':>8}{'requests':>9}{'tokens':>8}{'tok/s':>10}{'p50 s':>9}"
    print(header + f"{'p95 s':>9}{'ratio':>9}")
    for n, baseline in enumerate(baselines, start=1):
        print(row(f"baseline {n}: serial generate()", baseline, base.tokens_per_s))
    for result in results:
        print(row("continuous batching", result, base.tokens_per_s))
    best = results[-1].tokens_per_s / base.tokens_per_s
    print(f"\nthroughput at {results[-1].clients} clients: {best:.1f}x the serial baseline")


if __name__ == "__main__":
    main()
