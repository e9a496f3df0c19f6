"""What a long prompt arriving mid-decode costs the requests already running.

In one process on the demo model: a 64-token greedy request starts; once it has produced its
first tokens, a prompt of ``--long-tokens`` tokens arrives. Prints, for the running request, its
total latency and its longest gap between two streamed pieces, with the long prompt prefilled
whole (the old behaviour, the baseline) and in slices of ``SCORING_PREFILL_CHUNK_TOKENS`` between
decode steps; and the time to first token of the long prompt itself.

    python -m bench.long_prompt --model-dir ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.machine import describe_machine
from bench.token_analysis import text_ids
from scoring.batching import GenerationEngine
from scoring.demo_model import DEFAULT_OUT
from scoring.engine import Job
from scoring.generation import SamplingParams
from scoring.model import LoadedModel, load_model


@dataclass
class Outcome:
    latency_s: float
    max_gap_s: float
    long_first_token_s: float | None


def run(lm: LoadedModel, chunk: int | None, long_tokens: int, short_tokens: int) -> Outcome:
    engine = GenerationEngine(lm, prefill_chunk_tokens=chunk)
    prompt = lm.tokenizer("Tell me a long story about a dragon.").input_ids
    arrivals: list[float] = []
    started = threading.Event()

    def piece(_: str) -> None:
        arrivals.append(time.perf_counter())
        if len(arrivals) == 3:
            started.set()

    params = SamplingParams(short_tokens)
    start = time.perf_counter()
    short = threading.Thread(
        target=engine.submit, args=(prompt, params, Job.within(3600, on_text=piece))
    )
    short.start()
    long_first: float | None = None
    if long_tokens:
        started.wait(timeout=600)
        first: list[float] = []
        job = Job.within(3600, on_text=lambda _: first.append(time.perf_counter()))
        sent = time.perf_counter()
        engine.submit(text_ids(lm, long_tokens), SamplingParams(4), job)
        long_first = (first[0] if first else time.perf_counter()) - sent
    short.join()
    latency = arrivals[-1] - start
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return Outcome(latency, max(gaps, default=0.0), long_first)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--long-tokens", type=int, default=3251)
    parser.add_argument("--short-tokens", type=int, default=64)
    parser.add_argument("--chunks", type=int, nargs="+", default=[256, 64])
    args = parser.parse_args(argv)
    lm = load_model(str(args.model_dir.expanduser()), device="cpu")
    lm.model.generation_config.eos_token_id = []  # no EOS: every run decodes the same length
    print(describe_machine(lm))
    print(f"running request: {args.short_tokens} tokens; long prompt: {args.long_tokens} tokens\n")
    run(lm, None, 0, 4)  # warm-up
    alone = run(lm, None, 0, args.short_tokens)
    configs: list[tuple[str, int | None]] = [("prefilled whole (baseline)", None)]
    configs += [(f"slices of {c} positions", c) for c in args.chunks]
    print(f"{'':<30}{'latency s':>10}{'max gap s':>11}{'long TTFT s':>13}{'vs alone':>10}")
    print(f"{'running request alone':<30}{alone.latency_s:>10.2f}{alone.max_gap_s:>11.2f}")
    for label, chunk in configs:
        out = run(lm, chunk, args.long_tokens, args.short_tokens)
        print(
            f"{label:<30}{out.latency_s:>10.2f}{out.max_gap_s:>11.2f}"
            f"{out.long_first_token_s or 0:>13.2f}{out.latency_s / alone.latency_s:>9.1f}x"
        )


if __name__ == "__main__":
    main()
