"""The demo: a real small model behind both real servers, called like an app would.

Builds the demo model if it is missing, starts ``azmlinfsrv`` on ``scoring/score.py``, calls both
patterns through the client (one chat streamed as it is decoded), stops it; then starts the
OpenAI-compatible server (``python -m scoring.serve``) and calls it with the ``openai`` SDK.

    python -m scoring.demo --model-dir ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from scoring.cli import format_analysis, format_generation
from scoring.client import ScoringClient, ScoringError
from scoring.demo_model import DEFAULT_OUT, ensure_demo_model
from scoring.local_server import LocalOpenAIServer, LocalServer
from scoring.settings import ScoringSettings

QUESTIONS = ["What is the capital of France?", "Give me three tips for writing clear code."]
# A laptop or a shared CPU decodes slowly: give each request more than the 60 s default.
DEMO_ENV = ScoringSettings.environment(request_timeout_s=300)
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Colorless green ideas sleep furiously beneath quantum marmalade.",
]


def banner(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 72 - len(title)))


def run_demo(model_dir: Path) -> None:
    banner(f"starting azmlinfsrv on scoring/score.py with {model_dir.name}")
    started = time.monotonic()
    with LocalServer(model_dir, env=DEMO_ENV) as server:
        print(f"healthy at {server.url} after {time.monotonic() - started:.1f} s")
        client = ScoringClient(server.url + "/score")

        for question in QUESTIONS:
            banner(f"generate (chat): {question}")
            t0 = time.monotonic()
            result = client.generate(
                messages=[{"role": "user", "content": question}], max_new_tokens=64
            )
            print(format_generation(result) + f"  [{time.monotonic() - t0:.2f} s]")

        banner("generate, streamed: each piece is printed as the server decodes it")
        question = "Write a short poem about the sea."
        print(f"> {question}\n", end="", flush=True)
        t0 = time.monotonic()
        first: float | None = None
        for event in client.stream_generate(
            messages=[{"role": "user", "content": question}], max_new_tokens=64
        ):
            first = first if first is not None else time.monotonic() - t0
            sys.stdout.write(event["text"])
            sys.stdout.flush()
        print(
            f"\n  [first piece after {first or 0:.2f} s, all after {time.monotonic() - t0:.2f} s]"
        )

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
    run_openai_demo(model_dir)


def run_openai_demo(model_dir: Path) -> None:
    """The second front door: the same model and service behind OpenAI's API."""
    from openai import OpenAI

    banner("starting the OpenAI-compatible server: python -m scoring.serve")
    started = time.monotonic()
    with LocalOpenAIServer(model_dir, env=DEMO_ENV) as server:
        print(f"ready at {server.url} after {time.monotonic() - started:.1f} s")
        # On an endpoint: api_key=get_bearer_token_provider(DefaultAzureCredential(), AML_SCOPE)
        client = OpenAI(base_url=server.url + "/v1", api_key="local-no-auth")
        model = client.models.list().data[0].id

        banner(f"openai SDK: chat.completions.create(model={model!r})")
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=32,
        )
        usage = reply.usage
        print(reply.choices[0].message.content)
        if usage is not None:
            print(
                f"  [finish: {reply.choices[0].finish_reason}; tokens: {usage.prompt_tokens} in, "
                f"{usage.completion_tokens} out]"
            )

        banner("openai SDK, streamed, usage in the last chunk")
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Give me three tips for writing clear code."}],
            temperature=0,
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                sys.stdout.write(chunk.choices[0].delta.content)
                sys.stdout.flush()
            elif chunk.usage is not None:
                print(f"\n  [usage: {chunk.usage.completion_tokens} tokens out]")
    banner("server stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    run_demo(ensure_demo_model(args.model_dir.expanduser()))


if __name__ == "__main__":
    main()
