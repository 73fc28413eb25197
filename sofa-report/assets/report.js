"use strict";
// Draws the sofa report from the JSON in #sofa-data and #sofa-flamegraphs.
// No library, no network: canvas for the timeline and the scatter, inferno's
// own SVG (with its script) in a frame for the flamegraphs.
(function () {
  var errorCount = 0;
  function reportError(message) {
    var box = document.getElementById("sofa-errors");
    box.hidden = false;
    var p = document.createElement("p");
    p.textContent = message;
    box.appendChild(p);
    errorCount += 1;
    document.body.setAttribute("data-errors", String(errorCount));
  }
  window.addEventListener("error", function (e) {
    reportError("script error: " + e.message);
  });
  document.addEventListener("securitypolicyviolation", function (e) {
    reportError("blocked request: " + e.blockedURI + " (" + e.violatedDirective + ")");
  });

  var D = JSON.parse(document.getElementById("sofa-data").textContent);
  var SVGS = JSON.parse(document.getElementById("sofa-flamegraphs").textContent);
  var A = D.analysis;
  var T = D.timeline;
  var S = D.scatter;
  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#3b3b98"];
  var NONE_COLOR = "#b0b4bb";

  function swarmColor(id) {
    return id === null || id === undefined ? NONE_COLOR : PALETTE[id % PALETTE.length];
  }

  // ---------- helpers ----------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "class") node.className = attrs[k];
        else node.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }
  function body(id) {
    return document.querySelector("#" + id + " .body");
  }
  function fmtNum(n) {
    if (n === null || n === undefined) return "–";
    if (typeof n !== "number") return String(n);
    if (Number.isInteger(n)) return n.toLocaleString("en-US");
    return n.toLocaleString("en-US", { maximumFractionDigits: 3 });
  }
  function fmtNs(ns) {
    if (ns === null || ns === undefined) return "–";
    var a = Math.abs(ns);
    if (a >= 1e9) return (ns / 1e9).toFixed(a >= 1e11 ? 0 : 3) + " s";
    if (a >= 1e6) return (ns / 1e6).toFixed(2) + " ms";
    if (a >= 1e3) return (ns / 1e3).toFixed(1) + " µs";
    return Math.round(ns) + " ns";
  }
  function fmtBytes(b) {
    if (b === null || b === undefined) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (Math.abs(b) >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i === 0 ? Math.round(b) : b.toFixed(1)) + " " + units[i];
  }
  function fmtPct(x) {
    if (x === null || x === undefined) return "–";
    return (x * 100).toFixed(1) + " %";
  }
  function collectorNote(name, empty) {
    var c = A.run.collectors[name];
    if (!c) return "not recorded: this archive has no " + name + " collector";
    if (c.status !== "ok") {
      return "not recorded: " + name + " " + c.status + (c.reason ? ": " + c.reason : "");
    }
    return "none recorded: " + empty;
  }
  // Formats a table cell from its column name.
  function fmtCell(key, v) {
    if (Array.isArray(v)) {
      var parts = v.slice(0, 6).map(function (x) { return typeof x === "number" ? fmtNum(x) : String(x); });
      return parts.join(", ") + (v.length > 6 ? ", … (" + v.length + ")" : "");
    }
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (/_ns$/.test(key)) return fmtNs(v);
    if (/bytes_per_s$/.test(key)) return fmtBytes(v) + "/s";
    if (/bytes$/.test(key)) return fmtBytes(v);
    if (/share$/.test(key) || key === "confidence") return fmtPct(v);
    if (/_w$/.test(key)) return v.toFixed(1) + " W";
    if (/_j$/.test(key)) return fmtNum(Math.round(v)) + " J";
    if (/util/.test(key)) return v.toFixed(1) + " %";
    return fmtNum(v);
  }

  // ---------- sortable tables ----------
  // `empty`: shown instead of an empty table; `foot`: shown under a table.
  function dataTable(title, rows, empty, foot, columns) {
    var wrap = el("div", { class: "table-block" });
    if (title) wrap.appendChild(el("h3", { text: title }));
    if (!rows || rows.length === 0) {
      wrap.appendChild(el("p", { class: "missing", text: empty || "no rows" }));
      return wrap;
    }
    var keys = columns || Object.keys(rows[0]).filter(function (k) {
      return typeof rows[0][k] !== "object" || rows[0][k] === null || Array.isArray(rows[0][k]);
    });
    var table = el("table", { class: "data" });
    var thead = el("thead");
    var headRow = el("tr");
    var tbody = el("tbody");
    var order = rows.slice();
    var sortKey = null;
    var sortDir = 1;
    function fill() {
      tbody.textContent = "";
      order.forEach(function (r) {
        var tr = el("tr");
        keys.forEach(function (k) {
          var v = r[k];
          var td = el("td", { text: fmtCell(k, v) });
          if (typeof v === "number") td.className = "num";
          if (k === "swarm" || (title === "Swarms" && k === "id")) {
            td.insertBefore(el("span", { class: "chip", style: "background:" + swarmColor(v) }), td.firstChild);
          }
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
    }
    keys.forEach(function (k) {
      var th = el("th", { text: k.replace(/_/g, " "), scope: "col", "data-key": k });
      th.addEventListener("click", function () {
        sortDir = sortKey === k ? -sortDir : (typeof rows[0][k] === "number" ? -1 : 1);
        sortKey = k;
        order.sort(function (a, b) {
          var x = a[k], y = b[k];
          if (x === y) return 0;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          if (Array.isArray(x)) { x = x.length; y = y.length; }
          return (x < y ? -1 : 1) * sortDir;
        });
        headRow.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
        fill();
      });
      headRow.appendChild(th);
    });
    thead.appendChild(headRow);
    table.appendChild(thead);
    table.appendChild(tbody);
    table.setAttribute("data-sortable", "true");
    fill();
    wrap.appendChild(el("div", { class: "table-scroll" }, table));
    if (foot) wrap.appendChild(el("p", { class: "help", text: foot }));
    return wrap;
  }

  // ---------- summary ----------
  function renderSummary() {
    var r = A.run;
    var dl = el("dl", { class: "kv" });
    function row(k, v, cls) {
      dl.appendChild(el("dt", { text: k }));
      dl.appendChild(el("dd", cls ? { class: cls, text: v } : { text: v }));
    }
    row("Command", r.command.join(" "));
    row("Archive", r.archive);
    row("Host", r.host + " (kernel " + r.kernel + ")");
    row("Started", new Date(r.start_wall_ns / 1e6).toISOString());
    row("Duration", r.duration_ns === null ? "unknown (recording cut short)" : fmtNs(r.duration_ns));
    var exit = r.signal !== null ? "killed by signal " + r.signal
      : r.exit_code !== null ? "exit status " + r.exit_code : "unknown";
    row("Exit", exit, r.exit_code === 0 ? null : "warn");
    row("Sampling", (r.sample_event || "none") + (r.frequency_hz ? " at " + r.frequency_hz + " Hz" : "") +
      (r.sampling_note ? " — " + r.sampling_note : ""), r.sampling_note ? "warn" : null);
    row("Samples", fmtNum(r.samples));
    var lostParts = Object.keys(r.lost_by_collector).map(function (k) {
      return k + " " + fmtNum(r.lost_by_collector[k]);
    });
    row("Lost events", r.lost === 0 ? "none" : fmtNum(r.lost) + " (" + lostParts.join(", ") + ")",
      r.lost === 0 ? "ok" : "bad");
    var steps = A.steps;
    row("Steps", steps.count > 0
      ? steps.count + " steps of " + fmtNs(steps.period_ns) + " (jitter " + fmtPct(steps.period_cv) +
        ", confidence " + fmtPct(steps.confidence) + ")"
      : "none: " + (steps.note || "no periodic structure found"));
    var ph = A.phases;
    if (ph && ph.phases.length) {
      row("Phases", ph.phases.map(function (p) { return p.name + " " + fmtPct(p.share); }).join(", ") +
        " (of the main process's " + fmtNum(ph.samples) + " samples " + (ph.in_loop ? "in the steps)" : "in the run)"));
    }
    if (r.truncated) row("Archive state", "cut short: the recording did not finish", "bad");
    r.warnings.forEach(function (w) { row("Warning", w, "warn"); });
    var b = body("summary");
    b.appendChild(dl);
    var collectors = Object.keys(r.collectors).sort().map(function (name) {
      var c = r.collectors[name];
      return { collector: name, status: c.status, reason: c.reason || "" };
    });
    b.appendChild(dataTable("Collectors", collectors, "no collector status in the archive (recorded by an early sofa)"));
    b.querySelectorAll("td").forEach(function (td) {
      if (td.textContent === "ok") td.classList.add("ok");
      else if (["unavailable", "failed", "disabled"].indexOf(td.textContent) >= 0) td.classList.add("warn");
    });
  }

  // ---------- hints ----------
  function renderHints() {
    var b = body("hints");
    if (A.hints.length === 0) {
      b.appendChild(el("p", { class: "missing", text: "No bottleneck rule fired." }));
      return;
    }
    A.hints.forEach(function (h) {
      b.appendChild(el("div", { class: "hint " + h.severity },
        el("span", { class: "sev", text: h.severity }),
        el("strong", { text: h.title }),
        el("div", { class: "evidence", text: h.evidence })));
    });
  }

  // ---------- flamegraphs ----------
  function renderFlamegraphs() {
    var b = body("flamegraph");
    var available = [];
    D.flamegraphs.forEach(function (f, i) { if (SVGS[i]) available.push(i); });
    if (available.length === 0) {
      b.appendChild(el("p", { class: "missing", text: "not recorded: the archive holds no sampled call stacks" }));
      return;
    }
    var select = el("select", { id: "flame-select", "aria-label": "flamegraph" });
    available.forEach(function (i) {
      var f = D.flamegraphs[i];
      select.appendChild(el("option", { value: String(i), text: f.title + " (" + fmtNum(f.samples) + " samples)" }));
    });
    var info = el("span", { class: "help" });
    var frame = el("iframe", { class: "flame", id: "flame-frame", title: "flamegraph" });
    var url = null;
    function show(i) {
      var svg = SVGS[i];
      var f = D.flamegraphs[i];
      // Check the SVG before showing it: a parse error is a report bug.
      var doc = new DOMParser().parseFromString(svg, "image/svg+xml");
      if (doc.getElementsByTagName("parsererror").length > 0) {
        reportError("flamegraph " + i + " is not valid SVG");
        return;
      }
      var root = doc.documentElement;
      var frames = doc.getElementById("frames");
      frame.setAttribute("data-frames", String(frames ? frames.getElementsByTagName("g").length : 0));
      // Deep graphs scroll inside the frame; the roots are at the top.
      frame.style.height = Math.min(720, (parseFloat(root.getAttribute("height")) || 600) + 4) + "px";
      // Lay the page out first: inferno sizes the graph to the frame's width.
      void frame.offsetWidth;
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
      frame.src = url;
      info.textContent = fmtNum(f.stacks) + " distinct stacks" +
        (f.dropped_samples > 0 ? "; " + fmtNum(f.dropped_samples) + " samples of rarer stacks not drawn" : "") +
        ". Click to zoom, Ctrl-F or the Search button to highlight.";
    }
    select.addEventListener("change", function () { show(Number(select.value)); });
    b.appendChild(el("div", { class: "flame-bar" }, select, info));
    b.appendChild(frame);
    b.setAttribute("data-flamegraphs", String(available.length));
    // `report.html?flame=off-CPU` opens the first graph whose title starts so.
    var wanted = new URLSearchParams(window.location.search).get("flame");
    var first = available.filter(function (i) {
      return wanted && D.flamegraphs[i].title.indexOf(wanted) === 0;
    })[0];
    if (first === undefined) first = available[0];
    select.value = String(first);
    show(first);
  }

  // ---------- timeline ----------
  var span0 = Math.max(1, T.end_ns - T.start_ns);
  var view = { t0: 0, t1: span0 };
  var redrawers = [];
  var readers = [];
  function setView(t0, t1) {
    var minSpan = Math.min(span0, 100000);
    var s = Math.max(minSpan, Math.min(span0, t1 - t0));
    t0 = Math.max(0, Math.min(t0, span0 - s));
    view.t0 = t0;
    view.t1 = t0 + s;
    redrawAll();
  }
  function redrawAll() {
    redrawers.forEach(function (f) { f(); });
    var label = document.getElementById("view-label");
    if (label) label.textContent = "showing " + fmtNs(view.t0) + " – " + fmtNs(view.t1) + " of " + fmtNs(span0);
  }
  function xOf(relT, w) {
    return (relT - view.t0) / (view.t1 - view.t0) * w;
  }
  function sizeCanvas(canvas, cssHeight) {
    var ratio = window.devicePixelRatio || 1;
    var w = Math.max(100, canvas.clientWidth || canvas.parentNode.clientWidth || 800);
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    canvas.style.height = cssHeight + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { ctx: ctx, w: w, h: cssHeight };
  }
  // Attaches zoom (wheel), pan (drag) and reset (double-click) to a canvas.
  function interact(canvas) {
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var rect = canvas.getBoundingClientRect();
      var at = view.t0 + (e.clientX - rect.left) / rect.width * (view.t1 - view.t0);
      var f = Math.exp(e.deltaY * 0.0015);
      setView(at - (at - view.t0) * f, at + (view.t1 - at) * f);
    }, { passive: false });
    var drag = null;
    canvas.addEventListener("mousedown", function (e) {
      drag = { x: e.clientX, t0: view.t0, t1: view.t1, w: canvas.getBoundingClientRect().width };
      canvas.style.cursor = "grabbing";
    });
    window.addEventListener("mouseup", function () {
      drag = null;
      canvas.style.cursor = "";
    });
    window.addEventListener("mousemove", function (e) {
      if (!drag) return;
      var dt = (e.clientX - drag.x) / drag.w * (drag.t1 - drag.t0);
      setView(drag.t0 - dt, drag.t1 - dt);
    });
    canvas.addEventListener("dblclick", function () { setView(0, span0); });
  }
  function readoutAt(relT) {
    readers.forEach(function (f) { f(relT); });
  }
  // Mean of `values` over the bins under each pixel column.
  function binsToPixels(values, w) {
    var out = new Float64Array(Math.ceil(w));
    var per = (view.t1 - view.t0) / w;
    for (var px = 0; px < out.length; px++) {
      var a = view.t0 + px * per;
      var b0 = Math.floor(a / T.bin_ns);
      var b1 = Math.max(b0 + 1, Math.floor((a + per) / T.bin_ns));
      var sum = 0;
      var n = 0;
      for (var b = Math.max(0, b0); b < Math.min(values.length, b1); b++) { sum += values[b]; n++; }
      out[px] = n > 0 ? sum / n : 0;
    }
    return out;
  }
  function binAt(values, relT) {
    var b = Math.floor(relT / T.bin_ns);
    return b >= 0 && b < values.length ? values[b] : null;
  }
  function lowerBound(ts, t) {
    var lo = 0, hi = ts.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (ts[mid] < t) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function seriesAt(series, relT) {
    if (!series || series.t_ns.length === 0) return null;
    var i = Math.min(series.t_ns.length - 1, lowerBound(series.t_ns, relT + T.start_ns));
    return series.value[i];
  }
  function drawSteps(ctx, w, h) {
    var bs = A.steps.boundaries_ns;
    var visible = [];
    for (var i = 0; i < bs.length; i++) {
      var x = xOf(bs[i] - T.start_ns, w);
      if (x >= 0 && x <= w) visible.push(x);
    }
    if (visible.length === 0 || visible.length > w / 3) return;
    ctx.strokeStyle = "rgba(20,20,20,0.35)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    visible.forEach(function (x) { ctx.moveTo(Math.round(x) + 0.5, 0); ctx.lineTo(Math.round(x) + 0.5, h); });
    ctx.stroke();
  }
  function drawLine(ctx, w, h, series, max, color, fill) {
    var ts = series.t_ns;
    if (ts.length === 0) return;
    var i0 = Math.max(0, lowerBound(ts, view.t0 + T.start_ns) - 1);
    var i1 = Math.min(ts.length, lowerBound(ts, view.t1 + T.start_ns) + 1);
    ctx.beginPath();
    var first = true;
    var lastX = 0;
    for (var i = i0; i < i1; i++) {
      var x = xOf(ts[i] - T.start_ns, w);
      var y = h - 2 - (series.value[i] / max) * (h - 6);
      if (first) { ctx.moveTo(x, fill ? h : y); if (fill) ctx.lineTo(x, y); first = false; } else ctx.lineTo(x, y);
      lastX = x;
    }
    if (fill) {
      ctx.lineTo(lastX, h);
      ctx.closePath();
      ctx.fillStyle = color + "55";
      ctx.fill();
    }
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.2;
    ctx.stroke();
  }
  function visibleMax(series) {
    var ts = series.t_ns;
    var i0 = lowerBound(ts, view.t0 + T.start_ns);
    var i1 = lowerBound(ts, view.t1 + T.start_ns);
    var m = 0;
    for (var i = Math.max(0, i0 - 1); i < Math.min(ts.length, i1 + 1); i++) m = Math.max(m, series.value[i]);
    return m;
  }

  function addTrack(container, spec) {
    var readout = el("span", { class: "readout" });
    var label = el("div", { class: "label" }, el("span", { text: spec.title }), readout);
    var track = el("div", { class: "track", "data-track": spec.id }, label);
    container.appendChild(track);
    if (spec.missing) {
      track.classList.add("missing-track");
      track.appendChild(el("div", { class: "missing", style: "padding:6px 8px", text: spec.missing }));
      return;
    }
    var canvas = el("canvas");
    track.appendChild(canvas);
    interact(canvas);
    canvas.addEventListener("mousemove", function (e) {
      var rect = canvas.getBoundingClientRect();
      readoutAt(view.t0 + (e.clientX - rect.left) / rect.width * (view.t1 - view.t0));
    });
    redrawers.push(function () {
      var c = sizeCanvas(canvas, spec.height || 56);
      c.ctx.clearRect(0, 0, c.w, c.h);
      spec.draw(c.ctx, c.w, c.h);
      drawSteps(c.ctx, c.w, c.h);
    });
    readers.push(function (relT) {
      readout.textContent = "at " + fmtNs(relT) + ": " + spec.read(relT);
    });
    track.setAttribute("data-drawn", "true");
  }

  function stackedBins(rows, colors) {
    return function (ctx, w, h) {
      var pix = rows.map(function (r) { return binsToPixels(r, w); });
      var max = 0;
      for (var px = 0; px < w; px++) {
        var s = 0;
        for (var r = 0; r < pix.length; r++) s += pix[r][px];
        max = Math.max(max, s);
      }
      if (max <= 0) return;
      for (var x = 0; x < w; x++) {
        var y = h;
        for (var k = 0; k < pix.length; k++) {
          var hh = pix[k][x] / max * (h - 4);
          if (hh <= 0) continue;
          ctx.fillStyle = colors[k];
          ctx.fillRect(x, y - hh, 1, hh);
          y -= hh;
        }
      }
    };
  }

  function renderTimeline() {
    var b = body("timeline");
    var controls = el("div", { class: "controls" });
    [["−", 2], ["+", 0.5]].forEach(function (z) {
      var btn = el("button", { type: "button", text: z[0], title: z[1] > 1 ? "zoom out" : "zoom in" });
      btn.addEventListener("click", function () {
        var mid = (view.t0 + view.t1) / 2;
        var s = (view.t1 - view.t0) * z[1];
        setView(mid - s / 2, mid + s / 2);
      });
      controls.appendChild(btn);
    });
    var reset = el("button", { type: "button", text: "whole run" });
    reset.addEventListener("click", function () { setView(0, span0); });
    controls.appendChild(reset);
    controls.appendChild(el("span", { id: "view-label", class: "help" }));
    b.appendChild(controls);
    var tracks = el("div", { class: "tracks" });
    b.appendChild(tracks);

    var swarmRows = T.swarm_samples;
    var colors = swarmRows.map(function (_, i) { return i < A.swarms.length ? swarmColor(i) : NONE_COLOR; });
    addTrack(tracks, {
      id: "swarms", title: "CPU samples by swarm (vertical lines: step boundaries)", height: 70,
      missing: A.run.samples === 0 ? "not recorded: no CPU samples in the archive" : null,
      draw: stackedBins(swarmRows, colors),
      read: function (t) {
        var parts = [];
        swarmRows.forEach(function (r, i) {
          var v = binAt(r, t);
          if (v) parts.push((i < A.swarms.length ? "swarm " + i : "no swarm") + " " + v);
        });
        return parts.length ? parts.join(", ") + " samples per " + fmtNs(T.bin_ns) : "idle";
      }
    });
    // Framework phases (forward, backward, ...) of the main process's samples.
    var phaseRows = T.phase_samples || [];
    if (phaseRows.length) {
      addTrack(tracks, {
        id: "phases", title: "The main process's CPU samples by framework phase (legend below)", height: 56,
        draw: stackedBins(phaseRows.map(function (r) { return r.samples; }),
          phaseRows.map(function (r) { return phaseColor(r.phase); })),
        read: function (t) {
          var parts = [];
          phaseRows.forEach(function (r) {
            var v = binAt(r.samples, t);
            if (v) parts.push(r.phase + " " + v);
          });
          return parts.length ? parts.join(", ") + " samples per " + fmtNs(T.bin_ns) : "idle";
        }
      });
    }
    // Thread state lanes: running, or waiting off the CPU (colour per reason).
    var lanes = T.thread_states || [];
    var stateColors = {
      "running": "#59a14f", "preempted": "#f28e2b", "gil": "#b07aa1", "lock": "#e15759",
      "pipe": "#4e79a7", "poll": "#76b7b2", "disk": "#9c755f", "page-fault": "#ff9da7",
      "sleep": "#bab0ac", "child": "#d4d4d4", "gpu-driver": "#edc948", "other": "#7f7f7f"
    };
    addTrack(tracks, {
      id: "threads", title: "Threads: running (green) or waiting off the CPU, coloured by reason (hover: which)",
      height: Math.max(24, 12 * lanes.length + 4),
      missing: lanes.length ? null : collectorNote("off_cpu", "no context switches"),
      draw: function (ctx, w, h) {
        var per = (view.t1 - view.t0) / w;
        lanes.forEach(function (lane, k) {
          for (var px = 0; px < w; px++) {
            var b = Math.floor((view.t0 + px * per) / T.bin_ns);
            var st = b >= 0 && b < lane.states.length ? lane.states[b] : 255;
            if (st === 255) continue;
            ctx.fillStyle = stateColors[T.state_names[st]] || "#7f7f7f";
            ctx.fillRect(px, 2 + 12 * k, 1, 10);
          }
        });
      },
      read: function (t) {
        var b = Math.floor(t / T.bin_ns);
        return lanes.map(function (lane) {
          var st = b >= 0 && b < lane.states.length ? lane.states[b] : 255;
          return lane.tid + " " + lane.comm + ": " + (st === 255 ? "–" : T.state_names[st]);
        }).join("; ");
      }
    });
    addTrack(tracks, {
      id: "cpu", title: "CPU utilisation, all CPUs (user, system, iowait)", height: 56,
      missing: T.cpu ? null : collectorNote("system", "fewer than two /proc/stat reads"),
      draw: function (ctx, w, h) {
        var c = T.cpu;
        var i0 = Math.max(0, lowerBound(c.t_ns, view.t0 + T.start_ns) - 1);
        var i1 = Math.min(c.t_ns.length, lowerBound(c.t_ns, view.t1 + T.start_ns) + 1);
        for (var i = i0; i < i1; i++) {
          var xr = xOf(c.t_ns[i] - T.start_ns, w);
          var xl = i > 0 ? xOf(c.t_ns[i - 1] - T.start_ns, w) : xr - 2;
          var y = h;
          [[c.user[i], "#4e79a7"], [c.system[i], "#e15759"], [c.iowait[i], "#edc948"]].forEach(function (p) {
            var hh = p[0] * (h - 4);
            ctx.fillStyle = p[1];
            ctx.fillRect(xl, y - hh, Math.max(1, xr - xl), hh);
            y -= hh;
          });
        }
      },
      read: function (t) {
        var c = T.cpu;
        var i = Math.min(c.t_ns.length - 1, lowerBound(c.t_ns, t + T.start_ns));
        return "user " + fmtPct(c.user[i]) + ", system " + fmtPct(c.system[i]) + ", iowait " + fmtPct(c.iowait[i]);
      }
    });
    if (T.mem_used) {
      addTrack(tracks, {
        id: "memory", title: "Memory used", height: 40,
        draw: function (ctx, w, h) { drawLine(ctx, w, h, T.mem_used, visibleMax(T.mem_used) || 1, "#59a14f", true); },
        read: function (t) { return fmtBytes(seriesAt(T.mem_used, t)); }
      });
    }
    if (T.gpus.length === 0) {
      addTrack(tracks, { id: "gpu", title: "GPU", missing: collectorNote("gpu", "no GPU was sampled") });
    }
    T.gpus.forEach(function (g) {
      var pairs = [["util", "utilisation", function () { return 100; }, function (v) { return v === null ? "–" : v.toFixed(0) + " %"; }, "#76b7b2"],
        ["mem_used_bytes", "memory used", function (s) { return visibleMax(s) || 1; }, fmtBytes, "#b07aa1"],
        ["power_w", "power", function (s) { return visibleMax(s) || 1; }, function (v) { return v === null ? "–" : v.toFixed(0) + " W"; }, "#f28e2b"]];
      pairs.forEach(function (p) {
        var s = g[p[0]];
        addTrack(tracks, {
          id: "gpu" + g.gpu + "-" + p[0], title: "GPU " + g.gpu + " " + p[1], height: 44,
          missing: s.t_ns.length === 0 ? "not recorded: the driver did not report GPU " + g.gpu + " " + p[1] : null,
          draw: function (ctx, w, h) { drawLine(ctx, w, h, s, p[2](s), p[4], true); },
          read: function (t) { return p[3](seriesAt(s, t)); }
        });
      });
    });
    var perSecond = 1e9 / T.bin_ns;
    addTrack(tracks, {
      id: "net", title: "Network throughput (sent, received)", height: 50,
      missing: T.net_tx_bytes ? null : collectorNote("net", "no packets"),
      draw: function (ctx, w, h) {
        var tx = binsToPixels(T.net_tx_bytes, w);
        var rx = binsToPixels(T.net_rx_bytes, w);
        var max = 0;
        for (var i = 0; i < tx.length; i++) max = Math.max(max, tx[i], rx[i]);
        if (max <= 0) return;
        [[tx, "#e15759"], [rx, "#4e79a7"]].forEach(function (p) {
          ctx.fillStyle = p[1] + "aa";
          for (var x = 0; x < p[0].length; x++) {
            var hh = p[0][x] / max * (h - 4);
            if (hh > 0) ctx.fillRect(x, h - hh, 1, hh);
          }
        });
      },
      read: function (t) {
        return "sent " + fmtBytes((binAt(T.net_tx_bytes, t) || 0) * perSecond) + "/s, received " +
          fmtBytes((binAt(T.net_rx_bytes, t) || 0) * perSecond) + "/s";
      }
    });
    addTrack(tracks, {
      id: "syscalls", title: "System calls per second", height: 44,
      missing: T.syscalls ? null : collectorNote("syscalls", "no system calls"),
      draw: stackedBins(T.syscalls ? [T.syscalls] : [], ["#9c755f"]),
      read: function (t) { return fmtNum(Math.round((binAt(T.syscalls, t) || 0) * perSecond)) + " calls/s"; }
    });
    addTrack(tracks, {
      id: "axis", title: "time since start", height: 22,
      draw: function (ctx, w, h) {
        var s = view.t1 - view.t0;
        var step = Math.pow(10, Math.floor(Math.log10(s / 6)));
        if (s / step > 12) step *= 2;
        if (s / step > 12) step *= 2.5;
        ctx.fillStyle = "#667085";
        ctx.font = "11px system-ui, sans-serif";
        for (var t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
          var x = xOf(t, w);
          ctx.fillRect(x, 0, 1, 5);
          ctx.fillText(fmtNs(t), x + 2, 15);
        }
      },
      read: function (t) { return fmtNs(t); }
    });
    var legend = el("div", { class: "legend" });
    A.swarms.forEach(function (s) {
      legend.appendChild(el("span", null, el("span", { class: "chip", style: "background:" + swarmColor(s.id) }),
        "swarm " + s.id + ": " + s.caption + " (" + fmtPct(s.share) + (s.phase ? ", " + s.phase : "") + ")"));
    });
    b.appendChild(legend);
    if (phaseRows.length) {
      var phases = el("div", { class: "legend phases" });
      phases.appendChild(el("span", { text: "Phases" + (A.phases.in_loop ? " (share of the steps)" : "") + ":" }));
      A.phases.phases.forEach(function (p) {
        phases.appendChild(el("span", null, el("span", { class: "chip", style: "background:" + phaseColor(p.name) }),
          p.name + " " + fmtPct(p.share)));
      });
      b.appendChild(phases);
    }
  }

  var PHASE_COLORS = {
    "forward": "#4e79a7", "backward": "#e15759", "optimizer": "#59a14f",
    "data loading": "#edc948", "communication": "#b07aa1", "other": "#bab0ac"
  };
  function phaseColor(name) { return PHASE_COLORS[name] || "#7f7f7f"; }

  // ---------- scatter ----------
  function renderScatter() {
    var b = body("scatter");
    if (S.cells.length === 0) {
      b.appendChild(el("p", { class: "missing", text: "not recorded: no CPU samples with a call stack" }));
      return;
    }
    b.appendChild(el("p", { class: "help", text: "Each mark: one function's own samples in one time slice of " +
      fmtNs(S.bin_ns) + "; rows are functions in address order, grouped by module; colour: swarm. " +
      "Zoom and pan on the timeline or here." + (S.dropped_cells > 0 ? " " + fmtNum(S.dropped_cells) +
      " lightest marks left out." : "") }));
    var wrap = el("div", { class: "scatter-wrap" });
    var canvas = el("canvas", { id: "scatter-canvas" });
    var tip = el("div", { class: "tip", hidden: "" });
    wrap.appendChild(canvas);
    wrap.appendChild(tip);
    b.appendChild(wrap);
    var rows = S.functions.length;
    var maxN = 1;
    var byKey = new Map();
    S.cells.forEach(function (c) { maxN = Math.max(maxN, c[2]); byKey.set(c[0] * rows + c[1], c[2]); });
    var left = 120;
    var height = Math.max(220, Math.min(520, rows * 4 + 40));
    interact(canvas);
    redrawers.push(function () {
      var c = sizeCanvas(canvas, height);
      var ctx = c.ctx;
      var w = c.w - left;
      var h = c.h - 10;
      ctx.clearRect(0, 0, c.w, c.h);
      var rowH = h / rows;
      // Module bands and names.
      ctx.font = "11px system-ui, sans-serif";
      var start = 0;
      for (var r = 1; r <= rows; r++) {
        if (r === rows || S.functions[r].module !== S.functions[start].module) {
          var y0 = h - r * rowH;
          ctx.fillStyle = (start === 0 || S.functions[start].module.length % 2) ? "#f7f8fa" : "#eef0f3";
          ctx.fillRect(left, y0, w, (r - start) * rowH);
          if ((r - start) * rowH >= 11) {
            // Only where the band is tall enough for its name.
            ctx.fillStyle = "#667085";
            ctx.fillText(S.functions[start].module.slice(0, 18), 2, h - start * rowH - 2);
          }
          ctx.fillStyle = "#d0d5dd";
          ctx.fillRect(0, y0, c.w, 1);
          start = r;
        }
      }
      var span = view.t1 - view.t0;
      var cw = Math.max(1.5, S.bin_ns / span * w);
      var ch = Math.max(1.5, rowH);
      var offset = S.start_ns - T.start_ns;
      S.cells.forEach(function (cell) {
        var x = left + xOf(offset + cell[0] * S.bin_ns, w);
        if (x + cw < left || x > left + w) return;
        var f = S.functions[cell[1]];
        ctx.globalAlpha = 0.3 + 0.7 * Math.sqrt(cell[2] / maxN);
        ctx.fillStyle = swarmColor(f.swarm);
        ctx.fillRect(x, h - (cell[1] + 1) * rowH, cw, ch);
      });
      ctx.globalAlpha = 1;
      drawSteps(ctx, c.w, 0);
    });
    canvas.addEventListener("mousemove", function (e) {
      var rect = canvas.getBoundingClientRect();
      var x = e.clientX - rect.left - left;
      var w = rect.width - left;
      var h = height - 10;
      var row = Math.floor((h - (e.clientY - rect.top)) / (h / rows));
      if (x < 0 || row < 0 || row >= rows) { tip.hidden = true; return; }
      var relT = view.t0 + x / w * (view.t1 - view.t0);
      readoutAt(relT);
      var bin = Math.floor((relT - (S.start_ns - T.start_ns)) / S.bin_ns);
      var f = S.functions[row];
      var n = byKey.get(bin * rows + row) || 0;
      tip.textContent = f.name + "\n" + f.module + " 0x" + f.address.toString(16) + "\n" +
        (f.swarm === null ? "no swarm" : "swarm " + f.swarm) + " · " + n + " samples at " + fmtNs(relT);
      tip.style.left = Math.min(rect.width - 260, e.clientX - rect.left + 12) + "px";
      tip.style.top = (e.clientY - rect.top + 12) + "px";
      tip.hidden = false;
    });
    canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
    var legend = el("div", { class: "legend" });
    A.swarms.forEach(function (s) {
      legend.appendChild(el("span", null, el("span", { class: "chip", style: "background:" + swarmColor(s.id) }),
        "swarm " + s.id + ": " + s.caption));
    });
    b.appendChild(legend);
    b.setAttribute("data-marks", String(S.cells.length));
  }

  // ---------- tables ----------
  function renderTables() {
    var b = body("tables");
    var more = D.omitted.functions > 0 ? fmtNum(D.omitted.functions) + " functions with fewer samples not listed" : null;
    b.appendChild(dataTable("Top functions", A.functions, "no samples", more));
    b.appendChild(dataTable("Modules", A.modules, "no samples"));
    var swarms = A.swarms.map(function (s) {
      var row = {};
      Object.keys(s).forEach(function (k) { row[k] = s[k]; });
      row.start_ns = s.start_ns - T.start_ns;
      row.end_ns = s.end_ns - T.start_ns;
      return row;
    });
    b.appendChild(dataTable("Swarms", swarms, "no swarms: too few samples",
      "start and end: time since the start of the recording"));
    var st = A.steps;
    var breakdown = A.step_breakdown.map(function (r) {
      var row = { step: r.step, start_ns: r.start_ns - T.start_ns, duration_ns: r.duration_ns };
      r.samples_by_swarm.forEach(function (n, i) { row["swarm_" + i + "_samples"] = n; });
      (A.phases.phases || []).forEach(function (p) {
        if (r.samples_by_phase) row[p.name.replace(" ", "_") + "_samples"] = r.samples_by_phase[p.name] || 0;
      });
      row.syscall_ns = r.syscall_ns;
      row.io_ns = r.io_ns;
      row.gpu_busy_share = r.gpu_busy_share;
      row.net_bytes = r.net_bytes;
      if (r.main_waits_ns) {
        Object.keys(r.main_waits_ns).forEach(function (k) { row["main_wait_" + k + "_ns"] = r.main_waits_ns[k]; });
      }
      return row;
    });
    b.appendChild(dataTable("Steps", breakdown,
      "no periodic structure found" + (st.note ? ": " + st.note : ""),
      D.omitted.step_breakdown > 0 ? fmtNum(D.omitted.step_breakdown) + " later steps not listed" : null));
    b.appendChild(dataTable("Processes", A.processes, "no samples"));
    b.appendChild(dataTable("Threads", A.threads, "no samples"));
    var w = A.waits;
    var waitThreads = w ? w.threads.map(function (t) {
      var row = { pid: t.pid, tid: t.tid, comm: t.comm, span_ns: t.span_ns, wait_ns: t.wait_ns, wait_share: t.wait_share };
      Object.keys(t.by_reason).forEach(function (k) { row[k + "_ns"] = t.by_reason[k]; });
      return row;
    }) : [];
    var waitColumns = [];
    waitThreads.forEach(function (r) {
      Object.keys(r).forEach(function (k) { if (waitColumns.indexOf(k) < 0) waitColumns.push(k); });
    });
    // Switches recorded in windows (above --switch-rate): shares of that time.
    var windows = w && w.traced_share != null ? "; switches came faster than --switch-rate and were recorded " +
      fmtPct(w.traced_share) + " of the time: spans and waits are of that time" : "";
    b.appendChild(dataTable("Waits per thread (off the CPU)", waitThreads, collectorNote("off_cpu", "no waits"),
      "span: the thread's first to last context switch" + windows, waitColumns.length ? waitColumns : null));
    b.appendChild(dataTable("Where threads waited", w ? w.stacks : [], collectorNote("off_cpu", "no waits")));
    if (w && w.locks && w.locks.length) {
      b.appendChild(dataTable("Locks threads slept on", w.locks.map(function (l) {
        return { pid: l.pid, lock: l.address, threads: l.tids.join(" "), waits: l.waits, wait_ns: l.wait_ns,
          share: l.share, "function": l["function"], module: l.module };
      }), "none"));
    }
    // Calls left out or traced in windows (above --syscall-rate): said under the table.
    var sc = A.run.collectors.syscalls;
    b.appendChild(dataTable("System calls", A.syscalls, collectorNote("syscalls", "no system calls"),
      sc && sc.status === "ok" && sc.reason ? "system calls " + sc.reason : undefined));
    b.appendChild(dataTable("GPU", A.gpu, collectorNote("gpu", "no GPU was sampled")));
    var net = A.net;
    b.appendChild(dataTable("Network interfaces", net ? net.interfaces : [], collectorNote("net", "no packets")));
    b.appendChild(dataTable("Network flows", net ? net.flows : [],
      net ? "no flows: record with --net-capture to see them" : collectorNote("net", "no packets")));
    var sys = A.system;
    b.appendChild(dataTable("Disks", sys ? sys.disks : [], sys ? "no disk traffic" : collectorNote("system", "no /proc reads")));
  }

  function run(name, f) {
    try { f(); } catch (e) { reportError(name + ": " + (e && e.stack ? e.stack : e)); }
  }
  run("summary", renderSummary);
  run("hints", renderHints);
  run("flamegraph", renderFlamegraphs);
  run("timeline", renderTimeline);
  run("scatter", renderScatter);
  run("tables", renderTables);
  run("draw", redrawAll);
  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) cancelAnimationFrame(pending);
    pending = requestAnimationFrame(redrawAll);
  });
  document.body.setAttribute("data-rendered", "true");
})();
