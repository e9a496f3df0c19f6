"""Token analysis: chunked logsumexp + count-above ranks vs full log_softmax + full sort.

Prints, for one text of ``--tokens`` tokens on the demo model: the time of the scoring stage
(everything after the transformer body: output head, log-probabilities, ranks, top-k), the time
end to end (forward pass included), the peak extra memory of each path (measured in a fresh
process each), their ratios, and whether the results agree.

    python -m bench.token_analysis --model-dir ~/.cache/azureml-byom/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.machine import describe_machine
from scoring.analysis import naive_token_scores, position_stats, score_tokens
from scoring.demo_model import DEFAULT_OUT
from scoring.model import LoadedModel, load_model

PARAGRAPH = (
    "Enterprises want to run open models inside their own cloud tenant, under their own identity "
    "and network controls. The platform team declares the workspace, the private network and the "
    "endpoints as code; data scientists package a model, register it with a version derived from "
    "its bytes, and roll it out behind a managed online endpoint with a smoke test in front. "
)


def text_ids(lm: LoadedModel, tokens: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < tokens:
        ids += lm.tokenizer(PARAGRAPH, add_special_tokens=False).input_ids
    return ids[:tokens]


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def stats_reference(logits: torch.Tensor, ids: torch.Tensor, k: int) -> None:
    """Given the (T-1, V) logits: full log_softmax, full sort, rank lookup, top-k."""
    logprobs = torch.log_softmax(logits, dim=-1)
    order = logprobs.argsort(dim=-1, descending=True)
    (order == ids[1:, None]).int().argmax(dim=-1)
    logprobs.gather(1, order[:, :k])


def stats_fast(
    logits_of: Callable[[slice], torch.Tensor],
    ids: torch.Tensor,
    k: int,
    chunk: int,
    compiled: bool = True,
) -> None:
    """What ``score_tokens`` does after the forward pass, a chunk of positions at a time."""
    for start in range(0, ids.shape[0] - 1, chunk):
        rows = slice(start, min(start + chunk, ids.shape[0] - 1))
        position_stats(logits_of(rows), ids[rows.start + 1 : rows.stop + 1], k, compiled)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory_child(model_dir: str, path: str, tokens: int, k: int, chunk: int) -> None:
    """Runs in a fresh process: peak RSS growth of one call, after the model is loaded.

    Loading the model peaks higher than either path, so the kernel's high-water mark is reset
    (``5 > /proc/self/clear_refs``) just before the measured call.
    """
    lm = load_model(model_dir, device="cpu")
    ids = text_ids(lm, tokens)
    score_tokens(lm, [ids[:32]], top_k=k)  # warm up kernels and allocator on a short input
    naive_token_scores(lm, ids[:32], top_k=k)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = _status_kib("VmRSS")
    if path == "reference":
        naive_token_scores(lm, ids, top_k=k)
    else:
        score_tokens(lm, [ids], top_k=k, chunk=chunk)
    print(json.dumps({"peak_extra_mib": (_status_kib("VmHWM") - before) / 1024}))


def measure_memory(model_dir: str, path: str, tokens: int, k: int, chunk: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.token_analysis",
            "--model-dir",
            model_dir,
            "--tokens",
            str(tokens),
            "--top-k",
            str(k),
            "--chunk",
            str(chunk),
            "--memory-child",
            path,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_mib"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-child", choices=["reference", "fast"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model_dir = str(args.model_dir.expanduser())
    if args.memory_child:
        measure_memory_child(model_dir, args.memory_child, args.tokens, args.top_k, args.chunk)
        return

    lm = load_model(model_dir, device=args.device)
    print(describe_machine(lm))
    ids = text_ids(lm, args.tokens)
    tensor = torch.tensor(ids, device=lm.device)
    print(
        f"text: {len(ids)} tokens, vocabulary {lm.vocab_size}, top_k {args.top_k}, "
        f"chunk {args.chunk}, median of {args.repeats}"
    )

    fast = score_tokens(lm, [ids], top_k=args.top_k, chunk=args.chunk)[0]
    ref = naive_token_scores(lm, ids, top_k=args.top_k)
    same_ranks = torch.equal(fast.ranks, ref.ranks)
    max_diff = float((fast.logprobs - ref.logprobs).abs().max())
    print(f"agreement: ranks equal {same_ranks}, max |logprob diff| {max_diff:.2e}")

    with torch.inference_mode():
        hidden = lm.model.base_model(input_ids=tensor[None]).last_hidden_state[0]  # (T, H)
        logits = lm.model.get_output_embeddings()(hidden[:-1]).float()  # (T-1, V)
    head = lm.model.get_output_embeddings()
    rows = [
        (
            "statistics, logits given (s)",
            lambda: stats_reference(logits, tensor, args.top_k),
            lambda: stats_fast(lambda r: logits[r], tensor, args.top_k, args.chunk),
        ),
        (
            "  same, eager kernel (s)",
            lambda: stats_reference(logits, tensor, args.top_k),
            lambda: stats_fast(lambda r: logits[r], tensor, args.top_k, args.chunk, False),
        ),
        (
            "output head + statistics (s)",
            lambda: stats_reference(head(hidden[:-1]).float(), tensor, args.top_k),
            lambda: stats_fast(lambda r: head(hidden[r]).float(), tensor, args.top_k, args.chunk),
        ),
        (
            "end to end, forward incl. (s)",
            lambda: naive_token_scores(lm, ids, top_k=args.top_k),
            lambda: score_tokens(lm, [ids], args.top_k, args.chunk),
        ),
    ]
    print(f"\n{'':<34}{'reference':>12}{'optimized':>12}{'ratio':>9}")
    with torch.inference_mode():
        for label, reference, optimized in rows:
            ref_s, new_s = timed(reference, args.repeats), timed(optimized, args.repeats)
            print(f"{label:<34}{ref_s:>12.3f}{new_s:>12.3f}{ref_s / new_s:>8.1f}x")
    if lm.device.type == "cpu":
        mem_ref = measure_memory(model_dir, "reference", args.tokens, args.top_k, args.chunk)
        mem_new = measure_memory(model_dir, "fast", args.tokens, args.top_k, args.chunk)
        print(
            f"{'peak extra memory (MiB, RSS)':<34}{mem_ref:>12.0f}{mem_new:>12.0f}"
            f"{mem_new / mem_ref:>8.2f}x"
        )
    else:
        print("(peak memory on GPU: see bench.gpu)")
    ok = same_ranks and max_diff <= 1e-4
    print(f"\nresult: {'identical within 1e-4' if ok else 'MISMATCH'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
