"""Spans leave the process intact: OTLP (gRPC and HTTP) to a receiver, and the spans file."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver
from support import make_run

from runtime.agent import RunConfig
from runtime.cli import main
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry.live import SummaryProcessor
from telemetry.otlp_json import iter_spans_file
from telemetry.setup import setup_telemetry
from telemetry.summary import summarize


async def instant(_seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        yield r


def run_with_env(spans_file: Path | None = None) -> tuple[str, SummaryProcessor, int]:
    """Run spawn with providers built from the environment; returns trace id and counts."""
    summary = SummaryProcessor()
    telemetry = setup_telemetry(spans_file=spans_file, processors=[summary], set_global=False)
    run = make_run(
        telemetry,
        model=ScriptedModel(latency=0),
        config=RunConfig(model="claude-opus-4-8", sleep=instant),
        run_id="r1",
    )
    ids: list[str] = []
    asyncio.run(run_scenario("spawn", run, on_start=ids.append))
    assert telemetry.shutdown(timeout=10)
    return ids[0], summary, summary.summary(ids[0]).spans


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_export_keeps_parents_and_links(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orchestrace-test")
    trace_id, _, created = run_with_env()
    spans = receiver.spans()
    assert len(spans) == created
    assert {s.trace_id.hex() for s in spans} == {trace_id}
    assert {s.resource["service.name"] for s in spans} == {"orchestrace-test"}
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if not s.parent_span_id]
    assert [r.name for r in roots] == ["invoke_workflow spawn"]
    assert all(s.parent_span_id in by_id for s in spans if s.parent_span_id)
    receives = [s for s in spans if s.name.startswith("receive ")]
    assert receives
    for receive in receives:
        for link in receive.span.links:
            target = by_id[link.span_id]
            assert target.name == receive.name.replace("receive", "send")
            assert target.span.kind == 4  # PRODUCER
    # content capture is off by default: nothing of the conversation leaves the process
    leaked = {kv.key for s in spans for kv in s.span.attributes} & {
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "orchestrace.message.content",
    }
    assert leaked == set()


def test_content_is_exported_only_when_asked_and_clipped(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    monkeypatch.setenv("ORCHESTRACE_CONTENT_MAX_CHARS", "12")
    run_with_env()
    sends = [s for s in receiver.spans() if s.name == "send lead"]
    assert {s.attributes["orchestrace.message.content"] for s in sends} == {"done, slept "}


def test_spans_file_is_otlp_json_with_hex_ids_and_reproduces_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    trace_id, summary, created = run_with_env(spans_file=path)
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert re.fullmatch(r"[0-9a-f]{32}", first["traceId"])
    assert re.fullmatch(r"[0-9a-f]{16}", first["spanId"])
    assert isinstance(first["kind"], int)
    assert isinstance(first["startTimeUnixNano"], str)
    records = list(iter_spans_file(path))
    assert len(records) == created
    assert summarize(records) == summary.summary(trace_id).render()


def test_cli_run_then_summary_prints_the_same_summary(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    live = io.StringIO()
    code = main(["run", "spawn", "--time-scale", "0", "--spans-file", str(path)], out=live)
    assert code == 0
    text = live.getvalue()
    assert "  [helper1] sleep({'seconds': 1}) → slept 1s" in text
    assert "[lead final answer]\nSummary: All 3 helpers" in text
    trace_id = re.search(r"trace id: ([0-9a-f]{32})", text).group(1)  # type: ignore[union-attr]
    live_summary = text[text.index("Run spawn") : text.index("\nspans: ")]
    again = io.StringIO()
    assert main(["summary", str(path), "--trace-id", trace_id], out=again) == 0
    assert again.getvalue() == live_summary
    assert "Tool-call summary:\n  helper1: 1×sleep" in live_summary


def test_summary_of_a_missing_trace_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.jsonl"
    run_with_env(spans_file=path)
    assert main(["summary", str(path), "--trace-id", "0" * 32], out=io.StringIO()) == 2
    assert f"trace {'0' * 32} not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"resourceSpans": []}\nnot json\n')
    assert main(["summary", str(bad)], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err
    assert "line 2" in err
