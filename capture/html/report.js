/* kwire HTML report (capture/html/report.js), inlined into the page.
 *
 * Draws inline SVG from the two JSON islands the analyzer wrote:
 * "kwire-stats" is the `--format stats --json` document, "kwire-timeline"
 * the time buckets (capture/cap-out-html.c). Fetches nothing.
 *
 * Every number taken from the stats document is shown in an element with
 * data-stat='["path","to","value"]' (and data-scale for unit changes), and
 * every drawn series carries data-sum: tests/integration/test_html_report.py
 * checks both against `--format stats --json`. */
(function () {
  "use strict";
  var ST = JSON.parse(document.getElementById("kwire-stats").textContent);
  var TL = JSON.parse(document.getElementById("kwire-timeline").textContent);
  var app = document.getElementById("app");
  var SVGNS = "http://www.w3.org/2000/svg";
  var COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6",
    "#dd4477", "#66aa00", "#b82e2e", "#316395", "#994499", "#22aa99"];

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function sv(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  function fmtInt(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function fmtBytes(n) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }
  function fmtDur(us) {
    if (us < 1000) return us + " µs";
    if (us < 1e6) return (us / 1000).toFixed(1) + " ms";
    if (us < 6e7) return (us / 1e6).toFixed(2) + " s";
    var s = Math.round(us / 1e6), h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
    return (h ? h + " h " : "") + m + " min " + (s % 60) + " s";
  }
  function fmtTime(us) {
    var d = new Date(us / 1000);
    return d.toISOString().substr(11, 12);
  }
  function get(path) {
    var v = ST;
    for (var i = 0; i < path.length; i++) {
      if (v === null || v === undefined) return undefined;
      v = v[path[i]];
    }
    return v;
  }
  /* A number from the stats document, marked for the test. */
  function stat(tag, path, scale, digits) {
    var v = get(path), e = el(tag);
    e.setAttribute("data-stat", JSON.stringify(path));
    if (scale !== undefined) {
      e.setAttribute("data-scale", String(scale));
      e.textContent = v === undefined || v === null ? "" : (v * scale).toFixed(digits);
    } else {
      e.textContent = v === undefined || v === null ? "" : fmtInt(v);
    }
    return e;
  }
  function section(title, note) {
    var s = el("section");
    s.appendChild(el("h2", {}, title));
    if (note) s.appendChild(el("div", { "class": "muted" }, note));
    app.appendChild(s);
    return s;
  }
  function table(parent, heads, rows) {
    var t = el("table"), tr = el("tr");
    heads.forEach(function (h) {
      tr.appendChild(el("th", { "class": h.charAt(0) === "#" ? "n" : "" }, h.replace(/^#/, "")));
    });
    t.appendChild(tr);
    rows.forEach(function (r) {
      var row = el("tr");
      r.forEach(function (c, i) {
        var td = el("td", { "class": heads[i].charAt(0) === "#" ? "n" : "" });
        if (c instanceof Node) td.appendChild(c); else td.textContent = c;
        row.appendChild(td);
      });
      t.appendChild(row);
    });
    parent.appendChild(t);
    return t;
  }
  function legend(parent, series) {
    var d = el("div", { "class": "legend" });
    series.forEach(function (s) {
      var sp = el("span"), i = el("i");
      i.style.background = s.color;
      sp.appendChild(i);
      sp.appendChild(document.createTextNode(s.name));
      d.appendChild(sp);
    });
    parent.appendChild(d);
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  /* A line (or bar) chart over the time buckets. series: [{name, values
   * (one per bucket, null = no data), color, sum}] */
  function timeChart(parent, id, series, opts) {
    opts = opts || {};
    var W = opts.width || 1180, H = opts.height || 220, L = 64, R = 12, T = 10, B = 28;
    var n = TL.buckets, svg = sv("svg", { "class": "chart", id: id, width: W, height: H,
      viewBox: "0 0 " + W + " " + H, role: "img" });
    var max = 0;
    series.forEach(function (s) {
      s.values.forEach(function (v) { if (v !== null && v > max) max = v; });
    });
    if (opts.stack) {
      max = 0;
      for (var i = 0; i < n; i++) {
        var t = 0;
        series.forEach(function (s) { t += s.values[i] || 0; });
        if (t > max) max = t;
      }
    }
    max = niceMax(max);
    var pw = W - L - R, ph = H - T - B;
    function X(i) { return L + (n > 1 ? i * pw / (n - 1) : pw / 2); }
    function Y(v) { return T + ph - v * ph / max; }
    var g = sv("g", { "class": "grid" });
    for (var k = 0; k <= 4; k++) {
      var y = T + ph * k / 4;
      g.appendChild(sv("line", { x1: L, x2: W - R, y1: y, y2: y }));
      var lab = sv("text", { x: L - 6, y: y + 4, "text-anchor": "end" });
      var val = max * (4 - k) / 4;
      lab.textContent = opts.fmt ? opts.fmt(val) : (val >= 100 ? Math.round(val) : +val.toPrecision(3));
      g.appendChild(lab);
    }
    svg.appendChild(g);
    svg.appendChild(sv("line", { "class": "axis", x1: L, x2: W - R, y1: T + ph, y2: T + ph }));
    var ticks = Math.min(W < 700 ? 4 : 6, n);
    for (var j = 0; j < ticks; j++) {
      var bi = ticks > 1 ? Math.round(j * (n - 1) / (ticks - 1)) : 0;
      var tx = sv("text", { x: X(bi), y: H - 8, "text-anchor": j === 0 ? "start" : j === ticks - 1 ? "end" : "middle" });
      tx.textContent = fmtTime(TL.t0_us + bi * TL.width_us);
      svg.appendChild(tx);
    }
    if (opts.yLabel) {
      var yl = sv("text", { x: 4, y: T + 8 });
      yl.textContent = opts.yLabel;
      svg.appendChild(yl);
    }
    var base = [];
    for (var b = 0; b < n; b++) base.push(0);
    series.forEach(function (s) {
      var sum = 0;
      s.values.forEach(function (v) { if (v !== null) sum += v; });
      var attrs = { "data-series": s.name, "data-sum": s.sum !== undefined ? s.sum : sum };
      if (opts.bars) {
        var grp = sv("g", attrs), bw = Math.max(1, pw / Math.max(n, 1) * 0.8);
        s.values.forEach(function (v, i) {
          if (!v) return;
          var y0 = Y(base[i]), y1 = Y(base[i] + v);
          grp.appendChild(sv("rect", { x: X(i) - bw / 2, y: y1, width: bw, height: Math.max(1, y0 - y1),
            fill: s.color }));
          base[i] += v;
        });
        svg.appendChild(grp);
        return;
      }
      var d = "", pen = false;
      s.values.forEach(function (v, i) {
        if (v === null) { pen = false; return; }
        d += (pen ? "L" : "M") + X(i).toFixed(1) + " " + Y(v).toFixed(1);
        pen = true;
      });
      attrs.d = d;
      attrs.fill = "none";
      attrs.stroke = s.color;
      attrs["stroke-width"] = 1.6;
      svg.appendChild(sv("path", attrs));
      /* A point without neighbours draws no line: a dot shows it. */
      s.values.forEach(function (v, i) {
        if (v === null) return;
        var prev = i > 0 ? s.values[i - 1] : null, next = i + 1 < n ? s.values[i + 1] : null;
        if (prev === null && next === null)
          svg.appendChild(sv("circle", { cx: X(i).toFixed(1), cy: Y(v).toFixed(1), r: 2.2, fill: s.color }));
      });
    });
    parent.appendChild(svg);
    legend(parent, series);
    return svg;
  }

  function hbars(parent, id, rows, keys) {
    /* rows: [{label, values: [..]}], keys: [{name, color, path(label)}] */
    var W = 1180, rowH = 18, L = 260, H = rows.length * (rowH * keys.length + 6) + 20;
    var svg = sv("svg", { "class": "chart", id: id, width: W, height: H, viewBox: "0 0 " + W + " " + H });
    var max = 1;
    rows.forEach(function (r) { r.values.forEach(function (v) { if (v > max) max = v; }); });
    var y = 4;
    rows.forEach(function (r) {
      var t = sv("text", { x: L - 8, y: y + rowH * keys.length / 2 + 4, "text-anchor": "end" });
      t.textContent = r.label.length > 40 ? r.label.substr(0, 39) + "…" : r.label;
      svg.appendChild(t);
      keys.forEach(function (k, i) {
        var w = r.values[i] * (W - L - 120) / max;
        svg.appendChild(sv("rect", { x: L, y: y, width: Math.max(r.values[i] ? 1 : 0, w), height: rowH - 3,
          fill: k.color, "data-series": k.name + ":" + r.label, "data-sum": r.values[i] }));
        var vt = sv("text", { x: L + w + 6, y: y + rowH - 6 });
        vt.textContent = fmtBytes(r.values[i]);
        svg.appendChild(vt);
        y += rowH;
      });
      y += 6;
    });
    parent.appendChild(svg);
    legend(parent, keys);
  }

  function topBy(obj, key, n) {
    return Object.keys(obj).sort(function (a, b) {
      return (obj[b][key] - obj[a][key]) || (a < b ? -1 : 1);
    }).slice(0, n);
  }

  /* ---- summary ---- */
  var span = TL.first_us >= 0 ? TL.last_us - TL.first_us : 0;
  var s0 = section("Summary", TL.first_us >= 0 ?
    "Kafka traffic from " + new Date(TL.first_us / 1000).toISOString() + " to " +
    new Date(TL.last_us / 1000).toISOString() + "; time buckets of " + fmtDur(TL.width_us) : "no Kafka traffic");
  var cards = el("div", { "class": "cards", id: "summary" });
  function card(label, node) {
    var c = el("div", { "class": "card" }), v = el("div", { "class": "v" });
    v.appendChild(node);
    c.appendChild(v);
    c.appendChild(el("div", { "class": "k" }, label));
    cards.appendChild(c);
  }
  card("duration", el("span", { "data-timeline": "duration_us", "data-value": span }, fmtDur(span)));
  if (ST.capture) {
    card("packets", stat("span", ["capture", "packets"]));
    card("captured bytes", stat("span", ["capture", "bytes"]));
    card("TCP flows", stat("span", ["capture", "tcp_flows"]));
  }
  card("Kafka flows", stat("span", ["kafka_flows"]));
  card("brokers", el("span", { "data-timeline": "brokers", "data-value": TL.brokers },
    fmtInt(TL.brokers) + (TL.brokers_capped ? "+" : "")));
  card("clients", el("span", { "data-timeline": "clients", "data-value": TL.clients },
    fmtInt(TL.clients) + (TL.clients_capped ? "+" : "")));
  card("requests", stat("span", ["requests"]));
  card("responses", stat("span", ["responses"]));
  card("unanswered", stat("span", ["unanswered"]));
  card("records produced", stat("span", ["produced_records"]));
  card("records fetched", stat("span", ["fetched_records"]));
  card("TCP gaps", stat("span", ["gaps", "gaps"]));
  card("decode problems", stat("span", ["problems", "count"]));
  s0.appendChild(cards);

  /* ---- requests per second ---- */
  var apis = Object.keys(ST.apis).sort(function (a, b) {
    return ST.apis[b].requests - ST.apis[a].requests || (a < b ? -1 : 1);
  });
  var s1 = section("Requests per second, per API");
  var sec = TL.width_us / 1e6;
  var shown = apis.filter(function (a) { return TL.apis[a]; }).slice(0, 10);
  timeChart(s1, "chart-requests", shown.map(function (a, i) {
    return { name: a, color: COLORS[i % COLORS.length], sum: TL.apis[a].requests.reduce(function (x, y) { return x + y; }, 0),
      values: TL.apis[a].requests.map(function (v) { return v / sec; }) };
  }), { yLabel: "req/s" });
  if (apis.length > shown.length)
    s1.appendChild(el("div", { "class": "muted" }, "The " + (apis.length - shown.length) + " least busy API(s) are only in the table below."));
  table(s1, ["API", "#requests", "#p50 ms", "#p90 ms", "#p99 ms", "#max ms"], apis.map(function (a) {
    var has = ST.apis[a].latency;
    return [a, stat("span", ["apis", a, "requests"]),
      has ? stat("span", ["apis", a, "latency", "p50_us"], 0.001, 3) : "",
      has ? stat("span", ["apis", a, "latency", "p90_us"], 0.001, 3) : "",
      has ? stat("span", ["apis", a, "latency", "p99_us"], 0.001, 3) : "",
      has ? stat("span", ["apis", a, "latency", "max_us"], 0.001, 3) : ""];
  }));

  /* ---- latency over time ---- */
  var s2 = section("Latency percentiles over time, per API",
    "Request to response, per time bucket (about 19% resolution); the table above has the whole capture's figures.");
  var grid = el("div", { "class": "grid" });
  s2.appendChild(grid);
  var latApis = apis.filter(function (a) { return ST.apis[a].latency && TL.apis[a]; }).slice(0, 8);
  latApis.forEach(function (a, i) {
    var box = el("div");
    box.appendChild(el("h3", {}, a));
    timeChart(box, "chart-latency-" + i, [
      { name: "p50", color: "#109618", values: TL.apis[a].p50_ms },
      { name: "p90", color: "#ff9900", values: TL.apis[a].p90_ms },
      { name: "p99", color: "#dc3912", values: TL.apis[a].p99_ms }], { width: 580, height: 170, yLabel: "ms" });
    grid.appendChild(box);
  });
  if (!latApis.length) s2.appendChild(el("div", { "class": "empty" }, "no request with a response"));

  /* ---- bytes ---- */
  var s3 = section("Bytes per topic",
    "In: record batches produced to the topic. Out: record batches fetched from it.");
  var topics = topBy(ST.topics, "produced_bytes", 1e9).sort(function (a, b) {
    var x = ST.topics[a], y = ST.topics[b];
    return (y.produced_bytes + y.fetched_bytes) - (x.produced_bytes + x.fetched_bytes) || (a < b ? -1 : 1);
  });
  if (topics.length) {
    hbars(s3, "chart-topics", topics.slice(0, 20).map(function (t) {
      return { label: t, values: [ST.topics[t].produced_bytes, ST.topics[t].fetched_bytes] };
    }), [{ name: "in (produced)", color: "#3366cc" }, { name: "out (fetched)", color: "#ff9900" }]);
    table(s3, ["topic", "#touched", "#produced records", "#produced bytes", "#fetched records", "#fetched bytes", "#errors"],
      topics.slice(0, 50).map(function (t) {
        return [t, stat("span", ["topics", t, "touched"]), stat("span", ["topics", t, "produced_records"]),
          stat("span", ["topics", t, "produced_bytes"]), stat("span", ["topics", t, "fetched_records"]),
          stat("span", ["topics", t, "fetched_bytes"]), stat("span", ["topics", t, "errors"])];
      }));
  } else s3.appendChild(el("div", { "class": "empty" }, "no topic seen"));
  s3.appendChild(el("h3", {}, "Kafka bytes over time (request and response bodies)"));
  timeChart(s3, "chart-bytes", [
    { name: "in (requests)", color: "#3366cc", values: TL.bytes_in.map(function (v) { return v / sec; }),
      sum: TL.bytes_in.reduce(function (x, y) { return x + y; }, 0) },
    { name: "out (responses)", color: "#ff9900", values: TL.bytes_out.map(function (v) { return v / sec; }),
      sum: TL.bytes_out.reduce(function (x, y) { return x + y; }, 0) }], { yLabel: "B/s", fmt: fmtBytes });

  /* ---- clients ---- */
  var s4 = section("Busiest clients and client ids");
  s4.appendChild(el("h3", {}, "Clients (address), by bytes"));
  table(s4, ["client", "#pairs", "#bytes", "#with errors", "client ids"], ST.busiest_clients.map(function (c, i) {
    return [c.client, stat("span", ["busiest_clients", i, "pairs"]), stat("span", ["busiest_clients", i, "bytes"]),
      stat("span", ["busiest_clients", i, "errors"]), c.client_ids.join(", ")];
  }));
  s4.appendChild(el("h3", {}, "Client ids, by bytes"));
  var cids = topBy(ST.client_ids, "bytes", 15);
  hbars(s4, "chart-client-ids", cids.map(function (c) { return { label: c, values: [ST.client_ids[c].bytes] }; }),
    [{ name: "bytes", color: "#0099c6" }]);
  table(s4, ["client id", "#pairs", "#bytes", "#produced records", "#fetched records", "#errors"], cids.map(function (c) {
    return [c, stat("span", ["client_ids", c, "pairs"]), stat("span", ["client_ids", c, "bytes"]),
      stat("span", ["client_ids", c, "produced_records"]), stat("span", ["client_ids", c, "fetched_records"]),
      stat("span", ["client_ids", c, "errors"])];
  }));

  /* ---- errors ---- */
  var s5 = section("Errors over time, by name", "Every non-zero ErrorCode in the responses, counted.");
  var enames = Object.keys(TL.errors);
  if (enames.length) {
    timeChart(s5, "chart-errors", enames.map(function (e, i) {
      return { name: e, color: COLORS[(i + 1) % COLORS.length], values: TL.errors[e] };
    }), { bars: true, stack: true, yLabel: "errors" });
    table(s5, ["error", "#count"], Object.keys(ST.errors).sort(function (a, b) {
      return ST.errors[b] - ST.errors[a];
    }).map(function (e) { return [e, stat("span", ["errors", e])]; }));
  } else s5.appendChild(el("div", { "class": "empty", id: "no-errors" }, "no error codes in the responses"));

  /* ---- groups ---- */
  var s6 = section("Consumer groups: membership events",
    "join = JoinGroup, sync = SyncGroup, leave = LeaveGroup, rebalance = REBALANCE_IN_PROGRESS " +
    "in a SyncGroup, Heartbeat or OffsetCommit response.");
  var kinds = ["join", "sync", "leave", "rebalance"], kc = ["#3366cc", "#109618", "#990099", "#dc3912"];
  if (TL.group_events_total > 0) {
    timeChart(s6, "chart-groups", kinds.map(function (k, i) {
      return { name: k, color: kc[i], values: TL.group_kinds[k] };
    }), { bars: true, stack: true, yLabel: "events" });
  }
  var gnames = Object.keys(ST.groups);
  if (gnames.length) {
    table(s6, ["group", "#requests", "#errors", "#join", "#sync", "#leave", "#rebalance", "members"], gnames.map(function (g) {
      var t = TL.groups[g] || {};
      return [g, stat("span", ["groups", g, "requests"]), stat("span", ["groups", g, "errors"]),
        fmtInt(t.join || 0), fmtInt(t.sync || 0), fmtInt(t.leave || 0), fmtInt(t.rebalance || 0),
        ST.groups[g].members.join(", ")];
    }));
  } else s6.appendChild(el("div", { "class": "empty" }, "no consumer group seen"));
  if (TL.group_events.length) {
    s6.appendChild(el("h3", {}, "Events" + (TL.group_events_total > TL.group_events.length ?
      " (the first " + TL.group_events.length + " of " + fmtInt(TL.group_events_total) + ")" : "")));
    table(s6, ["time (UTC)", "group", "event", "member", "error"], TL.group_events.slice(0, 300).map(function (e) {
      return [fmtTime(e.t_us), e.group, e.kind, e.member, e.error];
    }));
  }

  /* ---- gaps and problems ---- */
  var s7 = section("Capture gaps and decode problems");
  timeChart(s7, "chart-problems", [
    { name: "TCP gaps", color: "#ff9900", values: TL.gaps },
    { name: "decode problems", color: "#dc3912", values: TL.problems }], { bars: true, stack: true });
  table(s7, ["", "#count"], [
    ["Kafka flows with gaps", stat("span", ["gaps", "flows"])],
    ["gaps", stat("span", ["gaps", "gaps"])],
    ["bytes lost", stat("span", ["gaps", "bytes_lost"])],
    ["decode problems", stat("span", ["problems", "count"])]]);
  if (ST.problems.first.length) {
    var ul = el("ul", { "class": "problems" });
    ST.problems.first.forEach(function (p) { ul.appendChild(el("li", {}, p)); });
    s7.appendChild(ul);
  }
  document.body.setAttribute("data-rendered", "1");
})();
