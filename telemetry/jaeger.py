"""Read a run's spans back from Jaeger through its v3 HTTP API (OTLP/JSON).

``GET {base}/api/v3/traces/{trace_id}`` answers ``{"result": {"resourceSpans": [...]}}``,
the same OTLP/JSON a spans file holds, so :func:`telemetry.records.iter_otlp_json` reads it
and the summary printed from Jaeger is the summary printed from the file. The newest run of a
service is found with ``GET {base}/api/v3/traces?query.serviceName=...`` over a time window.

Only the standard library is used (``urllib.request``): reading a trace back must not add a
dependency to the runtime. Every request has a timeout; failures become :class:`JaegerError`
with a message that says what to check.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from telemetry import semconv as sc
from telemetry.otlp_json import iter_otlp_json
from telemetry.records import SpanRecord

#: Seconds to wait for Jaeger to answer one request.
DEFAULT_TIMEOUT: Final = 10.0
#: Seconds a whole request may take, however steadily a server trickles its answer.
DEFAULT_DEADLINE: Final = 60.0
#: The largest answer read (a trace of a million spans is about 1 GB of JSON; a larger
#: answer is refused rather than exhausting memory).
MAX_ANSWER_BYTES: Final = 1 << 30

#: Windows searched for the newest run of a service, narrowest first: a search returns at
#: most ``SEARCH_DEPTH`` traces, so a narrow window that already holds runs is more likely
#: to contain the newest one than a wide window that is cut short.
LAST_RUN_WINDOWS: Final = (timedelta(minutes=15), timedelta(hours=6), timedelta(days=7))

#: Traces one search may return.
SEARCH_DEPTH: Final = 20

_TRACE_ID = re.compile(r"[0-9a-f]{1,32}")


class JaegerError(Exception):
    """Jaeger could not be reached, failed, or does not hold what was asked for."""


class TraceNotFoundError(JaegerError):
    """Jaeger answered, but has no trace (or no run) matching the request."""


def normalize_trace_id(trace_id: str) -> str:
    """The 32-digit lower-case hex form of ``trace_id``; ValueError if it is not hex."""
    candidate = trace_id.strip().lower()
    if not _TRACE_ID.fullmatch(candidate):
        raise ValueError(f"not a trace id (1 to 32 hex digits): {trace_id!r}")
    return candidate.zfill(32)


def rfc3339_nano(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with nanoseconds, the format the v3 API requires."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond * 1000:09d}Z"


class JaegerReader:
    """Reads traces from the Jaeger query service at ``base_url`` (e.g. http://localhost:16686)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url.strip())
        if (
            parsed.scheme not in {"http", "https"}
            or not parsed.netloc
            or any(c.isspace() or not c.isprintable() for c in base_url.strip())
        ):
            raise ValueError(
                f"Jaeger URL must be http(s)://host:port, got {base_url!r} "
                "(the query service, e.g. http://localhost:16686)"
            )
        self.base_url = base_url.strip().rstrip("/")
        self.timeout = timeout
        self.deadline = deadline
        self.max_bytes = max_bytes

    # --- public API --------------------------------------------------------------------------
    def trace(self, trace_id: str) -> list[Mapping[str, Any]]:
        """The ``resourceSpans`` of one trace; TraceNotFoundError if Jaeger has none."""
        tid = normalize_trace_id(trace_id)
        documents = self._get(f"/api/v3/traces/{tid}", {}, missing=f"trace {tid}")
        resource_spans = _resource_spans(documents)
        if not resource_spans:
            raise TraceNotFoundError(f"trace {tid} not found in Jaeger at {self.base_url}")
        return resource_spans

    def spans(self, trace_id: str) -> Iterator[SpanRecord]:
        """The spans of one trace, as the summary reads them; JaegerError for an answer
        whose spans are not OTLP/JSON spans."""
        resource_spans = self.trace(trace_id)
        try:
            records = list(iter_otlp_json(resource_spans))
        except (ValueError, AttributeError, KeyError, TypeError, RecursionError) as exc:
            raise JaegerError(
                f"Jaeger at {self.base_url} answered with spans that are not OTLP/JSON: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return iter(records)

    def find_traces(
        self, service: str, start_min: datetime, start_max: datetime
    ) -> list[Mapping[str, Any]]:
        """``resourceSpans`` of traces of ``service`` started in the window (may be empty)."""
        params = {
            "query.serviceName": service,
            "query.startTimeMin": rfc3339_nano(start_min),
            "query.startTimeMax": rfc3339_nano(start_max),
            "query.searchDepth": str(SEARCH_DEPTH),
            # Some releases of the v3 HTTP gateway read these snake_case names instead;
            # a gateway ignores names it does not know, so both spellings are sent.
            "query.service_name": service,
            "query.start_time_min": rfc3339_nano(start_min),
            "query.start_time_max": rfc3339_nano(start_max),
            "query.num_traces": str(SEARCH_DEPTH),
        }
        try:
            documents = self._get("/api/v3/traces", params, missing=f"traces of {service}")
        except TraceNotFoundError:
            return []
        return _resource_spans(documents)

    def newest_run(self, service: str, *, now: datetime | None = None) -> str:
        """The trace id of the newest run (root ``invoke_workflow`` span) of ``service``."""
        end = (now or datetime.now(UTC)) + timedelta(minutes=1)  # tolerate clock skew
        for window in LAST_RUN_WINDOWS:
            newest = newest_root(iter_otlp_json(self.find_traces(service, end - window, end)))
            if newest is not None:
                return newest.trace_id
        days = LAST_RUN_WINDOWS[-1].days
        raise TraceNotFoundError(
            f"no run of service {service!r} in Jaeger at {self.base_url} in the last "
            f"{days} days (check --service, or OTEL_SERVICE_NAME of the run)"
        )

    # --- HTTP ----------------------------------------------------------------------------------
    def _read(self, response: Any, path: str) -> bytes:
        return _read_limited(
            response,
            started=self._started,
            deadline=self.deadline,
            max_bytes=self.max_bytes,
            where=f"Jaeger at {self.base_url} ({path})",
        )

    def _get(self, path: str, params: Mapping[str, str], *, missing: str) -> list[Any]:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        self._started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = self._read(response, path)
        except urllib.error.HTTPError as exc:
            detail = _error_message(exc.read())
            exc.close()
            if exc.code == 404:
                raise TraceNotFoundError(
                    f"{missing} not found in Jaeger at {self.base_url} ({detail or 'HTTP 404'})"
                ) from None
            raise JaegerError(
                f"Jaeger at {self.base_url} answered HTTP {exc.code} for {path}"
                + (f": {detail}" if detail else "")
            ) from None
        except TimeoutError:
            raise JaegerError(
                f"Jaeger at {self.base_url} did not answer within {self.timeout:g}s"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise JaegerError(
                    f"Jaeger at {self.base_url} did not answer within {self.timeout:g}s"
                ) from None
            raise JaegerError(
                f"cannot reach Jaeger at {self.base_url}: {reason} "
                "(is it running? the query service listens on port 16686)"
            ) from None
        except (OSError, http.client.HTTPException) as exc:  # IncompleteRead: a short body
            raise JaegerError(
                f"cannot read from Jaeger at {self.base_url}: {type(exc).__name__}: {exc}"
            ) from None
        try:
            return _json_documents(body.decode("utf-8"))
        except RecursionError:
            raise JaegerError(
                f"Jaeger at {self.base_url} answered {path} with JSON nested too deeply"
            ) from None
        except ValueError:
            raise JaegerError(
                f"Jaeger at {self.base_url} answered {path} with something other than JSON "
                "(is this the query service's address?)"
            ) from None


def _read_limited(
    response: Any, *, started: float, deadline: float, max_bytes: int, where: str
) -> bytes:
    """The body, read in pieces: JaegerError past ``deadline`` seconds or ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() - started > deadline:
            raise JaegerError(f"{where} did not finish answering within {deadline:g}s")
        chunk = response.read1(1 << 16)
        if not chunk:
            short = getattr(response, "length", None)
            if isinstance(short, int) and short > 0:
                raise JaegerError(
                    f"{where} closed the connection {short} bytes short of its Content-Length"
                )
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise JaegerError(f"{where} answered more than {max_bytes} bytes; refused")
        chunks.append(chunk)


def newest_root(spans: Iterable[SpanRecord]) -> SpanRecord | None:
    """The root ``invoke_workflow`` span that started last, if any."""
    newest: SpanRecord | None = None
    for span in spans:
        if span.parent_span_id is not None:
            continue
        is_run = span.attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OP_WORKFLOW
        if is_run and (newest is None or span.start_ns > newest.start_ns):
            newest = span
    return newest


def _json_documents(text: str) -> list[Any]:
    """Every JSON value in ``text``: one answer, or a stream of ``{"result": ...}`` chunks."""
    decoder = json.JSONDecoder()
    documents = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            break
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    if not documents:
        raise ValueError("empty answer")
    return documents


def _resource_spans(documents: list[Any]) -> list[Mapping[str, Any]]:
    """The ``resourceSpans`` under ``result`` of every document, in order."""
    found: list[Mapping[str, Any]] = []
    for document in documents:
        if not isinstance(document, Mapping):
            raise JaegerError("Jaeger's answer is not a JSON object")
        result = document.get("result")
        if result is None:
            continue
        if not isinstance(result, Mapping):
            raise JaegerError("Jaeger's answer has no OTLP/JSON under 'result'")
        spans = result.get("resourceSpans") or []
        if not isinstance(spans, Sequence):
            raise JaegerError("Jaeger's answer has no resourceSpans list")
        found.extend(rs for rs in spans if isinstance(rs, Mapping))
    return found


def _error_message(body: bytes) -> str:
    """The message of a v3 error body (``{"error": {"message": ...}}``), else the raw text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(document, Mapping):
        error = document.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if document.get("message"):
            return str(document["message"])
    return text[:200]
