"""A model call always ends: a server that accepts the request and never answers ends the
agent with a clear reason after the configured timeout and retries, not after the SDK's
ten minutes per attempt."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import Traced

import orchestrace
from orchestrace import Agent, AnthropicModel, ConfigurationError, Team

CLI = [sys.executable, "-m", "runtime.cli"]


class SilentServer:
    """Accepts connections and reads requests, and never answers one (until closed)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            if conn.recv(65536).startswith(b"POST /v1/messages"):
                self.requests += 1
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent_api() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.asyncio
async def test_a_call_that_never_answers_ends_the_agent(
    silent_api: SilentServer, traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRACE_MODEL_TIMEOUT", "0.2")
    monkeypatch.setenv("ORCHESTRACE_MODEL_RETRIES", "1")
    model = AnthropicModel(base_url=silent_api.url, api_key="test-key")
    team = Team("stuck", [Agent("solo", "Answer.", task="Say hi.")])
    result = await orchestrace.run(
        team,
        model=model,
        tracer_provider=traced.tracer_provider,
        meter_provider=traced.meter_provider,
    )
    await model.close()
    assert result.lead.state == "crashed"
    assert result.lead.reason == "APITimeoutError"
    assert not result.completed
    assert silent_api.requests == 2  # the first attempt and one retry
    (chat,) = traced.named("chat ")
    assert (chat.attributes or {})["error.type"] == "APITimeoutError"
    assert chat.status.status_code.name == "ERROR"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORCHESTRACE_MODEL_TIMEOUT", "soon"),
        ("ORCHESTRACE_MODEL_TIMEOUT", "0"),
        ("ORCHESTRACE_MODEL_TIMEOUT", "-1"),
        ("ORCHESTRACE_MODEL_TIMEOUT", "nan"),
        ("ORCHESTRACE_MODEL_TIMEOUT", "inf"),
        ("ORCHESTRACE_MODEL_TIMEOUT", "١٠"),  # Arabic-Indic digits: not a setting we accept
        ("ORCHESTRACE_MODEL_RETRIES", "2.5"),
        ("ORCHESTRACE_MODEL_RETRIES", "-1"),
    ],
)
def test_a_malformed_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=rf"^{name}="):
        AnthropicModel(api_key="test-key")


def test_the_command_line_reports_a_malformed_setting_in_one_line(tmp_path: Any) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OTEL_"))}
    env |= {"ANTHROPIC_API_KEY": "test-key", "ORCHESTRACE_MODEL_TIMEOUT": "soon"}
    proc = subprocess.run(
        [*CLI, "run", "spawn", "--spans-file", ""],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "orchestrace run: ORCHESTRACE_MODEL_TIMEOUT='soon': expected a number of seconds > 0\n"
    )
