"""The engines side by side, one run, the same requests: where this project's front door stands.

Runs, one after the other on the demo model (fp32 on CPU), the same greedy chat requests:

1. plain ``model.generate`` one request at a time, in this process (the naive baseline);
2. this project's server (``azmlinfsrv`` on ``scoring/score.py``) with each engine
   (``SCORING_ENGINE`` = serial, continuous, vllm) at 1, 4 and 16 closed-loop clients;
3. vLLM's own OpenAI server (``python -m vllm.entrypoints.openai.api_server``), configured like
   the project's vLLM engine (same dtype, sequences, context and KV cache), at the same clients;
4. plain ``generate`` again (the faster of the two baselines makes ratios conservative);

then token analysis, 16 texts of 512 tokens per request, through the project's server on each
engine. Prints tokens/s, p50/p95 latency, time to first token where a client can see it (vLLM's
server streams; ``/score`` answers whole), start-up time of each server, and the ratios against
plain ``generate`` and against vLLM's own server.

    python -m bench.engines --model-dir ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.generation import QUESTIONS
from bench.machine import describe_machine
from bench.token_analysis import text_ids
from scoring.batching import plain_generate
from scoring.client import ScoringClient
from scoring.demo_model import DEFAULT_OUT
from scoring.generation import SamplingParams
from scoring.local_server import LocalServer, free_port
from scoring.model import LoadedModel, load_model

ENGINES = ("serial", "continuous", "vllm")
# One configuration for the project's vLLM engine and vLLM's own server.
MAX_INPUT_TOKENS, MAX_NEW_TOKENS_LIMIT, KV_CACHE_GIB = 1024, 256, 2


@dataclass
class Run:
    """One row: a target at one concurrency."""

    label: str
    clients: int
    tokens: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0

    def percentile(self, values: list[float], q: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# A request function: question -> (completion tokens, latency s, time to first token s or None)
Ask = Callable[[str], tuple[int, float, float | None]]


def drive(label: str, ask: Ask, clients: int, rounds: int) -> Run:
    """``clients`` closed-loop clients, each sending ``rounds`` requests back to back."""
    run = Run(label, clients)

    def one_client(index: int) -> list[tuple[int, float, float | None]]:
        return [ask(QUESTIONS[(index + n) % len(QUESTIONS)]) for n in range(rounds)]

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = [o for per_client in pool.map(one_client, range(clients)) for o in per_client]
    run.wall_s = time.perf_counter() - start
    run.tokens = sum(t for t, _, _ in outcomes)
    run.latencies = [lat for _, lat, _ in outcomes]
    run.ttfts = [ttft for _, _, ttft in outcomes if ttft is not None]
    return run


def plain_generate_run(lm: LoadedModel, requests_n: int, max_new: int) -> Run:
    def ask(question: str) -> tuple[int, float, float | None]:
        text = lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        ids = lm.tokenizer(text, add_special_tokens=False).input_ids
        start = time.perf_counter()
        result = plain_generate(lm, ids, SamplingParams(max_new_tokens=max_new))
        return result.completion_tokens, time.perf_counter() - start, None

    ask(QUESTIONS[0])  # warm-up
    run = Run("plain generate(), 1 at a time", 1)
    start = time.perf_counter()
    for n in range(requests_n):
        tokens, latency, _ = ask(QUESTIONS[n % len(QUESTIONS)])
        run.tokens += tokens
        run.latencies.append(latency)
    run.wall_s = time.perf_counter() - start
    return run


def project_asker(url: str, max_new: int) -> Ask:
    client = ScoringClient(url + "/score", timeout_s=600, max_attempts=1)

    def ask(question: str) -> tuple[int, float, float | None]:
        start = time.perf_counter()
        result = client.generate(
            messages=[{"role": "user", "content": question}], max_new_tokens=max_new
        )
        return result["usage"]["completion_tokens"], time.perf_counter() - start, None

    return ask


def openai_asker(url: str, model: str, max_new: int) -> Ask:
    """Streaming chat completions: the first content chunk gives the time to first token."""

    def ask(question: str) -> tuple[int, float, float | None]:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": question}],
            "max_tokens": max_new,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start = time.perf_counter()
        first, tokens = None, 0
        with requests.post(url + "/v1/chat/completions", json=body, stream=True, timeout=600) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                    first = time.perf_counter() - start
        return tokens, time.perf_counter() - start, first

    return ask


@contextmanager
def project_server(model_dir: Path, engine: str, clients: int) -> Iterator[LocalServer]:
    env = {
        "SCORING_ENGINE": engine,
        "SCORING_DEVICE": "cpu",
        "SCORING_MAX_BATCH_SIZE": str(clients),
        "SCORING_MAX_QUEUE": str(4 * clients),
        "SCORING_MAX_INPUT_TOKENS": str(MAX_INPUT_TOKENS),
        "SCORING_MAX_NEW_TOKENS": str(MAX_NEW_TOKENS_LIMIT),
        "SCORING_KV_CACHE_GIB": str(KV_CACHE_GIB),
        "SCORING_REQUEST_TIMEOUT_S": "600",
    }
    with LocalServer(model_dir, env=env, threads=2 * clients) as server:
        yield server


@contextmanager
def vllm_openai_server(model_dir: Path, clients: int) -> Iterator[str]:
    """vLLM's own server, configured as the project's vLLM engine is (scoring.vllm_engine)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--dtype",
        "float32",
        "--max-model-len",
        str(MAX_INPUT_TOKENS + MAX_NEW_TOKENS_LIMIT),
        "--max-num-seqs",
        str(clients),
        "--kv-cache-memory-bytes",
        str(KV_CACHE_GIB << 30),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-log-stats",
    ]
    env = {
        **os.environ,
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB),
        "VLLM_USE_AOT_COMPILE": "0",  # as scoring.vllm_engine does: same start-up path
    }
    url = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile(prefix="vllm-server-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM server exited {process.returncode}; see {log.name}")
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        else:
            raise TimeoutError(f"vLLM server not healthy in 900 s; see {log.name}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def analysis_run(url: str, texts: list[str], repeats: int) -> tuple[int, float]:
    """``repeats`` requests of all ``texts``; returns (tokens scored, seconds)."""
    client = ScoringClient(url + "/score", timeout_s=600, max_attempts=1)
    client.analyze(texts[:1], top_k=5)  # warm-up
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        result = client.analyze(texts, top_k=5)
        tokens += sum(r["summary"]["num_tokens"] for r in result["results"])
    return tokens, time.perf_counter() - start


def vllm_version() -> str:
    """The installed vLLM build (``vllm-cpu`` here, ``vllm`` on GPU), or that there is none."""
    for distribution in ("vllm-cpu", "vllm"):
        try:
            return f"{importlib.metadata.version(distribution)} ({distribution})"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def print_table(runs: list[Run], baseline: float, reference: dict[int, float]) -> None:
    print(
        f"{'':<34}{'clients':>8}{'tokens':>8}{'tok/s':>9}{'p50 s':>8}{'p95 s':>8}"
        f"{'TTFT p50':>10}{'x plain':>9}{'x vLLM srv':>11}"
    )
    for run in runs:
        vs_vllm = run.tokens_per_s / reference[run.clients] if run.clients in reference else None
        print(
            f"{run.label:<34}{run.clients:>8}{run.tokens:>8}{run.tokens_per_s:>9.1f}"
            f"{fmt(run.percentile(run.latencies, 0.5), '.2f'):>8}"
            f"{fmt(run.percentile(run.latencies, 0.95), '.2f'):>8}"
            f"{fmt(run.percentile(run.ttfts, 0.5), '.2f'):>10}"
            f"{run.tokens_per_s / baseline:>8.1f}x{fmt(vs_vllm, '.2f'):>10}x"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--plain-requests", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="requests per client")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--analysis-texts", type=int, default=16)
    parser.add_argument("--analysis-tokens", type=int, default=512)
    parser.add_argument("--analysis-repeats", type=int, default=2)
    args = parser.parse_args(argv)
    model_dir = args.model_dir.expanduser()
    widest = max(args.concurrency)

    lm = load_model(str(model_dir), device="cpu")
    print(describe_machine(lm))
    print(f"vllm {vllm_version()}")
    print(f"load average at start: {os.getloadavg()}")
    print(f"greedy chat requests, max_new_tokens {args.max_new_tokens}, {args.rounds} per client\n")
    texts = [
        lm.tokenizer.decode(text_ids(lm, args.analysis_tokens - 1))
        for _ in range(args.analysis_texts)
    ]

    runs, startups, analysis = (
        [plain_generate_run(lm, args.plain_requests, args.max_new_tokens)],
        {},
        {},
    )
    for engine in args.engines:
        started = time.perf_counter()
        with project_server(model_dir, engine, widest) as server:
            startups[f"project server, {engine}"] = time.perf_counter() - started
            ask = project_asker(server.url, args.max_new_tokens)
            ask(QUESTIONS[0])  # warm-up
            for clients in args.concurrency:
                runs.append(drive(f"project server, {engine}", ask, clients, args.rounds))
                print(f"  {engine} x{clients}: {runs[-1].tokens_per_s:.1f} tok/s", flush=True)
            analysis[engine] = analysis_run(server.url, texts, args.analysis_repeats)
    started = time.perf_counter()
    try:
        with vllm_openai_server(model_dir, widest) as url:
            startups["vLLM's own OpenAI server"] = time.perf_counter() - started
            ask = openai_asker(url, str(model_dir), args.max_new_tokens)
            ask(QUESTIONS[0])
            for clients in args.concurrency:
                runs.append(drive("vLLM's own OpenAI server", ask, clients, args.rounds))
                print(f"  vLLM server x{clients}: {runs[-1].tokens_per_s:.1f} tok/s", flush=True)
    except (RuntimeError, TimeoutError, requests.RequestException) as error:
        print(f"vLLM's own server: no figures ({error})")
    runs.append(plain_generate_run(lm, args.plain_requests, args.max_new_tokens))
    print(f"load average at end: {os.getloadavg()}\n")

    plain = [r for r in runs if r.label.startswith("plain")]
    baseline = max(r.tokens_per_s for r in plain)
    reference = {r.clients: r.tokens_per_s for r in runs if r.label.startswith("vLLM")}
    print_table(runs, baseline, reference)

    print("\nstart-up to healthy (s): " + ", ".join(f"{k} {v:.0f}" for k, v in startups.items()))
    print(
        f"\ntoken analysis: {args.analysis_texts} texts x {args.analysis_tokens} tokens per "
        f"request, {args.analysis_repeats} requests, top_k 5"
    )
    for engine, (tokens, seconds) in analysis.items():
        print(f"  project server, {engine:<11}{tokens / seconds:>9.0f} tokens/s ({seconds:.1f} s)")

    for label in {r.label for r in runs if r.label.startswith("project")}:
        [top] = [r for r in runs if r.label == label and r.clients == widest]
        print(
            f"\n{label} at {widest} clients: {top.tokens_per_s / baseline:.1f}x plain generate "
            f"(target 6x), {top.tokens_per_s / reference.get(widest, float('nan')):.2f}x "
            f"vLLM's own server (target 0.9x)"
        )


if __name__ == "__main__":
    main()
