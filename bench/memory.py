"""Worker memory under load: RSS after warm-up, peak during and RSS after each of three loads.

Starts the real ``azmlinfsrv`` twice on the demo model, with glibc's allocator defaults (the
baseline: ``SCORING_MALLOC_ARENA_MAX=0``) and as deployed (arenas capped, trimmed after large
requests). Each load run sends ``--clients`` concurrent requests: half analyses of a
``--tokens``-token text, half chat generations. Prints the worker's RSS, the peak growth per
concurrent analysis and per batch row, and RSS after the third run over RSS after warm-up (the
target is within 1.3x).

    python -m bench.memory --model-dir ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
from transformers import AutoTokenizer

from bench.machine import describe_machine
from bench.token_analysis import PARAGRAPH
from scoring.demo_model import DEFAULT_OUT
from scoring.local_server import LocalServer

MIB = 2**20


@dataclass
class Memory:
    warm_mib: float = 0.0
    after_mib: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)


def worker_rss(server: LocalServer) -> float:
    """RSS of the gunicorn worker(s) under the server process, in MiB."""
    assert server._process is not None
    children = psutil.Process(server._process.pid).children(recursive=True)
    return sum(p.memory_info().rss for p in children) / MIB


def load_run(server: LocalServer, clients: int, text: str) -> float:
    """One burst of concurrent requests; returns the peak worker RSS seen while it ran."""
    peak, done = [worker_rss(server)], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak.append(worker_rss(server))

    def one(n: int) -> int:
        if n % 2:
            body: dict = {"text": text, "top_k": 5}
        else:
            question = f"Write a short poem about the number {n}."
            body = {"messages": [{"role": "user", "content": question}], "max_new_tokens": 48}
        return requests.post(server.url + "/score", json=body, timeout=1800).status_code

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        statuses = list(pool.map(one, range(clients)))
    done.set()
    sampler.join()
    assert set(statuses) == {200}, statuses
    return max(peak)


def measure(model_dir: Path, env: dict[str, str], clients: int, text: str) -> Memory:
    settings = {"SCORING_MAX_BATCH_SIZE": "16", "SCORING_REQUEST_TIMEOUT_S": "1800", **env}
    memory = Memory()
    with LocalServer(model_dir, env=settings, threads=clients) as server:
        load_run(server, 2, text)  # warm-up: one analysis, one generation
        time.sleep(1)
        memory.warm_mib = worker_rss(server)
        for _ in range(3):
            memory.peak_mib.append(load_run(server, clients, text))
            time.sleep(1)
            memory.after_mib.append(worker_rss(server))
    return memory


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=1000)
    args = parser.parse_args(argv)
    model_dir = args.model_dir.expanduser()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    words = PARAGRAPH.split()
    text = ""
    while len(tokenizer(text).input_ids) < args.tokens:
        text += " ".join(words) + " "
    print(describe_machine())
    print(f"{args.clients} concurrent clients per run: analyses of a {args.tokens}-token text")
    print("and 48-token chat generations, half each; worker RSS in MiB\n")
    configs = {
        "glibc defaults (baseline)": {"SCORING_MALLOC_ARENA_MAX": "0"},
        "arenas capped + trim": {},
    }
    print(f"{'':<28}{'warm':>7}{'run 1':>7}{'run 2':>7}{'run 3':>7}{'peak':>7}{'3/warm':>8}")
    for label, env in configs.items():
        m = measure(model_dir, env, args.clients, text)
        after = "".join(f"{a:>7.0f}" for a in m.after_mib)
        print(
            f"{label:<28}{m.warm_mib:>7.0f}{after}{max(m.peak_mib):>7.0f}"
            f"{m.after_mib[-1] / m.warm_mib:>8.2f}"
        )
        per_request = (max(m.peak_mib) - m.warm_mib) / args.clients
        print(f"{'':<28}peak growth per concurrent request: {per_request:.0f} MiB")


if __name__ == "__main__":
    main()
