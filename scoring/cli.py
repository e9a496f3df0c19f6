"""Command line over the client: ``generate`` and ``analyze`` against any scoring URL.

    python -m scoring.cli --url http://127.0.0.1:5001/score generate "Write a haiku"
    python -m scoring.cli --url https://<endpoint>.<region>.inference.ml.azure.com/score --aad \\
        analyze "The quick brown fox"
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scoring.client import ScoringClient, ScoringError, aad_token_provider
from scoring.report import write_report


def format_generation(result: dict[str, Any]) -> str:
    usage = result["usage"]
    return (
        f"{result['text'].strip()}\n"
        f"  [finish: {result['finish_reason']}; tokens: {usage['prompt_tokens']} in, "
        f"{usage['completion_tokens']} out]"
    )


def format_analysis(result: dict[str, Any], max_rows: int = 40) -> str:
    """A token table (rank, log-probability, top alternatives) and the text's summary."""
    lines = [f"{'token':<18}{'rank':>8}{'logprob':>10}  top alternatives"]
    for token in result["tokens"][:max_rows]:
        rank = "-" if token["rank"] is None else str(token["rank"])
        logprob = "-" if token["logprob"] is None else f"{token['logprob']:.3f}"
        top = ", ".join(f"{alt['token']!r} {alt['logprob']:.2f}" for alt in token["top"][:3])
        lines.append(f"{token['token']!r:<18}{rank:>8}{logprob:>10}  {top}")
    hidden = len(result["tokens"]) - max_rows
    if hidden > 0:
        lines.append(f"... {hidden} more tokens")
    summary = result["summary"]
    ppl = summary["perplexity"]
    lines.append(
        f"perplexity {ppl:.2f}, mean logprob {summary['mean_logprob']:.3f}, "
        if ppl is not None
        else "perplexity n/a (a single token), "
    )
    buckets = summary["buckets"]
    lines[-1] += (
        f"GLTR buckets: top10 {buckets['top10']}, top100 {buckets['top100']}, "
        f"top1000 {buckets['top1000']}, beyond {buckets['beyond']}"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scoring.cli", description=__doc__)
    parser.add_argument("--url", required=True, help="scoring URL (ends in /score)")
    parser.add_argument("--aad", action="store_true", help="Entra ID token (managed endpoints)")
    parser.add_argument("--deployment", help="send to this deployment, ignoring traffic split")
    parser.add_argument("--json", action="store_true", help="print the raw JSON response")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="pattern 1: text generation")
    gen.add_argument("prompt")
    gen.add_argument("--chat", action="store_true", help="send as a user message")
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--stop", action="append", default=[])
    gen.add_argument("--seed", type=int)

    ana = sub.add_parser("analyze", help="pattern 2: token analysis")
    ana.add_argument("text", nargs="+", help="one or more texts")
    ana.add_argument("--top-k", type=int, default=5)
    ana.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    client = ScoringClient(
        args.url, aad_token_provider() if args.aad else None, deployment=args.deployment
    )
    try:
        if args.command == "generate":
            params = {
                "max_new_tokens": args.max_new_tokens,
                "temperature": args.temperature,
                "top_p": args.top_p,
                "top_k": args.top_k,
                "stop": args.stop,
                "seed": args.seed,
            }
            if args.chat:
                result = client.generate(
                    messages=[{"role": "user", "content": args.prompt}], **params
                )
            else:
                result = client.generate(args.prompt, **params)
            print(json.dumps(result, indent=2) if args.json else format_generation(result))
        else:
            texts = args.text[0] if len(args.text) == 1 else args.text
            result = client.analyze(texts, top_k=args.top_k)
            analyses = result.get("results", [result])
            print(
                json.dumps(result, indent=2)
                if args.json
                else "\n\n".join(map(format_analysis, analyses))
            )
            if args.html:
                write_report(args.html, result, source=args.url)
                print(f"report: {args.html}", file=sys.stderr)
    except ScoringError as error:
        print(f"error: {error}", file=sys.stderr)
        for detail in error.details:
            print(f"  {detail.get('field')}: {detail.get('message')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
