"""The exception hierarchy: everything orchestrace raises derives from OrchestraceError."""


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
