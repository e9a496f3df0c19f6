"""The allocator settings do what their names say: arenas capped, freed pages returned."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from scoring.allocator import arena_count, trim
from scoring.local_server import REPO_ROOT

PROBE = textwrap.dedent(
    """
    import sys, threading
    from scoring.allocator import arena_count, limit_arenas
    limit_arenas(int(sys.argv[1]))
    barrier = threading.Barrier(8)
    def work():
        barrier.wait()  # eight threads allocating at the same time
        blocks = [bytearray(4096) for _ in range(2000)]
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(arena_count())
    """
)


def arenas_with(arena_max: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(arena_max)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(arena_count() < 0, reason="not glibc")
def test_malloc_arena_max_caps_the_arenas_concurrent_threads_get() -> None:
    assert arenas_with(0) > 2  # glibc's default: an arena per concurrently allocating thread
    assert arenas_with(2) <= 2


@pytest.mark.skipif(arena_count() < 0, reason="not glibc")
def test_trim_returns_freed_memory_that_glibc_keeps() -> None:
    import psutil

    blocks = [bytearray(b"x" * 4096) for _ in range(25_000)]  # ~100 MiB of heap, not mmap
    pin = bytearray(b"x" * 4096)  # above them: the heap cannot shrink from the top
    del blocks
    before = psutil.Process().memory_info().rss
    assert trim()
    after = psutil.Process().memory_info().rss
    assert before - after > 50 * 2**20  # glibc held on to the freed pages until asked
    del pin
