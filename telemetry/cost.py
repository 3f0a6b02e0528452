"""What a model call costs, in US dollars, from its token counts and a price table.

Where the prices come from
    ``telemetry/prices.json``, shipped with the package: Claude API list prices in USD per
    million tokens, read from Anthropic's pricing page
    (https://platform.claude.com/docs/en/about-claude/pricing). Each entry records the page
    it was read from (``source``) and when (``checked``). Prices change: the shipped table
    is only as current as its ``checked`` dates.

How to override them
    Point ``ORCHESTRACE_PRICES`` at a JSON file of the same shape (or load one with
    :meth:`PriceTable.load`)::

        {"models": {"claude-opus-4-8": {"input": 5, "output": 25,
                                        "cache_write": 6.25, "cache_read": 0.5}}}

    Its entries replace shipped entries of the same id (and their aliases) and add new ones;
    ``checked``, ``source``, ``name``, ``note`` and ``aliases`` are optional there. A file
    that cannot be read or does not have this shape is a :class:`ValueError` naming the
    file and the problem — a price table is never silently half-applied.

What a price covers
    Four rates: base input tokens, output tokens, cache writes at the 5-minute rate (what
    the Messages API's ``cache_creation_input_tokens`` default TTL costs) and cache reads.
    Not modelled: 1-hour cache writes (priced here at the 5-minute rate), long-context or
    prompt-length tiers (noted on the entries they concern; the base rates are applied),
    the Batch API discount, fast mode and regional-endpoint premiums. Costs are therefore
    list-price estimates, not an invoice.

Unknown is not free
    A model missing from the table has no price: :meth:`PriceTable.cost` returns ``None``,
    never ``0.0``, and the run summary shows ``?``. A dated or suffixed model id
    (``claude-sonnet-4-5-20250929``, ``claude-opus-4-5@20251101``) resolves to its base
    entry, the longest id that is a prefix of it ending at a separator; a version
    continuation does not (``claude-opus-5-5`` is not ``claude-opus-5``).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Final

from telemetry import settings

#: The environment variable naming a user's price file (overrides and extends the shipped one).
PRICES_ENV: Final = settings.PRICES.name

#: Tokens per unit of the table's rates (USD per million tokens).
PER: Final = 1_000_000

_RATES: Final = ("input", "output", "cache_write", "cache_read")
_OPTIONAL: Final = ("name", "checked", "source", "note", "aliases")
#: Characters after which a longer id is the same model (a date, a platform suffix).
_SEPARATORS: Final = frozenset("-@:_.")
#: What follows a separator when the longer id is a *different* model: a version number.
_VERSION: Final = re.compile(r"\d{1,2}(?!\d)")
#: Distinct model ids remembered by :meth:`PriceTable.price` (ids are few; inputs may not be).
_MEMO_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class Price:
    """One model's list prices, USD per million tokens, with where they were read."""

    input: float
    output: float
    #: 5-minute cache writes (``cache_creation_input_tokens``).
    cache_write: float
    #: Cache hits and refreshes (``cache_read_input_tokens``).
    cache_read: float
    #: When the rates were checked against the source (ISO date; may be empty for a user's).
    checked: str = ""
    #: Where the rates were read (a URL, or the user's file).
    source: str = ""
    name: str = ""
    #: What the four rates leave out for this model (e.g. a long-context tier).
    note: str = ""

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        """USD for these counts; ``input_tokens`` are the *uncached* input tokens (the
        Messages API's ``usage.input_tokens``), not the cache-inclusive semconv total."""
        return (
            input_tokens * self.input
            + output_tokens * self.output
            + cache_read_tokens * self.cache_read
            + cache_write_tokens * self.cache_write
        ) / PER


class PriceTable:
    """Model id → :class:`Price`, with dated ids resolved to their base entry."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = {k.lower(): v for k, v in (prices or {}).items()}
        self._memo: dict[str, Price | None] = {}
        self._lock = threading.Lock()

    # --- loading -----------------------------------------------------------------------------
    @classmethod
    def shipped(cls) -> PriceTable:
        """The table shipped with orchestrace (``telemetry/prices.json``)."""
        data = resources.files("telemetry").joinpath("prices.json").read_text(encoding="utf-8")
        return cls(_parse(data, "telemetry/prices.json (shipped)", require_provenance=True))

    @classmethod
    def load(cls, path: str | os.PathLike[str], base: PriceTable | None = None) -> PriceTable:
        """The entries of the JSON file ``path`` over those of ``base`` (default: none).

        Raises :class:`ValueError` naming the file when it cannot be read or is malformed.
        """
        name = os.fspath(path)
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"price file {name}: cannot be read: {exc}") from exc
        own = _parse(text, f"price file {name}", require_provenance=False, default_source=name)
        merged = dict(base._prices) if base is not None else {}
        for key, new in own.items():
            # overriding an entry overrides its aliases too (unless the file names them)
            old = merged.get(key)
            for other, price in list(merged.items()):
                if old is not None and price is old and other not in own:
                    merged[other] = new
        merged.update(own)
        return cls(merged)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> PriceTable:
        """The shipped table, overridden and extended by the file ``ORCHESTRACE_PRICES``
        names (if set and not empty)."""
        env = os.environ if environ is None else environ
        path = settings.PRICES.get(env).strip()
        shipped = cls.shipped()
        if not path:
            return shipped
        try:
            return cls.load(path, base=shipped)
        except ValueError as exc:
            raise ValueError(f"{PRICES_ENV}: {exc}") from exc

    # --- lookup ------------------------------------------------------------------------------
    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.price(model) is not None

    def __len__(self) -> int:
        return len(self._prices)

    @property
    def models(self) -> dict[str, Price]:
        """Every id and alias the table prices (a copy)."""
        return dict(self._prices)

    def price(self, model: str) -> Price | None:
        """The price of ``model``, or None when the table does not know it."""
        memo = self._memo
        try:
            return memo[model]
        except KeyError:
            pass
        found = self._resolve(model.strip().lower())
        with self._lock:
            if len(memo) < _MEMO_LIMIT:
                memo[model] = found
        return found

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float | None:
        """USD for one call (or a sum of calls) of ``model``; None when its price is
        unknown — never 0. ``input_tokens`` are the uncached input tokens."""
        price = self.price(model)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)

    def _resolve(self, model: str) -> Price | None:
        exact = self._prices.get(model)
        if exact is not None:
            return exact
        best: str | None = None
        for key in self._prices:
            if (
                len(model) > len(key) + 1
                and model.startswith(key)
                and model[len(key)] in _SEPARATORS
                and not _VERSION.match(model, len(key) + 1)
                and (best is None or len(key) > len(best))
            ):
                best = key
        return None if best is None else self._prices[best]


def _parse(
    text: str,
    where: str,
    *,
    require_provenance: bool,
    default_source: str = "",
) -> dict[str, Price]:
    """The ``models`` of a price document, every id and alias mapped to its :class:`Price`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{where}: expected a JSON object with a 'models' object")
    unknown = set(document) - {"models", "description"}
    if unknown:
        raise ValueError(f"{where}: unknown top-level keys {sorted(unknown)} (expected 'models')")
    models = document.get("models")
    if not isinstance(models, dict):
        raise ValueError(f"{where}: 'models' must be an object of model id → prices")
    out: dict[str, Price] = {}
    for model, entry in models.items():
        price = _entry(model, entry, f"{where}: model {model!r}", require_provenance)
        if not price.source:
            price = replace(price, source=default_source)
        aliases = entry.get("aliases", [])
        for key in (model, *aliases):
            if key.lower() in out:
                raise ValueError(f"{where}: model id {key!r} is listed twice")
            out[key.lower()] = price
    return out


def _entry(model: str, entry: Any, where: str, require_provenance: bool) -> Price:
    if not model.strip():
        raise ValueError(f"{where}: the model id is empty")
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object of rates, got {type(entry).__name__}")
    unknown = set(entry) - {*_RATES, *_OPTIONAL}
    if unknown:
        expected = ", ".join((*_RATES, *_OPTIONAL))
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (expected {expected})")
    rates: dict[str, float] = {}
    for rate in _RATES:
        if rate not in entry:
            raise ValueError(f"{where}: missing {rate!r} (USD per million tokens)")
        value = entry[rate]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {rate!r} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: {rate!r} must be a finite number ≥ 0, got {value!r}")
        rates[rate] = float(value)
    texts: dict[str, str] = {}
    for key in ("name", "checked", "source", "note"):
        value = entry.get(key, "")
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key!r} must be a string, got {value!r}")
        texts[key] = value
    if require_provenance and not (texts["checked"] and texts["source"]):
        raise ValueError(f"{where}: a shipped price needs 'checked' and 'source'")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise ValueError(f"{where}: 'aliases' must be a list of model ids")
    return Price(
        rates["input"],
        rates["output"],
        rates["cache_write"],
        rates["cache_read"],
        checked=texts["checked"],
        source=texts["source"],
        name=texts["name"],
        note=texts["note"],
    )


# --- the process's table -------------------------------------------------------------------
_DEFAULT_LOCK: Final = threading.Lock()
_default: tuple[tuple[str, int, int] | None, PriceTable] | None = None


def default_prices() -> PriceTable:
    """The shipped table overridden by ``ORCHESTRACE_PRICES``; re-read when the variable
    or the file it names changes. Raises :class:`ValueError` for a malformed file."""
    global _default
    path = settings.PRICES.get().strip()
    key: tuple[str, int, int] | None = None
    if path:
        try:
            stat = os.stat(path)
            key = (path, stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (path, -1, -1)  # PriceTable.load reports it
    with _DEFAULT_LOCK:
        cached = _default
        if cached is not None and cached[0] == key:
            return cached[1]
        table = PriceTable.from_environment({PRICES_ENV: path})
        _default = (key, table)
        return table


def price(model: str) -> Price | None:
    """The price of ``model`` in :func:`default_prices`, or None."""
    return default_prices().price(model)


def cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> float | None:
    """USD for these counts of ``model`` at :func:`default_prices`; None when unknown."""
    return default_prices().cost(
        model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens
    )


def uncached_input(input_tokens: int, cache_read_tokens: int, cache_write_tokens: int) -> int:
    """The uncached input tokens of a ``chat`` span's counts: its ``gen_ai.usage.input_tokens``
    includes cache reads and writes (as the GenAI semantic conventions ask), the Messages
    API's ``usage.input_tokens`` — what the base input rate applies to — does not."""
    return max(0, input_tokens - cache_read_tokens - cache_write_tokens)


def format_usd(amount: float | None) -> str:
    """``$0.0123``, or ``?`` for an unknown cost."""
    return "?" if amount is None else f"${amount:.4f}"
