"""The interpreter settings the orchestrace command runs with: GC thresholds, switch interval."""

from __future__ import annotations

import gc
import io
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.process import (
    DEFAULT_GC_THRESHOLD,
    DEFAULT_SWITCH_INTERVAL,
    GC_THRESHOLD_ENV,
    SWITCH_INTERVAL_ENV,
    GcSettingError,
    ProcessSettings,
    SwitchIntervalError,
    parse_gc_threshold,
    parse_switch_interval,
    tune_gc,
    tune_process,
    tune_switch_interval,
)


@pytest.fixture(autouse=True)
def python_thresholds() -> Iterator[tuple[int, int, int]]:
    """Every test starts from, and leaves, the interpreter's own thresholds."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


@pytest.fixture(autouse=True)
def python_switch_interval() -> Iterator[float]:
    """Every test starts from, and leaves, Python's own switch interval."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield sys.getswitchinterval()
    sys.setswitchinterval(saved)


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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", DEFAULT_SWITCH_INTERVAL),
        (" ", DEFAULT_SWITCH_INTERVAL),
        ("0.002", 0.002),
        ("1e-4", 0.0001),
        ("python", None),
        ("Default", None),
        ("off", None),
    ],
)
def test_parse_switch_interval(raw: str, expected: float | None) -> None:
    assert parse_switch_interval(raw) == expected


@pytest.mark.parametrize("raw", ["0", "-0.001", "fast", "nan", "inf", "1ms"])
def test_a_switch_interval_that_is_not_positive_seconds_is_refused(raw: str) -> None:
    with pytest.raises(SwitchIntervalError, match=rf"{SWITCH_INTERVAL_ENV}=.*positive"):
        parse_switch_interval(raw)


def test_tune_switch_interval_applies_the_default_and_the_environment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert tune_switch_interval({}) == DEFAULT_SWITCH_INTERVAL
    assert math.isclose(sys.getswitchinterval(), DEFAULT_SWITCH_INTERVAL)
    assert tune_switch_interval({SWITCH_INTERVAL_ENV: "0.0025"}) == 0.0025
    assert math.isclose(sys.getswitchinterval(), 0.0025)
    sys.setswitchinterval(0.005)
    assert tune_switch_interval({SWITCH_INTERVAL_ENV: "python"}) is None
    assert math.isclose(sys.getswitchinterval(), 0.005)
    with caplog.at_level(logging.WARNING, logger="runtime.process"):
        assert tune_switch_interval({SWITCH_INTERVAL_ENV: "soon"}) is None
    assert math.isclose(sys.getswitchinterval(), 0.005)
    assert "ORCHESTRACE_SWITCH_INTERVAL='soon'" in caplog.text
    assert "keeping Python's thread switch interval" in caplog.text


def test_tune_process_applies_both() -> None:
    applied = tune_process({GC_THRESHOLD_ENV: "999,9,9", SWITCH_INTERVAL_ENV: "0.003"})
    assert applied == ProcessSettings((999, 9, 9), 0.003)
    assert gc.get_threshold() == (999, 9, 9)
    assert math.isclose(sys.getswitchinterval(), 0.003)


def test_the_command_applies_the_switch_interval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SWITCH_INTERVAL_ENV, "0.0015")
    main(["summary", str(tmp_path / "absent.jsonl")], out=io.StringIO())
    assert math.isclose(sys.getswitchinterval(), 0.0015)
