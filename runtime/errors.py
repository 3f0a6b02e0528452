"""The exception hierarchy of the runtime and the public API.

Everything ``orchestrace.run`` and the runtime raise on purpose derives from
:class:`OrchestraceError`. Three kinds of error do not, by design:

- the readers in ``telemetry`` (which imports nothing from the runtime) raise their own:
  ``telemetry.jaeger.JaegerError``, ``telemetry.summary.SummaryError`` and
  ``telemetry.profile.ProfileError`` — the command turns each into a one-line message;
- ``runtime.loader.UserCodeError`` wraps an exception raised by the user's own file while
  the command imports it (its traceback is the user's, shown as such);
- ``runtime.process.GcSettingError`` and ``SwitchIntervalError`` are ``ValueError`` subclasses about
  two environment variables of the command, reported as warnings.
"""


class OrchestraceError(Exception):
    """Base class of every error orchestrace raises on purpose."""


class ToolError(OrchestraceError):
    """A tool call the model can fix: returned to it as an ``is_error`` tool result.

    ``kind`` is a short, low-cardinality category recorded as ``error.type`` on the span
    (the message itself may echo tool arguments, which are content): ``tool_error`` unless
    given; the runtime uses ``invalid_input`` for input that breaks a tool's schema.
    """

    def __init__(self, message: str, *, kind: str = "tool_error") -> None:
        super().__init__(message)
        self.kind = kind


class ConfigurationError(OrchestraceError):
    """Bad settings given to the runtime or the CLI."""


class MalformedResponseError(OrchestraceError):
    """The model API answered 200 with a body that is not a usable Messages API response."""

    #: The agent's end reason when this error stops it.
    reason = "malformed_response"
