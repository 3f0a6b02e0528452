"""Tools: the dict-schema :class:`Tool`, :class:`FunctionTool` built from a Python function's
signature (``@tool``), and the :class:`ToolContext` a tool may ask for.

Every tool input is validated before the handler runs; a violation becomes an ``is_error``
tool result the model can act on. The runtime's own tools live next to their handlers:
``send_message`` and ``wait_for_message`` in :mod:`runtime.agent`, ``sleep``,
``create_subagents``, ``get_status`` and ``kill_subagents`` in :mod:`runtime.subagents`
(the original cookbook's schemas, with ``additionalProperties: false`` so that a misspelt
field is reported instead of silently ignored).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, overload

import docstring_parser
import pydantic
import pydantic_core
from jsonschema import Draft202012Validator
from opentelemetry.trace import Span

from runtime.errors import ToolError

Schema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One ``tool_use`` block the model asked for."""

    id: str
    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool returned: text for the model, and whether it is an error.

    ``blocks`` holds the content blocks when the tool returned blocks (text, images,
    documents) rather than a value; ``text`` is then their text, for spans and the console.
    """

    text: str
    is_error: bool = False
    blocks: tuple[Mapping[str, Any], ...] | None = None


Handler = Callable[[ToolCall], Awaitable[str]]
Sender = Callable[[Sequence[str], str], Awaitable[str]]


@dataclass(frozen=True)
class ToolContext:
    """What a tool function receives when its first parameter is annotated ``ToolContext``.

    Example::

        @tool
        async def notify(ctx: ToolContext, text: str) -> str:
            \"\"\"Tell the planner something.\"\"\"
            ctx.span.set_attribute("app.notify.length", len(text))
            return await ctx.send("planner", text)

    ``agent`` and ``role``: who called (``role``: ``lead``, ``member`` or a template's
    name); ``run_id``: the run's id; ``call_id``: this call's ``tool_use`` id; ``span``: the
    open ``execute_tool`` span; ``await send(to, content)``: a traced message;
    ``agent_states()``: every agent's state; ``await sleep(seconds)``: sleep on the run's
    clock. The runtime builds it; a tool never constructs one.
    """

    #: The calling agent's name (``researcher1``) and role (``lead``, ``member``, a template).
    agent: str
    role: str
    #: The run's id (``gen_ai.conversation.id`` on every span of the run).
    run_id: str
    #: The ``tool_use`` id of this call.
    call_id: str
    #: The open ``execute_tool`` span: add attributes or events to it.
    span: Span
    _send: Sender = field(repr=False)
    _states: Callable[[], Mapping[str, str]] = field(repr=False)
    _sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)

    async def send(self, to: str | Sequence[str], content: str) -> str:
        """Send ``content`` to one or more agents, exactly as the ``send_message`` tool does.

        Each recipient gets a traced ``send`` span under this tool's span. Returns the same
        text ``send_message`` returns (who got it, who did not and why). Raises
        :class:`ToolError` for a message over the run's size limit or one
        addressed to the calling agent itself.
        """
        recipients = [to] if isinstance(to, str) else list(to)
        return await self._send(recipients, content)

    def agent_states(self) -> dict[str, str]:
        """Every agent of the run and its state (``active``, ``idling``, ``done``, ...)."""
        return dict(self._states())

    async def sleep(self, seconds: float) -> None:
        """Sleep on the run's clock (``--time-scale`` scales it; tests may make it instant)."""
        await self._sleep(seconds)


class AgentTool(Protocol):
    """What the agent loop needs of a tool: its name, its schema, and a way to invoke it."""

    @property
    def name(self) -> str:
        """The tool's name as the model sees it."""

    @property
    def schema(self) -> Schema:
        """The tool definition sent to the model (name, description, input_schema)."""

    async def invoke(self, call: ToolCall, context: ToolContext) -> ToolOutcome:
        """Validate ``call``'s input and run the tool; raise :class:`ToolError` for bad input."""


@dataclass(frozen=True)
class Tool:
    """A tool an agent may call: its schema (sent to the model) and its handler.

    Example::

        Tool(
            {"name": "echo", "description": "Echo the text back.",
             "input_schema": {"type": "object", "properties": {"text": {"type": "string"}},
                              "required": ["text"]}},
            echo_handler,  # async def echo_handler(call: ToolCall) -> str
        )

    The input is validated against ``input_schema`` (JSON Schema 2020-12) before the handler
    runs. With ``takes_context=True`` the handler is called as ``handler(call, context)``
    with the :class:`ToolContext`. A handler that is not ``async`` runs in a worker thread,
    as a sync ``@tool`` function does. Raises ``jsonschema.SchemaError`` for an invalid
    schema.
    """

    schema: Schema
    handler: Callable[..., Awaitable[str]] | Callable[..., str]
    takes_context: bool = False
    _validator: Draft202012Validator = field(init=False, repr=False, compare=False)
    _is_async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = json.dumps(self.schema["input_schema"], sort_keys=True)
        object.__setattr__(self, "_validator", _validator(text))
        call = getattr(self.handler, "__call__", None)  # noqa: B004  # an object's async __call__
        is_async = inspect.iscoroutinefunction(self.handler) or inspect.iscoroutinefunction(call)
        object.__setattr__(self, "_is_async", is_async)

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

    async def invoke(self, call: ToolCall, context: ToolContext) -> ToolOutcome:
        """Validate the input against the schema, then run the handler."""
        self.validate(call.input)
        args: tuple[object, ...] = (call, context) if self.takes_context else (call,)
        if self._is_async:
            return ToolOutcome(await self.handler(*args))  # type: ignore[misc]
        result: object = await asyncio.to_thread(self.handler, *args)
        if inspect.isawaitable(result):  # e.g. a lambda that returns a coroutine
            result = await result
        return ToolOutcome(result)  # type: ignore[arg-type]


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


def tool_schemas(tools: Sequence[AgentTool]) -> list[Schema]:
    """The schemas to send to the model for ``tools``."""
    return [t.schema for t in tools]


# --- tools from Python functions ----------------------------------------------------------
_CONTENT_BLOCK_TYPES: Final = frozenset({"text", "image", "document", "search_result"})


class FunctionTool:
    """A tool made from a Python function by :func:`tool`; the function stays callable.

    The input schema comes from the signature and type hints through pydantic, the
    description and per-parameter descriptions from the docstring (Google, NumPy, reST and
    Epydoc styles). The model's input is validated by the same pydantic model before the
    call. Synchronous functions run in a worker thread so a blocking tool does not hold up
    the other agents.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"@tool needs a function, got {type(func).__name__}")
        self.func = func
        functools.update_wrapper(self, func)
        self._name = name or func.__name__
        doc = docstring_parser.parse(inspect.getdoc(func) or "")
        self._takes_context, self._model = _input_model(func, self._name, doc)
        self._is_async = inspect.iscoroutinefunction(func)
        if description is None:
            description = "\n\n".join(d for d in (doc.short_description, doc.long_description) if d)
        input_schema = _without_titles(self._model.model_json_schema())
        self._schema: Schema = {
            "name": self._name,
            "description": description,
            "input_schema": input_schema,
        }

    @property
    def name(self) -> str:
        """The tool's name as the model sees it (the function's name unless given)."""
        return self._name

    @property
    def schema(self) -> Schema:
        """The tool definition sent to the model."""
        return self._schema

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly (a decorated function stays usable in your own code)."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<tool {self._name}>"

    def validate(self, arguments: object) -> dict[str, Any]:
        """The function's keyword arguments from the model's input, or :class:`ToolError`
        naming every field that is missing, unknown or of the wrong type."""
        try:
            parsed = self._model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                _describe(err["loc"], err["msg"]) for err in exc.errors(include_url=False)
            )
            raise ToolError(
                f"invalid input for {self._name}: {problems}", kind="invalid_input"
            ) from None
        return {key: getattr(parsed, key) for key in type(parsed).model_fields}

    async def invoke(self, call: ToolCall, context: ToolContext) -> ToolOutcome:
        """Validate the input, call the function (in a thread if it is synchronous) and turn
        what it returned into a tool result."""
        kwargs = self.validate(call.input)
        args = (context,) if self._takes_context else ()
        if self._is_async:
            value = await self.func(*args, **kwargs)
        else:
            value = await asyncio.to_thread(self.func, *args, **kwargs)
            if inspect.isawaitable(value):  # a sync def returning a coroutine
                value = await value
        return tool_outcome(value)


def _input_model(
    func: Callable[..., Any], name: str, doc: docstring_parser.Docstring
) -> tuple[bool, type[pydantic.BaseModel]]:
    """Whether ``func`` takes a :class:`ToolContext` first, and the model of its other
    parameters (``extra="forbid"``: a misspelt field is an error, not silently dropped)."""
    signature = inspect.signature(func)
    try:
        hints = _type_hints(func)
    except Exception as exc:  # an annotation that does not resolve
        raise TypeError(f"@tool {name}: cannot resolve the type hints: {exc}") from exc
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls") and params[0].name not in hints:
        raise TypeError(
            f"@tool {name}: {params[0].name!r} would be a parameter the model fills in; use "
            f"@tool on a function, or make a tool of a bound method: tool(instance.{name})"
        )
    takes_context = bool(params) and hints.get(params[0].name) is ToolContext
    described = {p.arg_name: p.description for p in doc.params if p.description}
    fields: dict[str, Any] = {}
    for param in params[1:] if takes_context else params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"@tool {name}: *args and **kwargs cannot be described to a model")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"@tool {name}: positional-only parameter {param.name!r}")
        if hints.get(param.name) is ToolContext:
            raise TypeError(f"@tool {name}: ToolContext must be the first parameter")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            annotation,
            pydantic.Field(default, description=described.get(param.name)),
        )
    model = pydantic.create_model(
        f"{name}_input",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
        **fields,
    )
    return takes_context, model


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(func)


def _without_titles(schema: Any) -> Any:
    """pydantic's schema less its generated ``title`` keys (the model needs none of them;
    a property that is itself named ``title`` is kept)."""
    if isinstance(schema, list):
        return [_without_titles(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {k: _without_titles(v) for k, v in value.items()}
        else:
            out[key] = _without_titles(value)
    return out


def tool_outcome(value: object) -> ToolOutcome:
    """A tool function's return value as a tool result.

    ``str`` is sent as it is; a list of content blocks (dicts with a ``type`` of text, image,
    document or search_result, or the SDK's block params) is sent as blocks; ``None`` is an
    empty result; anything else (numbers, dicts, lists, dataclasses, pydantic models) is
    sent as JSON.
    """
    if isinstance(value, str):
        return ToolOutcome(value)
    if value is None:
        return ToolOutcome("")
    if _is_content_blocks(value):
        blocks = tuple(dict(b) for b in typing.cast(Sequence[Mapping[str, Any]], value))
        text = "\n".join(str(b.get("text", f"[{b['type']}]")) for b in blocks)
        return ToolOutcome(text, blocks=blocks)
    try:
        text = json.dumps(pydantic_core.to_jsonable_python(value), ensure_ascii=False)
    except pydantic_core.PydanticSerializationError as exc:
        raise TypeError(
            f"a tool returned {type(value).__name__}, which is not JSON-serializable"
        ) from exc
    return ToolOutcome(text)


def _is_content_blocks(value: object) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(b, Mapping) and b.get("type") in _CONTENT_BLOCK_TYPES for b in value)
    )


@overload
def tool(func: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make a tool from a function: its schema from the signature, type hints and docstring.

    Example::

        @tool
        def lookup(topic: str, limit: int = 3) -> list[str]:
            \"\"\"Look a topic up in the team's notes.

            Args:
                topic: what to look up
                limit: how many notes to return at most
            \"\"\"
            return NOTES.get(topic, [])[:limit]

    Parameters may use str, int, float, bool, ``Literal``, ``Enum``, ``Optional``, lists,
    dicts, dataclasses, TypedDicts and pydantic models. A first parameter annotated
    :class:`ToolContext` is not shown to the model; it receives the calling agent's name,
    the run id, the current span and a ``send`` method. Raise
    :class:`orchestrace.ToolError` to return an ``is_error`` result on purpose; any other
    exception is also returned to the model as an error result and recorded on the span.

    Raises ``TypeError`` at decoration time for a signature that cannot be described to a
    model (``*args``, ``**kwargs``, positional-only parameters, unresolvable hints).
    """
    if func is not None:
        return FunctionTool(func, name=name, description=description)

    def decorate(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(f, name=name, description=description)

    return decorate


def as_tool(value: object) -> AgentTool:
    """``value`` as a tool: a :class:`Tool`, a :class:`FunctionTool`, or a plain function
    (wrapped with :func:`tool`). Raises ``TypeError`` for anything else."""
    if isinstance(value, Tool | FunctionTool):
        return value
    if inspect.isfunction(value) or inspect.ismethod(value):
        return FunctionTool(value)
    raise TypeError(f"not a tool: {value!r} (use @tool on a function, or Tool(schema, handler))")
