"""Run a real ``moto_server`` process for tests that need an S3 endpoint over HTTP.

The server keeps everything in memory and lives only as long as the context
manager. Nothing global is changed: callers pass :attr:`MotoServer.endpoint_url`
(and credentials of their choice) to their clients.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from tests.support.waiting import wait_until


class MotoServerError(RuntimeError):
    """``moto_server`` could not be found, was already running or died on start-up."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def moto_server_executable() -> Path:
    """The ``moto_server`` script installed next to the running interpreter."""
    path = Path(sys.executable).parent / "moto_server"
    if not path.exists():
        raise MotoServerError(
            f"moto_server not found at {path}; install the dev extra (moto[server]) into this venv"
        )
    return path


class MotoServer:
    """Context manager: a ``moto_server`` subprocess on a free loopback port.

    ``startup_timeout`` bounds the wait for the first answer; ``stop_timeout``
    bounds the wait after SIGTERM before the process is killed.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the process and wait until it answers HTTP requests."""
        if self._process is not None:
            raise MotoServerError("moto_server is already running")
        exe = moto_server_executable()
        # stderr goes to a temp file, not a pipe: a chatty server never blocks on a full pipe.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [str(exe), "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=os.environ.copy(),
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        wait_until(
            self._answers,
            timeout=self.startup_timeout,
            message=lambda: (
                f"moto_server did not answer on {self.endpoint_url}: {self._stderr_text()}"
            ),
        )

    def _answers(self) -> bool:
        """True once the server answers HTTP; raises MotoServerError if it has exited."""
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            raise MotoServerError(
                f"moto_server exited with code {code} on start-up: {self._stderr_text()}"
            )
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answered, even if with an error status
        except OSError:
            return False

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return text[-4000:] or "(no stderr output)"

    def kill(self) -> None:
        """SIGKILL the process (a crash: in-memory buckets are lost); :meth:`start` again
        serves on the same port."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self.stop()

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
