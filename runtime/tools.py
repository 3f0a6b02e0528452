"""Tool schemas, argument validation and the Tool type.

The schemas are the seed's, with ``additionalProperties: false`` so that a misspelt field is
reported instead of silently ignored. Every tool input is validated against its schema
before the handler runs; a violation becomes an ``is_error`` tool result the model can act on.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from jsonschema import Draft202012Validator

from runtime.errors import ToolError

Schema = dict[str, Any]

SEND_MESSAGE: Final[Schema] = {
    "name": "send_message",
    "description": (
        "Send a message to one or more other agents. It will appear appended to their next tool "
        "result. This is the ONLY way to reach other agents — plain text in your turn goes nowhere."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "recipient_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "content": {"type": "string"},
        },
        "required": ["recipient_ids", "content"],
        "additionalProperties": False,
    },
}

WAIT_FOR_MESSAGE: Final[Schema] = {
    "name": "wait_for_message",
    "description": (
        "Block until another agent messages you. Note: messages also arrive automatically appended "
        "to the result of ANY other tool call, so only use this when you have nothing else to do."
    ),
    "input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
}

SLEEP: Final[Schema] = {
    "name": "sleep",
    "description": "Sleep for the given number of seconds, then return.",
    "input_schema": {
        "type": "object",
        "properties": {"seconds": {"type": "integer", "minimum": 0, "maximum": 10}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
}

MAX_SUBAGENTS_PER_CALL: Final = 10

CREATE_SUBAGENTS: Final[Schema] = {
    "name": "create_subagents",
    "description": (
        "Spawn helper subagents. Returns immediately — helpers run concurrently in the "
        "background in parallel with you. Each gets base_instruction, optionally + "
        "per_subagent_instructions[i]."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "base_instruction": {"type": "string"},
            "per_subagent_instructions": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": MAX_SUBAGENTS_PER_CALL,
            },
        },
        "required": ["base_instruction"],
        "additionalProperties": False,
    },
}

GET_STATUS: Final[Schema] = {
    "name": "get_status",
    "description": "Status of every helper (active / idling / done / crashed / killed).",
    "input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
}

KILL_SUBAGENTS: Final[Schema] = {
    "name": "kill_subagents",
    "description": "Cancel running helpers you no longer need.",
    "input_schema": {
        "type": "object",
        "properties": {
            "subagent_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1}
        },
        "required": ["subagent_ids"],
        "additionalProperties": False,
    },
}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One ``tool_use`` block the model asked for."""

    id: str
    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool returned: text for the model, and whether it is an error."""

    text: str
    is_error: bool = False


Handler = Callable[[ToolCall], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    """A tool an agent may call: its schema (sent to the model) and its handler."""

    schema: Schema
    handler: Handler
    _validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = json.dumps(self.schema["input_schema"], sort_keys=True)
        object.__setattr__(self, "_validator", _validator(text))

    @property
    def name(self) -> str:
        """The tool's name as the model sees it."""
        return str(self.schema["name"])

    def validate(self, arguments: object) -> None:
        """Raise :class:`ToolError` naming every way ``arguments`` break the schema."""
        errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            problems = "; ".join(_describe(e.path, e.message) for e in errors)
            raise ToolError(f"invalid input for {self.name}: {problems}", kind="invalid_input")


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    """A checked validator per distinct input schema.

    Every agent gets its own messaging tools, so the same few schemas are wrapped again and
    again; checking a schema against the 2020-12 meta-schema costs far more than validating
    an input, so it is done once per schema (``schema_json`` is its canonical JSON).
    """
    schema = json.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _describe(path: Sequence[object], message: str) -> str:
    where = ".".join(str(p) for p in path)
    return f"{where}: {message}" if where else message


def tool_schemas(tools: Sequence[Tool]) -> list[Schema]:
    """The schemas to send to the model for ``tools``."""
    return [t.schema for t in tools]
