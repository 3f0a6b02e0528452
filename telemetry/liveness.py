"""Is the OTLP receiver answering? A probe the exit uses to tell a slow receiver from a dead one.

At exit, orchestrace waits while the span exporters make progress (spans exported). One
request slower than ``ORCHESTRACE_SHUTDOWN_TIMEOUT`` shows no progress, like a black hole
— a receiver that initialises its store on first use is such a case. So when the exit has
seen no progress for the timeout, it asks the receiver something on a new connection: an
``OPTIONS`` request over HTTP/1.1 (OTLP/HTTP), the HTTP/2 connection preface (OTLP/gRPC),
or the TLS handshake (``https://``). Any answer within :data:`PROBE_SECONDS` means the
receiver is alive and the exit keeps waiting (up to ``ORCHESTRACE_SHUTDOWN_CEILING``); no
answer, a refused connection or a name that does not resolve means it gives up as before.

The endpoint is read from the standard variables as the OTLP exporters read them
(``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``, else the
protocol's default). Nothing here raises: a probe that cannot be made answers False.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from telemetry import settings

#: How long one probe may take (real time): a black hole costs the exit this much more.
PROBE_SECONDS: Final = 1.0

#: The HTTP/2 client connection preface and an empty SETTINGS frame: an HTTP/2 server
#: (a gRPC receiver) answers with its own SETTINGS frame.
_H2_HELLO: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

_DEFAULTS: Final = {"grpc": "http://localhost:4317", "http": "http://localhost:4318"}


@dataclass(frozen=True)
class Endpoint:
    """Where an OTLP exporter sends: host, port, whether over TLS, and the protocol."""

    host: str
    port: int
    tls: bool
    grpc: bool

    @classmethod
    def for_traces(cls, protocol: str, environ: Mapping[str, str] | None = None) -> Endpoint | None:
        """The trace exporter's endpoint for ``protocol`` (``grpc`` or ``http/protobuf``)
        from the environment, or None if it cannot be parsed."""
        grpc = protocol == "grpc"
        try:
            url = (
                settings.ENDPOINTS[1].get(environ)  # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
                or settings.ENDPOINTS[0].get(environ)  # OTEL_EXPORTER_OTLP_ENDPOINT
                or _DEFAULTS["grpc" if grpc else "http"]
            )
        except settings.SettingError:
            return None
        schemed = "://" in url
        try:
            parts = urlsplit(url if schemed else "http://" + url)
            port = parts.port
        except ValueError:
            return None
        if not parts.hostname:
            return None
        tls = parts.scheme == "https"
        if grpc and not schemed:  # the gRPC exporter: TLS unless OTEL_EXPORTER_OTLP_INSECURE
            tls = not settings.INSECURE.get(environ)
        return cls(parts.hostname, port or (443 if tls else 80), tls, grpc)

    def answers(self, timeout: float = PROBE_SECONDS) -> bool:
        """Whether something at this endpoint answers within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as raw:
                if self.tls:
                    context = ssl.create_default_context()
                    # Liveness only: nothing is sent but a handshake, whatever the certificate.
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    raw.settimeout(max(deadline - time.monotonic(), 0.01))
                    with context.wrap_socket(raw, server_hostname=self.host):
                        return True  # a completed handshake is an answer
                raw.settimeout(max(deadline - time.monotonic(), 0.01))
                raw.sendall(
                    _H2_HELLO
                    if self.grpc
                    else f"OPTIONS * HTTP/1.1\r\nHost: {self.host}\r\n"
                    "Connection: close\r\n\r\n".encode("ascii", "replace")
                )
                return bool(raw.recv(1))
        except (OSError, ssl.SSLError, UnicodeError, ValueError):
            return False
