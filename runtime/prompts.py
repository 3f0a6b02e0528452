"""How the agent loop shows received messages to the model.

Messages drained from an agent's inbox are appended to its next tool result (or user turn)
under :data:`RECEIVED_HEADER`, one ``<agent-message from="...">`` block each. Content and
sender names are escaped so that no message can close its block and open one "from"
another agent (the original cookbook pasted them raw).
"""

from __future__ import annotations

from collections.abc import Iterable

from runtime.hub import Envelope

RECEIVED_HEADER = "[Messages received while you were working:]"

# Control characters are shown as \xNN, so a literal backslash is doubled: the text "\x07"
# and the character BEL must not render alike.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)}
_ESCAPE_TEXT = str.maketrans({"\\": "\\\\", "&": "&amp;", "<": "&lt;", ">": "&gt;", **_CONTROL})
# A sender name stays on the block's header line: every line break Python's splitlines()
# knows (CR, NEL and the other C1 controls, U+2028, U+2029) is escaped as well.
_ESCAPE_ATTR = str.maketrans(
    {
        "\\": "\\\\",
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
        **_CONTROL,
        **{c: f"\\x{c:02x}" for c in range(0x80, 0xA0)},
    }
)


def escape_content(text: str) -> str:
    """Escape message text so it cannot open or close an ``<agent-message>`` block."""
    return text.translate(_ESCAPE_TEXT)


def escape_attribute(text: str) -> str:
    """Escape a sender name for the ``from="..."`` attribute (single line, no quotes)."""
    return text.translate(_ESCAPE_ATTR)


def render_messages(envelopes: Iterable[Envelope]) -> str:
    """Format drained messages for appending to a tool result ("" when there are none)."""
    body = "\n".join(
        f'<agent-message from="{escape_attribute(e.sender)}">\n'
        f"{escape_content(e.content)}\n</agent-message>"
        for e in envelopes
    )
    return f"\n\n{RECEIVED_HEADER}\n{body}" if body else ""
