"""A secret never leaves the process, whatever form the failure takes; text orchestrace did
not write cannot control the terminal."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_messages_api import FakeMessagesAPI
from support import Traced

import orchestrace
from orchestrace import Agent, AnthropicModel, Reply, Team, ToolContext, tool
from telemetry import redact as redaction
from telemetry import settings
from telemetry.logs import configure_logging
from telemetry.redact import MASK, Redactor, for_terminal, url_for_display
from telemetry.settings import SettingError

KEY = "sk-ant-api03-CANARYKEY-0123456789abcdef"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    redaction.refresh()
    yield
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    redaction.refresh()


@pytest.mark.parametrize(
    "text",
    [
        f"Error code: 401 - invalid x-api-key {KEY}",  # a server echoing the key
        f"Illegal header value b'{KEY}\\n'",  # an HTTP library quoting a bad header
        "{'x-api-key': 'some-other-key-123456'}",  # a header dict in a debug line
        "authorization: Bearer tok_abcdefghijkl",
        "connecting to https://bob:hunter2hunter2@proxy.example:8080/v1",
        "sk-ant-api03-SOMEONEELSES-key-value-here",  # a key this process does not hold
    ],
)
def test_every_shape_of_credential_is_masked(text: str) -> None:
    out = Redactor([KEY])(text)
    assert MASK in out
    for secret in (KEY, "some-other-key-123456", "tok_abcdefghijkl", "hunter2hunter2"):
        assert secret not in out
    assert "SOMEONEELSES" not in out


def test_secrets_come_from_the_environment() -> None:
    env = {
        "MY_SERVICE_TOKEN": "token-value-123456",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20otlp-secret-999,x-tenant=acme",
        "HOME": "/root/not-a-secret",
    }
    r = Redactor.from_environment(env)
    text = "token-value-123456 otlp-secret-999 /root/not-a-secret acme"
    assert r(text) == f"{MASK} {MASK} /root/not-a-secret acme"


@pytest.mark.asyncio
async def test_a_server_that_echoes_the_key_puts_it_nowhere(
    secret_env: None, traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeMessagesAPI() as api:
        api.fail(401, "authentication_error", f"invalid x-api-key: {KEY}")
        async with AnthropicModel(base_url=api.url, api_key=KEY, max_retries=0) as model:
            with caplog.at_level(logging.DEBUG):
                result = await orchestrace.run(
                    Agent("solo", task="hi"),
                    model=model,
                    tracer_provider=traced.tracer_provider,
                    meter_provider=traced.meter_provider,
                )
    assert result.lead.state == "crashed"
    (agent,) = traced.named("invoke_agent solo")
    (chat,) = traced.named("chat ")
    recorded = json.dumps(
        [
            {
                "status": s.status.description,
                "attributes": dict(s.attributes or {}),
                "events": [dict(e.attributes or {}) for e in s.events],
            }
            for s in (agent, chat)
        ]
    )
    assert "exception.stacktrace" in recorded  # the failure is recorded ...
    assert MASK in recorded  # ... with the key masked
    assert KEY not in recorded
    assert KEY not in caplog.text
    assert KEY not in result.lead.text


@pytest.mark.asyncio
async def test_a_tool_exception_quoting_a_secret_is_masked_even_with_capture_on(
    secret_env: None, traced: Traced
) -> None:
    from telemetry.spans import ContentPolicy

    @tool
    def leaky(ctx: ToolContext) -> str:
        """Fail the way a careless tool does."""
        raise RuntimeError(f"login failed with key {os.environ['ANTHROPIC_API_KEY']}")

    team = Team("t", [Agent("solo", tools=[leaky], task="go", script=[Reply.call("leaky")])])
    from runtime.agent import RunConfig
    from runtime.limits import RunLimits
    from runtime.runner import choose_model, execute, new_run

    run = new_run(
        choose_model(team, offline=True, latency=0),
        tracer_provider=traced.tracer_provider,
        meter_provider=traced.meter_provider,
        content=ContentPolicy(4096, capture=True),
        config=RunConfig(),
        limits=RunLimits(),
    )
    await execute(team, run)
    (span,) = traced.named("execute_tool leaky")
    text = json.dumps([dict(e.attributes or {}) for e in span.events])
    assert "login failed with key" in text
    assert KEY not in text


def test_log_lines_are_masked(secret_env: None) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    try:
        logging.getLogger("some.library").warning("request headers: {'x-api-key': '%s'}", KEY)
        from telemetry.logs import get_logger

        get_logger("orchestrace.test").error("agent crashed", error=f"401 {KEY}")
    finally:
        import structlog

        structlog.reset_defaults()
        root = logging.getLogger()
        root.handlers[:] = [h for h in root.handlers if not getattr(h, "_orchestrace", False)]
        root.setLevel(logging.WARNING)
    assert KEY not in stream.getvalue()
    assert stream.getvalue().count(MASK) == 2


def test_an_applications_own_structlog_setup_still_gets_masked_lines(
    secret_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    import structlog

    from telemetry.logs import get_logger

    # An application that configured structlog its own way, knowing nothing of redaction.
    structlog.configure(processors=[structlog.processors.KeyValueRenderer()])
    try:
        with caplog.at_level(logging.ERROR, logger="orchestrace.test"):
            get_logger("orchestrace.test").error("agent crashed", error=f"401 {KEY}")
    finally:
        structlog.reset_defaults()
    assert "agent crashed" in caplog.text
    assert KEY not in caplog.text
    assert MASK in caplog.text


def test_for_terminal_escapes_control_sequences() -> None:
    hostile = "a\x1b[2Jb\x1b]52;c;ZXZpbA==\x07c\x00d\u202eevil\u2066e\r\nnext"
    safe = for_terminal(hostile)
    assert safe == "a\\x1b[2Jb\\x1b]52;c;ZXZpbA==\\x07c\\x00d\\u202eevil\\u2066e\\x0d\nnext"
    assert for_terminal("x\ny", newlines=False) == "x\\ny"


def test_model_text_and_messages_reach_the_console_escaped(tmp_path: Path) -> None:
    (tmp_path / "hostile.py").write_text(
        "from orchestrace import Agent, Reply, Team\n"
        "a = Agent('a', script=[Reply.call('send_message', recipient_ids=['b'],"
        " content='\\x1b]52;c;ZXZpbA==\\x07hi'), Reply.say('done\\x1b[2J')])\n"
        "b = Agent('b', script=[Reply.call('wait_for_message'), Reply.say('ok')])\n"
        "team = Team('t', [a, b])\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OTEL_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run", "hostile.py", "--task", "x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout
    assert "\x07" not in proc.stdout
    assert "done\\x1b[2J" in proc.stdout
    assert "← received from a: \\x1b]52;c;ZXZpbA==\\x07hi" in proc.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://s3cret-token@broker:4222", "nats://[REDACTED]@broker:4222"),
        ("tls://alice:s3cret@broker:4222/x", "tls://alice:[REDACTED]@broker:4222/x"),
        ("nats://broker:4222", "nats://broker:4222"),
        ("nats://a:b@c@broker", "nats://a:[REDACTED]@broker"),
        ("http://host/path@not-userinfo", "http://host/path@not-userinfo"),
        ("not a url", "not a url"),
    ],
)
def test_a_url_is_shown_without_its_password_or_token(url: str, shown: str) -> None:
    assert url_for_display(url) == shown


def test_a_bad_hub_url_setting_is_quoted_without_its_token() -> None:
    with pytest.raises(SettingError) as caught:
        settings.HUB_URL.get({"ORCHESTRACE_HUB_URL": "http://s3cret-token@broker:4222"})
    assert "s3cret-token" not in str(caught.value)
    assert "http://[REDACTED]@broker:4222" in str(caught.value)
