"""The garbage-collector thresholds the orchestrace command runs with."""

from __future__ import annotations

import gc
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.process import (
    DEFAULT_GC_THRESHOLD,
    GC_THRESHOLD_ENV,
    GcSettingError,
    parse_gc_threshold,
    tune_gc,
)


@pytest.fixture(autouse=True)
def python_thresholds() -> Iterator[tuple[int, int, int]]:
    """Every test starts from, and leaves, the interpreter's own thresholds."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", DEFAULT_GC_THRESHOLD),
        ("  ", DEFAULT_GC_THRESHOLD),
        ("python", None),
        ("Default", None),
        ("off", None),
        ("1000", (1000,)),
        ("1000, 5,5", (1000, 5, 5)),
        ("0", (0,)),
    ],
)
def test_threshold_values(raw: str, expected: tuple[int, ...] | None) -> None:
    assert parse_gc_threshold(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "1,2,3,4", "-1", "1.5", "1,,2"])
def test_a_malformed_threshold_says_what_is_expected(raw: str) -> None:
    with pytest.raises(GcSettingError, match=rf"{GC_THRESHOLD_ENV}=.*one to three"):
        parse_gc_threshold(raw)


def test_tune_gc_applies_the_default_and_the_environment(
    python_thresholds: tuple[int, int, int],
) -> None:
    assert tune_gc({}) == DEFAULT_GC_THRESHOLD
    assert gc.get_threshold() == DEFAULT_GC_THRESHOLD
    assert tune_gc({GC_THRESHOLD_ENV: "1234,5,6"}) == (1234, 5, 6)
    assert gc.get_threshold() == (1234, 5, 6)
    gc.set_threshold(*python_thresholds)
    assert tune_gc({GC_THRESHOLD_ENV: "python"}) is None
    assert gc.get_threshold() == python_thresholds


def test_a_malformed_value_keeps_pythons_settings_and_warns(
    python_thresholds: tuple[int, int, int], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="runtime.process"):
        assert tune_gc({GC_THRESHOLD_ENV: "lots"}) is None
    assert gc.get_threshold() == python_thresholds
    assert "ORCHESTRACE_GC_THRESHOLD='lots'" in caplog.text
    assert "keeping Python's" in caplog.text


def test_the_command_applies_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(GC_THRESHOLD_ENV, "4321,7,8")
    main(["summary", str(tmp_path / "absent.jsonl")], out=io.StringIO())
    assert gc.get_threshold() == (4321, 7, 8)
