"""The cost of a run: token counts priced with the shipped (or a user's) price table.

Known counts give known dollars; a model the table does not know costs "unknown" (None,
``?`` in the summary), never $0; dated ids resolve to their base entry; a user's price file
overrides and extends the shipped one, and a malformed one is a clear error; the summary of
a scripted run prices every agent and the agents add up to the run; the cost metric is
recorded per answered call with the token metric's attributes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.prometheus._mapping import map_unit
from support import Traced, run_traced

from runtime.agent import RunConfig
from runtime.cli import main
from telemetry import semconv as sc
from telemetry.cost import (
    PRICES_ENV,
    Price,
    PriceTable,
    cost,
    default_prices,
    format_usd,
    uncached_input,
)
from telemetry.records import SpanFacts
from telemetry.summary import SUMMARY_KEYS, SummaryBuilder
from telemetry.summary_file import summarize_file

SHIPPED = PriceTable.shipped()
MODEL = "claude-opus-4-8"  # what the scripted runs ask for (tests/support.py)


@pytest.fixture(autouse=True)
def _no_user_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped table only, whatever the developer's environment says."""
    monkeypatch.delenv(PRICES_ENV, raising=False)


# --- the table ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "tokens", "dollars"),
    [
        # 1k input, 2k output, 10k cache reads, 4k cache writes at $5 / $25 / $0.50 / $6.25
        (MODEL, (1_000, 2_000, 10_000, 4_000), 0.005 + 0.05 + 0.005 + 0.025),
        # Haiku 4.5 at $1 / $5 / $0.10 / $1.25 per MTok
        ("claude-haiku-4-5", (1_000_000, 100_000, 2_000_000, 500_000), 1 + 0.5 + 0.2 + 0.625),
        # Opus 4 at $15 / $75 / $1.50 / $18.75
        ("claude-opus-4-0", (10_000, 1_000, 0, 0), 0.15 + 0.075),
    ],
)
def test_known_counts_cost_known_dollars(
    model: str, tokens: tuple[int, int, int, int], dollars: float
) -> None:
    assert SHIPPED.cost(model, *tokens) == pytest.approx(dollars, rel=1e-12)
    assert cost(model, *tokens) == pytest.approx(dollars, rel=1e-12)  # the process's table


def test_the_shipped_opus_4_8_entry_is_the_pricing_page_s() -> None:
    price = SHIPPED.price(MODEL)
    assert price is not None
    assert (price.input, price.cache_write, price.cache_read, price.output) == (5, 6.25, 0.5, 25)
    assert price.source == "https://platform.claude.com/docs/en/about-claude/pricing"
    assert price.name == "Claude Opus 4.8"


def test_every_shipped_price_says_where_and_when_it_was_read() -> None:
    raw = json.loads((Path(sc.__file__).parent / "prices.json").read_text(encoding="utf-8"))
    assert raw["models"]
    for model, price in SHIPPED.models.items():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price.checked), model
        assert price.source.startswith("https://platform.claude.com/docs/"), model
        assert price.name.startswith("Claude "), model
        assert 0 < price.cache_read < price.input < price.cache_write < price.output, model


def test_an_unknown_model_costs_unknown_never_zero() -> None:
    assert SHIPPED.price("gpt-7") is None
    assert SHIPPED.cost("gpt-7", 1_000, 1_000) is None
    assert SHIPPED.cost("gpt-7", 0, 0) is None
    assert "gpt-7" not in SHIPPED
    assert format_usd(None) == "?"
    assert format_usd(0.0123) == "$0.0123"


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-opus-4-5@20251101", "claude-opus-4-5"),  # Vertex AI spelling
        ("claude-opus-4-20250514", "claude-opus-4-0"),  # a listed alias
        ("Claude-Opus-4-8", "claude-opus-4-8"),
    ],
)
def test_a_dated_model_id_resolves_to_its_base_entry(model: str, base: str) -> None:
    assert SHIPPED.price(model) is not None
    assert SHIPPED.price(model) == SHIPPED.price(base)


@pytest.mark.parametrize(
    "model",
    [
        "claude-opus-5-5",  # another model, not a dated Opus 5
        "claude-opus-4",  # not a prefix at a separator of any entry
        "claude-opus-4-85",
        "claude-opus-4-8x",
        "",
    ],
)
def test_a_neighbouring_model_does_not_borrow_a_price(model: str) -> None:
    assert SHIPPED.price(model) is None


def test_longest_prefix_wins() -> None:
    cheap = Price(1, 1, 1, 1)
    dear = Price(2, 2, 2, 2)
    table = PriceTable({"m": cheap, "m-large": dear})
    assert table.price("m-large-20260101") == dear
    assert table.price("m-20260101") == cheap


# --- a user's price file ----------------------------------------------------------------------
def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


USER_PRICES = {
    "models": {
        MODEL: {"input": 1, "output": 2, "cache_write": 3, "cache_read": 4},
        "my-finetune": {
            "input": 10,
            "output": 20,
            "cache_write": 12.5,
            "cache_read": 1,
            "aliases": ["my-finetune-latest"],
            "checked": "2026-12-01",
            "source": "contract #42",
        },
    }
}


def test_a_user_price_file_overrides_and_extends(tmp_path: Path) -> None:
    path = _write(tmp_path / "prices.json", USER_PRICES)
    table = PriceTable.load(path, base=SHIPPED)
    assert table.cost(MODEL, 1_000_000, 1_000_000, 1_000_000, 1_000_000) == 1 + 2 + 4 + 3
    assert table.cost("my-finetune-20261201", 1_000_000, 0) == 10
    assert table.price("my-finetune-latest") == table.price("my-finetune")
    mine = table.price("my-finetune")
    assert mine is not None
    assert (mine.source, mine.checked) == ("contract #42", "2026-12-01")
    overridden = table.price(MODEL)
    assert overridden is not None
    assert overridden.source == str(path)  # no source given: the file is the source
    # the other shipped entries stay
    assert table.price("claude-haiku-4-5") == SHIPPED.price("claude-haiku-4-5")
    # overriding an entry overrides its aliases
    opus_4 = {"models": {"claude-opus-4-0": {**USER_PRICES["models"][MODEL], "input": 9}}}
    aliased = PriceTable.load(_write(tmp_path / "opus4.json", opus_4), base=SHIPPED)
    assert aliased.cost("claude-opus-4-20250514", 1_000_000, 0) == 9
    # alone, the file prices only its own models
    assert PriceTable.load(path).price("claude-haiku-4-5") is None


def test_orchestrace_prices_names_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "prices.json", USER_PRICES)
    monkeypatch.setenv(PRICES_ENV, str(path))
    assert cost(MODEL, 1_000_000, 0) == 1
    assert cost("my-finetune", 1_000_000, 0) == 10
    assert cost("claude-haiku-4-5", 1_000_000, 0) == 1  # shipped
    # an edited file is read again
    _write(path, {"models": {MODEL: {"input": 7, "output": 0, "cache_write": 0, "cache_read": 0}}})
    assert cost(MODEL, 1_000_000, 0) == 7
    monkeypatch.delenv(PRICES_ENV)
    assert cost(MODEL, 1_000_000, 0) == 5


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"prices": {}}', "unknown top-level keys"),
        ('{"models": []}', "'models' must be an object"),
        ('{"models": {"m": 5}}', "model 'm': expected an object of rates"),
        ('{"models": {"m": {"input": 1, "output": 1, "cache_read": 1}}}', "missing 'cache_write'"),
        (
            '{"models": {"m": {"input": "1", "output": 1, "cache_write": 1, "cache_read": 1}}}',
            "'input' must be a number",
        ),
        (
            '{"models": {"m": {"input": -1, "output": 1, "cache_write": 1, "cache_read": 1}}}',
            "'input' must be a finite number ≥ 0",
        ),
        (
            '{"models": {"m": {"input": true, "output": 1, "cache_write": 1, "cache_read": 1}}}',
            "'input' must be a number",
        ),
        (
            '{"models": {"m": {"input": 1, "output": 1, "cache_write": 1, "cache_reads": 1}}}',
            "unknown keys ['cache_reads']",
        ),
        (
            '{"models": {"m": {"input": 1, "output": 1, "cache_write": 1, "cache_read": 1,'
            ' "aliases": "m2"}}}',
            "'aliases' must be a list",
        ),
        (
            '{"models": {"m": {"input": 1, "output": 1, "cache_write": 1, "cache_read": 1,'
            ' "aliases": ["M"]}}}',
            "listed twice",
        ),
        (
            '{"models": {" ": {"input": 1, "output": 1, "cache_write": 1, "cache_read": 1}}}',
            "empty",
        ),
    ],
)
def test_a_malformed_price_file_is_a_clear_error(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad-prices.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad-prices\.json") as error:
        PriceTable.load(path)
    assert problem in str(error.value)


def test_a_missing_price_file_is_a_value_error_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nowhere\.json: cannot be read"):
        PriceTable.load(tmp_path / "nowhere.json")


def test_a_malformed_orchestrace_prices_file_names_the_variable_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "typo.json"
    path.write_text('{"models": {"m": {"input": 1}}}', encoding="utf-8")
    monkeypatch.setenv(PRICES_ENV, str(path))
    with pytest.raises(ValueError, match=rf"{PRICES_ENV}: price file .*typo\.json: .*missing"):
        default_prices()


def test_orchestrace_summary_reports_a_malformed_price_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spans = tmp_path / "spans.jsonl"
    _cli_run(spans)
    bad = tmp_path / "typo.json"
    bad.write_text("{", encoding="utf-8")
    monkeypatch.setenv(PRICES_ENV, str(bad))
    assert main(["summary", str(spans)], out=io.StringIO()) == 2
    assert "typo.json: not valid JSON" in capsys.readouterr().err


# --- the summary ------------------------------------------------------------------------------
def _table(text: str) -> dict[str, dict[str, str]]:
    """The summary table as {agent: {column: cell}} (columns are two-space separated)."""
    lines = text.split("\n\n")[-1].strip("\n").splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    rows: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        cells = line.split()
        name = cells[0]
        # role, state and reason are empty on the total row; the numbers are the last cells
        rows[name] = dict(zip(header[4:], cells[-(len(header) - 4) :], strict=True))
    return rows


def _dollars(cell: str) -> float:
    assert cell.startswith("$"), cell
    return float(cell[1:])


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_spawn_summary_prices_every_agent_and_adds_up(traced: Traced) -> None:
    await run_traced(traced, "spawn")
    summary = traced.summary.summary()
    total = summary.cost()
    assert total is not None
    assert total > 0
    agents = {name: stats.cost(SHIPPED) for name, stats in summary.agents.items()}
    assert set(agents) == {"lead", "helper1", "helper2", "helper3"}
    assert all(c is not None and c > 0 for c in agents.values())
    assert sum(c for c in agents.values() if c is not None) == pytest.approx(total, rel=1e-12)

    # per call: every chat span priced on its own, summed per agent
    per_call: dict[str, float] = {}
    for span in traced.named("chat "):
        attrs = span.attributes or {}
        assert attrs[sc.GEN_AI_RESPONSE_MODEL] == MODEL
        read = int(attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS])  # type: ignore[arg-type]
        write = int(attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS])  # type: ignore[arg-type]
        tokens_in = int(attrs[sc.GEN_AI_USAGE_INPUT_TOKENS])  # type: ignore[arg-type]
        call = SHIPPED.cost(
            MODEL,
            tokens_in - read - write,
            int(attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS]),  # type: ignore[arg-type]
            read,
            write,
        )
        assert call is not None
        agent = str(attrs[sc.GEN_AI_AGENT_NAME])
        per_call[agent] = per_call.get(agent, 0.0) + call
    assert per_call == pytest.approx(agents, rel=1e-12)

    table = _table(summary.render())
    for name, dollars in agents.items():
        assert table[name]["cost"] == format_usd(dollars)
    assert table["total"]["cost"] == format_usd(total)
    shown = sum(_dollars(table[name]["cost"]) for name in agents)
    assert _dollars(table["total"]["cost"]) == pytest.approx(shown, abs=0.00005 * len(agents))
    # the other columns keep their place around the new one
    assert table["total"]["cache wr"] == str(
        sum(a.cache_creation_tokens for a in summary.agents.values())
    )
    assert table["total"]["tools"] == str(sum(a.tool_calls for a in summary.agents.values()))


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_model_without_a_price_shows_unknown_not_zero(traced: Traced) -> None:
    await run_traced(traced, "spawn", config=RunConfig(model="my-unpriced-model"))
    summary = traced.summary.summary()
    assert summary.cost() is None
    table = _table(summary.render())
    assert {row["cost"] for row in table.values()} == {"?"}
    assert "$0" not in summary.render()
    assert sum(a.input_tokens for a in summary.agents.values()) > 0  # tokens were spent


def _chat(agent: str, model: str | None, tokens: tuple[int, int, int, int]) -> SpanFacts:
    tokens_in, tokens_out, read, write = tokens
    attrs: dict[str, object] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        sc.GEN_AI_AGENT_NAME: agent,
        sc.GEN_AI_USAGE_INPUT_TOKENS: tokens_in + read + write,  # semconv: cache-inclusive
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: tokens_out,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: read,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: write,
    }
    if model is not None:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    return SpanFacts("t" * 32, 1, 2, "OK", attrs)  # type: ignore[arg-type]


def test_a_mixed_model_agent_is_priced_call_by_call() -> None:
    opus = (1_000, 2_000, 3_000, 4_000)
    haiku = (5_000, 6_000, 7_000, 8_000)
    spans = [_chat("a", MODEL, opus), _chat("a", "claude-haiku-4-5-20251001", haiku)]
    summary = SummaryBuilder().add_all(spans).summary()
    expected = SHIPPED.cost(MODEL, *opus) + SHIPPED.cost("claude-haiku-4-5", *haiku)  # type: ignore[operator]
    assert summary.cost(SHIPPED) == pytest.approx(expected, rel=1e-12)
    assert _table(summary.render(SHIPPED))["a"]["cost"] == format_usd(expected)


def test_one_unpriced_call_makes_its_agent_and_the_run_unknown() -> None:
    spans = [
        _chat("a", MODEL, (1, 1, 1, 1)),
        _chat("a", "gpt-7", (1, 1, 1, 1)),
        _chat("b", MODEL, (1, 1, 1, 1)),
        _chat("c", None, (1, 1, 1, 1)),  # no model attribute at all
    ]
    summary = SummaryBuilder().add_all(spans).summary()
    table = _table(summary.render(SHIPPED))
    assert (table["a"]["cost"], table["b"]["cost"], table["c"]["cost"]) == ("?", "$0.0000", "?")
    assert table["total"]["cost"] == "?"
    assert summary.cost(SHIPPED) is None


def test_the_response_model_is_what_is_priced() -> None:
    span = _chat("a", "my-alias", (1_000_000, 0, 0, 0))
    attrs = dict(span.attributes)
    attrs[sc.GEN_AI_RESPONSE_MODEL] = MODEL
    summary = SummaryBuilder().add_all([span._replace(attributes=attrs)]).summary()
    assert summary.cost(SHIPPED) == 5


def test_merged_parts_cost_the_same_as_one_pass() -> None:
    spans = [_chat("a", MODEL, (i, i, i, i)) for i in range(1, 9)]
    whole = SummaryBuilder().add_all(spans).summary()
    first = SummaryBuilder().add_all(spans[:3])
    first.merge(SummaryBuilder().add_all(spans[3:]))
    assert first.summary().cost(SHIPPED) == pytest.approx(whole.cost(SHIPPED), rel=1e-12)
    assert first.summary().render(SHIPPED) == whole.render(SHIPPED)


def test_uncached_input_is_the_semconv_total_less_the_cache() -> None:
    assert uncached_input(100, 30, 20) == 50
    assert uncached_input(10, 30, 20) == 0  # never negative, whatever a producer wrote


def test_the_file_summary_decodes_the_model() -> None:
    assert {sc.GEN_AI_REQUEST_MODEL, sc.GEN_AI_RESPONSE_MODEL} <= SUMMARY_KEYS


def _cli_run(path: Path) -> str:
    out = io.StringIO()
    code = main([
        "run", "spawn", "--time-scale", "0", "--latency", "0", "--quiet",
        "--spans-file", str(path),
    ], out=out)  # fmt: skip
    assert code == 0
    return out.getvalue()


def test_the_spans_file_summary_shows_the_same_cost(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    live = _cli_run(path)
    text = summarize_file(path)
    assert text in live
    table = _table(text)
    assert all(row["cost"].startswith("$") for row in table.values())
    assert _dollars(table["total"]["cost"]) > 0


def test_a_price_file_reprices_an_old_spans_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "spans.jsonl"
    _cli_run(path)
    before = _dollars(_table(summarize_file(path))["total"]["cost"])
    free = {"input": 0, "output": 0, "cache_write": 0, "cache_read": 0}
    double = {"input": 10, "output": 50, "cache_write": 12.5, "cache_read": 1}
    prices = _write(tmp_path / "p.json", {"models": {MODEL: double}})
    monkeypatch.setenv(PRICES_ENV, str(prices))
    assert _dollars(_table(summarize_file(path))["total"]["cost"]) == pytest.approx(
        2 * before, abs=0.0002
    )
    _write(prices, {"models": {MODEL: free}})
    assert _table(summarize_file(path))["total"]["cost"] == "$0.0000"  # a known price of 0


# --- the metric --------------------------------------------------------------------------------
def _cost_points(traced: Traced) -> list[tuple[dict[str, object], float]]:
    data = traced.metrics.get_metrics_data()
    assert data is not None
    return [
        (dict(point.attributes or {}), point.value)  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == sc.METRIC_COST
        for point in metric.data.data_points
    ]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_cost_metric_is_recorded_with_the_token_metric_s_attributes(
    traced: Traced,
) -> None:
    await run_traced(traced, "spawn")
    points = _cost_points(traced)
    assert len(points) == 1
    attributes, value = points[0]
    assert attributes == {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_ANTHROPIC,
        sc.GEN_AI_REQUEST_MODEL: MODEL,
        sc.GEN_AI_RESPONSE_MODEL: MODEL,
    }
    total = traced.summary.summary().cost()
    assert total is not None
    assert value == pytest.approx(total, rel=1e-9)
    # the token histogram carries the same attributes (plus the token type)
    data = traced.metrics.get_metrics_data()
    assert data is not None
    token_attrs = {
        frozenset((k, v) for k, v in (p.attributes or {}).items() if k != sc.GEN_AI_TOKEN_TYPE)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == sc.METRIC_TOKEN_USAGE
        for p in m.data.data_points
    }
    assert token_attrs == {frozenset(attributes.items())}
    (metric,) = [
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == sc.METRIC_COST
    ]
    assert metric.unit == "USD"
    assert metric.data.is_monotonic  # type: ignore[union-attr]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_no_cost_is_recorded_for_a_model_without_a_price(traced: Traced) -> None:
    await run_traced(traced, "spawn", config=RunConfig(model="my-unpriced-model"))
    assert _cost_points(traced) == []


def test_the_prometheus_name_of_the_cost_metric() -> None:
    spec = importlib.util.spec_from_file_location(
        "dashboards_generate", Path(__file__).resolve().parents[1] / "dashboards" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator  # dataclasses look their module up there
    spec.loader.exec_module(generator)
    assert generator.METRICS[sc.METRIC_COST].name == "orchestrace_usage_cost_USD_total"
    # the OpenTelemetry scrape exporter appends the same unit word
    assert map_unit(sc.UNIT_USD) == "USD"
