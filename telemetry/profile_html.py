"""Render a :class:`~telemetry.profile.Profile` as one self-contained HTML page.

The page is the report ``orchestrace profile FILE --html PATH`` writes: the per-agent
timeline (a bar per model call, tool call and message, coloured by category, the critical
path outlined and drawn as a red stripe with its hops between agents), the messages as a
sequence diagram, who waited for whom, send → receive latency, and cost when the profile
carries it.

How it is built, and why:

* **One file, no network.** The profile is embedded as JSON in a
  ``<script type="application/json">`` element and drawn as SVG by a small hand-written
  script (about 16 KB, no library). A charting library or Mermaid's renderer (~3 MB) would
  have to be inlined to work offline; the data is already shaped for drawing, so a few
  hundred lines of vanilla JavaScript draw it. The Mermaid text is included for copy-paste.
* **Nothing from the spans can become markup.** Names and attribute values come from a
  spans file anyone could write. The JSON is embedded with ``<``, ``>`` and ``&`` as
  ``\\u`` escapes, so it cannot end its ``<script>`` element, and the script puts text on
  the page only through ``textContent`` and ``setAttribute`` (never ``innerHTML``). The few
  values written into the HTML itself (title, header, Mermaid text) go through
  :func:`html.escape`.
* **Nothing else runs or loads.** A Content-Security-Policy allows only this page's own
  script and style (by hash) and no network source at all.
* **Errors are visible.** The script records any error in the ``data-errors`` attribute of
  ``<body>`` and sets ``data-ready`` when everything is drawn (the browser test reads both).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
from typing import Any, Final

from telemetry.profile import CATEGORIES, Profile
from telemetry.profile_render import render_mermaid

#: Timeline bars drawn at most: beyond this the critical path's spans and the longest
#: others are kept (a browser draws tens of thousands of SVG rectangles, not millions).
MAX_BARS: Final = 20_000
#: Sequence-diagram steps drawn at most (the Mermaid text always has every step).
MAX_EVENTS: Final = 2_000

_STYLE: Final = """
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --path: #d62728; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 16px 24px 48px; color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
.facts, .note { color: var(--muted); margin: 4px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eaeef2; text-align: right; }
th { background: #f6f8fa; font-weight: 600; }
td.text, th.text { text-align: left; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: var(--ink); }
svg .axis text, svg .time { fill: var(--muted); font-size: 11px; }
.grid { stroke: #eaeef2; }
.lane { fill: #f6f8fa; stroke: var(--line); }
.bar { stroke: rgba(0,0,0,.25); stroke-width: .5; }
.bar:hover { stroke: var(--ink); stroke-width: 1.5; }
.bar.on-path { stroke: var(--path); stroke-width: 2; }
.path-seg { fill: var(--path); }
.path-hop { stroke: var(--path); stroke-width: 1.5; stroke-dasharray: 3 2; fill: none; }
.cat-model { fill: #4e79a7; } .cat-queued { fill: #bab0ac; } .cat-tool { fill: #f28e2b; }
.cat-messaging { fill: #59a14f; } .cat-waiting { fill: #cfd8e3; }
.cat-other, .cat-runtime { fill: #9c755f; }
.key-path { fill: #fff; stroke: var(--path); stroke-width: 2; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 6px 0; color: var(--muted); }
.legend svg { vertical-align: -2px; margin-right: 4px; }
.lifeline { stroke: #8c959f; stroke-dasharray: 4 3; }
.participant { fill: #f6f8fa; stroke: #8c959f; }
.arrow { stroke: var(--ink); stroke-width: 1.2; fill: none; }
.arrow.spawn { stroke: #4e79a7; } .arrow.failed, .arrow.kill { stroke: #d62728; }
.arrow.failed { stroke-dasharray: 5 3; }
.note-box { fill: #fff8c5; stroke: #d4a72c; }
#tip { position: fixed; z-index: 10; pointer-events: none; max-width: 480px;
  background: #24292f; color: #fff; padding: 6px 8px; border-radius: 4px;
  font-size: 12px; white-space: pre-wrap; }
"""

_SCRIPT: Final = r"""
(function () {
  "use strict";
  var body = document.body;
  function fail(message) {
    var before = body.getAttribute("data-errors");
    body.setAttribute("data-errors", (before ? before + "\n" : "") + message);
  }
  window.addEventListener("error", function (e) { fail(String(e.message)); });
  var SVG = "http://www.w3.org/2000/svg";

  // Text reaches the page only through textContent and setAttribute.
  function node(ns, tag, attrs, text) {
    var e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (var k in attrs) {
      if (attrs[k] !== undefined) { e.setAttribute(k, String(attrs[k])); }
    }
    if (text !== undefined) { e.textContent = String(text); }
    return e;
  }
  function h(tag, attrs, text) { return node(null, tag, attrs || {}, text); }
  function s(tag, attrs, text) { return node(SVG, tag, attrs || {}, text); }
  function put(id, child) { return document.getElementById(id).appendChild(child); }
  function secs(v) { return v.toFixed(3) + "s"; }
  function pct(part, whole) { return whole ? (100 * part / whole).toFixed(1) + "%" : "0.0%"; }
  function clip(text, chars) {
    text = String(text);
    return text.length > chars ? text.slice(0, chars - 1) + "\u2026" : text;
  }
  function titled(parent, el, text) {
    parent.appendChild(el).appendChild(s("title", {}, text));
    return el;
  }
  function width(x0, x1, least) { return Math.max(least, x1 - x0); }

  function table(header, rows, textColumns) {
    var t = h("table");
    function line(cells, tag) {
      var tr = t.appendChild(h("tr"));
      cells.forEach(function (c, i) {
        tr.appendChild(h(tag, { "class": textColumns.indexOf(i) >= 0 ? "text" : undefined }, c));
      });
    }
    line(header, "th");
    rows.forEach(function (row) { line(row, "td"); });
    return t;
  }

  var tip = null;
  function showTip(e) {
    var text = e.target.getAttribute && e.target.getAttribute("data-tip");
    if (!text) { tip.hidden = true; return; }
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(e.clientX + 12, window.innerWidth - tip.offsetWidth - 8) + "px";
    tip.style.top = (e.clientY + 14) + "px";
  }

  function niceStep(span) {
    var raw = span / 8, power = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= raw) { return steps[i] * power; }
    }
    return 10 * power;
  }

  function timeline(d) {
    var onPath = {}, rows = [], rowOf = {};
    function row(agent, start, seconds) {
      if (!(agent in rowOf)) {
        rowOf[agent] = rows.length;
        rows.push({ agent: agent, start: start, seconds: seconds, bars: [] });
      }
      return rows[rowOf[agent]];
    }
    d.agents.forEach(function (a) { row(a.agent, a.start, a.wall_seconds); });
    var segs = d.critical_path.segments;
    segs.forEach(function (g) { onPath[g.span_id] = true; row(g.agent, 0, d.wall_seconds); });
    d.bars.forEach(function (b) { row(b.agent, 0, d.wall_seconds).bars.push(b); });

    var labelW = 150, laneH = 14, pad = 6, stripe = 4, axisH = 22;
    var plotW = Math.max(600, document.getElementById("timeline").clientWidth - labelW - 24);
    var wall = d.wall_seconds || 1e-9;
    function x(t) { return labelW + plotW * t / wall; }
    // Bars that overlap within an agent (a send inside its send_message call) stack in lanes.
    // Overlap is by time alone: a bar drawn wider than it lasted may touch the next one.
    var y = axisH;
    rows.forEach(function (r) {
      var ends = [];
      r.bars.sort(function (a, b) { return a.start - b.start || b.seconds - a.seconds; });
      r.bars.forEach(function (b) {
        var lane = 0;
        while (lane < ends.length && ends[lane] > b.start) { lane++; }
        ends[lane] = b.start + b.seconds;
        b.lane = lane;
      });
      r.y = y;
      r.h = pad + Math.max(1, ends.length) * laneH + stripe + pad;
      y += r.h;
    });
    var root = s("svg", {
      width: labelW + plotW + 12, height: y + 4, role: "img", "aria-label": "per-agent timeline"
    });
    var axis = root.appendChild(s("g", { "class": "axis" }));
    var step = niceStep(wall);
    for (var t = 0; t <= wall + 1e-9; t += step) {
      axis.appendChild(s("line", { "class": "grid", x1: x(t), x2: x(t), y1: axisH - 4, y2: y }));
      var tick = { x: x(t), y: axisH - 8, "text-anchor": "middle" };
      axis.appendChild(s("text", tick, +t.toFixed(6) + "s"));
    }
    rows.forEach(function (r) {
      var g = root.appendChild(s("g", { "class": "row", "data-agent": r.agent }));
      var name = { "class": "agent-name", x: 4, y: r.y + r.h / 2 + 4 };
      titled(g, s("text", name, clip(r.agent, 20)), r.agent);
      g.appendChild(s("rect", {
        "class": "lane", x: x(r.start), y: r.y + pad / 2, rx: 3,
        width: width(x(r.start), x(r.start + r.seconds), 1), height: r.h - pad
      }));
      r.bars.forEach(function (b) {
        var about = [b.agent, secs(b.seconds), "from " + secs(b.start), b.category];
        var lines = [b.name, about.join(" \u00b7 ")];
        for (var k in b.attributes) { lines.push(k + ": " + b.attributes[k]); }
        if (onPath[b.span_id]) { lines.push("on the critical path"); }
        g.appendChild(s("rect", {
          "class": "bar cat-" + b.category + (onPath[b.span_id] ? " on-path" : ""),
          "data-span-id": b.span_id, "data-tip": lines.join("\n"), rx: 1.5,
          x: x(b.start), y: r.y + pad + b.lane * laneH + 1,
          width: width(x(b.start), x(b.start + b.seconds), 1.5), height: laneH - 2
        }));
      });
    });
    var prev = null;
    segs.forEach(function (g) {
      var r = rows[rowOf[g.agent]], top = r.y + r.h - pad - stripe;
      var label = "critical path: " + g.span + " \u00b7 " + secs(g.seconds) +
        " (" + pct(g.share, 1) + " of the run)" + (g.via ? "\nwoken by " + g.via : "");
      root.appendChild(s("rect", {
        "class": "path-seg", "data-span-id": g.span_id, "data-tip": label,
        x: x(g.start), y: top, width: width(x(g.start), x(g.start + g.seconds), 1), height: stripe
      }));
      if (prev !== null && prev.agent !== g.agent) {
        var from = rows[rowOf[prev.agent]], at = x(g.start);
        root.appendChild(s("line", {
          "class": "path-hop", x1: at, x2: at,
          y1: from.y + from.h - pad - stripe / 2, y2: top + stripe / 2
        }));
      }
      prev = g;
    });
    root.addEventListener("mousemove", showTip);
    root.addEventListener("mouseleave", function () { tip.hidden = true; });
    put("timeline", root);

    var shown = d.bars.length, total = d.bars_total;
    document.getElementById("timeline-note").textContent =
      "One row per agent, one bar per model call, tool call, send and receive (" +
      (shown === total ? shown : shown + " of " + total + ": the critical path and the longest") +
      " spans); hover a bar for its details. The critical path is outlined in red, with a " +
      "red stripe under each agent for the time it spent on it and a dashed line where it " +
      "passes from one agent to another (a message back to its sender, or a spawn).";
    var legend = document.getElementById("legend");
    function key(cls, text) {
      var item = legend.appendChild(h("span"));
      var box = item.appendChild(s("svg", { width: 12, height: 12 }));
      box.appendChild(s("rect", { "class": cls, x: 1, y: 1, width: 10, height: 10, rx: 2 }));
      item.appendChild(document.createTextNode(text));
    }
    d.categories.forEach(function (c) { key("cat-" + c, c); });
    key("key-path", "on the critical path");
  }

  function pathTable(d) {
    var wall = d.wall_seconds, rows = [], folded = 0, foldedSecs = 0;
    d.critical_path.segments.forEach(function (g) {
      if (wall && g.seconds / wall < 0.005 && !g.via) {
        folded++;
        foldedSecs += g.seconds;
        return;
      }
      var hop = g.via ? "woken by " + g.via : "";
      rows.push([secs(g.start), secs(g.seconds), pct(g.seconds, wall), g.agent, g.span, hop]);
    });
    put("path", table(["start", "took", "share", "agent", "span", "hop"], rows, [3, 4, 5]));
    function by(m) {
      return Object.keys(m).sort(function (a, b) { return m[b] - m[a]; }).map(function (k) {
        return k + " " + secs(m[k]) + " (" + pct(m[k], wall) + ")";
      }).join(", ");
    }
    var note = folded ? folded + " shorter segments (" + secs(foldedSecs) + " in all) are " +
      "not listed. " : "";
    note += "By category: " + by(d.critical_path.by_category) + ". By agent: " +
      by(d.critical_path.by_agent) + ".";
    put("path", h("p", { "class": "note" }, note));
  }

  function agentsTable(d) {
    var header = ["agent", "role", "state", "wall"].concat(d.categories, ["woke for (blocked)"]);
    var rows = d.agents.map(function (a) {
      var woke = Object.keys(a.woke_for).map(function (k) {
        return k + " " + secs(a.woke_for[k]);
      }).join(", ");
      var shares = d.categories.map(function (c) {
        return pct(a.seconds[c] || 0, a.wall_seconds);
      });
      return [a.agent, a.role, a.state, secs(a.wall_seconds)].concat(shares, [woke]);
    });
    put("agents", table(header, rows, [0, 1, 2, header.length - 1]));
  }

  function sequence(d) {
    var order = [], events = d.events.slice(0, d.max_events);
    function add(name) { if (order.indexOf(name) < 0) { order.push(name); } }
    d.agents.forEach(function (a) { add(a.agent); });
    events.forEach(function (e) { add(e.from); add(e.to); });
    var colW = 150, gutter = 70, headH = 34, stepH = 30;
    var height = headH + 16 + events.length * stepH + 10;
    var root = s("svg", {
      width: gutter + order.length * colW, height: height, role: "img",
      "aria-label": "sequence diagram"
    });
    var defs = root.appendChild(s("defs"));
    function marker(id, size, refX, orient, path) {
      var m = defs.appendChild(s("marker", {
        id: id, viewBox: "0 0 10 10", refX: refX, refY: 5,
        markerWidth: size, markerHeight: size, orient: orient
      }));
      m.appendChild(s("path", path));
    }
    marker("head", 7, 10, "auto-start-reverse", { d: "M0,0 L10,5 L0,10 z", fill: "#1f2328" });
    var x = { d: "M1,1 L9,9 M9,1 L1,9", stroke: "#d62728", "stroke-width": 2 };
    marker("cross", 9, 5, "auto", x);
    function cx(name) { return gutter + order.indexOf(name) * colW + colW / 2; }
    order.forEach(function (name) {
      var g = root.appendChild(s("g", { "class": "participant-col", "data-agent": name }));
      var c = cx(name);
      g.appendChild(s("line", { "class": "lifeline", x1: c, x2: c, y1: headH, y2: height }));
      g.appendChild(s("rect", {
        "class": "participant", x: c - colW / 2 + 8, y: 4, rx: 4,
        width: colW - 16, height: headH - 8
      }));
      var text = { x: c, y: headH / 2 + 4, "text-anchor": "middle" };
      titled(g, s("text", text, clip(name, 18)), name);
    });
    events.forEach(function (e, i) {
      var y = headH + 16 + i * stepH + 14, x1 = cx(e.from), x2 = cx(e.to);
      var g = root.appendChild(s("g", { "class": "step step-" + e.kind }));
      g.appendChild(s("text", { "class": "time", x: 4, y: y }, "+" + secs(e.at)));
      if (e.kind === "end") {
        g.appendChild(s("rect", {
          "class": "note-box", x: x1 - colW / 2 + 12, y: y - 13, width: colW - 24, height: 18, rx: 2
        }));
        var note = { x: x1, y: y, "text-anchor": "middle" };
        titled(g, s("text", note, clip(e.label, 20)), e.label);
        return;
      }
      var label = e.kind === "message" ? (e.message_id || "message") : e.kind;
      if (e.wait_seconds !== null && e.wait_seconds !== undefined) {
        label += " (waited " + secs(e.wait_seconds) + ")";
      }
      var failed = e.kind === "message" && e.outcome && e.outcome !== "delivered";
      if (failed) { label += " (" + e.outcome + ")"; }
      var line = {
        "class": "arrow " + e.kind + (failed ? " failed" : ""),
        "marker-end": e.kind === "kill" || failed ? "url(#cross)" : "url(#head)"
      };
      var text = { x: (x1 + x2) / 2, y: y - 5, "text-anchor": "middle" };
      if (x1 === x2) {
        line.d = "M" + x1 + "," + (y - 4) + " h30 v10 h-30";
        g.appendChild(s("path", line));
        text = { x: x1 + 36, y: y + 4, "text-anchor": "start" };
      } else {
        line.x1 = x1; line.x2 = x2; line.y1 = y; line.y2 = y;
        g.appendChild(s("line", line));
      }
      titled(g, s("text", text, clip(label, 40)), label);
    });
    put("sequence", root);
    if (d.events.length > events.length) {
      put("sequence", h("p", { "class": "note" }, "The first " + events.length + " of " +
        d.events.length + " steps; the Mermaid text below has them all."));
    }
  }

  function waitsTable(d) {
    if (!d.waits.length) {
      put("waits", h("p", { "class": "note" }, "No agent waited in wait_for_message."));
      return;
    }
    var waiters = [], senders = [], cell = {};
    d.waits.forEach(function (w) {
      if (waiters.indexOf(w.waiter) < 0) { waiters.push(w.waiter); }
      if (senders.indexOf(w.sender) < 0) { senders.push(w.sender); }
      cell[JSON.stringify([w.waiter, w.sender])] = w.seconds;
    });
    senders.sort();
    var rows = waiters.map(function (w) {
      return [w].concat(senders.map(function (from) {
        var v = cell[JSON.stringify([w, from])];
        return v === undefined ? "-" : secs(v);
      }));
    });
    put("waits", table(["waiter \\ woken by"].concat(senders), rows, [0]));
  }

  function latencyTable(d) {
    if (!d.latency.length) {
      put("latency", h("p", { "class": "note" }, "No message was received."));
      return;
    }
    var rows = d.latency.map(function (l) {
      return [l.sender, l.recipient, String(l.messages), secs(l.p50_seconds), secs(l.max_seconds)];
    });
    put("latency", table(["sender", "recipient", "messages", "p50", "max"], rows, [0, 1]));
  }

  // --- Cost ------------------------------------------------------------------------------
  // telemetry/cost.py prices model calls. When the profile's JSON carries a "cost" entry it
  // is shown here as it comes: a list of objects as a table, an object's plain values as
  // rows and its nested values under their key.
  function scalar(v) {
    if (v === null || v === undefined) { return "?"; }
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }
  function isRecord(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }
  function costValue(value, into) {
    if (Array.isArray(value) && value.length && value.every(isRecord)) {
      var keys = [];
      value.forEach(function (v) {
        Object.keys(v).forEach(function (k) { if (keys.indexOf(k) < 0) { keys.push(k); } });
      });
      var rows = value.map(function (v) {
        return keys.map(function (k) { return scalar(v[k]); });
      });
      into.appendChild(table(keys, rows, [0]));
    } else if (isRecord(value)) {
      var plain = [];
      Object.keys(value).forEach(function (k) {
        var v = value[k];
        if (v !== null && typeof v === "object") {
          into.appendChild(h("h3", {}, k));
          costValue(v, into);
        } else {
          plain.push([k, scalar(v)]);
        }
      });
      if (plain.length) { into.appendChild(table(["", "value"], plain, [0])); }
    } else {
      into.appendChild(h("p", {}, scalar(value)));
    }
  }

  function main(d) {
    tip = document.getElementById("tip");
    timeline(d);
    pathTable(d);
    agentsTable(d);
    sequence(d);
    waitsTable(d);
    latencyTable(d);
    if (d.cost !== undefined && d.cost !== null) {
      document.getElementById("cost-section").hidden = false;
      costValue(d.cost, document.getElementById("cost"));
    }
  }

  try {
    main(JSON.parse(document.getElementById("profile-data").textContent));
    body.setAttribute("data-ready", "1");
  } catch (e) {
    fail(String(e && e.stack ? e.stack : e));
  }
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: No network source at all; only this page's own script and style run.
_CSP: Final = (
    f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)}; "
    "base-uri 'none'; form-action 'none'"
)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _embedded_json(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment inside it."""
    text = json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def report_data(profile: Profile) -> dict[str, Any]:
    """What the page draws: :meth:`Profile.to_json` with ``spans`` replaced by ``bars``, the
    spans drawn on the timeline (every span but workflow and agent spans, which are its
    rows; at most :data:`MAX_BARS`)."""
    data = profile.to_json()
    spans = [s for s in data.pop("spans") if s["category"] != "runtime"]
    if len(spans) > MAX_BARS:
        keep = sorted(
            range(len(spans)),
            key=lambda i: (not spans[i]["on_critical_path"], -spans[i]["seconds"], i),
        )[:MAX_BARS]
        drawn = [spans[i] for i in sorted(keep)]
    else:
        drawn = spans
    data["bars"] = drawn
    data["bars_total"] = len(spans)
    data["categories"] = list(CATEGORIES)
    data["max_events"] = MAX_EVENTS
    return data


def render_html(profile: Profile) -> str:
    """The profile as one HTML page that needs nothing else (see the module docstring)."""
    e = html.escape
    workflow = e(profile.workflow)
    facts = (
        f"trace {e(profile.trace_id)} · {profile.wall_ns / 1e9:.3f}s · "
        f"{e(profile.outcome) or 'unknown outcome'} · {len(profile.agents)} agents"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Profile of run {workflow} · orchestrace</title>
<style>{_STYLE}</style>
</head>
<body data-errors="">
<h1>Profile of run {workflow}</h1>
<p class="facts">{facts}</p>
<noscript><p>The charts and tables of this report are drawn by its script: allow
JavaScript for this file (it loads nothing from the network).</p></noscript>
<h2>Timeline</h2>
<p class="note" id="timeline-note"></p>
<div class="legend" id="legend"></div>
<div class="scroll" id="timeline"></div>
<h2>Critical path</h2>
<p class="note">What the run's end waited on, across agents: at each wait it follows the
message that woke it back to its sender.</p>
<div class="scroll" id="path"></div>
<h2>Agents</h2>
<p class="note">Each agent's wall time by category.</p>
<div class="scroll" id="agents"></div>
<h2>Messages</h2>
<p class="note">Spawns, messages (with send → receive wait), kills and ends, in order.</p>
<div class="scroll" id="sequence"></div>
<details><summary>Mermaid source</summary>
<pre id="mermaid">{e(render_mermaid(profile))}</pre>
</details>
<h2>Who waited for whom</h2>
<p class="note">Seconds blocked in wait_for_message, by who woke the wait.</p>
<div class="scroll" id="waits"></div>
<h2>Send → receive latency</h2>
<div class="scroll" id="latency"></div>
<section id="cost-section" hidden>
<h2>Cost</h2>
<div class="scroll" id="cost"></div>
</section>
<div id="tip" role="tooltip" hidden></div>
<script type="application/json" id="profile-data">{_embedded_json(report_data(profile))}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def write_html(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write :func:`render_html` to ``path`` (UTF-8); OSError if it cannot be written."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render_html(profile))
