"""Every reliance on what the OpenTelemetry SDK, its exporters and the anthropic SDK do not
promise: private names, containers' attributes, model internals. Each assumption is one
function or constant here, with a test in ``tests/test_compat.py`` that fails loudly when a
release changes it (the newest releases are tried by ``.ci/newest``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def given_fields(model: object) -> Mapping[str, Any]:
    """The fields an anthropic (pydantic) model was built with, as given.

    The anthropic SDK builds responses with ``model_construct`` (no validation): the
    fields present in the body are in the instance's ``__dict__`` as they were sent (a
    number where a block was expected, a negative count), the absent ones are not there
    at all. Anything without a ``__dict__`` (a number in a content list) has no fields.
    """
    fields = getattr(model, "__dict__", None)
    return fields if isinstance(fields, dict) else {}
