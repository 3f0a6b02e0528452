"""The benchmark's OTLP receiver: the tests' ``OTLPReceiver``, run in a child process.

The receiver decodes every request (protobuf) and keeps it, like a collector would. Run in
the benchmarked process, that work would be charged to telemetry and, through the GIL,
would slow the agents down; a collector never runs inside the application. So it runs in a
child process, and the parent talks to it over a line protocol on stdin/stdout:

* the child prints ``{"endpoint": "http://127.0.0.1:PORT"}`` once it listens;
* ``stats`` → ``{"spans": n, "requests": n, "send_spans": n, "receive_links": n,
  "waits": [seconds, ...]}`` for everything received since the last ``clear``
  (``waits`` are the ``orchestrace.message.wait_seconds`` of every receive span's links);
* ``clear`` → ``{}``; end of input closes the receiver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from telemetry import semconv as sc

REPO: Final = Path(__file__).resolve().parent.parent


def _import_receiver() -> Any:
    # The receiver lives with the tests (it is their fake collector); reuse it as is.
    sys.path.insert(0, str(REPO / "tests"))
    from otlp_receiver import OTLPReceiver  # type: ignore[import-not-found]

    return OTLPReceiver


def _stats(receiver: Any) -> dict[str, Any]:
    spans = sends = links = 0
    waits: list[float] = []
    for request in receiver.trace_requests():
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans += 1
                    name = span.name
                    if name.startswith("send "):
                        sends += 1
                    elif name.startswith("receive "):
                        for link in span.links:
                            links += 1
                            for kv in link.attributes:
                                if kv.key == sc.MESSAGE_WAIT_SECONDS:
                                    waits.append(kv.value.double_value)
    return {
        "spans": spans,
        "requests": receiver.request_count(signal="traces"),
        "send_spans": sends,
        "receive_links": links,
        "waits": waits,
    }


def serve() -> None:
    """The child: start the receiver, answer commands until stdin closes."""
    receiver = _import_receiver()().start()
    try:
        print(json.dumps({"endpoint": receiver.http_endpoint}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                reply: dict[str, Any] = _stats(receiver)
            elif command == "clear":
                receiver.clear()
                reply = {}
            else:
                reply = {"error": f"unknown command {command!r}"}
            print(json.dumps(reply), flush=True)
    finally:
        receiver.close()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a bench child process: the repo importable, no OTEL_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class ReceiverStats:
    """What the receiver got since it was last cleared."""

    spans: int
    requests: int
    send_spans: int
    receive_links: int
    #: ``orchestrace.message.wait_seconds`` of every link of every receive span.
    waits: list[float] = field(repr=False)


class ReceiverProcess:
    """The parent's handle on the receiver child (a context manager)."""

    def __init__(self) -> None:
        env = child_env()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        self.endpoint: str = self._read()["endpoint"]

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the OTLP receiver process exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _ask(self, command: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._read()

    def stats(self) -> ReceiverStats:
        """Counts (and delivery waits) of everything received since the last clear."""
        return ReceiverStats(**self._ask("stats"))

    def clear(self) -> None:
        """Forget everything received so far."""
        self._ask("clear")

    def close(self) -> None:
        """Stop the child and wait for it."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":
    serve()
