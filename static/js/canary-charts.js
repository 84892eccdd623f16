// The rollout page of a canary: three uPlot charts that overlay the canary's traffic on the
// stable version's (errors, p95, requests per second), fed by GET /rollouts/<id>/traffic/.
// Refreshed every 5 seconds while the rollout runs; the answer says when it is over ("live").
(function () {
  "use strict";
  const root = document.getElementById("canary-charts");
  if (!root || typeof uPlot === "undefined") return;
  const url = root.dataset.trafficUrl;
  const REFRESH_MS = 5000;
  const TRACKS = [
    { key: "stable", label: "stable", stroke: "#4f46e5" },
    { key: "canary", label: "canary", stroke: "#ea580c" },
  ];
  let charts = {};
  let markers = [];
  let timer = null;

  const fmt = (digits) => (u, v) => (v == null ? "–" : v.toFixed(digits));

  // Dashed vertical lines where a step's weight took effect, and where the canary ended.
  function drawMarkers(u) {
    const ctx = u.ctx;
    ctx.save();
    for (const m of markers) {
      const x = u.valToPos(m.t, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = m.bad ? "#dc2626" : "#64748b";
      ctx.setLineDash([5, 4]);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = `${11 * devicePixelRatio}px sans-serif`;
      ctx.fillText(m.label, x + 4, u.bbox.top + 12 * devicePixelRatio);
    }
    ctx.restore();
  }

  function make(el, yLabel, digits) {
    const opts = {
      width: el.clientWidth || 400, height: 180,
      scales: { x: { time: true } },
      axes: [{}, { label: yLabel, size: 60 }],
      series: [{}].concat(TRACKS.map((t) => ({ label: t.label, stroke: t.stroke, width: 1.5,
        value: fmt(digits), spanGaps: false }))),
      hooks: { draw: [drawMarkers] },
      legend: { live: true },
    };
    return new uPlot(opts, [[], [], []], el);
  }

  function build() {
    const el = (name) => root.querySelector(`[data-chart="${name}"]`);
    charts = {
      errors: make(el("errors"), "%", 2),
      p95: make(el("p95"), "ms", 1),
      rps: make(el("rps"), "req/s", 2),
    };
  }

  function side(name, t) {
    if (!t || !t.requests) return `${name}: no requests`;
    return `${name}: ${t.requests} requests, ${(t.error_rate * 100).toFixed(2)} % errors, ` +
      `p95 ${t.p95_ms ?? "–"} ms`;
  }

  function render(data) {
    markers = data.markers || [];
    const track = (key, name) => data.tracks[key][name];
    const pct = (values) => values.map((v) => (v == null ? null : v * 100));
    const range = (u) => u.setScale("x", { min: data.start, max: data.end });
    charts.errors.setData([data.t, pct(track("stable", "error_rate")), pct(track("canary", "error_rate"))], false);
    charts.p95.setData([data.t, track("stable", "p95_ms"), track("canary", "p95_ms")], false);
    charts.rps.setData([data.t, track("stable", "rps"), track("canary", "rps")], false);
    Object.values(charts).forEach(range);
    root.querySelector('[data-role="totals"]').textContent =
      `Over the charts' window (points every ${data.step} s): ` +
      `${side("canary", data.totals.canary)} · ${side("stable", data.totals.stable)}.`;
  }

  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      render(data);
      if (!data.live && timer !== null) {
        clearInterval(timer); // the canary is over: its charts no longer change
        timer = null;
      }
    } catch (err) {
      root.querySelector('[data-role="totals"]').textContent = `Could not load the traffic (${err.message}); retrying.`;
    }
  }

  window.addEventListener("resize", () => {
    for (const c of Object.values(charts)) c.setSize({ width: c.root.parentElement.clientWidth, height: 180 });
  });
  build();
  refresh();
  timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
})();
