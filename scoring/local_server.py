"""Run either real server locally on a free loopback port, as a managed context.

``LocalServer``: the Azure ML inference server on the entry script; ``LocalOpenAIServer``: the
OpenAI-compatible server (``python -m scoring.serve``). The demo, the HTTP tests and the
benchmarks all start them this way, with the same environment variables a deployment sets, so
what they exercise is what an endpoint runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import requests

ENTRY_SCRIPT = Path(__file__).resolve().parent / "score.py"
REPO_ROOT = ENTRY_SCRIPT.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``azmlinfsrv`` serving ``scoring/score.py`` on a free loopback port."""

    name = "azmlinfsrv"
    ready_path = "/"

    def __init__(
        self,
        model_dir: Path | str,
        *,
        env: dict[str, str] | None = None,
        threads: int = 8,
        # vLLM's start-up took up to 478 s on 2 heavily shared cores (docs/performance.md).
        startup_timeout_s: float = 900.0,
        log_path: Path | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.threads = threads
        self.extra_env = env or {}
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._app_root: str | None = None

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "AZUREML_MODEL_DIR": str(self.model_dir),
                "AML_APP_ROOT": self._app_root or "",
                # gthread: one process (one model copy), several run() calls at once.
                "GUNICORN_CMD_ARGS": f"--threads {self.threads}",
                "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])
                ),
            }
        )
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).with_name("azmlinfsrv")),
            "--entry_script",
            str(ENTRY_SCRIPT),
            "--port",
            str(self.port),
        ]

    def start(self) -> LocalServer:
        self._app_root = tempfile.mkdtemp(prefix="azmlinfsrv-")
        self.log_path = self.log_path or Path(self._app_root) / "server.log"
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                env=self._environment(),
                cwd=self._app_root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_healthy()
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(
            f"{self.name} not healthy after {self.startup_timeout_s} s:\n{self.log_tail()}"
        )

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + self.ready_path, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM: gunicorn finishes in-flight requests, then exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._app_root:
            shutil.rmtree(self._app_root, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalOpenAIServer(LocalServer):
    """``python -m scoring.serve`` (the OpenAI-compatible server) on a free loopback port."""

    name = "scoring.serve"
    ready_path = "/ready"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "scoring.serve",
            "--model-dir",
            str(self.model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
