"""A ``texts`` batch of one long text and many short ones: work that follows the real tokens.

Prints time and peak extra memory (each case in a fresh process, after the model is loaded and
warmed up) of: the long text alone; the long text with ``--short`` one-token texts as the server
scores them now (grouped by length, forward slices); and the same batch padded together in one
forward pass, as the server did before (the baseline). Ratios are against the long text alone.

    python -m bench.analysis_batch --model-dir ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import describe_machine
from bench.token_analysis import _status_kib, text_ids
from scoring import analysis
from scoring.demo_model import DEFAULT_OUT
from scoring.model import load_model

CASES = {
    "alone": "long text alone",
    "grouped": "long + short texts, grouped",
    "padded": "long + short, padded together (old)",
}


def child(model_dir: str, case: str, tokens: int, short: int) -> None:
    """Runs in a fresh process: one scoring call's seconds and peak RSS growth."""
    lm = load_model(model_dir, device="cpu")
    long_ids = text_ids(lm, tokens)
    batch = [long_ids] if case == "alone" else [long_ids, *[long_ids[:1]] * short]
    forward = 512
    if case == "padded":  # one group, one pass: what the server did before grouping
        analysis.MAX_PADDING_RATIO = float("inf")
        forward = 10**9
    analysis.score_tokens(lm, [long_ids[:32]] * 2, top_k=5)  # warm up kernels and allocator
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark after loading
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    analysis.score_tokens(lm, batch, top_k=5, forward_tokens=forward)
    seconds = time.perf_counter() - start
    peak = (_status_kib("VmHWM") - before) / 1024
    print(json.dumps({"seconds": seconds, "peak_extra_mib": peak}))


def measure(model_dir: str, case: str, tokens: int, short: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.analysis_batch",
            "--model-dir",
            model_dir,
            "--tokens",
            str(tokens),
            "--short",
            str(short),
            "--child",
            case,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--short", type=int, default=15)
    parser.add_argument("--skip-padded", action="store_true", help="skip the slow baseline")
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model_dir = str(args.model_dir.expanduser())
    if args.child:
        child(model_dir, args.child, args.tokens, args.short)
        return
    print(describe_machine())
    print(f"one text of {args.tokens} tokens, {args.short} texts of 1 token, top_k 5\n")
    cases = [c for c in CASES if not (args.skip_padded and c == "padded")]
    results = {case: measure(model_dir, case, args.tokens, args.short) for case in cases}
    base = results["alone"]
    print(f"{'':<40}{'seconds':>9}{'peak MiB':>10}{'time x':>8}{'memory x':>10}")
    for case, result in results.items():
        print(
            f"{CASES[case]:<40}{result['seconds']:>9.2f}{result['peak_extra_mib']:>10.0f}"
            f"{result['seconds'] / base['seconds']:>8.2f}"
            f"{result['peak_extra_mib'] / max(base['peak_extra_mib'], 1):>10.2f}"
        )


if __name__ == "__main__":
    main()
