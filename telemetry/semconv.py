"""Every span name, attribute key and metric name orchestrace emits, in one place.

The GenAI and messaging keys follow the OpenTelemetry semantic conventions. They are
defined here rather than imported from ``opentelemetry-semantic-conventions`` because the
package marks the GenAI ones unstable (``_incubating``) and renames them between releases;
pinning the strings here keeps every span and dashboard stable.
"""

import os
from collections.abc import Mapping
from typing import Final

# --- which version of the GenAI conventions (OTEL_SEMCONV_STABILITY_OPT_IN) -------------------
# Two layouts, each checked against a vendored registry (tests/semconv_registry/):
#
# * default: the layout orchestrace has shipped, the GenAI conventions as last released in
#   open-telemetry/semantic-conventions (v1.41): ``gen_ai.client.operation.duration``,
#   ``gen_ai.client.token.usage`` (histogram by ``gen_ai.token.type``),
#   ``gen_ai.client.operation.time_to_first_chunk``,
#   ``gen_ai.usage.cache_creation.input_tokens``, and the run id as
#   ``gen_ai.conversation.id``;
# * ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``: the current registry of
#   open-telemetry/semantic-conventions-genai, where a model call is an inference:
#   ``gen_ai.client.inference.duration``, ``gen_ai.client.inference.time_to_first_chunk``,
#   token counters ``gen_ai.client.inference.usage.{input,output}_tokens`` by
#   ``gen_ai.token.modality`` (and the cache ones instead of ``orchestrace.model.cache_tokens``),
#   ``gen_ai.usage.cache_write.input_tokens``; the run id becomes ``orchestrace.run.id`` and
#   ``gen_ai.agent.id`` is left out (the registry keeps both for stable, provider-side ids,
#   and SHOULD NOT be a generated one), and invocations carry ``gen_ai.invocation.is_nested``.
#
# Both emit what the conventions added without renaming anything orchestrace had:
# ``gen_ai.invocation.duration``, ``gen_ai.invoke_agent.{inference,tool}_calls`` and
# ``gen_ai.execute_tool.duration``. The default stays the shipped layout, as the conventions
# ask of an instrumentation that already emits an older version.
SEMCONV_OPT_IN_ENV: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
GEN_AI_LATEST_EXPERIMENTAL: Final = "gen_ai_latest_experimental"


def gen_ai_latest(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list) asks for the latest
    experimental GenAI conventions."""
    value = (os.environ if environ is None else environ).get(SEMCONV_OPT_IN_ENV, "")
    return GEN_AI_LATEST_EXPERIMENTAL in {part.strip() for part in value.split(",")}


# --- span operations (span names are "{operation} {target}") -------------------------------
OP_WORKFLOW: Final = "invoke_workflow"
OP_AGENT: Final = "invoke_agent"
OP_CHAT: Final = "chat"
OP_TOOL: Final = "execute_tool"
OP_SEND: Final = "send"
OP_RECEIVE: Final = "receive"

# --- GenAI (https://opentelemetry.io/docs/specs/semconv/gen-ai/) ---------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
#: Latest conventions: what the default layout calls ``gen_ai.usage.cache_creation.input_tokens``.
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
#: Latest conventions, on the invocation spans and ``gen_ai.invocation.duration``: false on
#: the run's ``invoke_workflow``, true on every ``invoke_agent`` inside it.
GEN_AI_INVOCATION_IS_NESTED: Final = "gen_ai.invocation.is_nested"
#: Latest conventions, on the token counters: orchestrace's prompts and results are text.
GEN_AI_TOKEN_MODALITY: Final = "gen_ai.token.modality"
TOKEN_MODALITY_TEXT: Final = "text"

PROVIDER_ANTHROPIC: Final = "anthropic"
TOOL_TYPE_FUNCTION: Final = "function"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# --- messaging (https://opentelemetry.io/docs/specs/semconv/messaging/) -----------------------
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_BATCH_MESSAGE_COUNT: Final = "messaging.batch.message_count"
MESSAGING_SYSTEM_ORCHESTRACE: Final = "orchestrace"

# --- general -------------------------------------------------------------------------------
ERROR_TYPE: Final = "error.type"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"

# --- orchestrace's own ---------------------------------------------------------------------
#: The run's id (latest conventions; the default layout records it as gen_ai.conversation.id).
RUN_ID: Final = "orchestrace.run.id"
#: On a spawned agent's ``invoke_agent``: the agent that spawned it (the lead). The GenAI
#: registry defines no caller attribute; the span's parent (the lead's ``execute_tool
#: create_subagents``) says the same in the trace's shape.
AGENT_CALLER: Final = "orchestrace.agent.caller"
RUN_SCENARIO: Final = "orchestrace.run.scenario"
RUN_MODEL_BACKEND: Final = "orchestrace.run.model_backend"
AGENT_ROLE: Final = "orchestrace.agent.role"
AGENT_STATE: Final = "orchestrace.agent.state"
AGENT_END_REASON: Final = "orchestrace.agent.end_reason"
AGENT_TURNS: Final = "orchestrace.agent.turns"
AGENT_UNREAD_MESSAGES: Final = "orchestrace.agent.unread_messages"
TOOL_IS_ERROR: Final = "orchestrace.tool.is_error"
TOOL_CANCELLED: Final = "orchestrace.tool.cancelled"
MESSAGE_SENDER: Final = "orchestrace.message.sender"
MESSAGE_OUTCOME: Final = "orchestrace.message.outcome"
MESSAGE_CONTENT: Final = "orchestrace.message.content"
MESSAGE_WAIT_SECONDS: Final = "orchestrace.message.wait_seconds"
MODEL_QUEUE_SECONDS: Final = "orchestrace.model.queue_seconds"
DELIVERY_VIA: Final = "orchestrace.delivery.via"
CACHE_KIND: Final = "orchestrace.cache.kind"
RUN_OUTCOME: Final = "orchestrace.run.outcome"
#: The exporter a telemetry-pipeline metric is about: ``file``, ``otlp/grpc``,
#: ``otlp/http/protobuf``, ``console`` (the kind, never a path: bounded cardinality).
TELEMETRY_EXPORTER: Final = "orchestrace.exporter"
#: The ``orchestrace.agent.state`` values an agent never leaves (``runtime.hub.AgentState``).
AGENT_FINAL_STATES: Final = frozenset({"done", "crashed", "killed"})

# --- exceptions (the SDK's record_exception event) ------------------------------------
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

#: Attributes that carry user or model content. They are recorded on spans so that the live
#: view can show snippets, and stripped before export unless content capture is enabled.
CONTENT_KEYS: Final = frozenset(
    {
        GEN_AI_TOOL_CALL_ARGUMENTS,
        GEN_AI_TOOL_CALL_RESULT,
        MESSAGE_CONTENT,
        GEN_AI_SYSTEM_INSTRUCTIONS,
        GEN_AI_INPUT_MESSAGES,
        GEN_AI_OUTPUT_MESSAGES,
    }
)

# --- events --------------------------------------------------------------------------------
#: A model-call HTTP attempt that failed (the SDK may retry it).
EVENT_ATTEMPT_FAILED: Final = "orchestrace.model.attempt_failed"

# --- metrics -------------------------------------------------------------------------------
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
#: Every HTTP attempt of a model call (retries included), by operation, provider, request
#: model, ``http.response.status_code`` and ``error.type`` (failed attempts only). The GenAI
#: conventions count calls, not attempts, and ``http.client.request.duration`` belongs to
#: an HTTP client instrumentation. Prometheus: ``orchestrace_model_attempts_total``.
METRIC_MODEL_ATTEMPTS: Final = "orchestrace.model.attempts"
METRIC_CACHE_TOKENS: Final = "orchestrace.model.cache_tokens"
#: One tool execution (was ``orchestrace.tool.duration``; renamed, the old name not kept).
METRIC_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"
#: One agent (``gen_ai.operation.name`` = invoke_agent) or run (invoke_workflow), from its
#: start to its end. Prometheus: ``gen_ai_invocation_duration_seconds``.
METRIC_INVOCATION_DURATION: Final = "gen_ai.invocation.duration"
#: Model calls one agent made in its invocation (failed ones included), and tool calls.
METRIC_INFERENCE_CALLS: Final = "gen_ai.invoke_agent.inference_calls"
METRIC_TOOL_CALLS: Final = "gen_ai.invoke_agent.tool_calls"
#: Latest conventions: what the default layout records as ``gen_ai.client.operation.*`` and
#: ``gen_ai.client.token.usage`` (model calls are inferences there).
METRIC_INFERENCE_DURATION: Final = "gen_ai.client.inference.duration"
METRIC_INFERENCE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.inference.time_to_first_chunk"
METRIC_INFERENCE_INPUT_TOKENS: Final = "gen_ai.client.inference.usage.input_tokens"
METRIC_INFERENCE_OUTPUT_TOKENS: Final = "gen_ai.client.inference.usage.output_tokens"
#: Latest conventions: tokens per answered call (what gen_ai.client.token.usage was).
METRIC_INFERENCE_OPERATION_INPUT_TOKENS: Final = "gen_ai.client.inference.operation.input_tokens"
METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS: Final = "gen_ai.client.inference.operation.output_tokens"
METRIC_INFERENCE_CACHE_READ_TOKENS: Final = "gen_ai.client.inference.usage.cache_read.input_tokens"
METRIC_INFERENCE_CACHE_WRITE_TOKENS: Final = (
    "gen_ai.client.inference.usage.cache_write.input_tokens"
)
METRIC_MESSAGES_SENT: Final = "orchestrace.messages.sent"
METRIC_MESSAGES_RECEIVED: Final = "orchestrace.messages.received"
METRIC_DELIVERY_LATENCY: Final = "orchestrace.message.delivery.latency"
METRIC_AGENTS: Final = "orchestrace.agents"
METRIC_AGENT_TURNS: Final = "orchestrace.agent.turns"
METRIC_AGENT_WAIT: Final = "orchestrace.agent.wait.duration"
METRIC_RUNS: Final = "orchestrace.runs"
#: List-price cost of answered model calls (``telemetry/cost.py``), recorded only when the
#: model's price is known. Prometheus: ``orchestrace_usage_cost_USD_total``.
METRIC_COST: Final = "orchestrace.usage.cost"
#: The cost metric's unit: the ISO 4217 code, which Prometheus appends to the name as
#: ``_USD`` (UCUM has no currency units; a ``{USD}`` annotation would be dropped from it).
UNIT_USD: Final = "USD"

#: Agents that reached a final state, by role and state (done, crashed, killed): a counter, so
#: a crash is seen even when the run ends before the next export. Prometheus:
#: ``orchestrace_agents_ended_total``.
METRIC_AGENTS_ENDED: Final = "orchestrace.agents.ended"
#: Agents blocked in ``wait_for_message`` right now, by role (``orchestrace_agents_waiting``).
METRIC_AGENTS_WAITING: Final = "orchestrace.agents.waiting"
#: How long the longest wait in progress has lasted, by role; 0 when none is waiting.
#: Prometheus: ``orchestrace_agent_wait_longest_seconds``.
METRIC_AGENT_WAIT_LONGEST: Final = "orchestrace.agent.wait.longest"

# The telemetry pipeline's own health (``telemetry.metrics.PipelineHealth``): observable
# counters read from the exporters' own counts when metrics are collected. Prometheus:
# ``orchestrace_telemetry_spans_{ended,exported,failed,dropped}_total`` and
# ``orchestrace_telemetry_metric_points_{exported,failed}_total``.
#: Spans ended (created and finished): what every span exporter should send.
METRIC_SPANS_ENDED: Final = "orchestrace.telemetry.spans.ended"
#: Spans an exporter sent successfully, by ``orchestrace.exporter``.
METRIC_SPANS_EXPORTED: Final = "orchestrace.telemetry.spans.exported"
#: Spans whose export failed (the exporter gave up after its retries), by exporter.
METRIC_SPANS_FAILED: Final = "orchestrace.telemetry.spans.failed"
#: Spans never handed to an exporter: its queue was full, or they were still queued when
#: the shutdown deadline passed. By exporter.
METRIC_SPANS_DROPPED: Final = "orchestrace.telemetry.spans.dropped"
#: Metric data points a metric exporter sent, by exporter.
METRIC_POINTS_EXPORTED: Final = "orchestrace.telemetry.metric_points.exported"
#: Metric data points whose export failed, by exporter (reported with the next collection).
METRIC_POINTS_FAILED: Final = "orchestrace.telemetry.metric_points.failed"

#: Explicit bucket boundaries the GenAI semantic conventions give for these histograms.
DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
#: Invocation durations (agents and runs last minutes): the duration buckets doubled on to
#: about 22 minutes; the registry gives none for ``gen_ai.invocation.duration``.
INVOCATION_BUCKETS: Final = (*DURATION_BUCKETS, 163.84, 327.68, 655.36, 1310.72)
#: Calls per agent invocation (the registry gives no boundaries for these either).
CALL_COUNT_BUCKETS: Final = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)

# --- streamed model calls --------------------------------------------------------------------
# Names checked against the GenAI conventions (open-telemetry/semantic-conventions-genai:
# gen-ai-metrics.md, registry/attributes/gen-ai.md; opentelemetry-semantic-conventions
# 0.66b2 has the same strings). The client-side ones are used as they are; where the
# conventions have nothing that means what orchestrace records, the name is orchestrace's:
#
# * time to first token: ``gen_ai.client.operation.time_to_first_chunk`` (the metric) and
#   ``gen_ai.response.time_to_first_chunk`` (the span attribute), both "from when the client
#   issues the request to when the first chunk is received", in seconds, for streamed calls
#   only. ``gen_ai.server.time_to_first_token`` means the same measured by a model *server*,
#   which orchestrace is not.
# * time per output token: the conventions' client metric,
#   ``gen_ai.client.operation.time_per_output_chunk``, is the gap between two chunks, and an
#   Anthropic delta carries any number of tokens; ``gen_ai.server.time_per_output_token`` has
#   the meaning wanted ((duration - time to first token) / (output tokens - 1)) but is a
#   server metric. So: ``orchestrace.model.time_per_output_token``, with the server metric's
#   definition and buckets.
# * the first-token event: the conventions define no span event for it.
#: True when the call streamed its response (set on every ``chat`` span).
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
#: Seconds from the start of the model call to the first content of its streamed response
#: (retries included, as in ``gen_ai.client.operation.duration``).
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
#: The first content of a streamed response arrived (a content block began or grew); carries
#: ``gen_ai.response.time_to_first_chunk`` and the attempt (``http.request.resend_count``).
EVENT_FIRST_TOKEN: Final = "orchestrace.model.first_token"
#: On ``orchestrace.model.attempt_failed``: the attempt failed after its 200, mid-stream.
MODEL_FAILED_MID_STREAM: Final = "orchestrace.model.failed_mid_stream"
#: Prometheus: ``gen_ai_client_operation_time_to_first_chunk_seconds``.
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
#: Prometheus: ``orchestrace_model_time_per_output_token_seconds``.
METRIC_TIME_PER_OUTPUT_TOKEN: Final = "orchestrace.model.time_per_output_token"
#: The bucket boundaries the conventions give ``gen_ai.server.time_per_output_token``.
TIME_PER_OUTPUT_TOKEN_BUCKETS: Final = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
)


def cache_write_tokens(attributes: Mapping[str, object]) -> object:
    """A ``chat`` span's cache-write input tokens, under either layout's key (readers take
    spans recorded with or without ``OTEL_SEMCONV_STABILITY_OPT_IN``)."""
    value = attributes.get(GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS)
    return attributes.get(GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS) if value is None else value
