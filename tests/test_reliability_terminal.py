"""Ctrl-C while ``summary`` or ``profile`` reads ends quietly with 130; a terminal that
cannot encode UTF-8 gets ``?`` for what it cannot show, not a UnicodeEncodeError."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from support import no_global_providers

import orchestrace
from orchestrace import Agent, Team
from runtime.scripted import Reply

CLI = [sys.executable, "-m", "runtime.cli"]


@pytest.fixture(scope="module")
def spans_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run") / "spans.jsonl"
    lead = Agent("lead", "x", task="go", script=[Reply.call("sleep", seconds=0), Reply.say("ok")])
    with no_global_providers():
        orchestrace.run_sync(Team("t", [lead]), offline=True, spans_file=path)
    return path


def _unread(fd: int) -> int:
    """Bytes written to a pipe and not yet read by the other end."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


@pytest.mark.parametrize("command", ["summary", "profile"])
def test_ctrl_c_while_reading_ends_quietly_with_130(spans_file: Path, command: str) -> None:
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*CLI, command, "-"],
        stdin=read_end,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        # Half the spans, and the pipe left open: the command reads them and waits for
        # more. Once the pipe is empty it is inside the reader (imports long done).
        data = spans_file.read_bytes()
        os.write(write_end, data[: len(data) // 2])
        done = threading.Event()
        while _unread(read_end) and proc.poll() is None:
            done.wait(0.01)  # polls the pipe; bounded by the test's own timeout
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(write_end)
        os.close(read_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err == b""
    assert out == b""


@pytest.mark.parametrize("command", ["summary", "profile"])
def test_a_terminal_that_cannot_encode_utf8_gets_replacements(
    spans_file: Path, command: str
) -> None:
    def show(encoding: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*CLI, command, str(spans_file)],
            env={**os.environ, "PYTHONIOENCODING": encoding},
            capture_output=True,
            check=False,
            timeout=300,
        )

    utf8, ascii_only = show("utf-8"), show("ascii")
    assert ascii_only.returncode == 0, ascii_only.stderr
    assert ascii_only.stderr == b""
    assert utf8.stdout.decode("utf-8") != utf8.stdout.decode("ascii", errors="replace")
    # every character it could not encode is a "?", the rest is the same text
    expected = utf8.stdout.decode("utf-8").encode("ascii", errors="replace")
    assert ascii_only.stdout == expected


def test_a_run_on_an_ascii_terminal_prints_its_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OTEL_"))}
    proc = subprocess.run(
        [*CLI, "run", "spawn", "--time-scale", "0", "--latency", "0"],
        env={**env, "PYTHONIOENCODING": "ascii"},
        cwd=tmp_path,
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"Run spawn ? trace " in proc.stdout  # "·" replaced, the summary printed


def test_ctrl_c_while_the_exit_waits_on_a_collector_still_prints_the_summary(
    tmp_path: Path,
) -> None:
    collector = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    collector.settimeout(120)  # a hang detector only: the connection comes in a second
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OTEL_"))}
    env |= {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.getsockname()[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": str(10**9),  # the first export is the exit's
        "ORCHESTRACE_SHUTDOWN_TIMEOUT": "600",
    }
    proc = subprocess.Popen(
        [*CLI, "run", "spawn", "--quiet", "--time-scale", "0", "--latency", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        connection, _ = collector.accept()  # the exit is sending its spans: it waits
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        connection.close()
    finally:
        collector.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert b"Run spawn" in out  # the summary
    assert b"telemetry: otlp/http/protobuf: 0 of " in out  # what was not sent
    assert (tmp_path / "orchestrace-spans.jsonl").stat().st_size > 0


@pytest.mark.parametrize("module", ["telemetry.redact", "runtime.run_defaults", "runtime.cli"])
def test_ctrl_c_while_the_command_imports_ends_quietly_with_130(module: str) -> None:
    """SIGINT as soon as ``module`` has been imported (``-X importtime`` says when, on
    stderr): the command is still importing, or has just started reading; either way 130
    and no traceback."""
    read_end, write_end = os.pipe()  # standard input held open: the command waits on it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys; from runtime.entry import main; sys.exit(main())",
            "summary",
            "-",
        ],
        stdin=read_end,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: list[bytes] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.split(b"|")[-1].strip() == module.encode():
                proc.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail(f"{module} was never imported")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(write_end)
        os.close(read_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert b"Traceback" not in err
    assert b"KeyboardInterrupt" not in err
    assert out == b""
