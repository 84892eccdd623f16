// Live traffic charts for a deployment page: four uPlot charts fed by
// GET /api/v1/deployments/<id>/metrics/?window=<s>, refreshed every 5 seconds.
(function () {
  "use strict";
  const root = document.getElementById("metrics");
  if (!root || typeof uPlot === "undefined" || !window.ModelgateCharts) return;
  const { chart, resizing, polling, getJSON } = window.ModelgateCharts;
  const totals = root.querySelector('[data-role="totals"]');
  const palette = ["#4f46e5", "#0891b2", "#dc2626", "#16a34a"];
  let windowSeconds = 900;
  // Vertical dashed lines with labels where a rollout finished (or was rolled back).
  let markers = [];
  const el = (name) => root.querySelector(`[data-chart="${name}"]`);
  const make = (name, series, yLabel) =>
    chart(el(name), series.map((s, i) => ({ stroke: palette[i], ...s })), yLabel, () => markers);
  const charts = {
    rps: make("rps", [{ label: "requests/s", digits: 2 }], "req/s"),
    latency: make("latency", [{ label: "p50" }, { label: "p95" }, { label: "p99" }], "ms"),
    errors: make("errors", [{ label: "errors %", digits: 2 }], "%"),
    replicas: make("replicas", [{ label: "ready", digits: 0 }], "replicas"),
  };

  function marker(e) {
    const bad = e.state === "rolled_back" || e.state === "failed" || e.guard === "breached";
    const label = (e.kind === "auto_rollback" ? "guard rollback → v" : e.kind === "rollback" ? "rollback → v" : "v") +
      (e.version ?? "?") + (e.state === "rolled_back" ? " (rolled back)" : "");
    return { t: e.t, label, bad };
  }

  function render(data) {
    const p = data.points;
    markers = (data.events || []).map(marker);
    const pct = p.error_rate.map((v) => (v == null ? null : v * 100));
    charts.rps.setData([p.t, p.rps]);
    charts.latency.setData([p.t, p.p50_ms, p.p95_ms, p.p99_ms]);
    charts.errors.setData([p.t, pct]);
    charts.replicas.setData([p.t, p.replicas_ready]);
    const t = data.totals;
    totals.textContent = t.requests
      ? `${t.requests} requests in the window · ${t.rps ?? "–"} req/s on average · ` +
        `p95 ${t.p95_ms ?? "–"} ms · errors ${(t.error_rate * 100).toFixed(2)} % · points every ${data.step} s`
      : `No requests in this window (points every ${data.step} s).`;
  }

  async function refresh() {
    const data = await getJSON(`${root.dataset.metricsUrl}?window=${windowSeconds}`, totals, "metrics");
    if (data !== null) render(data);
    return true;
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
  resizing(() => charts);
  polling(refresh, 5000);
})();
