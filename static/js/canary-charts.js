// The rollout page of a canary: three uPlot charts that overlay the canary's traffic on the
// stable version's (errors, p95, requests per second), fed by GET /rollouts/<id>/traffic/.
// Refreshed every 5 seconds while the rollout runs; the answer says when it is over ("live").
(function () {
  "use strict";
  const root = document.getElementById("canary-charts");
  if (!root || typeof uPlot === "undefined" || !window.ModelgateCharts) return;
  const { chart, resizing, polling, getJSON } = window.ModelgateCharts;
  const totals = root.querySelector('[data-role="totals"]');
  const TRACKS = [
    { label: "stable", stroke: "#4f46e5" },
    { label: "canary", stroke: "#ea580c" },
  ];
  // Dashed vertical lines where a step's weight took effect, and where the canary ended.
  let markers = [];
  const el = (name) => root.querySelector(`[data-chart="${name}"]`);
  const make = (name, yLabel, digits) => chart(el(name), TRACKS.map((t) => ({ ...t, digits })), yLabel, () => markers);
  const charts = { errors: make("errors", "%", 2), p95: make("p95", "ms", 1), rps: make("rps", "req/s", 2) };

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
    totals.textContent =
      `Over the charts' window (points every ${data.step} s): ` +
      `${side("canary", data.totals.canary)} · ${side("stable", data.totals.stable)}.`;
  }

  resizing(() => charts);
  polling(async () => {
    const data = await getJSON(root.dataset.trafficUrl, totals, "the traffic");
    if (data === null) return true;
    render(data);
    return data.live; // the canary is over: its charts no longer change
  }, 5000);
})();
