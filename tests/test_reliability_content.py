"""Content safety: what leaves the process in spans, and what never does.

A run plants canary strings everywhere content lives — system prompt, task, tool
arguments and results, message text, model text, a bad tool input echoed in its error —
and the tests scan everything exported (the spans file and what an OTLP receiver got, raw)
for them. With capture off there must be none; with it on, each value is cut to the
configured size. An API key must appear nowhere: not in spans, not in logs, not on the
console, even with debug logging and content capture on.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_messages_api import FakeMessagesAPI
from otlp_receiver import OTLPReceiver
from support import make_run

from runtime.agent import AgentSpec, RunConfig, run_agent
from runtime.models import ModelRequest
from runtime.scripted import Conversation, Reply, ScriptedModel
from runtime.subagents import sleep_tool
from runtime.tools import Tool, ToolCall
from telemetry import semconv as sc
from telemetry.otlp_json import iter_spans_file
from telemetry.setup import setup_telemetry

CANARY = "CANARY"
LOOKUP = {
    "name": "lookup",
    "description": "Look something up.",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
        "additionalProperties": False,
    },
}


async def _lookup(call: ToolCall) -> str:
    return f"found CANARY-RESULT for {call.input['query']}"


async def _exploding(call: ToolCall) -> str:
    raise ValueError(f"no such record: {call.input['query']}")


def _policy(long_message: str) -> Any:
    scripts = {
        "a": [
            Reply(tool="lookup", tool_input={"query": "CANARY-ARG"}),
            Reply(
                tool="send_message", tool_input={"recipient_ids": ["b"], "content": long_message}
            ),
            Reply(tool="sleep", tool_input={"seconds": "CANARY-BAD"}),
            Reply(text="CANARY-TEXT", stop_reason="end_turn"),
        ],
        "b": [
            Reply(tool="wait_for_message", tool_input={}),
            Reply(text="ok", stop_reason="end_turn"),
        ],
    }

    def policy(conv: Conversation) -> Reply:
        script = scripts[conv.request.agent]
        return script[min(conv.turn, len(script) - 1)]

    return policy


async def _instant(_seconds: float) -> None:
    await asyncio.sleep(0)


def run_canaries(
    spans_file: Path, *, long_message: str = "CANARY-MSG", lookup: Any = _lookup
) -> None:
    """One run of two agents full of canaries, exported as the environment says."""
    telemetry = setup_telemetry(spans_file=spans_file, set_global=False)
    run = make_run(
        telemetry,
        model=ScriptedModel(latency=0, policy=_policy(long_message)),
        config=RunConfig(model="m", wait_timeout=30),
        run_id="canaries",
    )

    def spec(name: str) -> AgentSpec:
        tools = [Tool(LOOKUP, lookup), sleep_tool(_instant)] if name == "a" else []
        return AgentSpec(name, "member", f"CANARY-SYS {name}", "CANARY-TASK", tools=tools)

    async def main() -> None:
        run.hub.register("a")
        run.hub.register("b")
        await asyncio.gather(run_agent(run, spec("a")), run_agent(run, spec("b")))

    asyncio.run(main())
    assert telemetry.shutdown(timeout=10)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.grpc_endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
        yield r


def exported_text(spans_file: Path, receiver: OTLPReceiver) -> str:
    """Everything that left the process: the spans file and the raw OTLP requests."""
    return spans_file.read_text() + "".join(str(r) for r in receiver.trace_requests())


def test_with_capture_off_no_content_is_exported(tmp_path: Path, receiver: OTLPReceiver) -> None:
    path = tmp_path / "spans.jsonl"
    run_canaries(path)
    assert receiver.spans()  # the OTLP side did receive the run
    assert [s.name for s in iter_spans_file(path) if s.name.startswith("send ")] == ["send b"]
    leaks = sorted(set(re.findall(r"CANARY-[A-Z]+", exported_text(path, receiver))))
    assert leaks == []


def test_with_capture_on_content_is_exported_cut_to_the_limit(
    tmp_path: Path, receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    monkeypatch.setenv("ORCHESTRACE_CONTENT_MAX_CHARS", "40")
    path = tmp_path / "spans.jsonl"
    long_message = "CANARY-MSG " + "x" * 5000
    run_canaries(path, long_message=long_message)
    values: list[str] = []
    for record in iter_spans_file(path):
        holders = [record.attributes, *(e.attributes for e in record.events)]
        holders += [link.attributes for link in record.links]
        values += [str(h[k]) for h in holders for k in sc.CONTENT_KEYS if k in h]
    assert values
    assert max(len(v) for v in values) == 40  # long values were cut, to exactly the limit
    assert long_message[:40] in values  # the message: on its send span and receive link
    assert {"CANARY-ARG", "CANARY-RESULT", "CANARY-SYS"} <= set(
        re.findall(r"CANARY-[A-Z]+", exported_text(path, receiver))
    )
    otlp = [
        str(v) for s in receiver.spans() for k, v in s.attributes.items() if k in sc.CONTENT_KEYS
    ]
    assert otlp
    assert max(len(v) for v in otlp) == 40


def test_a_crashing_tool_does_not_export_its_arguments(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    path = tmp_path / "spans.jsonl"
    run_canaries(path, lookup=_exploding)
    assert re.findall(r"CANARY-[A-Z]+", exported_text(path, receiver)) == []


# --- API keys ---------------------------------------------------------------------------------
API_KEY = "sk-ant-api03-CANARYKEY-" + "k" * 40
CLI_RUN = [sys.executable, "-m", "runtime.cli", "run", "spawn"]


def _scripted_responder() -> Any:
    script = ScriptedModel(latency=0)

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        match = re.match(r"You are (\w+)", body.get("system", ""))
        request = ModelRequest(
            agent=match.group(1) if match else "?",
            model=body["model"],
            max_tokens=body["max_tokens"],
            system=body.get("system", ""),
            tools=body.get("tools", []),
            messages=body["messages"],
        )
        return script.respond(request)[1].model_dump(mode="json")

    return respond


def test_the_api_key_is_never_in_spans_logs_or_output(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    with FakeMessagesAPI(responder=_scripted_responder()) as api:
        api.fail(529)  # a retry, so the retry path logs and records too
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OTEL_"))}
        env |= {
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": api.url,
            "ANTHROPIC_LOG": "debug",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
            "OTEL_TRACES_EXPORTER": "console",  # spans printed to stderr, too
            "OTEL_METRICS_EXPORTER": "none",
        }
        proc = subprocess.run(
            [*CLI_RUN, "--time-scale", "0", "--spans-file", str(path), "--log-level", "DEBUG"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        headers = [r.headers for r in api.message_requests]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model: claude-opus-4-8 via the Anthropic API" in proc.stdout
    assert API_KEY in headers[0]["authorization"]  # the key was really used
    assert "Request options" in proc.stderr  # and the SDK really logged at debug
    for where, text in [
        ("stdout", proc.stdout),
        ("stderr", proc.stderr),
        ("spans", path.read_text()),
    ]:
        assert "CANARYKEY" not in text, where
