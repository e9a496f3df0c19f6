"""The demo: a real small model behind the real Azure ML inference server, called like an app would.

Builds the demo model if it is missing, starts ``azmlinfsrv`` on ``scoring/score.py``, calls both
patterns through the client, prints the answers, and stops the server.

    python -m scoring.demo --model-dir ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from scoring.cli import format_analysis, format_generation
from scoring.client import ScoringClient, ScoringError
from scoring.demo_model import DEFAULT_OUT, ensure_demo_model
from scoring.local_server import LocalServer

QUESTIONS = ["What is the capital of France?", "Give me three tips for writing clear code."]
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Colorless green ideas sleep furiously beneath quantum marmalade.",
]


def banner(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 72 - len(title)))


def run_demo(model_dir: Path) -> None:
    banner(f"starting azmlinfsrv on scoring/score.py with {model_dir.name}")
    started = time.monotonic()
    with LocalServer(model_dir) as server:
        print(f"healthy at {server.url} after {time.monotonic() - started:.1f} s")
        client = ScoringClient(server.url + "/score")

        for question in QUESTIONS:
            banner(f"generate (chat): {question}")
            t0 = time.monotonic()
            result = client.generate(
                messages=[{"role": "user", "content": question}], max_new_tokens=64
            )
            print(format_generation(result) + f"  [{time.monotonic() - t0:.2f} s]")

        banner("generate (prompt, sampled, seed 7, stop at newline)")
        result = client.generate(
            "Once upon a time", max_new_tokens=40, temperature=0.8, top_p=0.95, seed=7, stop=["\n"]
        )
        print(format_generation(result))

        banner("analyze: a natural sentence vs. an unlikely one")
        batch = client.analyze(TEXTS, top_k=3)
        for text, analysis in zip(TEXTS, batch["results"], strict=True):
            print(f"\n{text}")
            print(format_analysis(analysis, max_rows=12))

        banner("a bad request gets a clear 4xx, and the server keeps serving")
        try:
            client.generate("hello", max_new_tokens=0)
        except ScoringError as error:
            print(f"{error} -> details {error.details}")
        print(f"health after the bad request: {'ok' if server.healthy() else 'DOWN'}")
    banner("server stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    run_demo(ensure_demo_model(args.model_dir.expanduser()))


if __name__ == "__main__":
    main()
