"""One line about the machine a benchmark ran on, printed with every result."""

from __future__ import annotations

import os
import platform

import torch
import transformers

from scoring.model import LoadedModel


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(lm: LoadedModel | None = None) -> str:
    parts = [
        f"cpu: {cpu_name()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})",
        f"torch {torch.__version__}, transformers {transformers.__version__}",
    ]
    if torch.cuda.is_available():
        parts.append(f"gpu: {torch.cuda.get_device_name(0)}")
    if lm is not None:
        params = sum(p.numel() for p in lm.model.parameters()) / 1e6
        parts.append(f"model: {lm.name} ({params:.0f}M params, {lm.model.dtype}, {lm.device})")
    return "\n".join(parts)
