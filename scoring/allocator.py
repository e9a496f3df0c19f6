"""glibc malloc settings for a long-running, many-threaded model server.

glibc gives each thread that allocates concurrently its own heap ("arena"), up to 8 per core, and
keeps freed memory inside each arena for reuse. A gthread worker with 16 request threads that each
tokenize, decode and build tensors of a few hundred MB therefore holds a high-water mark per
thread: RSS climbs under load and stays there (1.09 -> 1.85 GB in the issue's measurement).
Capping the arenas (``M_ARENA_MAX``, as the ``MALLOC_ARENA_MAX`` variable does) makes the threads
share a couple of heaps, and ``malloc_trim`` after large requests hands the freed pages back to
the system. ``bench/memory.py`` measures both against glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (mallopt/malloc_trim exist); None on musl, macOS, ..."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


def limit_arenas(arena_max: int) -> bool:
    """Cap malloc arenas for threads created from now on; 0 leaves glibc's default."""
    libc = _glibc()
    if arena_max <= 0 or libc is None:
        return False
    done = bool(libc.mallopt(M_ARENA_MAX, arena_max))
    log.info("malloc arenas capped at %d: %s", arena_max, done)
    return done


def trim() -> bool:
    """Return free heap memory to the system; True when some was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def arena_count() -> int:
    """How many malloc arenas this process has (glibc's ``malloc_info`` report), -1 if unknown."""
    libc = _glibc()
    if libc is None:
        return -1
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        return -1
    try:
        libc.malloc_info(0, ctypes.c_void_p(stream))
    finally:
        libc.fclose(ctypes.c_void_p(stream))
    report = ctypes.string_at(buffer, size.value).decode()
    libc.free(buffer)
    return report.count("<heap nr=")
