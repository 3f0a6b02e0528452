"""Every ``OTEL_*`` and ``ORCHESTRACE_*`` environment variable orchestrace reads, in one table.

Each :class:`Setting` names its variable, how its text is parsed, what it accepts (said in
the error), its default, and what a bad value does:

- :attr:`OnBad.EXIT` — :class:`SettingError` naming the variable and what it accepts
  (the command prints it on one line and exits 2; ``orchestrace.run`` raises
  ``ConfigurationError``). For settings whose wrong value would silently do something
  else than asked: where spans go, how they are sent, what a model call may take.
- :attr:`OnBad.WARN` — a warning naming the variable, and the documented default. For
  tuning knobs, where running with the default is better than not running.

A value is read when it is needed (:meth:`Setting.get`); :func:`check` reads every
setting of a group at once, so a run refuses a bad value before it opens any file.
Numbers are written in ASCII digits (``٣`` is refused, though Python's ``int`` takes it),
and are finite: ``nan`` and ``inf`` are refused everywhere.

The README's table of variables is generated from :data:`SETTINGS` (:func:`table`).
"""

from __future__ import annotations

import enum
import logging
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from telemetry.redact import url_for_display

log = logging.getLogger(__name__)

T = TypeVar("T")


class SettingError(ValueError):
    """An environment variable whose value orchestrace refuses (exit 2 on the command line).

    The message names the variable, the value given and what it accepts.
    """


class OnBad(enum.Enum):
    """What a malformed value does."""

    EXIT = "exit 2"
    WARN = "warning, default used"


def number(
    *,
    minimum: float = 0.0,
    above: bool = False,
    integer: bool = False,
    maximum: float = math.inf,
    unit: str = "",
) -> tuple[Callable[[str], float], str]:
    """A parser of finite ASCII numbers in a range, and the words saying what it accepts."""
    kind = ("a whole number" if integer else "a number") + (f" of {unit}" if unit else "")
    bound = f"> {minimum:g}" if above else f">= {minimum:g}"
    accepts = f"{kind} {bound}" + (f" and <= {maximum:g}" if maximum < math.inf else "")

    def parse(text: str) -> float:
        if not text.isascii():
            raise ValueError(text)
        value = float(int(text)) if integer else float(text)
        low_ok = value > minimum if above else value >= minimum
        if not (math.isfinite(value) and low_ok and value <= maximum):
            raise ValueError(text)
        return value

    return parse, accepts


def choice(*values: str) -> tuple[Callable[[str], str], str]:
    """A parser of one of ``values`` (case-insensitive)."""

    def parse(text: str) -> str:
        if text.lower() not in values:
            raise ValueError(text)
        return text.lower()

    return parse, "one of " + ", ".join(values)


_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


def _flag(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(text)


FLAG: Final = (_flag, "true or false (also 1/0, yes/no, on/off)")


def _exporters(text: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in text.split(",") if p.strip())


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: how it is read and what a bad value does."""

    name: str
    parse: Callable[[str], T]
    accepts: str
    default: T
    on_bad: OnBad
    #: Shown in the README's table: what the setting does.
    doc: str
    #: The group :func:`check` validates together ("telemetry", "model", "process").
    group: str = "telemetry"
    #: How the default is written in the table (when ``str(default)`` is not it).
    default_text: str | None = None
    #: How the table says what a bad value does (when :attr:`on_bad`'s words are not it).
    bad_text: str | None = None
    #: How a bad value is quoted in the error or warning (a URL's password hidden).
    shown: Callable[[str], str] = _text

    def get(self, environ: Mapping[str, str] | None = None) -> T:
        """The value in ``environ`` (default: the process environment), else the default.

        Raises :class:`SettingError` for a bad value of an :attr:`OnBad.EXIT` setting; logs
        a warning (once per value) and returns the default for an :attr:`OnBad.WARN` one.
        """
        env = os.environ if environ is None else environ
        raw = env.get(self.name)
        if raw is None or not raw.strip():
            return self.default
        try:
            return self.parse(raw.strip())
        except (ValueError, OverflowError):
            pass
        if self.on_bad is OnBad.EXIT:
            raise SettingError(f"{self.name}={self.shown(raw)!r}: expected {self.accepts}")
        if (self.name, raw) not in _warned:
            _warned.add((self.name, raw))
            log.warning(
                "%s=%r: expected %s; using the default, %s",
                self.name,
                self.shown(raw),
                self.accepts,
                self.shown_default,
            )
        return self.default

    @property
    def shown_default(self) -> str:
        """The default as the table and the warnings write it."""
        if self.default_text is not None:
            return self.default_text
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)

    def given(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether the variable is set to something other than blanks."""
        env = os.environ if environ is None else environ
        return bool(env.get(self.name, "").strip())


_warned: set[tuple[str, str]] = set()

SETTINGS: dict[str, Setting[object]] = {}


def register(setting: Setting[T]) -> Setting[T]:
    """Add ``setting`` to the table (runtime modules register the ones they read)."""
    SETTINGS[setting.name] = setting  # type: ignore[assignment]
    return setting


_add = register


def _numeric(
    name: str,
    default: float,
    on_bad: OnBad,
    doc: str,
    *,
    group: str = "telemetry",
    default_text: str | None = None,
    **bounds: float | bool | str,
) -> Setting[float]:
    parse, accepts = number(**bounds)  # type: ignore[arg-type]
    return _add(Setting(name, parse, accepts, float(default), on_bad, doc, group, default_text))


# --- export --------------------------------------------------------------------------------

SDK_DISABLED: Final = _add(
    Setting(
        "OTEL_SDK_DISABLED", *FLAG, False, OnBad.WARN, "no telemetry at all", default_text="false"
    )
)
SERVICE_NAME: Final = _add(
    Setting(
        "OTEL_SERVICE_NAME",
        _text,
        "any text",
        "orchestrace",
        OnBad.EXIT,
        "the service name",
        bad_text="none is bad",
    )
)
_NO_EXPORTERS: tuple[str, ...] = ()
TRACES_EXPORTER: Final = _add(
    Setting(
        "OTEL_TRACES_EXPORTER",
        _exporters,
        "otlp, console, none (comma-separated)",
        _NO_EXPORTERS,
        OnBad.WARN,
        "where spans go besides the spans file; unknown names are warned about and "
        "ignored; unset: otlp when an OTLP endpoint is set",
        default_text="otlp if an endpoint is set, else none",
    )
)
METRICS_EXPORTER: Final = _add(
    Setting(
        "OTEL_METRICS_EXPORTER",
        _exporters,
        "otlp, console, prometheus, none (comma-separated)",
        _NO_EXPORTERS,
        OnBad.WARN,
        "where metrics go; unknown names are warned about and ignored",
        default_text="otlp if an endpoint is set, else none",
    )
)
EXPORTER_NAMES: Final = {
    "traces": frozenset({"otlp", "console", "none"}),
    "metrics": frozenset({"otlp", "console", "prometheus", "none"}),
}
PROTOCOLS: Final = ("grpc", "http/protobuf")
_protocol_parse, _protocol_accepts = choice(*PROTOCOLS)
PROTOCOL: Final = _add(
    Setting(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        _protocol_parse,
        _protocol_accepts,
        "grpc",
        OnBad.EXIT,
        "the OTLP protocol (http/json is not supported)",
    )
)
SIGNAL_PROTOCOL: Final = {
    signal: _add(
        Setting(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
            _protocol_parse,
            _protocol_accepts,
            "",
            OnBad.EXIT,
            f"the OTLP protocol for {signal} (overrides OTEL_EXPORTER_OTLP_PROTOCOL)",
            default_text="OTEL_EXPORTER_OTLP_PROTOCOL",
        )
    )
    for signal in ("traces", "metrics")
}
EXPORT_TIMEOUTS: Final = tuple(
    _numeric(
        f"OTEL_EXPORTER_OTLP_{part}TIMEOUT",
        10.0,
        OnBad.EXIT,
        f"seconds per OTLP export request{' of ' + part[:-1].lower() if part else ''}",
        unit="seconds",
        minimum=0,
        above=True,
    )
    for part in ("", "TRACES_", "METRICS_")
)
PROMETHEUS_HOST: Final = _add(
    Setting(
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        _text,
        "a host name or address",
        "localhost",
        OnBad.EXIT,
        "the address the Prometheus scrape endpoint listens on",
    )
)
PROMETHEUS_PORT: Final = _numeric(
    "OTEL_EXPORTER_PROMETHEUS_PORT",
    9464,
    OnBad.EXIT,
    "its port; a port in use is exit 2 too",
    integer=True,
    minimum=0,
    maximum=65535,
)

# Passed to the OpenTelemetry SDK as they are: it parses them.
for _name, _accepts, _doc in (
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "key=value pairs separated by commas",
        "attributes of the run's resource",
    ),
    (
        "OTEL_EXPORTER_OTLP_HEADERS",
        "key=value pairs separated by commas (also _TRACES_ / _METRICS_HEADERS)",
        "headers on every OTLP request (their values are masked in every error and log)",
    ),
):
    _add(
        Setting(
            _name,
            _text,
            _accepts,
            "",
            OnBad.WARN,
            _doc,
            default_text="unset",
            bad_text="passed to the SDK: its warning, the bad part ignored; an endpoint "
            "that answers nothing shows as failed exports after the summary",
        )
    )


def _endpoint(text: str) -> str:
    """A URL the exporters can parse: no blanks or control characters, a valid port, a
    host after ``http://`` / ``https://``."""
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(text)
    parts = urllib.parse.urlsplit(text)  # ValueError for a broken IPv6 host
    _ = parts.port  # ValueError for a port out of range or not a number
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ValueError(text)
    return text


ENDPOINTS: Final = tuple(
    _add(
        Setting(
            f"OTEL_EXPORTER_OTLP_{part}ENDPOINT",
            _endpoint,
            "a URL such as http://localhost:4317 (a host, a port from 0 to 65535, no spaces)",
            "",
            OnBad.EXIT,
            f"the OTLP receiver{' of ' + part[:-1].lower() if part else ''}; setting it "
            "turns OTLP export on (a receiver that does not answer shows as spans not "
            "exported, after the summary)",
            default_text="unset",
        )
    )
    for part in ("", "TRACES_", "METRICS_")
)

INSECURE: Final = _add(
    Setting(
        "OTEL_EXPORTER_OTLP_INSECURE",
        FLAG[0],
        FLAG[1],
        False,
        OnBad.WARN,
        "gRPC without TLS to an endpoint written without a scheme (read by the SDK's "
        "exporter; the exit's receiver probe follows it)",
    )
)

# --- the batch span processor (one per exporter) -------------------------------------------

BSP_MAX_QUEUE_SIZE: Final = _numeric(
    "OTEL_BSP_MAX_QUEUE_SIZE",
    65536,
    OnBad.WARN,
    "spans queued per exporter before new ones are dropped",
    integer=True,
    minimum=1,
)
BSP_MAX_EXPORT_BATCH_SIZE: Final = _numeric(
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    2048,
    OnBad.WARN,
    "spans per export request; at most the queue size (a larger one is lowered to it)",
    integer=True,
    minimum=1,
)
BSP_SCHEDULE_DELAY: Final = _numeric(
    "OTEL_BSP_SCHEDULE_DELAY",
    500,
    OnBad.WARN,
    "milliseconds between exports",
    integer=True,
    unit="milliseconds",
    minimum=1,
)
BSP_EXPORT_TIMEOUT: Final = _numeric(
    "OTEL_BSP_EXPORT_TIMEOUT",
    30000,
    OnBad.WARN,
    "milliseconds an export may take",
    integer=True,
    unit="milliseconds",
    minimum=1,
)

# --- metrics -----------------------------------------------------------------------------

METRIC_EXPORT_INTERVAL: Final = _numeric(
    "OTEL_METRIC_EXPORT_INTERVAL",
    5000,
    OnBad.WARN,
    "milliseconds between metric exports",
    unit="milliseconds",
    minimum=0,
    above=True,
)
METRIC_EXPORT_TIMEOUT: Final = _numeric(
    "OTEL_METRIC_EXPORT_TIMEOUT",
    30000,
    OnBad.WARN,
    "milliseconds a metric export may take",
    unit="milliseconds",
    minimum=0,
    above=True,
)

# --- content and shutdown ----------------------------------------------------------------

CAPTURE_CONTENT: Final = _add(
    Setting(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        *FLAG,
        False,
        OnBad.WARN,
        "export message text and tool arguments/results on spans",
        default_text="false",
    )
)
CONTENT_MAX_CHARS: Final = _numeric(
    "ORCHESTRACE_CONTENT_MAX_CHARS",
    2048,
    OnBad.WARN,
    "characters kept of each content value when capture is on",
    integer=True,
    minimum=0,
)
SHUTDOWN_TIMEOUT: Final = _numeric(
    "ORCHESTRACE_SHUTDOWN_TIMEOUT",
    3.0,
    OnBad.WARN,
    "seconds the exit waits on exporters that make no progress",
    unit="seconds",
    minimum=0,
)
SHUTDOWN_CEILING: Final = _numeric(
    "ORCHESTRACE_SHUTDOWN_CEILING",
    60.0,
    OnBad.WARN,
    "seconds the exit waits at most on exporters that keep making progress",
    unit="seconds",
    minimum=0,
)

PRICES: Final = _add(
    Setting(
        "ORCHESTRACE_PRICES",
        _text,
        "the path of a JSON price file (the shape of telemetry/prices.json)",
        "",
        OnBad.EXIT,
        "prices that override and extend the shipped ones; a missing or malformed file is exit 2",
        default_text="unset",
    )
)

SEMCONV_OPT_IN: Final = _add(
    Setting(
        "OTEL_SEMCONV_STABILITY_OPT_IN",
        _text,
        "a comma-separated list of opt-in names",
        "",
        OnBad.WARN,
        "gen_ai_latest_experimental switches spans and metrics to the latest GenAI "
        'conventions (README: "The GenAI semantic conventions")',
        default_text="unset (the default layout)",
        bad_text="none is bad (names it does not know are ignored, as OpenTelemetry specifies)",
    )
)

# --- read by runtime/ (listed here so the table is whole) --------------------------------

MODEL: Final = _add(
    Setting(
        "ORCHESTRACE_MODEL",
        _text,
        "a model name",
        "claude-opus-4-8",
        OnBad.EXIT,
        "the Claude model (--model overrides it)",
        group="model",
        bad_text="none is bad (the API refuses an unknown model: the agent crashes)",
    )
)
MODEL_TIMEOUT: Final = _numeric(
    "ORCHESTRACE_MODEL_TIMEOUT",
    300.0,
    OnBad.EXIT,
    "seconds per model API attempt (per wait for the next bytes when streaming)",
    group="model",
    unit="seconds",
    minimum=0,
    above=True,
)
MODEL_RETRIES: Final = _numeric(
    "ORCHESTRACE_MODEL_RETRIES",
    2,
    OnBad.EXIT,
    "retries after a failed model API attempt",
    group="model",
    integer=True,
    minimum=0,
)


def _hub_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in {"nats", "tls"} or not parts.hostname:
        raise ValueError(text)
    if any(c.isspace() for c in text):
        raise ValueError(text)
    return text


HUB_URL: Final = _add(
    Setting(
        "ORCHESTRACE_HUB_URL",
        _hub_url,
        "nats://HOST:PORT or tls://HOST:PORT",
        "",
        OnBad.EXIT,
        "the NATS JetStream broker that `run` spreads agents over and `worker` serves "
        "(--hub overrides it)",
        group="process",
        default_text="unset (every agent in one process)",
        shown=url_for_display,
    )
)
WORKER_TTL: Final = _numeric(
    "ORCHESTRACE_WORKER_TTL",
    10.0,
    OnBad.EXIT,
    "seconds after a worker's last heartbeat that its agents count as crashed (the first "
    "process to create the run's registry sets it)",
    group="process",
    unit="seconds",
    minimum=0,
    above=True,
)
NATS_CREDS: Final = _add(
    Setting(
        "NATS_CREDS",
        _text,
        "a path",
        "",
        OnBad.EXIT,
        "the NATS credentials file for `--hub` (the `nats` CLI's name; --hub-creds overrides it)",
        group="process",
        default_text="unset (no credentials)",
        bad_text="an unreadable file, or one without a user JWT and seed: exit 2 at connect",
    )
)


def _nats_file(name: str, doc: str) -> Setting[str]:
    """A path setting of the NATS client (the ``nats`` CLI's names), checked when read."""
    return _add(
        Setting(
            name,
            _text,
            "a path",
            "",
            OnBad.EXIT,
            doc,
            group="process",
            default_text="unset",
            bad_text="an unreadable file: exit 2 at connect",
        )
    )


NATS_CA: Final = _nats_file(
    "NATS_CA",
    "a CA certificate file (PEM) that the NATS broker's TLS certificate is checked "
    "against (default: the system's)",
)
NATS_CERT: Final = _nats_file(
    "NATS_CERT",
    "a client certificate file (PEM) for brokers that verify clients (with NATS_KEY)",
)
NATS_KEY: Final = _nats_file("NATS_KEY", "the client certificate's private key file (PEM)")
_levels_parse, _levels_accepts = choice("debug", "info", "warning", "error", "critical")
LOG_LEVEL: Final = _add(
    Setting(
        "ORCHESTRACE_LOG_LEVEL",
        lambda text: _levels_parse(text).upper(),
        _levels_accepts,
        "WARNING",
        OnBad.WARN,
        "the command's log level on stderr (--log-level overrides it)",
        group="process",
    )
)


def check(group: str, environ: Mapping[str, str] | None = None) -> None:
    """Read every setting of ``group``: raises :class:`SettingError` for the first bad
    :attr:`OnBad.EXIT` value, warns about bad :attr:`OnBad.WARN` ones."""
    for setting in SETTINGS.values():
        if setting.group == group:
            setting.get(environ)


def table() -> str:
    """The Markdown table of every setting (the README's copy is checked against it)."""
    rows = [
        "| Variable | Accepts | Default | Bad value | What it does |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS.values():
        default = s.shown_default
        bad = s.bad_text or s.on_bad.value
        rows.append(f"| `{s.name}` | {s.accepts} | {default} | {bad} | {s.doc} |")
    return "\n".join(rows) + "\n"
