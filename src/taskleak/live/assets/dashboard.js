// taskleak dashboard: reads the JSON endpoints of the server that served it
// and draws everything itself (SVG); no third-party code, nothing fetched
// from elsewhere. Text from the process (task names, file names) is only
// ever set as textContent, never parsed as HTML.
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  const refreshSeconds = Math.max(0.2, parseFloat(params.get("refresh") || "2") || 2);
  // How many samples back "growth" looks (?window=N): the monitor's default
  // detector window, so that a group reads as growing over the same span
  // the detectors judge.
  const trendWindow = Math.max(2, parseInt(params.get("window") || "30", 10) || 30);
  const SVGNS = "http://www.w3.org/2000/svg";
  const state = { refreshes: 0, timer: null, last: null };

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children || []) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  async function getJSON(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(path, { headers: headers, cache: "no-store" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }
  function fmtBytes(b) {
    if (b === null || b === undefined) return "-";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + " " + u[i];
  }
  function fmtSeconds(s) {
    if (s === null || s === undefined) return "-";
    if (s < 1) return (s * 1000).toFixed(1) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  function fmtTime(t) { return new Date(t * 1000).toLocaleTimeString(); }
  function setText(id, v) { document.getElementById(id).textContent = v; }

  // A line chart: one polyline and one circle per sampled point per series.
  // Round a chart's top up to 1, 2, 2.5 or 5 times a power of ten, so that
  // its five grid lines fall on round values.
  function niceCeil(v) {
    if (!(v > 0)) return v;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v * (1 - 1e-9)) return m * p;
    return 10 * p;
  }

  // opts: `marks` (times of vertical alert lines), `hlines` (horizontal
  // reference lines {v, cls}, e.g. a threshold), `empty` (what an empty
  // chart says), `nice` (round the top of the scale).
  function drawChart(node, series, fmt, opts) {
    const { marks, hlines, empty, nice } = opts || {};
    while (node.firstChild) node.removeChild(node.firstChild);
    // Drawn in the chart's own pixel size, so that text is never stretched.
    const W = Math.max(200, Math.round(node.clientWidth || 600)), H = Math.max(100, Math.round(node.clientHeight || 200));
    const L = 58, R = 8, T = 8, B = 18;
    node.setAttribute("viewBox", "0 0 " + W + " " + H);
    const all = series.flatMap(s => s.points);
    if (!all.length) {
      node.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" })).textContent = empty || "no sample yet";
      return;
    }
    const t0 = Math.min(...all.map(p => p.t)), t1 = Math.max(...all.map(p => p.t));
    const refs = (hlines || []).filter(h => h.v !== null && h.v !== undefined);
    let vmax = Math.max(...all.map(p => p.v), ...refs.map(h => h.v)), vmin = Math.min(0, ...all.map(p => p.v));
    if (vmax === vmin) vmax = vmin + 1;
    if (nice) vmax = niceCeil(vmax);
    const x = t => L + (t1 === t0 ? (W - L - R) / 2 : (t - t0) / (t1 - t0) * (W - L - R));
    const y = v => T + (1 - (v - vmin) / (vmax - vmin)) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = vmin + (vmax - vmin) * i / 4;
      node.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      node.appendChild(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end", class: "axis" })).textContent = fmt(v);
    }
    node.appendChild(svg("text", { x: L, y: H - 4, class: "axis" })).textContent = fmtTime(t0);
    node.appendChild(svg("text", { x: W - R, y: H - 4, "text-anchor": "end", class: "axis" })).textContent = fmtTime(t1);
    for (const m of marks || []) {
      if (m >= t0 && m <= t1) node.appendChild(svg("line", { x1: x(m), x2: x(m), y1: T, y2: H - B, class: "alert-mark" }));
    }
    for (const h of refs) node.appendChild(svg("line", { x1: L, x2: W - R, y1: y(h.v), y2: y(h.v), class: h.cls }));
    for (const s of series) {
      if (s.line !== false) node.appendChild(svg("polyline", { class: s.cls, points: s.points.map(p => x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(" ") }));
      for (const p of s.points) {
        const c = svg("circle", { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 2.5, class: "pt " + s.cls, "data-t": p.t, "data-v": p.v });
        c.appendChild(svg("title")).textContent = s.label + " " + fmt(p.v) + " at " + fmtTime(p.t);
        node.appendChild(c);
      }
    }
  }

  // A group's size over the samples kept; a gap where a sample cannot say.
  function sparkline(values) {
    const s = svg("svg", { class: "spark", viewBox: "0 0 120 24", preserveAspectRatio: "none" });
    const known = values.filter(v => v !== null);
    if (values.length < 2 || !known.length) return s;
    const max = Math.max(...known, 1), min = Math.min(...known, 0);
    let run = [];
    const flush = () => { if (run.length) s.appendChild(svg("polyline", { points: run.join(" ") })); run = []; };
    values.forEach((v, i) => {
      if (v === null) { flush(); return; }
      run.push((i / (values.length - 1) * 118 + 1).toFixed(1) + "," + (22 - (v - min) / (max - min || 1) * 20).toFixed(1));
    });
    flush();
    return s;
  }

  function renderSamples(data, alerts) {
    const samples = data.samples;
    const last = samples[samples.length - 1];
    if (last) {
      setText("v-tasks", last.tasks);
      setText("v-pending", last.pending);
      setText("v-done", last.done_retained);
      setText("v-created", last.created_total);
      setText("v-rss", fmtBytes(last.rss_bytes));
      setText("v-lag", fmtSeconds(last.loop_lag_s));
    }
    const marks = alerts.map(a => a.time);
    const pts = key => samples.filter(s => s[key] !== null && s[key] !== undefined).map(s => ({ t: s.time, v: s[key] }));
    drawChart(document.getElementById("chart-tasks"), [
      { cls: "pending", label: "pending", points: pts("pending") },
      { cls: "done_retained", label: "done, still referenced", points: pts("done_retained") },
    ], v => Math.round(v).toString(), { marks: marks, nice: true });
    drawChart(document.getElementById("chart-rss"), [{ cls: "rss", label: "RSS", points: pts("rss_bytes") }], fmtBytes, { marks: marks });
    drawChart(document.getElementById("chart-lag"), [{ cls: "lag", label: "lag", points: pts("loop_lag_s") }], fmtSeconds);

    // Top groups of the latest sample, each judged on its own recent samples.
    const tbody = document.querySelector("#groups tbody");
    tbody.replaceChildren();
    const counts = groupCounts(samples);
    for (const g of last ? last.groups : []) {
      const series = groupSeries(counts, groupKey(g));
      const t = groupTrend(series, trendWindow);
      const other = isOther(g);
      tbody.appendChild(el("tr", { "data-group": groupKey(g), "data-trend": t.trend, "data-growth": String(t.growth) }, [
        el("td", { class: "group" }, other ? [el("span", { class: "coro", text: "all smaller groups" })] : [
          el("span", { class: "coro", text: g.coro + "()" }),
          g.allowlisted ? el("span", { class: "allowed", text: " allow-listed" }) : "",
          el("span", { class: "site mono", text: g.site }),
        ]),
        el("td", { class: "n", "data-label": "pending", text: String(g.pending) }),
        el("td", { class: "n", "data-label": "done, ref'd", text: String(g.done_retained) }),
        el("td", { class: "n", "data-label": "oldest", text: fmtSeconds(g.oldest_age_s) }),
        el("td", { class: "n trend-" + t.trend, "data-label": "growth", title: t.title, text: t.text }),
        el("td", { class: "spark-cell" }, [sparkline(series)]),
      ]));
    }
  }

  // The monitor lumps the groups past its top N into one whose site and
  // coroutine are both "other".
  const isOther = g => g.site === "other" && g.coro === "other";
  const groupKey = g => g.site + "\n" + g.coro;

  // A group's size (pending + done, still referenced) in each sample: null
  // where the sample cannot say (the group was not among its top groups
  // but some groups were lumped into "other", so it may hide there), 0
  // where it had no task at all.
  function groupSeries(counts, key) {
    return counts.map(c => c.sizes.has(key) ? c.sizes.get(key) : (c.lumped ? null : 0));
  }
  // Each sample's group sizes by key, built once per refresh (up to 720
  // samples of 21 groups each).
  function groupCounts(samples) {
    return samples.map(s => ({ lumped: s.groups.some(isOther),
                               sizes: new Map(s.groups.map(x => [groupKey(x), x.pending + x.done_retained])) }));
  }

  // Growth means growth over the recent window, not "exists": a group that
  // appeared at start-up and stayed flat is steady however few tasks it had
  // in the first samples. Over the last `win` samples, counted from the
  // group's first appearance if that is later (so the step of appearing is
  // not growth: a burst of long-lived connections opened at once is not a
  // leak), a group grows when the smallest of its latest third is above
  // the largest of its first third - a rise that stayed, which a single
  // spike or a group going up and down does not make. `growth` is the
  // latest value minus the first of that span.
  function groupTrend(series, win) {
    const recent = series.slice(-(win + 1));
    const first = recent.findIndex(v => v !== null && v > 0);
    const vals = first < 0 ? [] : recent.slice(first).filter(v => v !== null);
    if (vals.length < 2) {
      return { trend: "steady", growth: 0, text: "steady", title: vals.length ? "new" : "no sample yet" };
    }
    const k = Math.max(1, Math.floor(vals.length / 3));
    const head = vals.slice(0, k), tail = vals.slice(-k);
    const growth = vals[vals.length - 1] - vals[0];
    const span = " over the last " + vals.length + " samples";
    if (Math.min(...tail) > Math.max(...head)) return { trend: "growing", growth, text: "+" + growth, title: "growing" + span };
    if (Math.max(...tail) < Math.min(...head)) return { trend: "shrinking", growth, text: "\u2212" + (-growth), title: "shrinking" + span };
    return { trend: "steady", growth, text: "steady", title: "no lasting rise" + span };
  }

  // The blocked card in words: whether the watchdog looks at all, and if
  // it saw blocks, how many and how long in all.
  function blockedWords(data) {
    if (data.blocks > 0) {
      return data.blocks + " block" + (data.blocks === 1 ? "" : "s") + ", " + fmtSeconds(data.blocked_seconds) + " in all";
    }
    return data.watching ? "no blocked loop" : "not watched";
  }

  function renderAlerts(data) {
    const tbody = document.querySelector("#alerts tbody");
    tbody.replaceChildren();
    const alerts = data.alerts.slice().reverse();
    for (const a of alerts) {
      tbody.appendChild(el("tr", {}, [
        el("td", { class: "when", text: fmtTime(a.time) }),
        el("td", { class: "mono", "data-label": "signal", text: a.group ? "group " + a.group : a.signal }),
        el("td", { "data-label": "detector", text: a.anomaly.kind }),
        el("td", { class: "what" }, [el("pre", { text: a.text })]),
      ]));
    }
    setText("v-alerts", String(data.alerts.length));
    document.getElementById("alerts-empty").hidden = alerts.length > 0;
    document.getElementById("card-alerts").classList.toggle("alerting", data.suspected.length > 0);
  }

  // The native watchdog's blocked-loop episodes (/api/blocked): totals in a
  // card, each episode as a point (when, how long) over the threshold line,
  // and the latest ones in a table whose rows open on their sampled stacks.
  function renderBlocked(data) {
    const eps = data.episodes;
    const card = document.getElementById("card-blocked");
    const summary = document.getElementById("blocked-summary");
    setText("v-blocked", blockedWords(data));
    document.getElementById("v-blocked").classList.add("words");
    if (!data.watching && !data.blocks) {
      summary.className = "off";
      summary.textContent = "(watchdog off: start it in the process with taskleak.watch_blocking(), or taskleak run --blocking SECONDS)";
    } else {
      summary.className = "";
      summary.textContent = "(" + (data.watching ? "watchdog on, threshold " + fmtSeconds(data.threshold) : "watchdog stopped")
        + "; " + data.blocks + " episode" + (data.blocks === 1 ? "" : "s") + ", " + fmtSeconds(data.blocked_seconds)
        + " blocked in all" + (data.kept > eps.length ? "; latest " + eps.length + " of " + data.kept + " kept" : "") + ")";
    }
    // Red while the latest episode is recent (the last minute).
    card.classList.toggle("alerting", eps.length > 0 && Date.now() / 1000 - (eps[0].start + eps[0].duration) < 60);
    drawChart(document.getElementById("chart-blocked"),
      [{ cls: "blocked", label: "blocked for", line: false, points: eps.slice().reverse().map(e => ({ t: e.start, v: e.duration })) }],
      fmtSeconds, { hlines: data.watching ? [{ v: data.threshold, cls: "threshold" }] : [], nice: true,
                    empty: data.watching ? "no episode yet" : "not watched" });
    const tbody = document.querySelector("#blocked-episodes tbody");
    const open = new Set(Array.from(tbody.querySelectorAll("details[open]")).map(d => d.dataset.seq));
    tbody.replaceChildren();
    for (const e of eps) {
      const where = e.site ? e.site.short : "(no stack could be read)";
      const cell = [];
      if (e.stacks.length) {
        const top = e.stacks[0];
        const body = [el("summary", { class: "mono", text: where })];
        body.push(el("div", { class: "stack-note", text: "most sampled stack, innermost first: " + top.count + " of "
          + e.samples + " samples" + (e.stacks.length > 1 || e.stacks_truncated ? "; " + (e.stacks.length - 1 + e.stacks_truncated) + " other stack(s)" : "") }));
        body.push(el("ol", { class: "stack" }, top.frames.map(f => el("li", { text: f.short }))));
        if (top.frames_truncated) body.push(el("div", { class: "stack-note", text: "... " + top.frames_truncated + " outer frame(s)" }));
        const d = el("details", { "data-seq": String(e.seq) }, body);
        if (open.has(String(e.seq))) d.open = true;
        cell.push(d);
      } else {
        cell.push(el("span", { class: "mono", text: where }));
      }
      tbody.appendChild(el("tr", { "data-seq": String(e.seq) }, [
        el("td", { class: "when", text: fmtTime(e.start), title: new Date(e.start * 1000).toString() }),
        el("td", { class: "n", "data-label": "blocked for", text: fmtSeconds(e.duration) }),
        el("td", { class: "where" }, cell),
        el("td", { class: "mono", "data-label": "running", text: (e.running || "-") + (e.ended !== "resumed" ? " (" + e.ended + ")" : "") }),
        el("td", { class: "mono", "data-label": "loop", text: e.loop + (e.thread ? " in " + e.thread : "") }),
      ]));
    }
    document.getElementById("blocked-empty").hidden = eps.length > 0;
    setText("blocked-empty", data.watching || data.blocks ? "No blocked loop." : "Not watched: blocked loops are not being looked for.");
  }

  function frameText(f) { return f.short || (f.filename + ":" + f.lineno + " in " + f.function); }

  function renderTasks(data) {
    const states = Object.entries(data.states).filter(([, n]) => n).map(([s, n]) => n + " " + s).join(", ");
    setText("tasks-summary", "(" + data.task_count + " tasks" + (states ? ": " + states : "") + ", " + data.group_count + " groups)");
    const box = document.getElementById("dump");
    const open = new Set(Array.from(box.querySelectorAll("details[open]")).map(d => d.dataset.key));
    box.replaceChildren();
    for (const g of data.groups) {
      const key = g.coro + "|" + (g.site || "") + "|" + g.state;
      const summary = el("summary", {}, [
        el("span", { class: "count", text: g.count + " " }),
        g.state + ", " + g.coro + "()" + (g.waiting_on ? ", waiting on " + g.waiting_on : ""),
        g.orphaned ? el("span", { class: "orphaned", text: "  orphaned" }) : "",
        el("span", { class: "mono", text: "  created at " + (g.site || "(unknown: created before install)") }),
      ]);
      const body = [summary, el("div", { class: "names", text: g.tasks.join(", ") + (g.tasks_truncated ? ", ..." : "") })];
      if (g.orphaned && g.orphan_reason) body.push(el("div", { class: "orphaned", text: g.orphan_reason }));
      if (g.created_by.length) body.push(el("div", { text: "created by: " + g.created_by.join(", ") }));
      if (g.created_at) body.push(el("div", { text: "created at:" }), el("ol", {}, g.created_at.map(f => el("li", { text: frameText(f) }))));
      if (g.chain.length) body.push(el("div", { text: "suspended at (innermost first):" }), el("ol", { class: "chain" }, g.chain.slice().reverse().map(f => el("li", { text: frameText(f) }))));
      const d = el("details", { class: "group", "data-key": key }, body);
      if (open.has(key)) d.open = true;
      box.appendChild(d);
    }
    if (data.other.groups) box.appendChild(el("p", { class: "empty", text: data.other.tasks + " more tasks in " + data.other.groups + " smaller groups" }));
  }

  // A loop blocked right now (/api/blocked's in_progress): a banner. The
  // process answers /api/blocked natively even while its loop holds the GIL,
  // when every other request gets a 503.
  function renderBlockedNow(blocked) {
    const banner = document.getElementById("blocked-now");
    const now = (blocked && blocked.in_progress) || [];
    banner.hidden = now.length === 0;
    banner.textContent = now.map(e => "BLOCKED NOW " + e.duration.toFixed(1) + " s at " +
      (e.site ? e.site.short : "(line not sampled yet)") + (e.call ? " (" + e.call + ")" : "") +
      "  - loop " + e.loop + ", " + e.samples + " samples").join("\n");
    return now;
  }

  async function refresh() {
    const status = document.getElementById("status");
    let now = [];
    try {
      const blocked = await getJSON("/api/blocked?limit=10");
      now = renderBlockedNow(blocked);
      const [samples, alerts, tasks] = await Promise.all([getJSON("/api/samples"), getJSON("/api/alerts"),
        getJSON("/api/tasks")]);
      state.last = { samples, alerts, blocked };
      renderAlerts(alerts);
      renderBlocked(blocked);
      renderSamples(samples, alerts.alerts);
      renderTasks(tasks);
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      document.body.dataset.samples = String(samples.samples.length);
      status.className = "status";
      status.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      status.className = "status error";
      status.textContent = now.length ? "the process is stuck: only the blocked-loop answers come (" + e.message + ")"
        : "cannot reach the process: " + e.message;
    }
    state.timer = setTimeout(refresh, refreshSeconds * 1000);
  }

  async function start() {
    try {
      const info = await getJSON("/api/info");
      setText("proc", "pid " + info.pid + "  Python " + info.python + "  " + info.argv.join(" "));
      document.title = "taskleak: pid " + info.pid;
    } catch (e) {
      const status = document.getElementById("status");
      status.className = "status error";
      status.textContent = "cannot reach the process: " + e.message;
    }
    refresh();
  }
  // Charts are drawn in their own pixel size (text is never stretched), so
  // a rotated phone or a resized window redraws them from the last answers.
  let resizeQueued = false;
  window.addEventListener("resize", () => {
    if (resizeQueued || !state.last) return;
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      renderBlocked(state.last.blocked);
      renderSamples(state.last.samples, state.last.alerts.alerts);
    });
  });
  // The page's rules, readable from the console and checked by the tests.
  window.taskleak = Object.freeze({ groupTrend, blockedWords, trendWindow });
  document.addEventListener("DOMContentLoaded", start);
})();
