"""Secrets out of everything recorded, and control characters out of the console.

:func:`redact` removes credentials from a text before it becomes an exception event, a span
status, a log line or a console line: the values of secret-looking environment variables
(``ANTHROPIC_API_KEY`` and any ``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``,
the values in ``OTEL_EXPORTER_OTLP_*HEADERS``), ``Authorization`` / ``x-api-key`` header
values in any form (``x-api-key: ...``, ``'authorization': 'Bearer ...'``), Anthropic key
shapes (``sk-ant-...``) and passwords in URLs (``https://user:password@host``). Whatever
shape a failure takes — an error body that echoes the key, an HTTP library quoting a bad
header, a traceback — the secret is replaced by ``[REDACTED]``.

:func:`for_terminal` makes text that orchestrace did not write itself (model output, names
read from a spans file, server error bodies) safe to print: control characters, escape
sequences and bidirectional overrides become visible ``\\xNN`` / ``\\u202e`` escapes, so
nothing can clear the screen, write the clipboard (OSC 52) or reorder a line.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Final

MASK: Final = "[REDACTED]"
#: Values shorter than this are not treated as secrets (they would mask ordinary words).
MIN_SECRET_CHARS: Final = 8

_SECRET_NAME = re.compile(r"(API_KEY|APIKEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.I)
_HEADER_VARS: Final = (
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
)
_PATTERNS: Final = (
    # authorization: Bearer xyz / 'x-api-key': 'xyz' / x-api-key=xyz (quotes optional)
    re.compile(
        r"""(?P<keep>(?:authorization|x-api-key|api[-_]key|proxy-authorization)['"]?\s*[:=]\s*"""
        r"""['"]?(?:bearer\s+|basic\s+)?)(?P<secret>[^\s'",;}\]]+)""",
        re.I,
    ),
    re.compile(r"(?P<keep>)(?P<secret>sk-ant-[A-Za-z0-9_\-]{8,})"),
    # scheme://user:password@host
    re.compile(r"(?P<keep>[a-z][a-z0-9+.\-]*://[^/\s:@]*:)(?P<secret>[^/\s@]+)(?=@)", re.I),
)


def _secret_values(environ: Mapping[str, str]) -> list[str]:
    values: set[str] = set()
    for name, value in environ.items():
        if _SECRET_NAME.search(name) and len(value.strip()) >= MIN_SECRET_CHARS:
            values.add(value.strip())
    for name in _HEADER_VARS:
        for pair in environ.get(name, "").split(","):
            _, _, value = pair.partition("=")
            value = value.strip()
            if len(value) >= MIN_SECRET_CHARS:
                values.add(value)
                # "Bearer%20xyz" (the header's URL-encoded form) and the token alone
                for part in value.replace("%20", " ").split():
                    if len(part) >= MIN_SECRET_CHARS:
                        values.add(part)
    # longest first, so a secret containing another is masked whole
    return sorted(values, key=len, reverse=True)


class Redactor:
    """Masks known secret values and credential-shaped substrings."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if len(s) >= MIN_SECRET_CHARS]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        """Secrets from ``environ`` (default: the process environment)."""
        return cls(_secret_values(os.environ if environ is None else environ))

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by :data:`MASK`."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(_mask, text)
        return text


def _mask(match: re.Match[str]) -> str:
    secret = match.group("secret")
    return match.group(0) if secret == MASK else match.group("keep") + MASK


_default: Redactor | None = None
_lock = threading.Lock()


def redact(text: str) -> str:
    """``text`` without secrets (the environment's, read once; see :func:`refresh`)."""
    global _default
    redactor = _default
    if redactor is None:
        with _lock:
            redactor = _default = _default or Redactor.from_environment()
    return redactor(text)


def refresh() -> None:
    """Read the environment's secrets again (after it changed, e.g. in tests)."""
    global _default
    with _lock:
        _default = None


# Control characters (C0 but tab and newline, DEL, C1) and bidirectional formatting marks.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def url_for_display(url: str) -> str:
    """``url`` fit to print: the secret of its userinfo — a password (``user:password@``)
    or a lone token (``token@``, as NATS URLs carry one) — becomes :data:`MASK`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    hidden = f"{user}:{MASK}" if colon else MASK
    return f"{scheme}://{hidden}@{host}{slash}{path}"


def for_terminal(text: str, *, newlines: bool = True) -> str:
    """``text`` redacted and with every character that could control a terminal escaped.

    Tabs stay; newlines stay when ``newlines`` (a final answer), else they are escaped too
    (a table cell, a one-line field).
    """
    text = _UNSAFE.sub(_escape, redact(text))
    return text if newlines else text.replace("\n", "\\n")
