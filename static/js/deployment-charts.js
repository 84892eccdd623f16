// Live traffic charts for a deployment page: four uPlot charts fed by
// GET /api/v1/deployments/<id>/metrics/?window=<s>, refreshed every 5 seconds.
(function () {
  "use strict";
  const root = document.getElementById("metrics");
  if (!root || typeof uPlot === "undefined") return;
  const url = root.dataset.metricsUrl;
  const REFRESH_MS = 5000;
  let windowSeconds = 900;
  let charts = {};
  let events = [];

  const fmt = (digits) => (u, v) => (v == null ? "–" : v.toFixed(digits));
  const palette = ["#4f46e5", "#0891b2", "#dc2626", "#16a34a"];

  // Vertical dashed lines with labels where a rollout finished (or was rolled back).
  function markers(u) {
    const ctx = u.ctx;
    ctx.save();
    for (const e of events) {
      const x = u.valToPos(e.t, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      const bad = e.state === "rolled_back" || e.state === "failed" || e.guard === "breached";
      ctx.strokeStyle = bad ? "#dc2626" : "#64748b";
      ctx.setLineDash([5, 4]);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = `${11 * devicePixelRatio}px sans-serif`;
      const label = (e.kind === "auto_rollback" ? "guard rollback → v" : e.kind === "rollback" ? "rollback → v" : "v") +
        (e.version ?? "?") + (e.state === "rolled_back" ? " (rolled back)" : "");
      ctx.fillText(label, x + 4, u.bbox.top + 12 * devicePixelRatio);
    }
    ctx.restore();
  }

  function make(el, series, yLabel) {
    const opts = {
      width: el.clientWidth || 500, height: 180,
      scales: { x: { time: true } },
      axes: [{}, { label: yLabel, size: 60 }],
      series: [{}].concat(series.map((s, i) => ({ label: s.label, stroke: palette[i], width: 1.5,
        value: fmt(s.digits ?? 1), spanGaps: false }))),
      hooks: { draw: [markers] },
      legend: { live: true },
    };
    return new uPlot(opts, [[]].concat(series.map(() => [])), el);
  }

  function build() {
    const el = (name) => root.querySelector(`[data-chart="${name}"]`);
    charts = {
      rps: make(el("rps"), [{ label: "requests/s", digits: 2 }], "req/s"),
      latency: make(el("latency"), [{ label: "p50" }, { label: "p95" }, { label: "p99" }], "ms"),
      errors: make(el("errors"), [{ label: "errors %", digits: 2 }], "%"),
      replicas: make(el("replicas"), [{ label: "ready", digits: 0 }], "replicas"),
    };
  }

  function render(data) {
    const p = data.points;
    events = data.events || [];
    const pct = p.error_rate.map((v) => (v == null ? null : v * 100));
    charts.rps.setData([p.t, p.rps]);
    charts.latency.setData([p.t, p.p50_ms, p.p95_ms, p.p99_ms]);
    charts.errors.setData([p.t, pct]);
    charts.replicas.setData([p.t, p.replicas_ready]);
    const t = data.totals;
    const totals = root.querySelector('[data-role="totals"]');
    totals.textContent = t.requests
      ? `${t.requests} requests in the window · ${t.rps ?? "–"} req/s on average · ` +
        `p95 ${t.p95_ms ?? "–"} ms · errors ${(t.error_rate * 100).toFixed(2)} % · points every ${data.step} s`
      : `No requests in this window (points every ${data.step} s).`;
  }

  async function refresh() {
    try {
      const response = await fetch(`${url}?window=${windowSeconds}`, { credentials: "same-origin",
        headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
    } catch (err) {
      root.querySelector('[data-role="totals"]').textContent = `Could not load metrics (${err.message}); retrying.`;
    }
  }

  root.querySelectorAll("[data-window]").forEach((button) => {
    button.addEventListener("click", () => {
      windowSeconds = Number(button.dataset.window);
      root.querySelectorAll("[data-window]").forEach((b) => {
        b.classList.toggle("active", b === button);
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      refresh();
    });
  });
  window.addEventListener("resize", () => {
    for (const c of Object.values(charts)) c.setSize({ width: c.root.parentElement.clientWidth, height: 180 });
  });
  build();
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
})();
