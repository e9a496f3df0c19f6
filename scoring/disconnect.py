"""Notice a client that went away while its request is still being worked on.

Under ``azmlinfsrv`` (gunicorn ``gthread`` or ``sync`` workers, Flask) the entry script never sees
the connection, but gunicorn puts the client socket in the WSGI environ as ``gunicorn.socket``.
The request body has been read in full before work starts, so the socket has nothing more to say
until the response is written: if it turns readable and a peek reads zero bytes, the peer closed
its side (a closed browser tab, a killed client, a client-side timeout, or a proxy in front that
dropped the upstream connection because its client left, which nginx does by default). Data
instead of end-of-file is a pipelined next request: the watch stops, the work goes on.

One watcher thread per request polls its socket every ``interval_s`` and sets the job's
``cancelled`` event; the engines then drop the work within one decode step. Where there is no
socket (another server, tests), nothing is watched and the request's deadline still stops it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

POLL_S = 0.1


def client_gone(sock: socket.socket) -> bool | None:
    """True: the peer closed; False: still there; None: readable data (stop watching)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return True if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"" else None
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):  # reset by peer, or already closed
        return True


@contextlib.contextmanager
def watch_disconnect(
    sock: socket.socket | None, cancelled: threading.Event, interval_s: float = POLL_S
) -> Iterator[bool]:
    """Set ``cancelled`` if the client closes ``sock`` before the block ends; yields whether
    anything is watched."""
    if not isinstance(sock, socket.socket):
        yield False
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(interval_s):
            gone = client_gone(sock)
            if gone is None:
                return
            if gone:
                cancelled.set()
                return

    watcher = threading.Thread(target=watch, name="disconnect-watch", daemon=True)
    watcher.start()
    try:
        yield True
    finally:
        done.set()
        watcher.join()
